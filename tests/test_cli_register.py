"""``escalation register``: migrate, export (anonymised unless asked, and
then logged) and its one-line errors."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from escalation.cli import main
from escalation.settings import Settings, get_settings
from register import Register
from register.migrate import head
from tests.test_register_store import CHILD, SUMMARY, new_case, raised, write


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("ESCALATION_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("ESCALATION_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def seeded(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert run(capsys, "register", "migrate")[0] == 0
    register = Register.from_settings(Settings(_env_file=None, ESCALATION_DATA_DIR=data_dir))  # type: ignore[call-arg]
    state = raised(new_case())
    write(register, state)
    register.close()
    return state.reference


def test_migrate_says_what_it_did(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "register", "migrate")
    assert status == 0 and f"migrated from empty to {head()}" in out
    status, out, _ = run(capsys, "register", "migrate")
    assert status == 0 and f"at the current schema ({head()})" in out
    assert (data_dir / "register.sqlite3").exists()


def test_export_is_anonymised_by_default(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = seeded(data_dir, capsys)
    status, out, _ = run(capsys, "register", "export", "--partnership", "merton")
    assert status == 0
    (row,) = list(csv.DictReader(io.StringIO(out)))
    assert row["reference"] == ref and row["status"] == "open" and row["events"] == "3"
    assert CHILD.name not in out and SUMMARY not in out and "summary" not in row
    status, out, _ = run(
        capsys,
        "register",
        "export",
        "--partnership",
        "merton",
        "--format",
        "json",
        "--from",
        "2027-01-04",
        "--to",
        "2027-01-04",
    )
    assert status == 0 and [r["reference"] for r in json.loads(out)] == [ref]
    status, out, _ = run(
        capsys,
        "register",
        "export",
        "--partnership",
        "merton",
        "--format",
        "json",
        "--from",
        "2027-01-05",
    )
    assert status == 0 and json.loads(out) == []
    assert not (data_dir / "audit.log").exists()


def test_export_with_details_is_logged(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seeded(data_dir, capsys)
    out_file = data_dir / "export.json"
    status, _, err = run(
        capsys,
        "register",
        "export",
        "--partnership",
        "merton",
        "--format",
        "json",
        "--with-details",
        "--out",
        str(out_file),
    )
    assert status == 0 and "1 cases written" in err
    (row,) = json.loads(out_file.read_text())
    assert row["child_name"] == CHILD.name and row["summary"] == SUMMARY
    audit = (data_dir / "audit.log").read_text()
    assert "register export with details" in audit and "partnership merton" in audit
    assert CHILD.name not in audit and CHILD.name not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--partnership", "atlantis"], "atlantis"),
        (
            ["--partnership", "merton", "--from", "2027-02-01", "--to", "2027-01-01"],
            "--from is after --to",
        ),
        (["--partnership", "merton", "--from", "1 Feb"], "--from: cannot read"),
    ],
)
def test_export_errors_are_one_line(
    data_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    status, out, err = run(capsys, "register", "export", *argv)
    assert status == 1 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1
