"""The ladder that runs if nobody acts (``policies.ladder``).

Merton is the built-in policy every test can rely on; hand-built minimal
policies cover what Merton does not have (stages with no timescale, a
same-working-day override for the current stage only, hours).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from policies.calendar import WorkingDayCalendar
from policies.ladder import earliest, explain, risk_override, stage_deadline
from policies.loader import get_policy
from policies.model import (
    CalendarSpec,
    Hours,
    NoTimescale,
    Policy,
    SameWorkingDay,
    WorkingDays,
)

LONDON = ZoneInfo("Europe/London")
SRC = "test"
CAL = WorkingDayCalendar(CalendarSpec())


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def london(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=LONDON)


def wd(days: int) -> WorkingDays:
    return WorkingDays(days=days, source=SRC)


def same_day() -> SameWorkingDay:
    return SameWorkingDay(source=SRC)


def none() -> NoTimescale:
    return NoTimescale(source=SRC)


def iso_utc(instant: datetime | None) -> str | None:
    return None if instant is None else instant.astimezone(UTC).isoformat()


@pytest.fixture(scope="module")
def merton() -> Policy:
    return get_policy("merton")


@pytest.fixture(scope="module")
def merton_calendar(merton: Policy) -> WorkingDayCalendar:
    return WorkingDayCalendar(merton.calendar_spec())


# --- Hand-built policies ---------------------------------------------------------


def _stage(key: str, timescale: dict[str, Any]) -> dict[str, Any]:
    return {
        "key": key,
        "name": f"Stage {key}",
        "summary": "A stage for tests.",
        "owners": [{"agency_kind": "any", "role": "owner", "title": "Owner", "source": SRC}],
        "timescale": {**timescale, "source": SRC},
        "source": SRC,
    }


def make_policy(
    timescales: list[dict[str, Any]],
    override: dict[str, Any] | None = None,
    applies_to: str = "current-and-later",
) -> Policy:
    return Policy.model_validate(
        {
            "id": "test-policy",
            "version": "1",
            "name": "Test policy",
            "partnership": "Test partnership",
            "document": "Test document",
            "areas": [{"key": "test", "name": "Test", "source": SRC}],
            "subjects": ["children"],
            "business_team": "Business team",
            "business_team_source": SRC,
            "stages": [_stage(f"s{i}", t) for i, t in enumerate(timescales)],
            "immediate_risk": {
                "timescale_override": None if override is None else {**override, "source": SRC},
                "override_applies_to": applies_to,
                "urgent_contacts": [{"role": "urgent", "title": "Urgent", "source": SRC}],
                "source": SRC,
            },
            "acknowledgement": {
                "timescale": {"kind": "working_days", "days": 1, "source": SRC},
                "source": SRC,
            },
            "reminder_every": {"kind": "working_days", "days": 5, "source": SRC},
        }
    )


WD5 = {"kind": "working_days", "days": 5}
WD1 = {"kind": "working_days", "days": 1}
NONE = {"kind": "none"}
SAME = {"kind": "same_working_day"}


# --- explain with Merton -----------------------------------------------------------


def test_merton_explain_matches_design_section_7(
    merton: Policy, merton_calendar: WorkingDayCalendar
) -> None:
    raised = datetime.fromisoformat("2027-12-22T10:00:00+00:00")
    plan = explain(merton, merton_calendar, raised)
    assert len(plan) == 5
    assert [p.index for p in plan] == [0, 1, 2, 3, 4]
    assert [p.key for p in plan] == [s.key for s in merton.stages]
    assert plan[0].key == "practitioners"
    assert plan[0].starts == raised
    assert iso_utc(plan[0].starts) == "2027-12-22T10:00:00+00:00"
    # Thu 23, Fri 24, (Christmas Sat 25 observed Mon 27, Boxing Day Sun 26
    # observed Tue 28), Wed 29, Thu 30, Fri 31 December 2027.
    assert iso_utc(plan[0].deadline) == "2027-12-31T17:00:00+00:00"
    # Each deadline starts the next stage.
    for before, after in zip(plan, plan[1:], strict=False):
        assert after.starts == before.deadline
    # 1 Jan 2028 is a Saturday, observed Monday 3 January.
    assert [iso_utc(p.deadline) for p in plan] == [
        "2027-12-31T17:00:00+00:00",
        "2028-01-10T17:00:00+00:00",
        "2028-01-17T17:00:00+00:00",
        "2028-01-24T17:00:00+00:00",
        "2028-01-31T17:00:00+00:00",
    ]
    assert all(p.timescale == "5 working days" for p in plan)


def test_merton_explain_with_immediate_risk_uses_2_working_days_everywhere(
    merton: Policy, merton_calendar: WorkingDayCalendar
) -> None:
    raised = utc(2027, 12, 22, 10)
    plan = explain(merton, merton_calendar, raised, immediate_risk=True)
    assert len(plan) == 5
    for stage in plan:
        assert stage.starts is not None and stage.deadline is not None
        assert stage.deadline == merton_calendar.add_working_days(stage.starts, 2)
        assert stage.timescale == "5 working days (immediate risk: 2 working days)"
    for before, after in zip(plan, plan[1:], strict=False):
        assert after.starts == before.deadline
    assert [iso_utc(p.deadline) for p in plan] == [
        "2027-12-24T17:00:00+00:00",  # Thu 23, Fri 24
        "2027-12-30T17:00:00+00:00",  # Wed 29, Thu 30
        "2028-01-04T17:00:00+00:00",  # Fri 31, (Mon 3 Jan holiday) Tue 4
        "2028-01-06T17:00:00+00:00",
        "2028-01-10T17:00:00+00:00",
    ]


def test_merton_explain_in_summer_deadlines_are_1600_utc(
    merton: Policy, merton_calendar: WorkingDayCalendar
) -> None:
    plan = explain(merton, merton_calendar, london(2027, 7, 7, 10))
    for stage in plan:
        assert stage.deadline is not None
        assert stage.deadline.astimezone(LONDON).time() == time(17, 0)
        assert stage.deadline.astimezone(UTC).time() == time(16, 0)
    assert iso_utc(plan[0].deadline) == "2027-07-14T16:00:00+00:00"


def test_design_section_3_worked_example_through_stage_deadline(
    merton: Policy, merton_calendar: WorkingDayCalendar
) -> None:
    start = london(2026, 12, 23, 11, 0)
    deadline = stage_deadline(merton_calendar, merton.stages[0].timescale, start)
    assert iso_utc(deadline) == "2027-01-04T17:00:00+00:00"
    assert stage_deadline(CAL, wd(5), start) == deadline


# --- risk_override ------------------------------------------------------------------


def test_risk_override_none_without_risk(merton: Policy) -> None:
    for index in range(len(merton.stages)):
        assert risk_override(merton, index, None) is None


def test_merton_override_is_current_and_later(merton: Policy) -> None:
    assert merton.immediate_risk.override_applies_to == "current-and-later"
    override = merton.immediate_risk.timescale_override
    assert isinstance(override, WorkingDays) and override.days == 2
    assert [risk_override(merton, i, 2) for i in range(5)] == [
        None,
        None,
        override,
        override,
        override,
    ]
    assert all(risk_override(merton, i, 0) == override for i in range(5))


def test_current_stage_override_applies_to_that_stage_only(merton: Policy) -> None:
    rule = merton.immediate_risk.model_copy(
        update={"override_applies_to": "current-stage", "timescale_override": same_day()}
    )
    policy = merton.model_copy(update={"immediate_risk": rule})
    assert [risk_override(policy, i, 1) for i in range(5)] == [
        None,
        same_day(),
        None,
        None,
        None,
    ]
    assert risk_override(policy, 1, None) is None


def test_current_stage_override_on_hand_built_policy() -> None:
    policy = make_policy([WD5, NONE, NONE], override=SAME, applies_to="current-stage")
    assert risk_override(policy, 0, 0) == same_day()
    assert risk_override(policy, 1, 0) is None
    assert risk_override(policy, 2, 0) is None
    assert risk_override(policy, 2, 2) == same_day()


def test_policy_without_an_override_never_overrides() -> None:
    policy = make_policy([WD5, WD5], override=None)
    assert risk_override(policy, 0, 0) is None
    assert risk_override(policy, 1, 0) is None
    plan = explain(policy, CAL, utc(2027, 7, 7, 9), immediate_risk=True)
    assert plan == explain(policy, CAL, utc(2027, 7, 7, 9))


# --- stage_deadline: whichever is less ------------------------------------------------


def test_override_never_lengthens_a_stage() -> None:
    start = london(2027, 7, 7, 10)
    assert stage_deadline(CAL, wd(1), start, wd(2)) == CAL.add_working_days(start, 1)
    assert iso_utc(stage_deadline(CAL, wd(1), start, wd(2))) == "2027-07-08T16:00:00+00:00"


def test_override_shortens_a_stage() -> None:
    start = london(2027, 7, 7, 10)
    assert iso_utc(stage_deadline(CAL, wd(5), start, wd(2))) == "2027-07-09T16:00:00+00:00"
    assert iso_utc(stage_deadline(CAL, wd(5), start, same_day())) == "2027-07-07T16:00:00+00:00"
    hours = Hours(hours=48, source=SRC)
    assert iso_utc(stage_deadline(CAL, wd(5), start, hours)) == "2027-07-09T09:00:00+00:00"
    # A 1 WD stage ends before 48 hours are up.
    assert iso_utc(stage_deadline(CAL, wd(1), start, hours)) == "2027-07-08T16:00:00+00:00"


def test_no_timescale_stage_takes_the_override() -> None:
    start = london(2027, 7, 7, 10)
    assert stage_deadline(CAL, none(), start) is None
    assert stage_deadline(CAL, none(), start, None) is None
    assert iso_utc(stage_deadline(CAL, none(), start, same_day())) == "2027-07-07T16:00:00+00:00"
    # After close of business the same working day is the next working day.
    late = london(2027, 7, 9, 18)
    assert iso_utc(stage_deadline(CAL, none(), late, same_day())) == "2027-07-12T16:00:00+00:00"
    assert iso_utc(stage_deadline(CAL, none(), start, wd(2))) == "2027-07-09T16:00:00+00:00"


def test_stage_deadline_without_override_is_the_calendar_deadline() -> None:
    start = london(2027, 3, 25, 12)
    for timescale in (wd(1), wd(5), same_day(), Hours(hours=72, source=SRC), none()):
        assert stage_deadline(CAL, timescale, start) == CAL.deadline(start, timescale)


def test_earliest_compares_instants_not_wall_clocks() -> None:
    # 17:00 BST is 16:00 UTC, so it is earlier than 16:30 UTC although its
    # wall clock reads later: mixed zones must be compared as instants.
    bst_close = london(2027, 7, 7, 17)
    assert earliest(bst_close, utc(2027, 7, 7, 16, 30)) == bst_close
    assert earliest(None, bst_close) == bst_close
    assert earliest(None, None) is None
    assert earliest() is None


# --- Stages with no timescale -----------------------------------------------------------


def test_stage_without_timescale_stops_the_ladder() -> None:
    policy = make_policy([WD5, NONE, WD5, NONE])
    raised = utc(2027, 12, 22, 10)
    plan = explain(policy, CAL, raised)
    assert [p.index for p in plan] == [0, 1, 2, 3]
    assert iso_utc(plan[0].deadline) == "2027-12-31T17:00:00+00:00"
    assert plan[1].starts == plan[0].deadline
    assert plan[1].deadline is None
    assert plan[1].timescale == "no written timescale"
    # Nothing starts by itself after a stage with no timescale, even a stage
    # that has one.
    assert plan[2].starts is None and plan[2].deadline is None
    assert plan[3].starts is None and plan[3].deadline is None


def test_first_stage_without_timescale() -> None:
    policy = make_policy([NONE, NONE])
    plan = explain(policy, CAL, utc(2027, 7, 7, 9))
    assert plan[0].starts == utc(2027, 7, 7, 9)
    assert plan[0].deadline is None
    assert plan[1].starts is None and plan[1].deadline is None


def test_current_stage_same_working_day_override_in_explain() -> None:
    # Wirral's shape: 5 WD then no timescales; immediate risk is the same
    # working day for the current stage only.
    policy = make_policy([WD5, NONE, NONE, NONE], override=SAME, applies_to="current-stage")
    raised = london(2027, 7, 7, 10)
    plan = explain(policy, CAL, raised, immediate_risk=True)
    assert iso_utc(plan[0].deadline) == "2027-07-07T16:00:00+00:00"
    assert plan[0].timescale == "5 working days (immediate risk: same working day)"
    assert plan[1].starts == plan[0].deadline and plan[1].deadline is None
    assert plan[1].timescale == "no written timescale"
    assert plan[2].starts is None


def test_current_and_later_same_working_day_override_moves_a_day_per_stage() -> None:
    # Each stage starts at 17:00, i.e. at close of business, so each same
    # working day deadline is the next working day's close.
    policy = make_policy([NONE, NONE, NONE], override=SAME)
    plan = explain(policy, CAL, london(2027, 7, 8, 10), immediate_risk=True)  # Thursday
    assert [iso_utc(p.deadline) for p in plan] == [
        "2027-07-08T16:00:00+00:00",
        "2027-07-09T16:00:00+00:00",
        "2027-07-12T16:00:00+00:00",  # over the weekend
    ]
    assert all(
        p.timescale == "no written timescale (immediate risk: same working day)" for p in plan
    )


def test_hours_stage_in_explain() -> None:
    policy = make_policy([{"kind": "hours", "hours": 48}, WD1])
    raised = london(2027, 3, 26, 12)  # Good Friday, GMT; BST starts on Sunday
    plan = explain(policy, CAL, raised)
    assert iso_utc(plan[0].deadline) == "2027-03-28T12:00:00+00:00"  # 13:00 BST Sunday
    assert plan[1].starts == plan[0].deadline
    # Sunday's start does not count; Monday is Easter Monday.
    assert iso_utc(plan[1].deadline) == "2027-03-30T16:00:00+00:00"


def test_explain_refuses_naive_raised(merton: Policy, merton_calendar: WorkingDayCalendar) -> None:
    with pytest.raises(ValueError):
        explain(merton, merton_calendar, datetime(2027, 12, 22, 10))


# --- Wirral and Hillingdon, once their policy files exist ---------------------------


def test_wirral_explain() -> None:
    wirral = get_policy("wirral")
    cal = WorkingDayCalendar(wirral.calendar_spec())
    raised = utc(2027, 12, 22, 10)
    plan = explain(wirral, cal, raised)
    assert len(plan) == 4
    assert iso_utc(plan[0].deadline) == "2027-12-31T17:00:00+00:00"
    assert plan[1].starts == plan[0].deadline
    assert all(p.deadline is None for p in plan[1:])
    assert all(p.starts is None for p in plan[2:])

    risky = explain(wirral, cal, raised, immediate_risk=True)
    assert iso_utc(risky[0].deadline) == "2027-12-22T17:00:00+00:00"
    assert risky[1].starts == risky[0].deadline
    assert risky[1].deadline is None
    assert all(p.starts is None for p in risky[2:])


def test_hillingdon_explain_has_no_deadlines_even_under_risk() -> None:
    hillingdon = get_policy("hillingdon")
    cal = WorkingDayCalendar(hillingdon.calendar_spec())
    raised = utc(2027, 12, 22, 10)
    for risk in (False, True):
        plan = explain(hillingdon, cal, raised, immediate_risk=risk)
        assert plan[0].starts == raised
        assert all(p.deadline is None for p in plan)
        assert all(p.starts is None for p in plan[1:])


def test_merton_calendar_spec_is_the_default(
    merton: Policy, merton_calendar: WorkingDayCalendar
) -> None:
    assert merton.calendar_spec() == CalendarSpec()
    assert not merton_calendar.is_working_day(date(2027, 12, 28))
    assert merton_calendar.is_working_day(date(2027, 12, 29))
