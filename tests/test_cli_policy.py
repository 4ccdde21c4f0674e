"""``escalation policy list|show|check|explain|diagram``, run in-process
through ``escalation.cli.main`` (and once through the installed console
script), against DESIGN.md sections 3 and 7."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from escalation.cli import main
from policies import diagram
from policies.loader import BUILTIN_DIR, builtin_policies, get_policy
from policies.model import Policy

ROOT = Path(__file__).resolve().parent.parent
MERTON_YAML = BUILTIN_DIR / "merton.yaml"
STAGE_KEYS = {"index", "key", "name", "starts", "deadline"}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def merton_data() -> dict[str, Any]:
    return yaml.safe_load(MERTON_YAML.read_text(encoding="utf-8"))


def write_policy(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


# --- list -----------------------------------------------------------------------


def test_list_shows_merton(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "policy", "list")
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "PARTNERSHIP", "STAGES", "AREAS"]
    merton = next(line for line in lines if line.startswith("merton "))
    assert "Merton Safeguarding Children Partnership (MSCP)" in merton
    assert " 5 " in merton
    assert merton.rstrip().endswith("London Borough of Merton")
    assert len(lines) == 1 + len(builtin_policies())


def test_list_json(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "policy", "list", "--json")
    assert status == 0
    listed = {entry["id"]: entry for entry in json.loads(out)}
    assert set(listed) == set(builtin_policies())
    assert listed["merton"] == {
        "id": "merton",
        "partnership": "Merton Safeguarding Children Partnership (MSCP)",
        "stages": 5,
        "areas": ["London Borough of Merton"],
    }


# --- show -----------------------------------------------------------------------


def test_show_is_a_readable_summary_with_citations(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "policy", "show", "merton")
    assert status == 0, err
    policy = get_policy("merton")
    assert out.startswith(policy.partnership)
    assert policy.document in out
    assert "Safeguarding Partnership Business Team" in out
    for stage in policy.stages:
        assert stage.name in out
        assert stage.timescale.source in out
    assert "police: Sergeant / Detective Sergeant" in out
    assert "Written confirmation of the outcome: within 5 working days" in out
    assert "Business team sent the Escalation Stage One/Two Pro-forma" in out
    assert "Immediate risk of significant harm" in out
    assert "2 working days" in out and "Tell at once: MSCP Executives" in out
    assert "Escalation Stage One/Two Pro-forma  [escalation-pro-forma]" in out
    assert "Name of child/young person  [from case, identifying]" in out


def test_show_json_is_the_model(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "policy", "show", "merton", "--json")
    assert status == 0
    dumped = json.loads(out)
    policy = get_policy("merton")
    assert dumped == policy.model_dump(mode="json")
    assert Policy.model_validate(dumped) == policy


def test_show_policy_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = merton_data()
    data["id"] = "my-partnership"
    data["partnership"] = "My Safeguarding Partnership"
    path = write_policy(tmp_path / "my.yaml", data)
    status, out, _ = run(capsys, "policy", "show", "--policy-file", str(path))
    assert status == 0
    assert out.startswith("My Safeguarding Partnership  [my-partnership,")


# --- check ----------------------------------------------------------------------


def test_check_valid_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "merton-copy.yaml"
    path.write_text(MERTON_YAML.read_text(encoding="utf-8"), encoding="utf-8")
    status, out, err = run(capsys, "policy", "check", str(path))
    assert status == 0
    assert out == f"{path}: valid policy 'merton' (5 stages)\n"
    assert err == ""


def _text(text: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_text(text, encoding="utf-8")

    return write


def _edit(change: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        data = merton_data()
        change(data)
        write_policy(path, data)

    return write


def _weeks(data: dict[str, Any]) -> None:
    data["stages"][1]["timescale"] = {"kind": "weeks", "weeks": 1, "source": "§4.2"}


def _missing(data: dict[str, Any]) -> None:
    del data["business_team"]


def _unknown(data: dict[str, Any]) -> None:
    data["stages"][0]["colour"] = "blue"


def _missing_form(data: dict[str, Any]) -> None:
    data["stages"][3]["form_required"] = "no-such-form"


def _two_problems(data: dict[str, Any]) -> None:
    _missing(data)
    _unknown(data)


UNQUOTED_TIME = MERTON_YAML.read_text(encoding="utf-8").replace(
    'close_of_business: "17:00"', "close_of_business: 17:00"
)

# (what is broken, how to write it, the field path and words each line must
# hold, in order)
BROKEN: list[tuple[str, Callable[[Path], None], list[tuple[str, str]]]] = [
    ("bad-yaml", _text("id: merton\nstages: [\n  - key: a\n"), [("line ", "not valid YAML")]),
    ("weeks", _edit(_weeks), [("stages[1].timescale", "'weeks'")]),
    ("missing", _edit(_missing), [("business_team:", "required field is missing")]),
    (
        "unknown",
        _edit(_unknown),
        [("stages[0].colour", "the fields allowed here are key, name, summary, owners")],
    ),
    (
        "unknown-in-a-timescale",
        _edit(lambda d: d["stages"][0]["timescale"].update(weeks=1)),
        [("stages[0].timescale.weeks", "the fields allowed here are kind, days, source")],
    ),
    (
        "acknowledgement-kind",
        _edit(lambda d: d["acknowledgement"]["timescale"].update(kind="none")),
        [
            (
                "acknowledgement.timescale",
                "unknown kind 'none'; one of 'working_days', 'hours', 'same_working_day'",
            )
        ],
    ),
    ("missing-form", _edit(_missing_form), [("stages[3]", "'no-such-form'")]),
    ("two-problems", _edit(_two_problems), [("business_team", "missing"), ("colour", "unknown")]),
    (
        "outcome-to-a-later-stage",
        _edit(
            lambda d: d["stages"][1].update(
                outcome_to=[{"stages": ["senior-leaders"], "source": "x y"}]
            )
        ),
        [("", "outcome_to names 'senior-leaders', which is not an earlier stage")],
    ),
    (
        "direct-route-to-the-next-stage",
        _edit(
            lambda d: d["stages"][1].update(
                may_escalate_directly_to=[{"to": "senior-leaders", "source": "x y"}]
            )
        ),
        [
            (
                "",
                "may_escalate_directly_to names 'senior-leaders', which is not a stage after",
            )
        ],
    ),
    (
        "form-due-without-a-form",
        _edit(
            lambda d: d["stages"][1].update(
                form_due={
                    "within": {"kind": "working_days", "days": 1, "source": "x y"},
                    "addressed_to": "the senior manager",
                    "source": "x y",
                }
            )
        ),
        [("", "has form_due but no form_required")],
    ),
    (
        "start-at-the-first-stage",
        _edit(lambda d: d["immediate_risk"].update(may_start_at=["practitioners"])),
        [("", "may_start_at names 'practitioners', not a stage after the first")],
    ),
    (
        "owner-for-a-subject-not-covered",
        _edit(lambda d: d["stages"][0]["owners"][0].update(subject="adults-at-risk")),
        [("", "has an owner for 'adults-at-risk' cases, but the policy covers only ['children']")],
    ),
    (
        "confirmed-by-nobody-known",
        _edit(lambda d: d["stages"][2]["written_confirmation"].update(by="the chair")),
        [("stages[2].written_confirmation.by", "'either-party'")],
    ),
    ("a-list", _text("- id: merton\n- stages: []\n"), [("", "must be a YAML mapping")]),
    ("a-string", _text("just some words\n"), [("", "must be a YAML mapping")]),
    ("empty", _text(""), [("", "must be a YAML mapping")]),
    ("wrong-type", _edit(lambda d: d.update(stages="five")), [("stages", "")]),
    ("bad-zone", _edit(lambda d: d.update(time_zone="Mars/Olympus")), [("time_zone", "Mars")]),
    ("unquoted-time", _text(UNQUOTED_TIME), [("", "")]),
]


@pytest.mark.parametrize(("name", "write", "expected"), BROKEN, ids=[b[0] for b in BROKEN])
def test_check_broken_file(
    name: str,
    write: Callable[[Path], None],
    expected: list[tuple[str, str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / f"{name}.yaml"
    write(path)
    status, out, err = run(capsys, "policy", "check", str(path))
    assert status == 1
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == len(expected), err
    for line, (field, words) in zip(lines, expected, strict=True):
        assert line.startswith(f"{path}: "), line
        assert field in line and words in line, line


def test_check_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nowhere.yaml"
    status, out, err = run(capsys, "policy", "check", str(path))
    assert (status, out, err) == (1, "", f"{path}: no such file\n")


# --- explain --------------------------------------------------------------------


def explain_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    status, out, err = run(capsys, "policy", "explain", *argv, "--json")
    assert status == 0, err
    return json.loads(out)


def test_explain_json_shape(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ESCALATION_EXTRA_CLOSURES", raising=False)
    result = explain_json(capsys, "merton", "--raised", "2027-12-22T10:00:00+00:00")
    assert list(result) == ["policy", "raised", "immediate_risk", "closures", "stages"]
    assert result["closures"] == []
    assert result["policy"] == "merton"
    assert result["raised"] == "2027-12-22T10:00:00+00:00"
    assert result["immediate_risk"] is False
    stages = result["stages"]
    assert [s["key"] for s in stages] == [s.key for s in get_policy("merton").stages]
    for index, stage in enumerate(stages):
        assert set(stage) == STAGE_KEYS
        assert stage["index"] == index
    assert stages[0]["starts"] == "2027-12-22T10:00:00+00:00"
    assert stages[0]["deadline"] == "2027-12-31T17:00:00+00:00"
    for before, after in zip(stages, stages[1:], strict=False):
        assert after["starts"] == before["deadline"]
    for stage in stages:
        assert stage["deadline"].endswith("+00:00")


def test_explain_design_example_naive_local_time(capsys: pytest.CaptureFixture[str]) -> None:
    # DESIGN.md §3: Wed 23 Dec 2026 11:00 London + 5 working days.
    result = explain_json(capsys, "merton", "--raised", "2026-12-23T11:00")
    assert result["raised"] == "2026-12-23T11:00:00+00:00"
    assert result["stages"][0]["deadline"] == "2027-01-04T17:00:00+00:00"


def test_explain_summer_time_is_shown_in_utc(capsys: pytest.CaptureFixture[str]) -> None:
    # 10:00 London in June is 09:00 UTC; 17:00 London is 16:00 UTC.
    result = explain_json(capsys, "merton", "--raised", "2027-06-01T10:00")
    assert result["raised"] == "2027-06-01T09:00:00+00:00"
    assert result["stages"][0]["deadline"] == "2027-06-08T16:00:00+00:00"


def test_explain_immediate_risk(capsys: pytest.CaptureFixture[str]) -> None:
    result = explain_json(capsys, "merton", "--raised", "2026-12-23T11:00", "--immediate-risk")
    assert result["immediate_risk"] is True
    # Merton: 2 working days at every stage; Thu 24 Dec, Tue 29 Dec.
    assert result["stages"][0]["deadline"] == "2026-12-29T17:00:00+00:00"
    assert result["stages"][1]["deadline"] == "2026-12-31T17:00:00+00:00"


def test_explain_stage_without_timescale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = merton_data()
    data["stages"][2]["timescale"] = {"kind": "none", "source": "§4.4 sets none"}
    path = write_policy(tmp_path / "none.yaml", data)
    result = explain_json(
        capsys, "--policy-file", str(path), "--raised", "2027-12-22T10:00:00+00:00"
    )
    stages = result["stages"]
    assert stages[2]["starts"] is not None
    assert stages[2]["deadline"] is None
    assert [(s["starts"], s["deadline"]) for s in stages[3:]] == [(None, None), (None, None)]

    status, out, _ = run(
        capsys, "policy", "explain", "--policy-file", str(path), "--raised", "2027-12-22T10:00"
    )
    assert status == 0
    assert "no written timescale" in out
    assert "never escalates by itself" in out


def test_explain_table(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "policy", "explain", "merton", "--raised", "2026-12-23T11:00")
    assert status == 0, err
    lines = out.splitlines()
    assert "Merton Safeguarding Children Partnership (MSCP)" in lines[0]
    assert "Wed 23 Dec 2026 11:00 GMT" in lines[1] and "Europe/London" in lines[1]
    assert "Mon 4 Jan 2027 17:00 GMT" in out
    header = next(line for line in lines if line.startswith("#"))
    assert header.split() == ["#", "STAGE", "OWNERS", "TIMESCALE", "STARTS", "DEADLINE"]
    rows = lines[lines.index(header) + 1 :]
    policy = get_policy("merton")
    assert len(rows) == len(policy.stages)
    column = header.index("DEADLINE")
    for index, (row, stage) in enumerate(zip(rows, policy.stages, strict=True)):
        assert row.startswith(f"{index}  ")
        assert stage.name in row
        # Aligned: every deadline starts under its header.
        assert re.match(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun) \d", row[column:]), row
    assert rows[0][column:] == "Mon 4 Jan 2027 17:00 GMT"


def test_explain_unparseable_raised(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "policy", "explain", "merton", "--raised", "next Tuesday")
    assert status == 1
    assert out == ""
    assert "--raised" in err and "ISO 8601" in err and "2026-12-23T11:00" in err
    assert "Traceback" not in err


def test_explain_unknown_policy_lists_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "policy", "explain", "nowhere", "--raised", "2026-12-23T11:00")
    assert status == 1
    assert out == ""
    assert "unknown policy 'nowhere'" in err
    for policy_id in builtin_policies():
        assert policy_id in err


def test_explain_policy_file_must_hold_the_named_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "merton.yaml"
    path.write_text(MERTON_YAML.read_text(encoding="utf-8"), encoding="utf-8")
    status, _, err = run(
        capsys, "policy", "explain", "other", "--policy-file", str(path), "--raised", "2026-12-23"
    )
    assert status == 1
    assert "holds policy 'merton'" in err


def test_explain_broken_policy_file_has_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.yaml"
    _edit(_two_problems)(path)
    status, _, err = run(
        capsys, "policy", "explain", "--policy-file", str(path), "--raised", "2026-12-23T11:00"
    )
    assert status == 1
    assert "business_team: required field is missing" in err
    assert "Traceback" not in err


# --- diagram --------------------------------------------------------------------

NODE = re.compile(r'^    (\w+)(\["[^"]*"\]|\(\["[^"]*"\]\)|\{\{"[^"]*"\}\})$')
EDGE = re.compile(r'^    (\w+) (-->|-\.->)(\|"[^"]*"\|)? (\w+)$')


def check_mermaid(text: str) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    """Every line is a quoted node, an edge between known nodes or styling."""
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    nodes: dict[str, str] = {}
    edges: list[tuple[str, str, str]] = []
    for line in lines[1:]:
        if node := NODE.match(line):
            nodes[node.group(1)] = node.group(2)
        elif edge := EDGE.match(line):
            edges.append((edge.group(1), (edge.group(3) or "").strip('|"'), edge.group(4)))
        else:
            assert re.match(r"^    (classDef|class) ", line), line
    for source, _, target in edges:
        assert source in nodes and target in nodes
    return nodes, edges


def test_diagram(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "policy", "diagram", "merton")
    assert status == 0, err
    assert out.startswith("flowchart")
    nodes, edges = check_mermaid(out)
    policy = get_policy("merton")
    for index, stage in enumerate(policy.stages):
        assert stage.name in nodes[f"s{index}"]
        assert "5 working days" in nodes[f"s{index}"]
        assert (f"s{index}", "resolved") in {(s, t) for s, _, t in edges}
    assert ("raised", "", "s0") in edges
    assert ("s0", "deadline passes / escalate", "s1") in edges
    assert not any(s == "s4" and t.startswith("s") for s, _, t in edges)  # nowhere higher
    assert "Escalation Stage One/Two Pro-forma" in out
    assert "MSCP Executives" in nodes["risk"]


def test_diagram_without_timescale_and_awkward_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = merton_data()
    data["stages"][1]["timescale"] = {"kind": "none", "source": "§4.3 sets none"}
    data["stages"][1]["name"] = 'Stage "1" <line> managers & #leads (a) [b] {c} | end'
    data["stages"][2]["form_required"] = "escalation-pro-forma"
    path = write_policy(tmp_path / "awkward.yaml", data)
    status, out, _ = run(capsys, "policy", "diagram", "--policy-file", str(path))
    assert status == 0
    nodes, edges = check_mermaid(out)
    assert "no written timescale" in nodes["s1"]
    assert "#quot;1#quot; #lt;line#gt; managers #amp; #35;leads (a) [b] {c} | end" in nodes["s1"]
    assert ("s1", "escalate", "s2") in edges
    assert ("s0", "deadline passes / escalate", "s1") in edges
    assert ("form0", "required to escalate here", "s2") in edges


@pytest.mark.parametrize("policy_id", sorted(builtin_policies()))
def test_every_builtin_diagram_is_well_formed(policy_id: str) -> None:
    policy = get_policy(policy_id)
    nodes, edges = check_mermaid(diagram.mermaid(policy))
    stage_nodes = [f"s{i}" for i in range(len(policy.stages))]
    assert {"raised", "resolved", "risk", *stage_nodes} <= set(nodes)
    for node in stage_nodes:
        assert (node, "resolved") in {(s, t) for s, _, t in edges}


# --- README ---------------------------------------------------------------------


def test_readme_policy_section_is_current() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    expected = diagram.readme_block_for(builtin_policies().values())
    assert diagram.readme_block(text) == expected, (
        "README.md's policy section is out of date with policies/data/*.yaml or "
        f"policies/diagram.py; regenerate it with `{diagram.README_COMMAND}`"
    )


def test_readme_section_lists_the_policies_in_design_order() -> None:
    section = diagram.readme_section(builtin_policies().values())
    assert section.startswith("## The five policies\n")
    headings = [line for line in section.splitlines() if line.startswith("### ")]
    ids = [h.rsplit("(`", 1)[1].removesuffix("`)") for h in headings[:-1]]
    known = [i for i in diagram.DESIGN_ORDER if i in builtin_policies()]
    assert ids[: len(known)] == known
    assert sorted(ids) == sorted(builtin_policies())
    assert headings[-1] == "### Adding your partnership's policy"
    assert section.count("```mermaid\nflowchart TD\n") == len(ids)
    assert "escalation policy check my.yaml" in section
    assert "escalation policy explain --policy-file my.yaml --raised" in section
    assert "docs/policy-format.md" in section
    assert "escalation directory check FILE" in section
    assert "escalation simulate --policy-file my.yaml" in section


def test_readme_command_rewrites_only_between_markers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = tmp_path / "README.md"
    before = "# Title\n\nIntro.\n\n"
    after = "\n\n## Later\n\nMore.\n"
    readme.write_text(
        f"{before}{diagram.README_START}\nstale\n{diagram.README_END}{after}", encoding="utf-8"
    )
    status, out, _ = run(capsys, "policy", "diagram", "--readme", str(readme))
    assert status == 0
    assert "regenerated" in out
    text = readme.read_text(encoding="utf-8")
    assert text.startswith(before + diagram.README_START)
    assert text.endswith(diagram.README_END + after)
    assert diagram.readme_block(text) == diagram.readme_block_for(builtin_policies().values())

    status, out, _ = run(capsys, "policy", "diagram", "--readme", str(readme))
    assert status == 0
    assert "already up to date" in out
    assert readme.read_text(encoding="utf-8") == text


def test_readme_command_needs_the_markers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# No markers here\n", encoding="utf-8")
    status, _, err = run(capsys, "policy", "diagram", "--readme", str(readme))
    assert status == 1
    assert diagram.README_START in err
    assert readme.read_text(encoding="utf-8") == "# No markers here\n"


# --- The installed command ------------------------------------------------------


def test_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "escalation"
    assert script.exists(), f"{script} is missing: install the package (make install)"
    result = subprocess.run(
        [str(script), "policy", "explain", "merton", "--raised", "2026-12-23T11:00", "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    stages = json.loads(result.stdout)["stages"]
    assert stages[0]["deadline"] == "2027-01-04T17:00:00+00:00"


def test_explain_applies_the_deployments_closure_days_and_says_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Merton case raised Wed 23 Dec 2026 runs to Mon 4 Jan 2027 on the
    public holidays alone; with the council closed 29-31 December, as the
    worker and the API would count it, to Thu 7 Jan."""
    raised = "2026-12-23T11:00"
    monkeypatch.delenv("ESCALATION_EXTRA_CLOSURES", raising=False)
    plain = explain_json(capsys, "merton", "--raised", raised)
    assert plain["stages"][0]["deadline"] == "2027-01-04T17:00:00+00:00"
    monkeypatch.setenv("ESCALATION_EXTRA_CLOSURES", '["2026-12-29","2026-12-30","2026-12-31"]')
    closed = explain_json(capsys, "merton", "--raised", raised)
    assert closed["closures"] == ["2026-12-29", "2026-12-30", "2026-12-31"]
    assert closed["stages"][0]["deadline"] == "2027-01-07T17:00:00+00:00"
    status, out, _ = run(capsys, "policy", "explain", "merton", "--raised", raised)
    assert status == 0
    applied = "Closure days applied (ESCALATION_EXTRA_CLOSURES): Tue 29 Dec 2026, Wed 30 Dec"
    assert applied in out
    assert "Thu 7 Jan 2027" in out


def test_show_lists_every_written_confirmation_and_contested_reading(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for policy in builtin_policies().values():
        status, out, _ = run(capsys, "policy", "show", policy.id)
        assert status == 0
        confirmations = [s for s in policy.stages if s.written_confirmation is not None]
        lines = [line for line in out.splitlines() if "Written confirmation" in line]
        assert sum("not required" not in line for line in lines) == len(confirmations)
        for reading in policy.readings:
            assert f"Read as: {reading.chosen}"[:60] in " ".join(out.split())


def test_check_warns_of_a_suspicious_ladder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = merton_data()
    # Stage 2 copies stage 1's owners; stage 3 has no owner for other agencies.
    data["stages"][2]["owners"] = data["stages"][1]["owners"]
    data["stages"][3]["owners"] = [
        o for o in data["stages"][3]["owners"] if o["agency_kind"] != "any"
    ]
    path = write_policy(tmp_path / "suspicious.yaml", data)
    status, out, err = run(capsys, "policy", "check", str(path))
    assert status == 0
    assert out == f"{path}: valid policy 'merton' (5 stages); 2 warnings\n"
    lines = err.splitlines()
    assert len(lines) == 2
    same = "stages[1] (line-managers) and stages[2] (senior-leaders) have the same owners"
    assert same in lines[0]
    assert "stages[3] (mscp-executive) has owners only for police, health" in lines[1]
    assert "add an owner with agency_kind: any" in lines[1]


def test_the_builtin_policies_raise_no_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    for path in sorted(BUILTIN_DIR.glob("*.yaml")):
        if path.name.startswith("directory."):
            continue
        status, _, err = run(capsys, "policy", "check", str(path))
        assert (status, err) == (0, ""), path.name


# --- A partnership's own protocol: timescales that say what they count from -------------


def lincolnshire_like() -> dict[str, Any]:
    """A joint adults-and-children protocol in the shape of Lincolnshire's:
    step 1 "within 48 hours (two working days)", step 2 "within five working
    days of step 1" (counted from step 1's start, not step 2's)."""
    data = merton_data()
    data.update(id="lincolnshire", subjects=["children", "adults-at-risk"], readings=[])
    first, second = data["stages"][0], data["stages"][1]
    first["timescale"] = {
        "kind": "working_days",
        "days": 2,
        "as_written": "48 hours (two working days)",
        "source": "Step 1 'within 48 hours (two working days)'",
    }
    second["timescale"] = {
        "kind": "working_days",
        "days": 5,
        "source": "Step 2 'within five working days of step 1'",
    }
    # A joint board: at step 2 an adult's case goes to the adult safeguarding lead.
    second["owners"].insert(
        0,
        {
            "agency_kind": "any",
            "role": "adult-safeguarding-lead",
            "title": "Adult safeguarding lead",
            "subject": "adults-at-risk",
            "source": "Step 2 (adults at risk) 'the adult safeguarding lead'",
        },
    )
    second["timescale_counts_from"] = first["key"]
    second["timescale_counts_from_source"] = "Step 2 'within five working days of step 1'"
    return data


def test_a_lincolnshire_like_policy_gives_the_dates_its_source_implies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ESCALATION_EXTRA_CLOSURES", raising=False)
    path = write_policy(tmp_path / "lincolnshire.yaml", lincolnshire_like())
    status, out, err = run(capsys, "policy", "check", str(path))
    assert (status, err) == (0, ""), err
    # Raised Monday 1 March 2027: step 1 is due Wednesday 3 March, and step 2
    # five working days from step 1's start, Monday 8 March, not Wednesday 10.
    result = explain_json(capsys, "--policy-file", str(path), "--raised", "2027-03-01T10:00")
    deadlines = [s["deadline"] for s in result["stages"][:2]]
    assert deadlines == ["2027-03-03T17:00:00+00:00", "2027-03-08T17:00:00+00:00"]
    status, out, _ = run(capsys, "policy", "show", "--policy-file", str(path))
    assert "as the source writes it: 48 hours (two working days)" in out
    assert "counted from the start of Practitioners, not this stage's start" in out


def test_a_timescale_counted_from_a_later_stage_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = lincolnshire_like()
    data["stages"][1]["timescale_counts_from"] = "senior-leaders"
    path = write_policy(tmp_path / "backwards.yaml", data)
    status, _, err = run(capsys, "policy", "check", str(path))
    assert status == 1
    assert "timescale_counts_from is 'senior-leaders': one of 'stage-start', 'raise'" in err
    data["stages"][1]["timescale_counts_from"] = "raise"
    del data["stages"][1]["timescale_counts_from_source"]
    path = write_policy(tmp_path / "uncited.yaml", data)
    status, _, err = run(capsys, "policy", "check", str(path))
    assert status == 1 and "cite the sentence" in err


def test_an_immediately_timescale_is_due_at_once() -> None:
    from datetime import UTC, datetime

    from policies.calendar import WorkingDayCalendar
    from policies.model import CalendarSpec, Immediately

    calendar = WorkingDayCalendar(CalendarSpec())
    start = datetime(2027, 3, 6, 11, tzinfo=UTC)  # a Saturday: "at once" all the same
    assert calendar.deadline(start, Immediately(source="'immediately'")) == start


def test_a_deadline_for_entering_a_stage_brings_the_stage_before_forward(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "Refer to the senior leaders within ten working days of the concern
    being raised": whichever is less of stage 1's own deadline and that."""
    monkeypatch.delenv("ESCALATION_EXTRA_CLOSURES", raising=False)
    data = lincolnshire_like()
    data["stages"][2]["enter_within"] = {
        "within": {"kind": "working_days", "days": 6, "source": "Step 3 'within 6 working days'"},
        "counts_from": "raise",
        "source": "Step 3 'referred within six working days of the concern being raised'",
    }
    path = write_policy(tmp_path / "entry.yaml", data)
    result = explain_json(capsys, "--policy-file", str(path), "--raised", "2027-03-01T10:00")
    # Step 2 would fall due Mon 8 March (5 working days of step 1); step 3
    # must be entered by Tue 9 March, so that changes nothing; with 4 days
    # instead, step 2 escalates on Fri 5 March.
    assert result["stages"][1]["deadline"] == "2027-03-08T17:00:00+00:00"
    data["stages"][2]["enter_within"]["within"]["days"] = 4
    path = write_policy(tmp_path / "sooner.yaml", data)
    result = explain_json(capsys, "--policy-file", str(path), "--raised", "2027-03-01T10:00")
    assert result["stages"][1]["deadline"] == "2027-03-05T17:00:00+00:00"
    assert result["stages"][2]["starts"] == "2027-03-05T17:00:00+00:00"
    data["stages"][2]["enter_within"]["counts_from"] = "mscp-executive"
    path = write_policy(tmp_path / "later.yaml", data)
    status, _, err = run(capsys, "policy", "check", str(path))
    assert status == 1 and "enter_within counts from 'mscp-executive'" in err
