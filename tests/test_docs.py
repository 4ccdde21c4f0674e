"""The README stays true to the code: the quick start is the two commands CI
and a newcomer run, and every setting the code reads is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

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


DOCS = sorted((ROOT / "docs").glob("*.md"))
_LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize(
    "path", [ROOT / "README.md", *DOCS], ids=lambda p: str(p.relative_to(ROOT))
)
def test_no_link_points_outside_the_repository(path: Path) -> None:
    """A clone has no ../shared/: every relative link resolves inside the
    repository, to a file that exists."""
    for target in _LINK.findall(path.read_text()):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue  # a web address or an anchor on the same page
        resolved = (path.parent / target.split("#")[0]).resolve()
        assert resolved.is_relative_to(ROOT.resolve()), f"{path.name}: {target}"
        assert resolved.exists(), f"{path.name}: {target} does not exist"


def test_the_readme_links_the_design_docs() -> None:
    assert DOCS, "docs/ holds the design"
    for doc in DOCS:
        assert f"(docs/{doc.name})" in README, doc.name


def test_the_readings_page_names_every_recorded_reading() -> None:
    from policies.loader import builtin_policies

    page = (ROOT / "docs" / "readings.md").read_text()
    for policy in builtin_policies().values():
        for reading in policy.readings:
            assert reading.about in page, reading.about


def test_the_workflow_page_lists_every_patch_id() -> None:
    from workflows import disagreement

    page = (ROOT / "docs" / "workflow.md").read_text()
    for name in dir(disagreement):
        if name.startswith("PATCH_"):
            assert f"`{getattr(disagreement, name)}`" in page, name
