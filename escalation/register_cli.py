"""``escalation register``: the case record's database.

- ``migrate``: bring the register's database to the current schema (``make
  run`` does this itself; production runs it before the worker and the API).
- ``export``: a partnership's cases raised in a period, as CSV or JSON.
  Anonymised by default: no child's details and no free text. With
  ``--with-details`` (for the business team's own use) the summary, the
  decision disputed, the outcome and the child's details are included, and
  the export is logged (who, when, which partnership and period; never what).
- ``rebuild``: fill in what the register lacks from the cases Temporal still
  holds (after a restore from backup, or for cases raised before the
  register): each case is read through its ``record`` query, so a worker
  must be running, and written through the same door as the workflow's own
  writes; nothing it already holds is written twice.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import getpass
import io
import json
import logging
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from escalation.clitools import CliError
from escalation.settings import Settings, get_settings

if TYPE_CHECKING:
    from register import Register

audit_log = logging.getLogger("escalation.register.audit")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "register",
        help="the case record: migrate, export, rebuild",
        description="The register keeps every case for years, after Temporal has let it go.",
    )
    sub = parser.add_subparsers(dest="register_command", required=True, metavar="COMMAND")

    migrate = sub.add_parser("migrate", help="bring the register's database to the current schema")
    migrate.set_defaults(handler=_migrate)

    export = sub.add_parser(
        "export",
        help="a partnership's cases as CSV or JSON (anonymised unless --with-details)",
        description="Cases raised in [--from, --to] (whole days in the partnership's time "
        "zone), oldest first.",
    )
    export.add_argument("--partnership", required=True, help="the policy id, e.g. merton")
    export.add_argument("--from", dest="start", help="first day, YYYY-MM-DD (inclusive)")
    export.add_argument("--to", dest="end", help="last day, YYYY-MM-DD (inclusive)")
    export.add_argument("--format", choices=("csv", "json"), default="csv")
    export.add_argument("--out", type=Path, help="write to this file instead of standard output")
    export.add_argument(
        "--with-details",
        action="store_true",
        help="include the child's details and the free text (business team's own use; logged)",
    )
    export.set_defaults(handler=_export)

    rebuild = sub.add_parser(
        "rebuild",
        help="fill in the register from the cases Temporal still holds (needs a worker)",
        description="Reads each case Temporal holds through its record query (a worker must "
        "be running) and writes what the register lacks.",
    )
    rebuild.add_argument(
        "--since",
        help="only cases raised since this instant (ISO 8601 with an offset), e.g. the time "
        "of the backup the register was restored from",
    )
    rebuild.set_defaults(handler=_rebuild)


def _open(settings: Settings) -> Register:
    from register import Register

    return Register.from_settings(settings)


def _migrate(args: argparse.Namespace) -> int:
    from register.migrate import current, upgrade

    settings = get_settings()
    before = current(settings.register_url)
    upgrade(settings.register_url)
    after = current(settings.register_url)
    where = _where(settings)
    if before == after:
        print(f"The register ({where}) is at the current schema ({after}).")
    else:
        print(f"The register ({where}) migrated from {before or 'empty'} to {after}.")
    return 0


def _where(settings: Settings) -> str:
    if settings.database_url:
        # Never print a password that the URL may carry.
        from sqlalchemy.engine import make_url

        return make_url(settings.database_url).render_as_string(hide_password=True)
    return str(settings.data_dir / "register.sqlite3")


def _day(text: str | None, what: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise CliError(f"{what}: cannot read {text!r} as a date; expected YYYY-MM-DD") from None


def _export(args: argparse.Namespace) -> int:
    from policies.loader import UnknownPolicyError, get_policy
    from register import RegisterUnavailableError

    try:
        policy = get_policy(args.partnership)
    except UnknownPolicyError as exc:
        raise CliError(str(exc)) from None
    start, end = _day(args.start, "--from"), _day(args.end, "--to")
    if start and end and start > end:
        raise CliError("--from is after --to")
    zone = ZoneInfo(policy.time_zone)
    low = datetime.combine(start, time(), zone) if start else None
    high = datetime.combine(end + timedelta(days=1), time(), zone) if end else None
    settings = get_settings()
    register = _open(settings)
    try:
        rows = register.export(policy.id, low, high, with_details=args.with_details)
    except RegisterUnavailableError as exc:
        raise CliError(f"{exc}: {_where(settings)}") from None
    finally:
        register.close()
    if args.with_details:
        _audit(settings, policy.id, args.start, args.end, len(rows))
    text = _as_json(rows) if args.format == "json" else _as_csv(rows)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        print(f"{len(rows)} cases written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _audit(
    settings: Settings, partnership: str, start: str | None, end: str | None, n: int
) -> None:
    """Who exported identifying details, when, of what: to the audit log file
    and to standard error. Never the details themselves."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    line = (
        f"{datetime.now().astimezone().isoformat(timespec='seconds')} register export "
        f"with details by {getpass.getuser()}: partnership {partnership}, "
        f"from {start or 'the start'} to {end or 'now'}, {n} cases"
    )
    with (settings.data_dir / "audit.log").open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")
    audit_log.warning(line)
    print(f"Logged: {line}", file=sys.stderr)


def _as_json(rows: list[dict[str, object]]) -> str:
    return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"


def _as_csv(rows: list[dict[str, object]]) -> str:
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out.getvalue()


def _rebuild(args: argparse.Namespace) -> int:
    from register import RegisterUnavailableError

    since = None
    if args.since:
        try:
            since = datetime.fromisoformat(args.since.strip())
        except ValueError:
            since = None
        if since is None or since.tzinfo is None:
            raise CliError(
                f"--since: cannot read {args.since!r} as an instant; expected ISO 8601 with an "
                "offset, e.g. 2027-01-04T09:00:00+00:00"
            )
    settings = get_settings()
    register = _open(settings)
    try:
        report = asyncio.run(_rebuild_from_temporal(settings, register, since))
    except RegisterUnavailableError as exc:
        raise CliError(f"{exc}: {_where(settings)}") from None
    except RuntimeError as exc:
        if "connect" in str(exc).lower():
            raise CliError(
                f"cannot reach Temporal at {settings.temporal_address}: is the server running?"
            ) from None
        raise
    finally:
        register.close()
    print(report.summary())
    return 1 if report.unreadable else 0


class RebuildReport:
    def __init__(self) -> None:
        self.seen = 0
        self.added: list[str] = []
        self.completed: dict[str, int] = {}
        self.unreadable: list[str] = []
        # Events the register lacks and the case no longer holds, by case.
        self.lost: dict[str, int] = {}

    def summary(self) -> str:
        lines = [
            f"{self.seen} cases in Temporal; {len(self.added)} added to the register, "
            f"{len(self.completed)} completed "
            f"({sum(self.completed.values())} events added), "
            f"{self.seen - len(self.added) - len(self.completed) - len(self.unreadable)} "
            "already whole."
        ]
        lines += [f"  added      {ref}" for ref in self.added]
        lines += [f"  completed  {ref} (+{n} events)" for ref, n in self.completed.items()]
        lines += [
            f"  lacking    {ref} ({n} earlier events, which the case no longer holds: "
            "restore them from a backup of the register)"
            for ref, n in self.lost.items()
        ]
        if self.unreadable:
            lines.append(
                f"{len(self.unreadable)} cases could not be read (is a worker running?): "
                + ", ".join(self.unreadable)
            )
        return "\n".join(lines)


async def _rebuild_from_temporal(
    settings: Settings, register: Register, since: datetime | None = None
) -> RebuildReport:
    from temporalio.client import Client, WorkflowQueryFailedError
    from temporalio.service import RPCError

    from escalation.converter import data_converter
    from workflows.disagreement import DisagreementWorkflow
    from workflows.messages import CaseState, RecordCase

    client = await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
    )
    report = RebuildReport()
    query = "WorkflowType = 'Disagreement'"
    if since is not None:
        query += f" AND StartTime >= '{since.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}'"
    async for execution in client.list_workflows(query):
        report.seen += 1
        reference = execution.id.removeprefix("disagreement-")
        try:
            record = await client.get_workflow_handle(execution.id).query(
                DisagreementWorkflow.get_record, rpc_timeout=timedelta(seconds=10)
            )
        except (WorkflowQueryFailedError, RPCError):
            report.unreadable.append(reference)
            continue
        held = await asyncio.to_thread(register.recorded_seq, reference)
        if held is None or held < record.next_seq - 1:
            state = CaseState(**record.model_dump(exclude={"about", "source"}))
            receipt = await asyncio.to_thread(
                register.record, RecordCase(case=state, after_seq=0, about=record.about)
            )
            if held is None:
                report.added.append(reference)
            else:
                report.completed[reference] = receipt.events_added
        # A case keeps only the events the register had not confirmed: any
        # the register has since lost are in neither.
        whole = await asyncio.to_thread(register.whole, record)
        if len(whole.events) < record.next_seq - 1:
            report.lost[reference] = record.next_seq - 1 - len(whole.events)
        if report.seen % 100 == 0:
            print(f"  ... {report.seen} cases read", file=sys.stderr, flush=True)
    return report
