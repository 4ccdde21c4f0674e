"""``escalation directory check|show``: the role directory, checked and read.

- ``check FILE``: validate a directory file (one line per problem: file,
  field path, what is wrong; exit 1), then list every role a policy can send
  a notice to that nobody holds (warnings; exit 1 with ``--strict``).
- ``show [FILE]``: who holds each role, per partnership, area and agency
  (default: ESCALATION_DIRECTORY_FILE, else the example directory).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from escalation.clitools import CliError, print_json
from policies.directory import (
    EXAMPLE_FILE,
    Directory,
    DirectoryFileError,
    Person,
    consistency_problems,
    coverage,
    load_directory,
)
from policies.loader import PolicyFileError, Problem, builtin_policies, load_policy_file
from policies.model import Policy


def register(commands: argparse._SubParsersAction) -> None:
    group = commands.add_parser(
        "directory",
        help="check or show the role directory (who holds each role)",
        description="The role directory: the people who hold each role the policies name.",
    )
    sub = group.add_subparsers(dest="directory_command", required=True, metavar="SUBCOMMAND")

    p = sub.add_parser(
        "check",
        help="validate a directory file and list the roles nobody holds",
        description="Validate a role directory: exit 0 if valid, otherwise print one line per "
        "problem (file, field path, what is wrong) and exit 1. Roles a policy needs that "
        "nobody holds are listed as warnings (exit 1 with --strict).",
    )
    p.add_argument("file", metavar="FILE", help="the directory's YAML file")
    _policy_files(p)
    p.add_argument("--strict", action="store_true", help="fail when any role is unfilled")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=cmd_check)

    p = sub.add_parser("show", help="who holds each role, per partnership, area and agency")
    p.add_argument(
        "file",
        metavar="FILE",
        nargs="?",
        help="directory file (default: ESCALATION_DIRECTORY_FILE, else the example directory)",
    )
    p.add_argument("--partnership", metavar="POLICY_ID", help="only this partnership")
    p.add_argument("--json", action="store_true", help="print the directory as JSON")
    p.set_defaults(handler=cmd_show)


def _policy_files(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--policy-file",
        action="append",
        default=[],
        metavar="FILE",
        help="also check against a partnership's own policy file (repeatable)",
    )


def _policies(files: list[str]) -> dict[str, Policy]:
    policies = dict(builtin_policies())
    for name in files:
        try:
            policy = load_policy_file(name)
        except PolicyFileError as exc:
            raise CliError(str(exc)) from None
        policies[policy.id] = policy
    return policies


def _load(path: str | Path) -> Directory:
    try:
        return load_directory(path)
    except DirectoryFileError as exc:
        raise CliError(str(exc)) from None


def _count(directory: Directory) -> dict[str, int]:
    areas = agencies = 0
    people: set[str] = set()

    def add(group: tuple[Person, ...]) -> None:
        people.update(p.address for p in group)

    for entry in directory.partnerships.values():
        add(entry.business_team)
        for group in entry.contacts.values():
            add(group)
        agencies += len(entry.agencies)
        for area in entry.areas.values():
            areas += 1
            add(area.business_team)
            for group in area.contacts.values():
                add(group)
            for agency in [*area.agencies.values()]:
                agencies += 1
                for group in agency.roles.values():
                    add(group)
        for agency in entry.agencies.values():
            for group in agency.roles.values():
                add(group)
    return {
        "partnerships": len(directory.partnerships),
        "areas": areas,
        "agencies": agencies,
        "people": len(people),
    }


def cmd_check(args: argparse.Namespace) -> int:
    policies = _policies(args.policy_file)
    try:
        directory = load_directory(args.file)
    except DirectoryFileError as exc:
        if args.json:
            print_json({"valid": False, "problems": [str(p) for p in exc.problems]})
            return 1
        raise CliError(str(exc)) from None
    problems = consistency_problems(directory, policies, args.file)
    # A partnership's own policy file with nobody in the directory: every
    # notice would go unaddressed, so this is a problem, not a warning.
    for name in args.policy_file:
        policy = load_policy_file(name)
        if policy.id not in directory.partnerships:
            problems.append(
                Problem(
                    args.file,
                    "partnerships",
                    f"holds nobody for {policy.id!r} ({policy.partnership}), which {name} "
                    f"names; add a '{policy.id}:' entry with its business team and the people "
                    "who hold each role",
                )
            )
    gaps = []
    for pid in directory.partnerships:
        if pid in policies:
            gaps += coverage(directory, policies[pid])
    counts = _count(directory)
    if args.json:
        print_json(
            {
                "valid": not problems,
                "problems": [str(p) for p in problems],
                "unfilled": [
                    {
                        "partnership": g.partnership,
                        "area": g.area,
                        "agency": g.agency,
                        "role": g.role,
                        "needed_for": g.needed_for,
                    }
                    for g in gaps
                ],
                **counts,
            }
        )
    else:
        for problem in problems:
            print(problem)
        for gap in gaps:
            print(f"warning: {gap}")
        if not problems:
            summary = (
                f"{args.file}: valid; {counts['partnerships']} partnerships, {counts['areas']} "
                f"areas, {counts['agencies']} agencies, {counts['people']} people"
            )
            if gaps:
                summary += (
                    f"; {len(gaps)} roles nobody holds (notices to them go to the business team)"
                )
            else:
                summary += "; every role the policies name is held"
            print(summary)
    if problems:
        return 1
    return 1 if gaps and args.strict else 0


def _person(p: Person) -> str:
    title = f" ({p.title})" if p.title else ""
    return f"{p.name} <{p.email}>{title}"


def cmd_show(args: argparse.Namespace) -> int:
    from escalation.settings import get_settings

    path = args.file or get_settings().directory_file or EXAMPLE_FILE
    directory = _load(path)
    entries = directory.partnerships
    if args.partnership:
        if args.partnership not in entries:
            raise CliError(
                f"{path} lists no partnership {args.partnership!r}; it lists "
                f"{', '.join(sorted(entries))}"
            )
        entries = {args.partnership: entries[args.partnership]}
    if args.json:
        data: dict[str, Any] = {
            pid: entry.model_dump(mode="json", exclude_defaults=True)
            for pid, entry in entries.items()
        }
        print_json({"file": str(path), "partnerships": data})
        return 0
    print(f"Role directory {path}")
    for pid, entry in entries.items():
        print(f"\n{pid}: {entry.name or ''}".rstrip())
        if entry.business_team:
            print(f"  business team: {'; '.join(_person(p) for p in entry.business_team)}")
        for role, people in entry.contacts.items():
            print(f"  {role}: {'; '.join(_person(p) for p in people)}")
        areas = list(entry.areas.items())
        if entry.agencies:
            areas.insert(0, ("(every area)", None))  # type: ignore[arg-type]
        for area_key, area in areas:
            print(f"  area {area_key}")
            agencies = entry.agencies if area is None else area.agencies
            if area is not None:
                if area.business_team:
                    team = "; ".join(_person(p) for p in area.business_team)
                    print(f"    business team: {team}")
                for role, people in area.contacts.items():
                    print(f"    {role}: {'; '.join(_person(p) for p in people)}")
            for agency_key, agency in agencies.items():
                print(f"    {agency_key} ({agency.kind}): {agency.name}")
                for role, people in agency.roles.items():
                    print(f"      {role}: {'; '.join(_person(p) for p in people)}")
    return 0
