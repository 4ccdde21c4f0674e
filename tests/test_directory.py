"""The role directory: the example file, lookups, one problem per mistake,
coverage against the policies, and ``escalation directory check|show``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.users import DEMO_USERS
from escalation import directory_cli
from escalation.clitools import CliError
from policies.directory import (
    EXAMPLE_FILE,
    DirectoryFileError,
    consistency_problems,
    coverage,
    example_directory,
    load_directory,
    parse_directory,
)
from policies.loader import BUILTIN_DIR, builtin_policies, get_policy


def example_data() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE_FILE.read_text(encoding="utf-8"))


def write(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="escalation")
    directory_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    status = args.handler(args)
    return status, capsys.readouterr().out


# --- The example directory -------------------------------------------------------------


def test_example_directory_covers_every_role_of_the_five_policies() -> None:
    directory = example_directory()
    policies = builtin_policies()
    assert set(directory.partnerships) == set(policies)
    assert consistency_problems(directory, policies, str(EXAMPLE_FILE)) == []
    for policy in policies.values():
        assert coverage(directory, policy) == [], policy.id


def test_example_directory_uses_only_example_org_addresses() -> None:
    text = EXAMPLE_FILE.read_text(encoding="utf-8")
    addresses = [w.strip(",}") for w in text.split() if "@" in w and not w.startswith("#")]
    assert addresses
    for address in addresses:
        assert address.endswith(".example.org") or address.endswith("@example.org"), address


def test_example_directory_is_not_loaded_as_a_policy() -> None:
    assert "directory" not in " ".join(builtin_policies())
    assert len(builtin_policies()) == 5


def test_example_has_agencies_simulate_uses_per_area() -> None:
    directory = example_directory()
    for policy in builtin_policies().values():
        for area in policy.areas:
            for kind in ("health", "childrens-social-care", "police", "education"):
                entry = directory.agency(policy.id, area.key, f"{area.key}-{kind}")
                assert entry is not None and entry.kind == kind


def test_every_demonstration_users_agency_is_one_of_make_runs_directory() -> None:
    """The pages name a demonstration user's agency, and the notices reach
    their side, only if `make run`'s example directory knows the agency."""
    directory = example_directory()
    for user in DEMO_USERS:
        if user.agency is None:
            continue
        entry = directory.partnership(user.partnership or "")
        assert entry is not None, user.id
        pools = [entry.agencies, *(area.agencies for area in entry.areas.values())]
        assert any(user.agency in pool for pool in pools), (user.id, user.agency)


# --- Lookups ---------------------------------------------------------------------------


def test_an_agency_role_resolves_to_its_holders() -> None:
    d = example_directory()
    people = d.holders("merton", "merton", "detective-sergeant", agency="merton-police")
    assert [p.email for p in people] == ["sian.chen@merton-police.example.org"]


def test_a_partnership_wide_role_is_found_from_any_agency() -> None:
    d = example_directory()
    via_health = d.holders("merton", "merton", "independent-person", agency="merton-health")
    via_police = d.holders("merton", "merton", "independent-person", agency="merton-police")
    assert via_health == via_police and via_health[0].email.startswith("independent.person@")


def test_business_team_is_the_areas_own_where_it_has_one() -> None:
    d = example_directory()
    halton = d.holders("cheshire", "halton", "business-team")
    warrington = d.holders("cheshire", "warrington", "business-team")
    assert halton[0].email != warrington[0].email
    assert d.business_team("merton", "merton")[0].email == "mscp-business-team@merton.example.org"


def test_cheshire_urgent_contacts_are_the_four_front_doors() -> None:
    d = example_directory()
    policy = get_policy("cheshire")
    doors = {}
    for contact in policy.immediate_risk.urgent_contacts:
        assert contact.area is not None
        doors[contact.area] = d.holders("cheshire", contact.area, contact.role)[0].email
    assert len(set(doors.values())) == 4
    assert doors["halton"] == "icart@halton.example.org"


def test_an_email_on_the_recipient_wins_and_unknown_roles_are_empty() -> None:
    d = example_directory()
    raiser = d.holders("merton", "merton", "raiser", email="sam@merton-health.example.org")
    assert raiser[0].email == "sam@merton-health.example.org"
    assert d.holders("merton", "merton", "no-such-role", agency="merton-health") == ()
    assert d.holders("nowhere", None, "business-team") == ()
    assert d.holders("merton", "merton", "raiser") == ()


# --- A bad file: one problem per mistake --------------------------------------------------


def test_bad_fields_are_each_one_problem_with_their_path(tmp_path: Path) -> None:
    data = {
        "partnerships": {
            "merton": {
                "business_team": [{"name": "Team", "email": "not an email"}],
                "contacts": {"independent-person": []},
                "areas": {
                    "merton": {
                        "agencies": {
                            "Merton_Health": {"name": "Merton health", "kind": "health"},
                            "merton-police": {"name": "Police", "kind": "constabulary"},
                        }
                    }
                },
                "colour": "blue",
            }
        }
    }
    with pytest.raises(DirectoryFileError) as caught:
        load_directory(write(tmp_path / "d.yaml", data))
    lines = [str(p) for p in caught.value.problems]
    assert len(lines) == 5, lines
    text = "\n".join(lines)
    assert "partnerships.merton.business_team[0].email: 'not an email' is not an email" in text
    assert "partnerships.merton.contacts.independent-person: lists nobody" in text
    assert "partnerships.merton.areas.merton.agencies.Merton_Health" in text
    assert "partnerships.merton.areas.merton.agencies.merton-police.kind" in text
    assert "partnerships.merton.colour: unknown field" in text
    assert all(line.startswith(str(tmp_path / "d.yaml")) for line in lines)


def test_not_a_mapping_missing_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(DirectoryFileError, match="must be a YAML mapping"):
        parse_directory(["a"], "x.yaml")
    with pytest.raises(DirectoryFileError, match="no such file"):
        load_directory(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("partnerships: [\n", encoding="utf-8")
    with pytest.raises(DirectoryFileError, match="not valid YAML"):
        load_directory(bad)


def test_consistency_names_unknown_partnerships_areas_and_repeated_agencies() -> None:
    data = example_data()
    data["partnerships"]["nowhere"] = {}
    data["partnerships"]["cheshire"]["areas"]["chester"] = {}
    west = data["partnerships"]["cheshire"]["areas"]["cheshire-west"]["agencies"]
    data["partnerships"]["cheshire"]["areas"]["halton"]["agencies"]["cheshire-west-police"] = west[
        "cheshire-west-police"
    ]
    directory = parse_directory(data, "d.yaml")
    problems = [str(p) for p in consistency_problems(directory, builtin_policies(), "d.yaml")]
    assert any("partnerships.nowhere: no policy has id 'nowhere'" in p for p in problems)
    assert any("areas.chester: the cheshire policy has no area 'chester'" in p for p in problems)
    assert any(
        "cheshire-west-police' is also listed under area cheshire-west" in p for p in problems
    )
    assert len(problems) == 3


def test_coverage_reports_each_role_nobody_holds() -> None:
    data = example_data()
    merton = data["partnerships"]["merton"]
    del merton["areas"]["merton"]["agencies"]["merton-police"]["roles"]["detective-sergeant"]
    del merton["contacts"]["csc-assistant-director"]
    merton["business_team"] = []
    gaps = {str(g) for g in coverage(parse_directory(data, "d"), get_policy("merton"))}
    assert gaps == {
        "merton/merton/merton-police: nobody holds 'detective-sergeant' "
        "(owner of Stage 1: line managers)",
        "merton/merton: nobody holds 'csc-assistant-director' (CSC Assistant Director for "
        "Children, Families and Schools (Stage 2: senior leaders))",
        "merton/merton: nobody holds 'business-team' (Safeguarding Partnership Business Team)",
    }


# --- The command line ---------------------------------------------------------------------


def test_check_passes_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    status, out = run_cli(capsys, "directory", "check", str(EXAMPLE_FILE))
    assert status == 0
    assert "valid; 5 partnerships" in out and "every role the policies name is held" in out


def test_check_warns_of_gaps_and_fails_with_strict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = example_data()
    del data["partnerships"]["wirral"]["contacts"]["wscb-chair"]
    path = write(tmp_path / "d.yaml", data)
    status, out = run_cli(capsys, "directory", "check", str(path))
    assert status == 0
    # The chair is one person for the partnership, named once, not per agency.
    assert "warning: wirral/wirral: nobody holds 'wscb-chair'" in out
    status, _ = run_cli(capsys, "directory", "check", "--strict", str(path))
    assert status == 1
    status, out = run_cli(capsys, "directory", "check", "--json", str(path))
    result = json.loads(out)
    assert result["valid"] is True
    assert {g["role"] for g in result["unfilled"]} == {"wscb-chair"}


def test_check_refuses_a_bad_file_one_line_per_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "d.yaml", {"partnerships": {"merton": {"business_team": [{}]}}})
    with pytest.raises(CliError) as caught:
        run_cli(capsys, "directory", "check", str(path))
    lines = str(caught.value).splitlines()
    assert lines == [
        f"{path}: partnerships.merton.business_team[0].name: required field is missing",
        f"{path}: partnerships.merton.business_team[0].email: required field is missing",
    ]


def test_check_exits_1_for_an_unknown_partnership(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "d.yaml", {"partnerships": {"atlantis": {}}})
    status, out = run_cli(capsys, "directory", "check", str(path))
    assert status == 1
    assert "partnerships.atlantis: no policy has id 'atlantis'" in out


def test_show_lists_people_per_partnership(capsys: pytest.CaptureFixture[str]) -> None:
    status, out = run_cli(capsys, "directory", "show", str(EXAMPLE_FILE), "--partnership", "wirral")
    assert status == 0
    assert "wscb-chair: Wendy Ashcroft <wscb-chair@wirral.example.org>" in out
    assert "merton" not in out
    status, out = run_cli(capsys, "directory", "show", str(EXAMPLE_FILE), "--json")
    assert set(json.loads(out)["partnerships"]) == set(builtin_policies())


def test_check_fails_when_the_directory_holds_nobody_for_the_policys_partnership(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A partnership's own policy checked against a directory that does not
    list it: every notice would go to nobody, not 'every role is held'."""
    policy = yaml.safe_load((BUILTIN_DIR / "merton.yaml").read_text(encoding="utf-8"))
    policy["id"] = "lincolnshire"
    policy_file = tmp_path / "lincolnshire.yaml"
    policy_file.write_text(yaml.safe_dump(policy, allow_unicode=True), encoding="utf-8")
    status, out = run_cli(
        capsys, "directory", "check", str(EXAMPLE_FILE), "--policy-file", str(policy_file)
    )
    assert status == 1
    assert f"{EXAMPLE_FILE}: partnerships: holds nobody for 'lincolnshire'" in out
    assert "every role the policies name is held" not in out
