"""The README stays true to the code: the quick start is the two commands CI
and a newcomer run, and every setting the code reads is documented."""

from __future__ import annotations

import re
from pathlib import Path

from escalation.settings import Settings

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def _section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.M | re.S)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def test_the_quick_start_is_make_run_and_make_test() -> None:
    block = re.search(r"```sh\n(.*?)```", _section("Quick start"), re.S)
    assert block
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert [c for c in commands if c] == ["make run", "make test"]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)


def test_every_setting_is_in_the_configuration_table() -> None:
    table = _section("Configuration")
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias.choices[0] if field.validation_alias else name  # type: ignore[union-attr]
        assert f"`{alias}`" in table, f"README's Configuration table lacks {alias}"
