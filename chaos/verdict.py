"""The drill's verdict: what every case had to send, from the product's own record.

The expectation never comes from the capture. The register (written by the
workflow itself) lists each case's events and the notices they sent, by
notice id, template and the roles told; the role directory turns each role
into people exactly as the notice activity does (``activities.notices.resolve``),
so each notice's emails are known by their ledger keys before the capture is
read. Then, from the capture:

- **lost**: an email the record requires that never arrived (or a notice the
  record itself marks failed);
- **sent twice**: the same email (ledger key) arrived more than once,
  whatever happened between (a worker killed between SendGrid taking a copy
  and the ledger recording it included: ``activities.email`` asks SendGrid
  before sending such a copy again);
- **sent again under another id**: an email for a case whose notice id the
  record does not hold, while it holds the same template at the same stage
  under another id (a step carried out twice after a crash);
- **not in the record**: any other email the record cannot account for.

Deadlines come from the record too: every ``deadline_shortened`` event set a
deadline; it must be followed, at or after that instant, by the case acting
on it (``auto_escalated``, ``overdue``, or the written-confirmation reminder
of a case awaiting confirmation) unless something moved the case first. The
lag of a fired deadline is the arrival of its notice at the stand-in minus
the deadline.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from temporalio.client import Client, WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.worker import Replayer

from activities.notices import UNFILLED_SUFFIX, recipient_key
from api.cases import workflow_id
from policies.directory import Directory
from register import tables as t
from register.store import engine_for
from workflows.disagreement import DisagreementWorkflow
from workflows.report import QuarterlyReportWorkflow

# The case acts on a passed deadline with one of these, and tells people with
# the notice named (a reminder is its own notice).
FIRES = {"auto_escalated": "escalated-automatically", "overdue": "overdue-final-stage"}
AWAITING_REMINDER = "written-confirmation-due"
# Events that move a case on before its deadline, so that deadline no longer applies.
MOVES = {
    "escalated",
    "immediate_risk",
    "resolved",
    "withdrawn",
    "closed",
    "confirmed",
    "reopened",
    "auto_escalated",
    "overdue",
}
# A timer fires at or after its instant; the worker's clock and the server's
# are the same machine's, so anything earlier than this is early.
EARLY_S = 1.0


@dataclass(frozen=True)
class EventRow:
    reference: str
    seq: int
    at: float
    type: str
    stage: int
    deadline: float | None
    template: str | None
    notice_id: str | None


@dataclass(frozen=True)
class NoticeRow:
    reference: str
    seq: int
    notice_id: str
    template: str
    stage: int
    recipients: tuple[str, ...]
    outcome: str


@dataclass(frozen=True)
class CaseRow:
    reference: str
    policy_id: str
    area: str | None
    raised_by_id: str
    status: str
    recorded_seq: int


@dataclass
class Record:
    cases: dict[str, CaseRow]
    events: dict[str, list[EventRow]]
    notices: list[NoticeRow]


def read_register(url: str) -> Record:
    engine = engine_for(url)
    try:
        with Session(engine) as session:
            cases = {
                c.reference: CaseRow(
                    c.reference, c.policy_id, c.area, c.raised_by_id, c.status, c.recorded_seq
                )
                for c in session.scalars(select(t.Case))
            }
            events: dict[str, list[EventRow]] = defaultdict(list)
            for e in session.scalars(select(t.Event).order_by(t.Event.reference, t.Event.seq)):
                events[e.reference].append(
                    EventRow(
                        e.reference,
                        e.seq,
                        e.at.timestamp(),
                        e.type,
                        e.stage,
                        e.deadline.timestamp() if e.deadline else None,
                        e.template,
                        e.notice_id,
                    )
                )
            notices = [
                NoticeRow(
                    n.reference,
                    n.seq,
                    n.notice_id,
                    n.template,
                    n.stage,
                    tuple(n.recipients),
                    n.outcome,
                )
                for n in session.scalars(select(t.Notice))
            ]
    finally:
        engine.dispose()
    return Record(cases, dict(events), notices)


# --- The emails each notice had to become ------------------------------------------


@dataclass(frozen=True)
class Expected:
    reference: str
    notice_id: str
    template: str
    stage: int


def expected_emails(
    record: Record, directory: Directory, emails_of: dict[str, str]
) -> dict[str, Expected]:
    """Every email the record requires, by ledger key: each role of each
    notice resolved to its holders (the raiser to the person who raised the
    case), one copy each; where a role has no holder, the business team's
    copy too."""
    out: dict[str, Expected] = {}
    for notice in record.notices:
        case = record.cases[notice.reference]
        what = Expected(notice.reference, notice.notice_id, notice.template, notice.stage)
        to: dict[str, None] = {}
        unfilled = False
        for label in notice.recipients:
            agency, _, role = label.rpartition(":")
            if role == "raiser":
                people = [emails_of[case.raised_by_id]]
            else:
                holders = directory.holders(case.policy_id, case.area, role, agency=agency or None)
                people = [p.email for p in holders]
            unfilled = unfilled or not people
            for email in people:
                to.setdefault(email.lower())
        for email in to:
            out[recipient_key(notice.notice_id, email)] = what
        if unfilled:
            for person in directory.business_team(case.policy_id, case.area):
                key = recipient_key(notice.notice_id + UNFILLED_SUFFIX, person.email.lower())
                out[key] = what
    return out


@dataclass
class Emails:
    required: int = 0
    arrived: int = 0
    lost: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    twice: list[str] = field(default_factory=list)
    again_under_another_id: list[str] = field(default_factory=list)
    not_in_record: list[str] = field(default_factory=list)
    # The first arrival of each notice id, for the deadlines' lag.
    first_arrival: dict[str, float] = field(default_factory=dict)

    @property
    def duplicates(self) -> int:
        return len(self.twice) + len(self.again_under_another_id) + len(self.not_in_record)

    @property
    def losses(self) -> int:
        return len(self.lost) + len(self.failed)


def compare(
    record: Record, expected: dict[str, Expected], captured: Iterable[dict[str, Any]]
) -> Emails:
    """The capture against the record."""
    result = Emails(required=len(expected))
    counts: Counter[str] = Counter()
    by_key: dict[str, dict[str, Any]] = {}
    for email in captured:
        key = str(email.get("ledger_key"))
        counts[key] += 1
        by_key.setdefault(key, email)
        notice_id = str(email.get("notice_id"))
        t_arrived = float(email["t"])
        if t_arrived < result.first_arrival.get(notice_id, float("inf")):
            result.first_arrival[notice_id] = t_arrived
    result.arrived = sum(counts.values())
    result.failed = [n.notice_id for n in record.notices if n.outcome != "sent"]
    for key, what in expected.items():
        if counts[key] == 0:
            result.lost.append(f"{what.reference} {what.template} ({key})")
        elif counts[key] > 1:
            result.twice.append(f"{what.reference} {what.template} ×{counts[key]} ({key})")
    recorded = {(n.reference, n.template, n.stage) for n in record.notices}
    for key, email in by_key.items():
        if key in expected:
            continue
        ref, template = email.get("case_reference"), email.get("template")
        line = f"{ref} {template} ({key})"
        if any((ref, template, stage) in recorded for stage in _stages(record, str(ref))):
            result.again_under_another_id.append(line)
        else:
            result.not_in_record.append(line)
    return result


def _stages(record: Record, reference: str) -> set[int]:
    return {e.stage for e in record.events.get(reference, [])}


# --- Deadlines ----------------------------------------------------------------------


@dataclass
class Deadline:
    reference: str
    stage: int
    due: float
    outcome: str  # fired | moved-first | missed | early | not-yet-due
    fired_at: float | None = None
    notice_id: str | None = None
    arrived: float | None = None

    @property
    def lag(self) -> float | None:
        return None if self.arrived is None else self.arrived - self.due


def deadlines(record: Record, first_arrival: dict[str, float], checked_at: float) -> list[Deadline]:
    """Every deadline the record shows was set by a person (shortened), and
    what became of it."""
    out = []
    for ref, events in record.events.items():
        sets = [i for i, e in enumerate(events) if e.type == "deadline_shortened" and e.deadline]
        for n, i in enumerate(sets):
            due = events[i].deadline
            assert due is not None
            nxt = sets[n + 1] if n + 1 < len(sets) else len(events)
            # A later shortening before this deadline replaces it.
            if nxt < len(events) and events[nxt].at < due:
                continue
            out.append(_fate(ref, events, i + 1, due, events[i].stage, first_arrival, checked_at))
    return out


def _fate(
    ref: str,
    events: list[EventRow],
    start: int,
    due: float,
    stage: int,
    first_arrival: dict[str, float],
    checked_at: float,
) -> Deadline:
    moved = False
    for j in range(start, len(events)):
        e = events[j]
        fires = e.type in FIRES or (e.type == "reminder" and e.template == AWAITING_REMINDER)
        if fires and not moved:
            if e.at < due - EARLY_S:
                return Deadline(ref, stage, due, "early", fired_at=e.at)
            template = FIRES.get(e.type, AWAITING_REMINDER)
            notice = e if e.type == "reminder" else _next_notice(events, j, template)
            notice_id = notice.notice_id if notice else None
            arrived = first_arrival.get(notice_id) if notice_id else None
            return Deadline(ref, stage, due, "fired", e.at, notice_id, arrived)
        if e.type in MOVES and e.at < due:
            moved = True
        if e.type == "deadline_shortened":
            break
    if moved:
        return Deadline(ref, stage, due, "moved-first")
    if due > checked_at:
        return Deadline(ref, stage, due, "not-yet-due")
    return Deadline(ref, stage, due, "missed")


def _next_notice(events: list[EventRow], after: int, template: str) -> EventRow | None:
    for e in events[after + 1 :]:
        if e.type in ("notice", "notice_failed") and e.template == template:
            return e
    return None


# --- Recovery after each disruption -------------------------------------------------


@dataclass
class Recovery:
    """How long the cases due or asked between one disruption and the next
    waited to be picked up: counted from their deadline or request (``max_lag``,
    ``max_answer``), and counted again from the last worker SIGKILL before
    they answered where one fell in between (``*_since_last``): a second kill
    before the cases were picked up killed the worker taking them over, and
    restarts the clock."""

    kind: str
    at: float
    back_at: float
    deadlines: int
    max_lag: float | None
    # The slowest answer to a manager action sent from it until the next.
    max_answer: float | None
    max_lag_since_last: float | None = None
    max_answer_since_last: float | None = None

    @property
    def worst(self) -> float | None:
        """How long the slowest case waited to be picked up, from the last
        worker SIGKILL before it was."""
        return _largest(self.max_lag_since_last, self.max_answer_since_last)

    @property
    def worst_from_first(self) -> float | None:
        """The same, from its deadline or request, whatever killed what after."""
        return _largest(self.max_lag, self.max_answer)


def _largest(*values: float | None) -> float | None:
    present = [x for x in values if x is not None]
    return max(present) if present else None


def since_last(start: float, end: float, kills: list[float]) -> float:
    """How long something waiting from ``start`` until ``end`` waited after
    the last worker SIGKILL before ``end`` (from ``start`` when none fell
    after it)."""
    last = max((k for k in kills if k < end), default=start)
    return end - max(start, last)


def recoveries(
    fired: list[Deadline],
    answers: list[tuple[float, float]],
    disruptions: list[tuple[float, float, str]],
    end: float,
) -> list[Recovery]:
    """For each disruption (its instant, when the process served again, what
    it was): the deadlines due from just before it until the next one and
    the largest lag among them, and the slowest answer to a manager action
    sent in that time: how long the cases waited to be picked up, from
    their deadline or request and from the last worker SIGKILL before they
    were."""
    out = []
    ordered = sorted(disruptions)
    kills = [at for at, _, kind in ordered if kind.startswith("worker")]
    for n, (at, back_at, kind) in enumerate(ordered):
        until = ordered[n + 1][0] if n + 1 < len(ordered) else end
        due = [d for d in fired if d.arrived is not None and at - 2.0 <= d.due < until]
        asked = [(sent, took) for sent, took in answers if at - 2.0 <= sent < until]
        lags = [d.arrived - d.due for d in due if d.arrived is not None]
        waits = [took for _, took in asked]
        lags_last = [since_last(d.due, d.arrived, kills) for d in due if d.arrived is not None]
        waits_last = [since_last(sent, sent + took, kills) for sent, took in asked]
        out.append(
            Recovery(
                kind,
                at,
                back_at,
                len(lags),
                max(lags) if lags else None,
                max(waits) if waits else None,
                max(lags_last) if lags_last else None,
                max(waits_last) if waits_last else None,
            )
        )
    return out


# --- Replay --------------------------------------------------------------------------


async def replay_all(
    client: Client, references: Iterable[str], converter: DataConverter
) -> dict[str, str]:
    """Each case's history replayed against today's workflow code: the
    failures, by reference (empty when every history replays)."""
    refs = sorted(references)
    semaphore = asyncio.Semaphore(8)

    async def history(ref: str) -> WorkflowHistory:
        async with semaphore:
            return await client.get_workflow_handle(workflow_id(ref)).fetch_history()

    histories = await asyncio.gather(*(history(r) for r in refs))

    async def each() -> AsyncIterator[WorkflowHistory]:
        for h in histories:
            yield h

    replayer = Replayer(
        workflows=[DisagreementWorkflow, QuarterlyReportWorkflow], data_converter=converter
    )
    reference_of = {workflow_id(r): r for r in refs}
    failures: dict[str, str] = {}
    async with replayer.workflow_replay_iterator(each()) as results:
        async for result in results:
            if result.replay_failure is not None:
                ref = reference_of.get(result.history.workflow_id, result.history.workflow_id)
                failure = result.replay_failure
                failures[ref] = f"{type(failure).__name__}: {failure}"[:300]
    return failures
