"""Whole ladders on exact calendar dates: the real workflow, worker and
activities on Temporal's time-skipping test server, driven by
``escalation.simulate.run_simulation`` (each run has a server of its own, so
its clock can start at any future instant).

The reference for every stage's start and deadline is
``policies.ladder.explain`` for the same raised instant (DESIGN.md section 7),
checked in turn against deadlines worked out by hand from section 3 across
Christmas and New Year 2026-27, Easter 2027 and the change to summer time
on 28 March 2027.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from escalation.simulate import Act, parties, run_simulation
from policies.calendar import WorkingDayCalendar
from policies.ladder import PlannedStage, explain
from policies.loader import get_policy
from policies.model import Policy
from tests.conftest import owner_labels

LONDON = ZoneInfo("Europe/London")
# A timer fires, and the case records it, a few milliseconds after its instant.
SLACK = timedelta(seconds=2)


# The simulator's clock starts at the real now, so a case cannot be raised in
# the past. The scenarios are dated from DESIGN.md section 3's example (Wed 23
# December 2026); once that has passed, every date moves on by whole blocks of
# 52 weeks (same weekday, same local time). Expectations are always computed
# with the policy's calendar and ``explain``; the deadlines worked out by hand
# are checked while the scenarios keep their own dates.
def _shift() -> timedelta:
    earliest = datetime(2026, 12, 23, 11, tzinfo=LONDON)
    soon = datetime.now(UTC) + timedelta(days=1)
    blocks = 0
    while earliest.replace(tzinfo=None) + timedelta(weeks=52 * blocks) < soon.astimezone(
        LONDON
    ).replace(tzinfo=None):
        blocks += 1
    return timedelta(weeks=52 * blocks)


SHIFT = _shift()
ON_DESIGN_DATES = timedelta(0) == SHIFT


def london(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A London wall-clock instant of the scenarios (moved on by ``SHIFT``)."""
    return (datetime(year, month, day, hour, minute) + SHIFT).replace(tzinfo=LONDON)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def local_noon(instant: datetime, days_later: int = 0) -> datetime:
    day = instant.astimezone(LONDON).date() + timedelta(days=days_later)
    return datetime.combine(day, time(12), tzinfo=LONDON)


def local_at(instant: datetime, hour: int, minute: int = 0, days_later: int = 0) -> datetime:
    day = instant.astimezone(LONDON).date() + timedelta(days=days_later)
    return datetime.combine(day, time(hour, minute), tzinfo=LONDON)


# DESIGN.md section 3's example instant: Wednesday 23 December 2026 11:00 London.
CHRISTMAS = london(2026, 12, 23, 11)


@dataclass(frozen=True)
class Event:
    at: datetime
    type: str
    stage: int
    deadline: datetime | None
    to: list[str]
    template: str | None
    detail: str | None


@dataclass(frozen=True)
class Run:
    policy: Policy
    calendar: WorkingDayCalendar
    raised: datetime
    until: datetime
    events: list[Event]
    final: dict[str, Any]

    def of(self, type_: str, template: str | None = None) -> list[Event]:
        return [
            e
            for e in self.events
            if e.type == type_ and (template is None or e.template == template)
        ]

    def labels(self, index: int) -> list[str]:
        """Recipient labels of a stage's owners in the simulator's two agencies."""
        raising, receiving, _ = parties(self.policy)
        return owner_labels(self.policy, (raising, receiving), index)

    def receiving_label(self, index: int) -> str:
        return self.labels(index)[-1]  # one label where the partnership holds the stage


async def simulate(
    policy_id: str,
    raised: datetime,
    until: datetime,
    acts: list[Act] | None = None,
    immediate_risk: bool = False,
) -> Run:
    policy = get_policy(policy_id)
    timeline = await run_simulation(policy, raised, immediate_risk, acts or [], until)
    assert timeline["policy"] == policy_id
    events = [
        Event(
            at=utc(e["at"]),
            type=e["type"],
            stage=e["stage"],
            deadline=utc(e["deadline"]) if e["deadline"] else None,
            to=e["to"],
            template=e.get("template"),
            detail=e.get("detail"),
        )
        for e in timeline["events"]
    ]
    return Run(
        policy, WorkingDayCalendar(policy.calendar_spec()), raised, until, events, timeline["final"]
    )


def near(actual: datetime, expected: datetime) -> bool:
    return timedelta(0) <= actual - expected < SLACK


def instants(events: list[Event]) -> list[datetime]:
    return [e.at for e in events]


def assert_at(events: list[Event], expected: list[datetime]) -> None:
    """Each event happened at its expected instant (and no others)."""
    got = [e.at.astimezone(UTC).isoformat() for e in events]
    want = [x.astimezone(UTC).isoformat() for x in expected]
    assert len(got) == len(want), (got, want)
    for event, instant in zip(events, expected, strict=True):
        assert near(event.at, instant), (got, want)


def every(
    calendar: WorkingDayCalendar, after: datetime, until: datetime, days: int = 5
) -> list[datetime]:
    """Reminders every ``days`` working days after an instant, up to ``until``."""
    out = []
    at = calendar.add_working_days(after, days)
    while at <= until:
        out.append(at)
        at = calendar.add_working_days(at, days)
    return out


# --- Nobody acts ------------------------------------------------------------------


@dataclass(frozen=True)
class Unattended:
    id: str
    policy_id: str
    raised: datetime
    immediate_risk: bool
    # Deadlines worked out by hand from DESIGN.md section 3 (UTC; None: no
    # written timescale; stages never reached are left out).
    by_hand: list[str | None]


UNATTENDED = [
    Unattended(
        "merton-christmas",
        "merton",
        CHRISTMAS,
        False,
        # DESIGN.md section 3: Thu 24, Tue 29, Wed 30, Thu 31 Dec, Mon 4 Jan.
        [
            "2027-01-04T17:00:00+00:00",
            "2027-01-11T17:00:00+00:00",
            "2027-01-18T17:00:00+00:00",
            "2027-01-25T17:00:00+00:00",
            "2027-02-01T17:00:00+00:00",
        ],
    ),
    Unattended(
        "merton-easter-and-summer-time",
        "merton",
        london(2027, 3, 15, 10),
        False,
        # Good Friday 26 and Easter Monday 29 March skipped; BST from 28 March.
        [
            "2027-03-22T17:00:00+00:00",
            "2027-03-31T16:00:00+00:00",
            "2027-04-07T16:00:00+00:00",
            "2027-04-14T16:00:00+00:00",
            "2027-04-21T16:00:00+00:00",
        ],
    ),
    Unattended(
        "staffordshire-christmas",
        "staffordshire-stoke",
        CHRISTMAS,
        False,
        [
            "2026-12-24T17:00:00+00:00",
            "2026-12-29T17:00:00+00:00",
            "2026-12-31T17:00:00+00:00",
            "2027-01-08T17:00:00+00:00",
            "2027-01-12T17:00:00+00:00",
            # Then the independent professional adviser (Stage 5 ¶5): no timescale.
            None,
        ],
    ),
    Unattended(
        "cheshire-christmas",
        "cheshire",
        CHRISTMAS,
        False,
        # "Day 1-2" read as 2 working days (not 48 hours, which fell on
        # Christmas Day), then 5, 6 and 6 working days.
        [
            "2026-12-29T17:00:00+00:00",
            "2027-01-06T17:00:00+00:00",
            "2027-01-14T17:00:00+00:00",
            "2027-01-22T17:00:00+00:00",
        ],
    ),
    Unattended(
        "cheshire-good-friday",
        "cheshire",
        london(2027, 3, 26, 10),
        False,
        # Raised on Good Friday: Easter Monday skipped, then Tue 30 and Wed 31
        # March (BST); 48 elapsed hours would have escalated on Easter Sunday.
        [
            "2027-03-31T16:00:00+00:00",
            "2027-04-07T16:00:00+00:00",
            "2027-04-15T16:00:00+00:00",
            "2027-04-23T16:00:00+00:00",
        ],
    ),
    Unattended("wirral-christmas", "wirral", CHRISTMAS, False, ["2027-01-04T17:00:00+00:00", None]),
    Unattended("hillingdon-christmas", "hillingdon", CHRISTMAS, False, [None]),
    Unattended(
        "merton-christmas-immediate-risk",
        "merton",
        CHRISTMAS,
        True,
        # 2 working days at every stage.
        [
            "2026-12-29T17:00:00+00:00",
            "2026-12-31T17:00:00+00:00",
            "2027-01-05T17:00:00+00:00",
            "2027-01-07T17:00:00+00:00",
            "2027-01-11T17:00:00+00:00",
        ],
    ),
    Unattended(
        "wirral-same-working-day",
        "wirral",
        CHRISTMAS,
        True,
        # Same working day for the current stage only.
        ["2026-12-23T17:00:00+00:00", None],
    ),
    Unattended(
        "wirral-same-working-day-after-close-of-business",
        "wirral",
        london(2026, 12, 24, 18),
        True,
        # After 17:00 on Christmas Eve: the next working day is Tue 29 Dec.
        ["2026-12-29T17:00:00+00:00", None],
    ),
    Unattended(
        "staffordshire-christmas-immediate-risk",
        "staffordshire-stoke",
        CHRISTMAS,
        True,
        [
            "2026-12-24T17:00:00+00:00",
            "2026-12-29T17:00:00+00:00",
            "2026-12-31T17:00:00+00:00",
            "2027-01-08T17:00:00+00:00",
            "2027-01-12T17:00:00+00:00",
            # Then the independent professional adviser (Stage 5 ¶5): no timescale.
            None,
        ],
    ),
    Unattended(
        "cheshire-christmas-immediate-risk",
        "cheshire",
        CHRISTMAS,
        True,
        [
            "2026-12-29T17:00:00+00:00",
            "2027-01-06T17:00:00+00:00",
            "2027-01-14T17:00:00+00:00",
            "2027-01-22T17:00:00+00:00",
        ],
    ),
    Unattended("hillingdon-christmas-immediate-risk", "hillingdon", CHRISTMAS, True, [None]),
]


@dataclass(frozen=True)
class Ladder:
    scenario: Unattended
    run: Run
    plan: list[PlannedStage]

    @property
    def reached(self) -> list[PlannedStage]:
        return [p for p in self.plan if p.starts is not None]


@pytest.fixture(scope="module", params=UNATTENDED, ids=lambda s: s.id)
async def ladder(request: pytest.FixtureRequest) -> Ladder:
    scenario: Unattended = request.param
    policy = get_policy(scenario.policy_id)
    calendar = WorkingDayCalendar(policy.calendar_spec())
    plan = explain(policy, calendar, scenario.raised, scenario.immediate_risk)
    last = max(i for p in plan for i in (p.starts, p.deadline) if i is not None)
    # Past the last deadline by four weeks, at noon (no reminder falls due then).
    until = local_noon(last, 28)
    run = await simulate(scenario.policy_id, scenario.raised, until, [], scenario.immediate_risk)
    return Ladder(scenario, run, plan)


def test_explain_agrees_with_the_deadlines_worked_by_hand(ladder: Ladder) -> None:
    if not ON_DESIGN_DATES:
        pytest.skip(f"the hand-worked dates have passed; scenarios moved on {SHIFT.days} days")
    expected = [None if d is None else utc(d) for d in ladder.scenario.by_hand]
    assert [p.deadline for p in ladder.reached] == expected


def test_every_stage_starts_and_falls_due_as_explain_says(ladder: Ladder) -> None:
    run = ladder.run
    started = run.of("stage_started")
    assert [e.stage for e in started] == [p.index for p in ladder.reached]
    for event, planned in zip(started, ladder.reached, strict=True):
        assert planned.starts is not None
        assert near(event.at, planned.starts), (event, planned)
        assert event.deadline == planned.deadline, (event, planned)
    assert run.of("raised")[0].at - run.raised < SLACK


def test_each_deadline_escalates_automatically_and_tells_everyone_so_far(ladder: Ladder) -> None:
    run, policy = ladder.run, ladder.run.policy
    assert run.of("escalated") == []
    auto = run.of("auto_escalated")
    moves = [p for p in ladder.plan[:-1] if p.deadline is not None]
    assert [(e.stage, e.detail) for e in auto] == [
        (p.index + 1, f"from stage {p.index} to stage {p.index + 1}: the deadline passed")
        for p in moves
    ]
    assert_at(auto, [p.deadline for p in moves if p.deadline])
    told = run.of("notice", "escalated-automatically")
    assert [e.stage for e in told] == [e.stage for e in auto]
    for notice in told:
        so_far = {label for i in range(notice.stage + 1) for label in run.labels(i)}
        assert so_far | {"raiser"} <= set(notice.to)
        brought_in = any(policy.stages[i].business_team for i in range(notice.stage + 1))
        assert ("business-team" in notice.to) == brought_in


def test_a_timed_final_stage_goes_overdue_and_is_chased_every_five_working_days(
    ladder: Ladder,
) -> None:
    run, final = ladder.run, ladder.plan[-1]
    if final.deadline is None:
        assert run.of("overdue") == []
        assert run.of("reminder", "overdue-final-stage") == []
        return
    assert run.final == {"status": "overdue", "stage": final.index}
    overdue = run.of("overdue")
    assert [(e.stage, e.detail) for e in overdue] == [
        (final.index, "the final stage's deadline passed")
    ]
    assert_at(overdue, [final.deadline])
    reminders = run.of("reminder", "overdue-final-stage")
    assert_at(reminders, [final.deadline, *every(run.calendar, final.deadline, run.until)])
    assert len(reminders) >= 4
    for reminder in reminders:
        assert reminder.to == [*run.labels(final.index), "business-team"]
    # Nothing escalates past the final stage.
    assert run.events[-1].stage == final.index


def test_a_stage_without_a_timescale_is_chased_and_never_escalates(ladder: Ladder) -> None:
    run = ladder.run
    untimed = [p for p in ladder.reached if p.deadline is None]
    if not untimed:
        assert run.of("reminder", "stage-reminder") == []
        return
    stage = untimed[0]
    assert stage.starts is not None
    assert run.final == {"status": "open", "stage": stage.index}
    reminders = run.of("reminder", "stage-reminder")
    assert_at(reminders, every(run.calendar, stage.starts, run.until))
    assert len(reminders) >= 3
    for reminder in reminders:
        assert reminder.stage == stage.index
        assert reminder.to == run.labels(stage.index)
    assert not [e for e in run.of("auto_escalated") if e.stage > stage.index]
    assert run.events[-1].stage == stage.index


def test_acknowledgement_and_deadline_day_reminders(ladder: Ladder) -> None:
    run = ladder.run
    acknowledgements, deadline_days = [], []
    for planned in ladder.reached:
        assert planned.starts is not None
        due = run.calendar.add_working_days(planned.starts, 1)
        if (planned.deadline is None or due < planned.deadline) and due <= run.until:
            acknowledgements.append(due)
        if planned.deadline is not None:
            morning = run.calendar.start_of_business_on_day_of(planned.deadline)
            if planned.starts < morning < planned.deadline:
                deadline_days.append(morning)
    acknowledgement_due = run.of("reminder", "acknowledgement-due")
    assert_at(acknowledgement_due, acknowledgements)
    for reminder in acknowledgement_due:
        assert reminder.to == [run.receiving_label(reminder.stage)]  # the receiving side only
    deadline_day = run.of("reminder", "deadline-day-reminder")
    assert_at(deadline_day, deadline_days)
    for reminder in deadline_day:
        assert reminder.to == run.labels(reminder.stage)


URGENT = {
    "merton": "mscp-executive",
    "staffordshire-stoke": "staffordshire-scb-manager",
    "cheshire": "cheshire-west-iart",
    "wirral": "central-advice-and-duty-service",
    "hillingdon": "business-team",
}


def test_immediate_risk_at_raise_tells_the_urgent_contacts_first(ladder: Ladder) -> None:
    run = ladder.run
    flagged = run.of("immediate_risk")
    urgent = run.of("notice", "immediate-risk")
    if not ladder.scenario.immediate_risk:
        assert flagged == urgent == []
        return
    assert [(e.stage, e.detail) for e in flagged] == [(0, "flagged when raised")]
    assert len(urgent) == 1
    assert run.events.index(urgent[0]) == min(
        i for i, e in enumerate(run.events) if e.type == "notice"
    )
    assert URGENT[run.policy.id] in urgent[0].to
    assert {"raiser", "business-team", *run.labels(0)} <= set(urgent[0].to)
    # Only the case's own area (the simulator raises in each policy's first).
    others = {"cheshire-east-consultation-service", "halton-icart", "warrington-mars"}
    others |= {"stoke-scb-manager"}
    assert not others & set(urgent[0].to)


# --- Immediate risk flagged mid-case ------------------------------------------------

# Mon 4 Jan 2027 10:00 GMT: stage 0 of a 5-working-day policy is due Mon 11 Jan 17:00.
MONDAY = london(2027, 1, 4, 10)


def chain(calendar: WorkingDayCalendar, first: datetime, days: int, count: int) -> list[datetime]:
    out = [first]
    while len(out) < count:
        out.append(calendar.add_working_days(out[-1], days))
    return out


def calendar_of(policy_id: str) -> WorkingDayCalendar:
    return WorkingDayCalendar(get_policy(policy_id).calendar_spec())


async def test_merton_risk_mid_stage_brings_the_deadline_forward_and_later_stages_use_2_days() -> (
    None
):
    cal = calendar_of("merton")
    own = cal.add_working_days(MONDAY, 5)
    flag = MONDAY + timedelta(days=1)  # Tue 10:00
    two_days = cal.add_working_days(flag, 2)
    assert two_days < own
    run = await simulate("merton", MONDAY, local_noon(own, 25), [Act(flag, "immediate-risk")])
    flagged = run.of("immediate_risk")
    assert [(e.stage, e.detail) for e in flagged] == [(0, "flagged at stage 0")]
    assert flagged[0].deadline == two_days
    # Each later stage: 2 working days from the deadline before it.
    expected = chain(cal, two_days, 2, 5)
    started = run.of("stage_started")
    assert started[0].deadline == own  # set when raised, before the flag
    assert [e.deadline for e in started[1:]] == expected[1:]
    assert_at(run.of("auto_escalated"), expected[:4])
    assert_at(run.of("overdue"), [expected[4]])
    urgent = run.of("notice", "immediate-risk")
    assert len(urgent) == 1
    assert "mscp-executive" in urgent[0].to
    if ON_DESIGN_DATES:
        # Tue 5 Jan 10:00 + 2 working days is Thu 7 Jan, before Mon 11 Jan.
        assert expected == [
            utc("2027-01-07T17:00:00+00:00"),
            utc("2027-01-11T17:00:00+00:00"),
            utc("2027-01-13T17:00:00+00:00"),
            utc("2027-01-15T17:00:00+00:00"),
            utc("2027-01-19T17:00:00+00:00"),
        ]


async def test_merton_risk_on_the_deadline_day_keeps_the_earlier_deadline() -> None:
    cal = calendar_of("merton")
    own = cal.add_working_days(MONDAY, 5)
    flag = local_at(own, 10)  # the morning of the deadline day
    assert cal.add_working_days(flag, 2) > own
    run = await simulate("merton", MONDAY, local_noon(own, 14), [Act(flag, "immediate-risk")])
    flagged = run.of("immediate_risk")
    assert flagged[0].deadline == own  # whichever is less
    assert near(run.of("auto_escalated")[0].at, own)
    expected = chain(cal, own, 2, 5)
    assert [e.deadline for e in run.of("stage_started")] == expected
    if ON_DESIGN_DATES:
        assert expected == [
            utc("2027-01-11T17:00:00+00:00"),
            utc("2027-01-13T17:00:00+00:00"),
            utc("2027-01-15T17:00:00+00:00"),
            utc("2027-01-19T17:00:00+00:00"),
            utc("2027-01-21T17:00:00+00:00"),
        ]


@pytest.mark.parametrize(
    ("flag", "by_hand"),
    [
        (london(2027, 1, 6, 11), "2027-01-06T17:00:00+00:00"),  # Wed morning: that day
        (london(2027, 1, 7, 18, 30), "2027-01-08T17:00:00+00:00"),  # Thu evening: Friday
    ],
    ids=["before-close-of-business", "after-close-of-business"],
)
async def test_wirral_risk_mid_stage_is_same_working_day_for_the_current_stage(
    flag: datetime, by_hand: str
) -> None:
    cal = calendar_of("wirral")
    own = cal.add_working_days(MONDAY, 5)
    due = cal.same_working_day(flag)
    assert due < own
    if ON_DESIGN_DATES:
        assert due == utc(by_hand)
    run = await simulate("wirral", MONDAY, local_noon(own, 25), [Act(flag, "immediate-risk")])
    flagged = run.of("immediate_risk")
    assert [(e.stage, e.deadline) for e in flagged] == [(0, due)]
    auto = run.of("auto_escalated")
    assert len(auto) == 1
    assert near(auto[0].at, due)
    # Stage 2 keeps no written timescale: reminders, no further escalation.
    started = run.of("stage_started")
    assert [(e.stage, e.deadline) for e in started] == [(0, own), (1, None)]
    assert_at(run.of("reminder", "stage-reminder"), every(run.calendar, due, run.until))
    assert "central-advice-and-duty-service" in run.of("notice", "immediate-risk")[0].to


async def test_wirral_risk_at_a_stage_without_a_timescale_escalates_the_same_working_day() -> None:
    cal = calendar_of("wirral")
    own = cal.add_working_days(MONDAY, 5)  # stage 2 starts here, with no timescale
    flag = local_at(cal.add_working_days(own, 1), 10)  # the next working day, 10:00
    due = cal.same_working_day(flag)
    assert due == local_at(flag, 17)
    run = await simulate("wirral", MONDAY, local_noon(own, 30), [Act(flag, "immediate-risk")])
    flagged = run.of("immediate_risk")
    assert [(e.stage, e.deadline) for e in flagged] == [(1, due)]
    assert_at(run.of("auto_escalated"), [own, due])
    started = run.of("stage_started")
    assert [(e.stage, e.deadline) for e in started] == [
        (0, own),
        (1, None),
        (2, None),  # the next stage does not inherit the same-day rule
    ]
    reminders = run.of("reminder", "stage-reminder")
    assert all(r.stage == 2 for r in reminders)
    assert_at(reminders, every(run.calendar, due, run.until))
    assert run.final == {"status": "open", "stage": 2}
    if ON_DESIGN_DATES:
        assert due == utc("2027-01-12T17:00:00+00:00")


# --- Written confirmation ----------------------------------------------------------


async def test_merton_missing_written_confirmation_is_chased() -> None:
    """Resolved at stage 2 (senior leaders), the outcome is to be confirmed in
    writing within 5 working days; nobody confirms."""
    cal = calendar_of("merton")
    resolve = MONDAY + timedelta(days=1)  # Tue 10:00
    due = cal.add_working_days(resolve, 5)
    run = await simulate(
        "merton",
        MONDAY,
        local_noon(due, 24),
        [
            Act(MONDAY + timedelta(minutes=30), "escalate"),
            Act(MONDAY + timedelta(hours=1), "escalate"),
            Act(resolve, "resolve"),
        ],
    )
    resolved = run.of("resolved")
    assert [(e.stage, e.detail, e.deadline) for e in resolved] == [
        (2, "written confirmation due", due)
    ]
    assert run.of("auto_escalated") == []
    chased = run.of("reminder", "written-confirmation-due")
    morning = cal.start_of_business_on_day_of(due)
    assert_at(chased, [morning, due, *every(run.calendar, due, run.until)])
    assert len(chased) >= 4
    owner = run.receiving_label(2)
    assert chased[0].to == [owner]  # the morning it falls due
    for reminder in chased[1:]:
        assert reminder.to == [owner, "business-team"]
    assert run.final == {"status": "awaiting-confirmation", "stage": 2}
    assert run.of("closed") == []
    if ON_DESIGN_DATES:
        assert due == utc("2027-01-12T17:00:00+00:00")


async def test_staffordshire_late_confirmation_closes_the_case() -> None:
    cal = calendar_of("staffordshire-stoke")
    resolve = MONDAY + timedelta(hours=1)
    due = cal.add_working_days(resolve, 1)
    later = cal.add_working_days(due, 5)
    confirm = local_at(later, 10, days_later=1)  # the morning after the first repeat
    run = await simulate(
        "staffordshire-stoke",
        MONDAY,
        local_noon(confirm, 14),
        [Act(resolve, "resolve"), Act(confirm, "confirm")],
    )
    assert run.of("resolved")[0].deadline == due
    chased = run.of("reminder", "written-confirmation-due")
    assert_at(chased, [cal.start_of_business_on_day_of(due), due, later])
    assert_at(run.of("confirmed"), [confirm])
    assert [e.type for e in run.events if e.type not in ("notice", "reminder")][-2:] == [
        "confirmed",
        "closed",
    ]
    assert run.of("notice", "outcome-confirmed")[0].to == [*run.labels(0), "raiser"]
    assert run.final == {"status": "resolved", "stage": 0}
    # Nothing after the case closed.
    assert run.events[-1].at - confirm < SLACK
    assert run.of("auto_escalated") == []
    if ON_DESIGN_DATES:
        assert (due, later) == (
            utc("2027-01-05T17:00:00+00:00"),
            utc("2027-01-12T17:00:00+00:00"),
        )


# --- Acknowledgement, notes, withdrawal ------------------------------------------------


async def test_acknowledging_stops_the_acknowledgement_reminder_for_that_stage() -> None:
    cal = calendar_of("merton")
    stage_1 = cal.add_working_days(MONDAY, 5)
    run = await simulate(
        "merton",
        MONDAY,
        local_noon(cal.add_working_days(stage_1, 2)),
        [
            Act(MONDAY + timedelta(hours=2), "acknowledge"),
            Act(MONDAY + timedelta(hours=2, minutes=30), "note"),
        ],
    )
    acknowledged = run.of("acknowledged")
    assert [e.stage for e in acknowledged] == [0]
    assert near(acknowledged[0].at, MONDAY + timedelta(hours=2))
    assert len(run.of("note")) == 1
    # Stage 0 is acknowledged, so only stage 1 is chased, a working day in.
    reminders = run.of("reminder", "acknowledgement-due")
    assert [(e.stage, e.to) for e in reminders] == [(1, [run.receiving_label(1)])]
    assert_at(reminders, [cal.add_working_days(stage_1, 1)])


async def test_withdrawing_stops_the_ladder() -> None:
    policy = get_policy("cheshire")
    plan = explain(policy, WorkingDayCalendar(policy.calendar_spec()), CHRISTMAS)
    assert plan[2].starts is not None
    withdraw = plan[2].starts + timedelta(hours=16)  # during step 2
    run = await simulate(
        "cheshire", CHRISTMAS, local_noon(withdraw, 40), [Act(withdraw, "withdraw")]
    )
    assert run.final == {"status": "withdrawn", "stage": 2}
    assert run.events[-1].at - withdraw < SLACK
    withdrawn = run.of("notice", "withdrawn")
    assert set(withdrawn[0].to) == {*run.labels(0), *run.labels(1), *run.labels(2), "raiser"}
