"""``escalation report``: the partnership's theme report for a quarter (or
whole days from --from to --to), counted from the register only.

Anonymised by construction (``reports.figures``): no child's details, no
free text, and no count from 1 to 4."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from escalation.clitools import CliError
from escalation.settings import Settings, get_settings

if TYPE_CHECKING:
    from policies.directory import Directory
    from reports.period import Period


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "report",
        help="the partnership's quarterly theme report (html, pdf, csv or json)",
        description="Cases raised, resolved and withdrawn, by agency, theme and stage, "
        "timeliness and immediate risk, for a quarter or for whole days from --from to "
        "--to in the partnership's time zone. Anonymised: no count from 1 to 4 is shown.",
    )
    parser.add_argument("--partnership", required=True, help="the policy id, e.g. wirral")
    parser.add_argument("--quarter", help="a quarter, YYYY-Qn, e.g. 2027-Q1")
    parser.add_argument("--from", dest="start", help="first day, YYYY-MM-DD (inclusive)")
    parser.add_argument("--to", dest="end", help="last day, YYYY-MM-DD (inclusive)")
    parser.add_argument("--format", choices=("html", "pdf", "csv", "json"), default="html")
    parser.add_argument("--out", type=Path, help="write to this file instead of standard output")
    parser.set_defaults(handler=_report)

    schedules = commands.add_parser(
        "report-schedules",
        help="create or update every partnership's quarterly report schedule (idempotent)",
        description="What `make run` does at start and the production setup runs once: a "
        "Temporal Schedule per partnership that builds and mails its quarterly report.",
    )
    schedules.set_defaults(handler=_schedules)


def _day(text: str, what: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise CliError(f"{what}: cannot read {text!r} as a date; expected YYYY-MM-DD") from None


def _period(args: argparse.Namespace) -> Period:
    from reports.period import Period

    if args.quarter and (args.start or args.end):
        raise CliError("give either --quarter or --from and --to, not both")
    if args.quarter:
        return Period.parse_quarter(args.quarter)
    if not (args.start and args.end):
        raise CliError("give --quarter YYYY-Qn, or both --from and --to")
    return Period.days(_day(args.start, "--from"), _day(args.end, "--to"))


def _report(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import OperationalError

    from escalation.codec import KeyRing
    from policies.loader import UnknownPolicyError, get_policy
    from register import Register, RegisterUnavailableError
    from reports.build import build
    from reports.period import PeriodError
    from reports.render import render

    try:
        policy = get_policy(args.partnership)
    except UnknownPolicyError as exc:
        raise CliError(str(exc)) from None
    try:
        period = _period(args)
    except PeriodError as exc:
        raise CliError(str(exc)) from None
    if args.format == "pdf" and args.out is None and sys.stdout.isatty():
        raise CliError("a PDF needs --out FILE (or a pipe)")
    settings = get_settings()
    directory = _directory(settings)
    # The report never opens a sealed column, so it needs no key: a throwaway
    # ring rather than the deployment's (and no key file made where none is).
    register = Register.from_url(settings.register_url, KeyRing.generate())
    try:
        figures = build(register.engine, policy, period, directory=directory)
    except PeriodError as exc:
        raise CliError(str(exc)) from None
    except RegisterUnavailableError as exc:
        raise CliError(str(exc)) from None
    except OperationalError:
        # Unreachable, or never migrated (no tables yet).
        raise CliError(
            "the register cannot be read; is it reachable, and migrated "
            "(`escalation register migrate`)?"
        ) from None
    finally:
        register.close()
    content = render(figures, args.format)
    if args.out:
        args.out.write_bytes(content)
        print(f"{policy.id} {period.label}: {args.format} written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.buffer.write(content)
        sys.stdout.flush()
    return 0


def _directory(settings: Settings) -> Directory | None:
    """The role directory, when one is configured: its agencies are listed
    among those that raised nothing even if the register never saw them."""
    from policies.directory import DirectoryFileError, load_directory

    path = settings.directory_file
    if path is None:
        return None
    try:
        return load_directory(path)
    except DirectoryFileError:
        return None


def _schedules(args: argparse.Namespace) -> int:
    import asyncio

    from temporalio.client import Client

    from escalation.converter import data_converter
    from policies.loader import builtin_policies
    from reports.schedule import ensure_schedules

    settings = get_settings()

    async def ensure() -> list[str]:
        client = await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            data_converter=data_converter(settings),
        )
        return await ensure_schedules(
            client, settings.task_queue, builtin_policies().values(), settings.report_schedules
        )

    try:
        ids = asyncio.run(ensure())
    except RuntimeError as exc:
        if "connect" in str(exc).lower():
            raise CliError(f"cannot reach Temporal at {settings.temporal_address}") from None
        raise
    for sid in ids:
        print(sid)
    return 0
