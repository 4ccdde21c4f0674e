"""The report's figures, counted from the register's clear columns only.

Nothing here reads a ``sealed_*`` column, and nothing it returns names a
case, a child or a person: what leaves this module is already anonymised.
Any count from 1 to 4 is published as "fewer than 5". Where the rows of a
table add up to a figure published elsewhere (the cases raised), one hidden
row could be worked out by subtraction, so more rows are withheld, smallest
first, until it cannot.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select

from policies.calendar import WorkingDayCalendar
from policies.model import NoTimescale, Policy
from register import tables as t
from reports.period import Period

FEWER_THAN_5 = "fewer than 5"
WITHHELD = "withheld"
SMALL = 5
# The pairs of agencies that disagree most: how many the report lists.
TOP_PAIRS = 5

ANONYMITY_NOTE = (
    "This report is anonymised by construction. It is counted from the register's "
    "non-identifying fields only: no child's details, no names of practitioners and no "
    "free text enter it. Any count from 1 to 4 is shown as 'fewer than 5'; where a "
    "total would let such a count be worked out, further figures are shown as "
    "'withheld'. Shares, medians and times are given only for 5 cases or more."
)

Cell = int | str


def cell(n: int) -> Cell:
    return FEWER_THAN_5 if 0 < n < SMALL else n


def protect_partition(counts: Sequence[int]) -> list[Cell]:
    """Cells for rows that add up to a published total: the small counts, and
    enough of the next smallest that no small count follows by subtraction
    (the hidden rows' sum must leave any small one at least two values)."""
    cells: list[Cell] = [cell(n) for n in counts]
    small = [i for i, n in enumerate(counts) if 0 < n < SMALL]
    if len(small) != 1:
        return cells
    hidden = counts[small[0]]
    larger = sorted((i for i, n in enumerate(counts) if n >= SMALL), key=lambda i: counts[i])
    for extra, i in enumerate(larger):
        if extra and hidden - SMALL * extra >= 2:
            break
        cells[i] = WITHHELD
        hidden += counts[i]
    return cells


def share(part: int, whole: int) -> str | None:
    """A percentage, unless it would give away a small count (the part, or
    what is left of the whole)."""
    if whole < SMALL or 0 < part < SMALL or 0 < whole - part < SMALL:
        return None if whole == 0 else WITHHELD
    return f"{round(100 * part / whole)}%"


def median_of(values: Sequence[float]) -> float | None:
    return statistics.median(values) if len(values) >= SMALL else None


def p90_of(values: Sequence[float]) -> float | None:
    """The 90th percentile by nearest rank: a value some case actually had."""
    if len(values) < SMALL:
        return None
    ordered = sorted(values)
    return ordered[math.ceil(0.9 * len(ordered)) - 1]


@dataclass
class _Spell:
    """One case's time at one stage."""

    stage: int
    start: datetime
    deadline: datetime | None
    end: datetime | None = None
    how: str | None = None  # resolved | escalated | auto_escalated | withdrawn


@dataclass
class Figures:
    policy: Policy
    period: Period
    generated_at: datetime
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return bool(self.data["empty"])


def compute(
    engine: Engine,
    policy: Policy,
    period: Period,
    now: datetime | None = None,
    known_agencies: Iterable[tuple[str, str]] = (),
) -> Figures:
    """The report for ``policy``'s partnership over ``period``.

    ``known_agencies`` (key, name) adds agencies that the register may never
    have seen (the directory's), so that one that never raised a concern is
    still listed among those that raised nothing."""
    now = now or datetime.now(UTC)
    start, end = period.bounds(policy.time_zone)
    end_or_now = min(end, now)
    calendar = WorkingDayCalendar(policy.calendar_spec())
    c = t.Case
    with engine.connect() as db:
        cases = db.execute(
            select(
                c.reference,
                c.raising_agency,
                c.raising_agency_name,
                c.raising_agency_kind,
                c.receiving_agency,
                c.receiving_agency_name,
                c.receiving_agency_kind,
                c.highest_stage_reached,
                c.status,
                c.immediate_risk,
                c.raised_at,
                c.resolved_at,
                c.closed_at,
            ).where(c.policy_id == policy.id)
        ).all()
        in_period = [r for r in cases if start <= _utc(r.raised_at) < end]
        refs = [r.reference for r in in_period]
        categories: list[str] = (
            list(
                db.execute(
                    select(t.CaseCategory.category).where(t.CaseCategory.reference.in_(refs))
                ).scalars()
            )
            if refs
            else []
        )
        category_counts = Counter(categories)
        # Every event of every case that was open at some time in the period.
        touching = [
            r.reference
            for r in cases
            if _utc(r.raised_at) < end and (r.closed_at is None or _utc(r.closed_at) >= start)
        ]
        events = (
            db.execute(
                select(
                    t.Event.reference,
                    t.Event.seq,
                    t.Event.at,
                    t.Event.type,
                    t.Event.stage,
                    t.Event.deadline,
                    t.Event.template,
                )
                .where(t.Event.reference.in_(touching))
                .order_by(t.Event.reference, t.Event.seq)
            ).all()
            if touching
            else []
        )
        forms_received = len(
            db.execute(
                select(t.FormSent.reference)
                .join(t.Case, t.Case.reference == t.FormSent.reference)
                .where(t.Case.policy_id == policy.id, t.FormSent.at >= start, t.FormSent.at < end)
            ).all()
        )
        risk_notices = db.execute(
            select(t.Notice.reference, t.Notice.at)
            .join(t.Case, t.Case.reference == t.Notice.reference)
            .where(
                t.Case.policy_id == policy.id,
                t.Notice.template == "immediate-risk",
                t.Notice.outcome.in_(["sent", "undelivered"]),
                t.Notice.at >= start,
            )
        ).all()

    data: dict[str, Any] = {
        "partnership": {
            "id": policy.id,
            "name": policy.partnership,
            "business_team": policy.business_team,
            "policy_version": policy.version,
        },
        "period": {
            "label": period.label,
            "description": period.describe(),
            "from": period.first.isoformat(),
            "to": period.last.isoformat(),
        },
        "generated_at": now.astimezone(UTC).isoformat(timespec="seconds"),
        "anonymity": ANONYMITY_NOTE,
        "empty": not in_period,
    }
    data["headline"] = _headline(cases, period, policy, now)
    data["per_quarter"] = [
        {"quarter": q.label, "raised": cell(_counts(cases, q, policy, now)["raised"])}
        for q in period.quarters_to_date()
    ]

    def partition(key: Any, label: Any) -> list[dict[str, Any]]:
        counts = Counter(key(r) for r in in_period)
        names = {key(r): label(r) for r in in_period}
        order = sorted(counts, key=lambda k: (-counts[k], names[k]))
        cells = protect_partition([counts[k] for k in order])
        rows = [{"key": k, "name": names[k], "cases": v} for k, v in zip(order, cells, strict=True)]
        return sorted(rows, key=_shown_order)

    data["by_raising_agency"] = partition(
        lambda r: r.raising_agency, lambda r: f"{r.raising_agency_name}"
    )
    data["by_raising_kind"] = partition(
        lambda r: r.raising_agency_kind, lambda r: _kind(r.raising_agency_kind)
    )
    data["by_receiving_agency"] = partition(
        lambda r: r.receiving_agency, lambda r: f"{r.receiving_agency_name}"
    )
    data["by_receiving_kind"] = partition(
        lambda r: r.receiving_agency_kind, lambda r: _kind(r.receiving_agency_kind)
    )
    data["by_highest_stage"] = _by_stage(in_period, policy)
    pairs = Counter(
        (r.raising_agency_name, r.receiving_agency_name) for r in in_period
    ).most_common()
    data["pairs"] = [
        {"raising": a, "receiving": b, "cases": cell(n)}
        for (a, b), n in pairs[:TOP_PAIRS]
        if n >= SMALL
    ]
    data["by_category"] = sorted(
        ({"key": k, "name": _kind(k), "cases": cell(n)} for k, n in category_counts.items()),
        key=_shown_order,
    )

    by_case: dict[str, list[Any]] = defaultdict(list)
    for ev in events:
        by_case[ev.reference].append(ev)
    data["timeliness"] = _timeliness(by_case, policy, calendar, start, end)
    data["confirmations_overdue"] = cell(_confirmations_overdue(by_case, start, end_or_now))
    data["forms"] = {
        "due": cell(_forms_due(by_case, policy, start, end)),
        "received": cell(forms_received),
    }
    data["immediate_risk"] = _immediate_risk(by_case, risk_notices, start, end)
    raised_by = {r.raising_agency for r in in_period}
    agencies: dict[str, str] = dict(known_agencies)
    for r in cases:
        agencies.setdefault(r.raising_agency, r.raising_agency_name)
        agencies.setdefault(r.receiving_agency, r.receiving_agency_name)
    data["agencies_raising_nothing"] = sorted(
        name for key, name in agencies.items() if key not in raised_by
    )
    return Figures(policy=policy, period=period, generated_at=now, data=data)


def _shown_order(row: dict[str, Any]) -> tuple[bool, int, str]:
    """Largest published figure first, then the hidden ones by name: their
    order among themselves would say which is the larger."""
    value = row["cases"]
    return (not isinstance(value, int), -value if isinstance(value, int) else 0, row["name"])


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _kind(key: str) -> str:
    return key.replace("-", " ").capitalize().replace("Childrens", "Children's")


def _ended_at(r: Any) -> datetime | None:
    """When a case stopped being open: resolved (whether or not confirmed
    since) or withdrawn."""
    if r.resolved_at is not None:
        return _utc(r.resolved_at)
    if r.status == "withdrawn" and r.closed_at is not None:
        return _utc(r.closed_at)
    return None


def _counts(cases: Sequence[Any], period: Period, policy: Policy, now: datetime) -> dict[str, int]:
    start, end = period.bounds(policy.time_zone)

    def within(value: datetime | None) -> bool:
        return value is not None and start <= _utc(value) < end

    still_open = 0
    for r in cases:
        ended = _ended_at(r)
        if _utc(r.raised_at) < end and (ended is None or ended >= end):
            still_open += 1
    return {
        "raised": sum(within(r.raised_at) for r in cases),
        "resolved": sum(within(r.resolved_at) for r in cases),
        "withdrawn": sum(r.status == "withdrawn" and within(r.closed_at) for r in cases),
        "open": still_open if start <= now else 0,
    }


HEADLINE_ROWS = (
    ("raised", "Cases raised"),
    ("resolved", "Cases resolved"),
    ("withdrawn", "Cases withdrawn"),
    ("open", "Still open at the end of the period"),
)


def _headline(
    cases: Sequence[Any], period: Period, policy: Policy, now: datetime
) -> list[dict[str, Any]]:
    this = _counts(cases, period, policy, now)
    before = _counts(cases, period.previous(), policy, now)
    year = _counts(cases, period.year_before(), policy, now)
    return [
        {
            "key": key,
            "measure": label,
            "this_period": cell(this[key]),
            "previous_period": cell(before[key]),
            "year_before": cell(year[key]),
        }
        for key, label in HEADLINE_ROWS
    ]


def _by_stage(in_period: Sequence[Any], policy: Policy) -> list[dict[str, Any]]:
    counts = Counter(r.highest_stage_reached for r in in_period)
    stages = list(range(len(policy.stages)))
    cells = protect_partition([counts.get(i, 0) for i in stages])
    return [
        {"stage": i + 1, "name": policy.stages[i].name, "cases": v}
        for i, v in zip(stages, cells, strict=True)
    ]


def _spells(events: Sequence[Any]) -> list[_Spell]:
    spells: list[_Spell] = []
    current: _Spell | None = None
    for ev in events:
        if ev.type == "stage_started":
            current = _Spell(ev.stage, _utc(ev.at), ev.deadline and _utc(ev.deadline))
            spells.append(current)
        elif current is None:
            continue
        elif ev.type in ("escalated", "auto_escalated", "resolved", "withdrawn"):
            if current.end is None:
                current.end, current.how = _utc(ev.at), ev.type
        elif ev.type in ("deadline_shortened", "immediate_risk") and ev.deadline is not None:
            current.deadline = _utc(ev.deadline)
    return spells


def _timeliness(
    by_case: dict[str, list[Any]],
    policy: Policy,
    calendar: WorkingDayCalendar,
    start: datetime,
    end: datetime,
) -> list[dict[str, Any]]:
    """Per stage, the spells that ended in the period by resolution or
    escalation: how many ended within the stage's timescale and how long
    they took in working days."""
    ended: dict[int, list[_Spell]] = defaultdict(list)
    for events in by_case.values():
        for spell in _spells(events):
            if spell.end is not None and spell.how != "withdrawn" and start <= spell.end < end:
                ended[spell.stage].append(spell)
    rows = []
    for i, stage in enumerate(policy.stages):
        spells = ended.get(i, [])
        timed = not isinstance(stage.timescale, NoTimescale)
        on_time = sum(
            s.how != "auto_escalated" and s.deadline is not None and s.end <= s.deadline  # type: ignore[operator]
            for s in spells
        )
        days = [
            calendar.working_days_between(
                calendar.local(s.start).date(),
                calendar.local(s.end).date(),  # type: ignore[arg-type]
            )
            for s in spells
        ]
        rows.append(
            {
                "stage": i + 1,
                "name": stage.name,
                "timescale": _timescale_text(stage.timescale),
                "ended": cell(len(spells)),
                "within_timescale": share(on_time, len(spells)) if timed else "no timescale",
                "median_working_days": median_of(days),
                "p90_working_days": p90_of(days),
                "automatic_escalations": cell(sum(s.how == "auto_escalated" for s in spells)),
            }
        )
    return rows


def _timescale_text(timescale: Any) -> str:
    kind = timescale.kind
    if kind == "working_days":
        return f"{timescale.days} working days"
    if kind == "hours":
        return f"{timescale.hours} hours"
    if kind == "same_working_day":
        return "same working day"
    return "none"


def _confirmations_overdue(by_case: dict[str, list[Any]], start: datetime, end: datetime) -> int:
    """Written confirmations whose deadline passed in the period before they
    arrived (or with none yet)."""
    late = 0
    for events in by_case.values():
        due: datetime | None = None
        for ev in events:
            if ev.type == "resolved":
                # A resolution awaiting confirmation carries its deadline.
                due = _utc(ev.deadline) if ev.deadline is not None else None
                confirmed: datetime | None = None
                for later in events:
                    if later.seq > ev.seq and later.type == "confirmed":
                        confirmed = _utc(later.at)
                        break
                if due is None or not start <= due < end:
                    continue
                if confirmed is None or confirmed > due:
                    late += 1
    return late


def _forms_due(
    by_case: dict[str, list[Any]], policy: Policy, start: datetime, end: datetime
) -> int:
    """The forms the policy says the business team is sent, for the steps the
    cases took in the period."""
    due = 0
    for events in by_case.values():
        stage_before: int | None = None
        for ev in events:
            at = _utc(ev.at)
            whens: tuple[str, ...] = ()
            stage = ev.stage
            if ev.type == "stage_started":
                whens = ("stage_started",)
            elif ev.type == "resolved":
                whens = ("resolved", "outcome")
            elif ev.type in ("escalated", "auto_escalated") and stage_before is not None:
                whens, stage = ("escalated_from",), stage_before
            if ev.type == "stage_started":
                stage_before = ev.stage
            if not whens or not start <= at < end or stage >= len(policy.stages):
                continue
            due += sum(
                1
                for record in policy.stages[stage].business_team
                if record.form is not None and record.when in whens
            )
    return due


def _immediate_risk(
    by_case: dict[str, list[Any]], notices: Sequence[Any], start: datetime, end: datetime
) -> dict[str, Any]:
    """Cases where immediate risk was declared in the period, and how long
    the urgent contacts waited to be told (minutes)."""
    told: dict[str, list[datetime]] = defaultdict(list)
    for reference, at in notices:
        told[reference].append(_utc(at))
    flagged = 0
    waits: list[float] = []
    for reference, events in by_case.items():
        flags = [_utc(ev.at) for ev in events if ev.type == "immediate_risk"]
        risk_at = next((at for at in flags if start <= at < end), None)
        if risk_at is None:
            continue
        flagged += 1
        after = [at for at in told.get(reference, []) if at >= risk_at]
        if after:
            waits.append((min(after) - risk_at).total_seconds() / 60)
    return {
        "cases": cell(flagged),
        "told": cell(len(waits)),
        "median_minutes_to_tell": _round(median_of(waits)),
        "p90_minutes_to_tell": _round(p90_of(waits)),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
