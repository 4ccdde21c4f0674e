"""``escalation policy list|show|check|explain|diagram``: the policies as data,
readable by the people who wrote them.

- ``list``: the built-in policies.
- ``show``: one policy in full, with the citation for every line.
- ``check``: validate a partnership's own policy file, one line per problem.
- ``explain``: the ladder that runs if nobody acts, with every deadline
  (DESIGN.md section 7 fixes its JSON).
- ``diagram``: the ladder as a Mermaid flowchart; ``--readme`` regenerates
  the README's policy section.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path

from pydantic import ValidationError

from escalation.clitools import (
    INSTANT_FORMAT,
    CliError,
    local_text,
    parse_instant,
    print_json,
    resolve_policy,
)
from policies import diagram
from policies.calendar import WorkingDayCalendar
from policies.ladder import explain
from policies.loader import PolicyFileError, builtin_policies, load_policy_file
from policies.model import NoTimescale, Policy, Stage

_AGENCY_WORDS = {"any": "any agency", "childrens-social-care": "children's social care"}
_EVENT_WORDS = {
    "stage_started": "when the stage starts",
    "resolved": "when resolved at this stage",
    "escalated_from": "when escalated from this stage",
    "outcome": "of the outcome",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser(
        "policy",
        help="list, show, check, explain or draw escalation policies",
        description="Escalation policies as data: the built-in ones or a partnership's own file.",
    )
    commands = group.add_subparsers(dest="policy_command", required=True, metavar="SUBCOMMAND")

    p = commands.add_parser("list", help="the built-in policies")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_list)

    p = commands.add_parser("show", help="one policy in full, with its citations")
    _policy_arguments(p)
    p.add_argument("--json", action="store_true", help="print the whole policy as JSON")
    p.set_defaults(handler=cmd_show)

    p = commands.add_parser(
        "check",
        help="validate a partnership's own policy file",
        description="Validate a policy file: exit 0 if valid, otherwise print one line "
        "per problem (file, field path, what is wrong) and exit 1.",
    )
    p.add_argument("file", metavar="FILE", help="the policy's YAML file")
    p.set_defaults(handler=cmd_check)

    p = commands.add_parser(
        "explain",
        help="the ladder that runs if nobody acts, with every deadline",
        description="Every stage with when it starts and its deadline if nobody acts; "
        "each deadline starts the next stage.",
    )
    _policy_arguments(p)
    p.add_argument(
        "--raised",
        required=True,
        metavar="ISO8601",
        help=f"when the disagreement is raised: {INSTANT_FORMAT}",
    )
    p.add_argument(
        "--immediate-risk",
        action="store_true",
        help="the child is at immediate risk of significant harm from the start",
    )
    p.add_argument("--json", action="store_true", help="print JSON (DESIGN.md section 7)")
    p.set_defaults(handler=cmd_explain)

    p = commands.add_parser(
        "diagram",
        help="the ladder as a Mermaid flowchart",
        description="Print a policy's ladder as a Mermaid flowchart, or regenerate the "
        "README's policy section with --readme.",
    )
    _policy_arguments(p)
    p.add_argument(
        "--readme",
        metavar="FILE",
        help="rewrite the policy section of this README (between its markers) in place",
    )
    p.set_defaults(handler=cmd_diagram)


def _policy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "policy",
        nargs="?",
        metavar="ID",
        help="a built-in policy id (see `escalation policy list`)",
    )
    parser.add_argument(
        "--policy-file", metavar="FILE", help="a partnership's own policy file instead"
    )


# --- Helpers ------------------------------------------------------------------


def _builtins() -> list[Policy]:
    try:
        return diagram.in_design_order(builtin_policies().values())
    except PolicyFileError as exc:
        raise CliError(f"a built-in policy file is invalid:\n{exc}") from None


def _unexpected(file: str, exc: Exception) -> str:
    """A file the model failed on in a way it does not report as a problem
    (a bug in a validator, not in the file alone): still one line, no traceback."""
    return f"{file}: cannot be validated ({type(exc).__name__}: {exc})"


def _resolve(args: argparse.Namespace) -> Policy:
    """The policy named by ID or --policy-file, any failure as a CliError."""
    try:
        return resolve_policy(args.policy, args.policy_file)
    except CliError:
        raise
    except Exception as exc:  # a user's file must never give a traceback
        if not args.policy_file:
            raise
        raise CliError(_unexpected(args.policy_file, exc)) from None


def _utc_iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = []
    for row in (headers, *rows):
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return lines


def _owners_short(stage: Stage) -> str:
    """The stage's general owner, condensed; the count of agency-specific ones."""
    general = next((o for o in stage.owners if o.agency_kind == "any"), stage.owners[0])
    text = diagram.shorten(general.title, 34)
    others = len(stage.owners) - 1
    if others:
        text += f" (+{others} by agency)"
    return text


def _agency(kind: str | None) -> str:
    if kind is None:
        return "any agency"
    return _AGENCY_WORDS.get(kind, kind)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


# --- list ---------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    policies = _builtins()
    if args.json:
        print_json(
            [
                {
                    "id": p.id,
                    "partnership": p.partnership,
                    "stages": len(p.stages),
                    "areas": [a.name for a in p.areas],
                }
                for p in policies
            ]
        )
        return 0
    rows = [
        [p.id, p.partnership, str(len(p.stages)), ", ".join(a.name for a in p.areas)]
        for p in policies
    ]
    for line in _table(["ID", "PARTNERSHIP", "STAGES", "AREAS"], rows):
        print(line)
    return 0


# --- show ---------------------------------------------------------------------


def cmd_show(args: argparse.Namespace) -> int:
    policy = _resolve(args)
    if args.json:
        print_json(policy.model_dump(mode="json"))
        return 0
    print("\n".join(_show_lines(policy)))
    return 0


def _show_lines(policy: Policy) -> list[str]:
    out = [
        f"{policy.partnership}  [{policy.id}, version {policy.version}]",
        f"  Policy:          {policy.name}",
        f"  Document:        {policy.document}",
        f"  Areas:           {', '.join(a.name for a in policy.areas)}",
        f"  Subjects:        {', '.join(policy.subjects)}",
        f"  Working days:    Monday to Friday except {policy.nation} public holidays; "
        f"{policy.start_of_business:%H:%M}-{policy.close_of_business:%H:%M} {policy.time_zone}",
        f"  Business team:   {policy.business_team}  ({policy.business_team_source})",
        f"  Acknowledgement: reminder after {policy.acknowledgement.timescale.describe()}  "
        f"({policy.acknowledgement.source})",
        f"  Reminders:       every {policy.reminder_every.describe()} while a stage has no "
        f"timescale or is overdue  ({policy.reminder_every.source})",
        "",
        "Stages",
    ]
    for index, stage in enumerate(policy.stages):
        out.append(f"  {index}. {stage.name}  [{stage.key}]  ({stage.source})")
        out += textwrap.wrap(
            stage.summary, width=96, initial_indent="     ", subsequent_indent="     "
        )
        out.append(f"     Timescale: {stage.timescale.describe()}  ({stage.timescale.source})")
        written = getattr(stage.timescale, "as_written", None)
        if written:
            out.append(f"       as the source writes it: {written}")
        if stage.timescale_counts_from != "stage-start":
            anchor = policy.timescale_anchor(index)
            what = (
                "the raise" if anchor == -1 else f"the start of {policy.stages[anchor or 0].name}"
            )
            out.append(
                f"       counted from {what}, not this stage's start  "
                f"({stage.timescale_counts_from_source})"
            )
        entry = stage.enter_within
        if entry is not None:
            what = (
                "the raise"
                if entry.counts_from == "raise"
                else (f"the start of {policy.stages[policy.stage_index(entry.counts_from)].name}")
            )
            out.append(
                f"     Must be entered within {entry.within.describe()} of {what} (the stage "
                f"before escalates by then)  ({entry.source})"
            )
        if isinstance(stage.timescale, NoTimescale) or stage.reminder_every is not None:
            cadence = policy.reminder_cadence(index)
            out.append(f"     Reminders: every {cadence.describe()}  ({cadence.source})")
        out.append("     Owners:")
        for owner in stage.owners:
            out.append(f"       {_agency(owner.agency_kind)}: {owner.title}  ({owner.source})")
        confirm = stage.written_confirmation
        if confirm is not None:
            out.append(
                f"     Written confirmation of the outcome: {confirm.describe()}  "
                f"({confirm.source})"
            )
            if confirm.within is not None:
                out.append(
                    f"       timescale: {confirm.within.describe()}  ({confirm.within.source})"
                )
        else:
            out.append("     Written confirmation of the outcome: not required")
        for feedback in stage.outcome_to:
            names = ", ".join(policy.stages[policy.stage_index(k)].name for k in feedback.stages)
            out.append(f"     Outcome fed back to the owners of: {names}  ({feedback.source})")
        for route in stage.may_escalate_directly_to:
            target = policy.stages[policy.stage_index(route.to)]
            out.append(f"     May escalate directly to: {target.name}  ({route.source})")
        if stage.form_required is not None:
            form = policy.form(stage.form_required)
            out.append(f"     Form required to escalate into this stage: {form.name}")
            due = stage.form_due
            if due is not None:
                out.append(
                    f"     Entered without it: due within {due.within.describe()} from the "
                    f"raising agency's owner of the stage before, to {due.addressed_to}  "
                    f"({due.source}; {due.within.source})"
                )
        for notice in stage.business_team:
            what = "told" if notice.form is None else f"sent the {policy.form(notice.form).name}"
            out.append(f"     Business team {what} {_EVENT_WORDS[notice.when]}  ({notice.source})")
        for extra in stage.extra_notices:
            only = (
                f", where an agency is {_agency(extra.only_if_agency_kind)}"
                if extra.only_if_agency_kind
                else ""
            )
            out.append(
                f"     Also told {_EVENT_WORDS[extra.when]}{only}: {extra.title}  ({extra.source})"
            )

    rule = policy.immediate_risk
    out += ["", f"Immediate risk of significant harm  ({rule.source})"]
    override = rule.timescale_override
    if override is None:
        out.append("  Timescale: unchanged")
    else:
        applies = (
            "the stage current when risk is flagged"
            if rule.override_applies_to == "current-stage"
            else "the current and every later stage"
        )
        out.append(
            f"  Timescale: {override.describe()} (or the stage's own, whichever is less) "
            f"at {applies}  ({override.source})"
        )
    for contact in rule.urgent_contacts:
        area = f" [cases in {contact.area}]" if contact.area else ""
        out.append(f"  Tell at once: {contact.title}{area}  ({contact.source})")
    starts = _yes(rule.may_start_at_later_stage)
    if rule.may_start_at_later_stage and rule.may_start_at:
        names = ", ".join(policy.stages[policy.stage_index(k)].name for k in rule.may_start_at)
        starts = f"{starts} ({names} only)  ({rule.may_start_at_source or rule.source})"
    out.append(f"  May start at a later stage: {starts}")
    out.append(f"  May jump to a later stage: {_yes(rule.may_jump_to_later_stage)}")

    out += ["", "Contested readings"]
    if not policy.readings:
        out.append("  (none recorded)")
    for reading in policy.readings:
        out.append(f"  {reading.about}  ({reading.source})")
        out += textwrap.wrap(
            f"Read as: {reading.chosen}. Not: {reading.alternative}. Why: {reading.why}",
            width=96,
            initial_indent="    ",
            subsequent_indent="    ",
        )

    out += ["", "Forms"]
    if not policy.forms:
        out.append("  (none)")
    for form in policy.forms:
        out.append(f"  {form.name}  [{form.key}]  ({form.source})")
        out.append(f"    Sent to: {form.sent_to}")
        if form.anonymised:
            out.append("    Anonymised: must identify nobody")
        for field in form.fields:
            tags = [f"from {field.filled_from}"]
            if not field.required:
                tags.append("optional")
            if field.identifying:
                tags.append("identifying")
            out.append(f"    - {field.label}  [{', '.join(tags)}]")
    return out


# --- check --------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    try:
        policy = load_policy_file(Path(args.file))
    except PolicyFileError as exc:
        for problem in exc.problems:
            print(str(problem), file=sys.stderr)
        return 1
    except Exception as exc:  # see _unexpected
        print(_unexpected(args.file, exc), file=sys.stderr)
        return 1
    warnings = ladder_warnings(policy)
    for warning in warnings:
        print(f"{args.file}: {warning}", file=sys.stderr)
    suffix = f"; {len(warnings)} warnings" if warnings else ""
    print(f"{args.file}: valid policy {policy.id!r} ({len(policy.stages)} stages){suffix}")
    return 0


def ladder_warnings(policy: Policy) -> list[str]:
    """A valid ladder that is probably not what the document says."""
    out = []
    for i, stage in enumerate(policy.stages):
        if not any(o.agency_kind == "any" for o in stage.owners):
            kinds = ", ".join(o.agency_kind for o in stage.owners)
            out.append(
                f"warning: stages[{i}] ({stage.key}) has owners only for {kinds}: nobody owns "
                f"it in any other kind of agency (they would be sent to "
                f"{stage.owners[0].title!r}); add an owner with agency_kind: any"
            )
        if i and _owners(stage) == _owners(policy.stages[i - 1]):
            out.append(
                f"warning: stages[{i - 1}] ({policy.stages[i - 1].key}) and stages[{i}] "
                f"({stage.key}) have the same owners: escalating between them reaches the same "
                "people; check each stage's owners against the document"
            )
    return out


def _owners(stage: Stage) -> set[tuple[str, str]]:
    return {(o.agency_kind, o.role) for o in stage.owners}


# --- explain ------------------------------------------------------------------


def deployment_closures() -> list[date]:
    """The deployment's extra closure days (ESCALATION_EXTRA_CLOSURES), which
    the worker and the API apply to every deadline; the command line must
    promise the same dates."""
    from escalation.settings import Settings

    try:
        # Read afresh, not from the process's cached settings: the command
        # says what the environment holds now.
        return sorted(Settings().extra_closures)
    except ValidationError as exc:
        raise CliError(f"the deployment's settings are invalid: {exc}") from None


def closures_line(closures: Sequence[date]) -> str:
    if not closures:
        return "Closure days: none configured (ESCALATION_EXTRA_CLOSURES)."
    days = ", ".join(f"{d:%a} {d.day} {d:%b %Y}" for d in closures)
    return f"Closure days applied (ESCALATION_EXTRA_CLOSURES): {days}."


def cmd_explain(args: argparse.Namespace) -> int:
    policy = _resolve(args)
    raised = parse_instant(args.raised, policy.time_zone)
    closures = deployment_closures()
    calendar = WorkingDayCalendar(policy.calendar_spec(), closures)
    plan = explain(policy, calendar, raised, immediate_risk=args.immediate_risk)
    if args.json:
        print_json(
            {
                "policy": policy.id,
                "raised": _utc_iso(raised),
                "immediate_risk": bool(args.immediate_risk),
                "closures": [d.isoformat() for d in closures],
                "stages": [
                    {
                        "index": stage.index,
                        "key": stage.key,
                        "name": stage.name,
                        "starts": _utc_iso(stage.starts),
                        "deadline": _utc_iso(stage.deadline),
                    }
                    for stage in plan
                ],
            }
        )
        return 0

    zone = policy.time_zone
    risk = ", child at immediate risk of significant harm" if args.immediate_risk else ""
    print(f"{policy.partnership} [{policy.id}]: the ladder if nobody acts")
    print(f"Raised {local_text(raised, zone)}{risk}; times are local ({zone}).")
    print(closures_line(closures))
    print()
    rows = []
    for planned in plan:
        stage = policy.stages[planned.index]
        rows.append(
            [
                str(planned.index),
                planned.name,
                _owners_short(stage),
                planned.timescale,
                local_text(planned.starts, zone),
                local_text(planned.deadline, zone),
            ]
        )
    for line in _table(["#", "STAGE", "OWNERS", "TIMESCALE", "STARTS", "DEADLINE"], rows):
        print(line)
    if any(planned.deadline is None for planned in plan):
        cadence = policy.reminder_every.describe()
        print()
        print(
            "A stage with no written timescale never escalates by itself: reminders go "
            f"every {cadence} (unless the stage says otherwise), and later stages start "
            "only when someone escalates."
        )
    if args.immediate_risk:
        told = "; ".join(c.title for c in policy.immediate_risk.urgent_contacts)
        print()
        print(f"Told at once: {told}.")
    return 0


# --- diagram ------------------------------------------------------------------


def cmd_diagram(args: argparse.Namespace) -> int:
    if args.readme:
        if args.policy or args.policy_file:
            raise CliError(
                "--readme regenerates the section for every built-in policy; "
                "give no policy id or --policy-file with it"
            )
        return _rewrite_readme(Path(args.readme))
    policy = _resolve(args)
    sys.stdout.write(diagram.mermaid(policy))
    return 0


def _rewrite_readme(path: Path) -> int:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"{path}: cannot be read: {exc}") from None
    policies = _builtins()
    try:
        new = diagram.replace_readme_block(text, policies)
    except diagram.ReadmeMarkersMissing as exc:
        raise CliError(f"{path}: {exc}") from None
    if new == text:
        print(f"{path}: policy section already up to date ({len(policies)} policies)")
        return 0
    try:
        path.write_text(new, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"{path}: cannot be written: {exc}") from None
    print(f"{path}: policy section regenerated ({len(policies)} policies)")
    return 0
