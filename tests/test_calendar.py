"""Working-day arithmetic (DESIGN.md section 3, normative).

Example tests pin the rules to dates a reader can check on a wall calendar;
the property tests check the same rules against an independent oracle built
straight from the ``holidays`` package over thousands of start instants.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.calendar import WorkingDayCalendar
from policies.model import (
    CalendarSpec,
    Hours,
    Nation,
    NoTimescale,
    SameWorkingDay,
    WorkingDays,
)

LONDON = ZoneInfo("Europe/London")
CAL = WorkingDayCalendar(CalendarSpec())
SRC = "test"


def london(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=LONDON)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def wd(days: int) -> WorkingDays:
    return WorkingDays(days=days, source=SRC)


def cob_utc(day: date, utc_hour: int) -> datetime:
    """Close of business on ``day`` expressed in UTC, asserting the offset."""
    return datetime.combine(day, time(utc_hour), tzinfo=UTC)


def assert_same_instant(actual: datetime | None, expected: datetime) -> None:
    # Compare in UTC: Python compares two datetimes sharing a tzinfo by wall
    # clock, which would hide an offset error.
    assert actual is not None
    assert actual.tzinfo is not None
    assert actual.astimezone(UTC) == expected.astimezone(UTC), (actual, expected)


# --- DESIGN.md's worked example ---------------------------------------------


def test_design_worked_example_christmas_2026() -> None:
    start = london(2026, 12, 23, 11, 0)
    result = CAL.add_working_days(start, 5)
    assert_same_instant(result, utc(2027, 1, 4, 17, 0))
    assert result.astimezone(LONDON).utcoffset() == timedelta(0)  # GMT
    assert CAL.deadline(start, wd(5)) == result
    # The five days the example lists, one at a time.
    days = [CAL.local(CAL.add_working_days(start, n)).date() for n in range(1, 6)]
    assert days == [
        date(2026, 12, 24),
        date(2026, 12, 29),
        date(2026, 12, 30),
        date(2026, 12, 31),
        date(2027, 1, 4),
    ]


# --- England's bank holidays --------------------------------------------------


@pytest.mark.parametrize(
    "day",
    [
        date(2026, 1, 1),  # New Year's Day (Thu)
        date(2026, 4, 3),  # Good Friday
        date(2026, 4, 6),  # Easter Monday
        date(2026, 5, 4),  # early May bank holiday
        date(2026, 5, 25),  # spring bank holiday
        date(2026, 8, 31),  # late summer bank holiday
        date(2026, 12, 25),  # Christmas Day (Fri)
        date(2026, 12, 28),  # Boxing Day (Sat) observed on Mon 28
        date(2027, 1, 1),  # New Year's Day (Fri)
        date(2027, 3, 26),  # Good Friday
        date(2027, 3, 29),  # Easter Monday
        date(2027, 5, 3),  # early May bank holiday
        date(2027, 5, 31),  # spring bank holiday
        date(2027, 8, 30),  # late summer bank holiday
        date(2027, 12, 27),  # Christmas Day (Sat) observed on Mon 27
        date(2027, 12, 28),  # Boxing Day (Sun) observed on Tue 28
    ],
)
def test_england_bank_holidays_are_not_working_days(day: date) -> None:
    assert day.weekday() < 5
    assert not CAL.is_working_day(day)


@pytest.mark.parametrize(
    "day",
    [
        date(2026, 12, 24),
        date(2026, 12, 29),
        date(2027, 1, 4),
        date(2027, 3, 25),
        date(2027, 3, 30),
        date(2027, 8, 2),  # Scotland's summer bank holiday, not England's
        date(2027, 12, 29),
    ],
)
def test_ordinary_weekdays_are_working_days(day: date) -> None:
    assert CAL.is_working_day(day)


@pytest.mark.parametrize("day", [date(2027, 12, 25), date(2027, 12, 26), date(2026, 12, 26)])
def test_weekend_holidays_are_not_working_days(day: date) -> None:
    assert not CAL.is_working_day(day)


@pytest.mark.parametrize(
    ("start", "days", "expected_day"),
    [
        # Boxing Day 2026 falls on Saturday: observed Monday 28 December.
        (london(2026, 12, 24, 10), 1, date(2026, 12, 29)),
        # 2027: Christmas observed Mon 27, Boxing Day observed Tue 28.
        (london(2027, 12, 24, 10), 1, date(2027, 12, 29)),
        (london(2027, 12, 23, 10), 2, date(2027, 12, 29)),
        # New Year's Day 2027 is a Friday.
        (london(2026, 12, 31, 10), 1, date(2027, 1, 4)),
        # Easter 2027: Good Friday 26 March, Easter Monday 29 March.
        (london(2027, 3, 25, 10), 1, date(2027, 3, 30)),
        (london(2027, 3, 24, 10), 2, date(2027, 3, 30)),
        # Late summer bank holidays: Mon 31 Aug 2026 and Mon 30 Aug 2027.
        (london(2026, 8, 28, 10), 1, date(2026, 9, 1)),
        (london(2027, 8, 27, 10), 1, date(2027, 8, 31)),
        # Early May (Mon 3 May 2027) and spring (Mon 31 May 2027) bank holidays.
        (london(2027, 4, 30, 10), 1, date(2027, 5, 4)),
        (london(2027, 5, 28, 10), 1, date(2027, 6, 1)),
        (london(2026, 5, 1, 10), 1, date(2026, 5, 5)),
        (london(2026, 5, 22, 10), 1, date(2026, 5, 26)),
    ],
)
def test_holidays_are_skipped(start: datetime, days: int, expected_day: date) -> None:
    result = CAL.add_working_days(start, days)
    assert CAL.local(result).date() == expected_day
    assert CAL.local(result).time() == time(17, 0)


# --- Daylight saving ------------------------------------------------------------


def test_summer_deadline_is_1600_utc_and_winter_1700_utc() -> None:
    summer = CAL.add_working_days(london(2027, 7, 7, 10), 1)
    winter = CAL.add_working_days(london(2027, 1, 13, 10), 1)
    assert_same_instant(summer, utc(2027, 7, 8, 16))
    assert_same_instant(winter, utc(2027, 1, 14, 17))


@pytest.mark.parametrize(
    ("start", "days", "expected_utc"),
    [
        # BST starts Sun 28 Mar 2027. Fri 26 is Good Friday and Mon 29 Easter
        # Monday, so a clock started on Thu 25 (GMT) first runs out on Tue 30
        # at 17:00 BST.
        (utc(2027, 3, 25, 12), 1, utc(2027, 3, 30, 16)),
        (utc(2027, 3, 26, 12), 1, utc(2027, 3, 30, 16)),  # started on Good Friday
        # BST starts Sun 29 Mar 2026; Fri 27 Mar 2026 is an ordinary Friday.
        (utc(2026, 3, 27, 12), 1, utc(2026, 3, 30, 16)),
        (utc(2026, 3, 27, 12), 5, utc(2026, 4, 7, 16)),  # ... and across Easter 2026
        # BST ends Sun 31 Oct 2027: Fri 29 Oct (BST) -> Mon 1 Nov 17:00 GMT.
        (london(2027, 10, 29, 12), 1, utc(2027, 11, 1, 17)),
        # BST ends Sun 25 Oct 2026: Fri 23 Oct (BST) -> Mon 26 Oct 17:00 GMT.
        (london(2026, 10, 23, 12), 1, utc(2026, 10, 26, 17)),
    ],
)
def test_clock_started_before_a_dst_change(
    start: datetime, days: int, expected_utc: datetime
) -> None:
    result = CAL.add_working_days(start, days)
    assert_same_instant(result, expected_utc)
    assert CAL.local(result).time() == time(17, 0)


def test_same_working_day_on_a_dst_change_day_boundary() -> None:
    # Friday before BST ends: the same working day is that Friday at 17:00 BST.
    assert_same_instant(CAL.same_working_day(london(2027, 10, 29, 9)), utc(2027, 10, 29, 16))
    # Saturday before BST starts (Easter weekend 2027): Tue 30 Mar 17:00 BST.
    assert_same_instant(CAL.same_working_day(london(2027, 3, 27, 9)), utc(2027, 3, 30, 16))


# --- Where the clock starts -------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "expected_day"),
    [
        (london(2027, 7, 7, 10, 0), date(2027, 7, 8)),  # Wednesday morning
        (london(2027, 7, 7, 0, 0), date(2027, 7, 8)),  # Wednesday 00:00
        (london(2027, 7, 7, 23, 59), date(2027, 7, 8)),  # Wednesday 23:59
        (london(2027, 7, 7, 17, 0), date(2027, 7, 8)),  # exactly close of business
        (london(2027, 7, 7, 18, 30), date(2027, 7, 8)),  # after close of business
        (london(2027, 7, 9, 17, 30), date(2027, 7, 12)),  # Friday evening
        (london(2027, 7, 10, 10, 0), date(2027, 7, 12)),  # Saturday
        (london(2027, 7, 11, 23, 59), date(2027, 7, 12)),  # Sunday 23:59
        (london(2027, 8, 30, 10, 0), date(2027, 8, 31)),  # on a bank holiday
        (london(2027, 12, 25, 10, 0), date(2027, 12, 29)),  # Christmas Day (Sat)
    ],
)
def test_start_day_never_counts(start: datetime, expected_day: date) -> None:
    result = CAL.add_working_days(start, 1)
    assert CAL.local(result).date() == expected_day
    assert CAL.local(result).time() == time(17, 0)


def test_local_date_not_utc_date_decides_the_start_day() -> None:
    # 23:30 UTC on Wed 7 July 2027 is 00:30 BST on Thu 8 July: Thursday is the
    # start day and does not count, so one working day is Friday.
    start = utc(2027, 7, 7, 23, 30)
    assert CAL.local(start).date() == date(2027, 7, 8)
    assert_same_instant(CAL.add_working_days(start, 1), utc(2027, 7, 9, 16))
    # In winter 23:30 UTC is 23:30 GMT, the same date.
    assert_same_instant(CAL.add_working_days(utc(2027, 1, 13, 23, 30), 1), utc(2027, 1, 14, 17))


def test_other_time_zones_are_converted_to_london_first() -> None:
    # 08:00 in Auckland on Thursday is still Wednesday evening in London.
    start = datetime(2027, 7, 8, 8, 0, tzinfo=ZoneInfo("Pacific/Auckland"))
    assert CAL.local(start).date() == date(2027, 7, 7)
    assert_same_instant(CAL.add_working_days(start, 1), utc(2027, 7, 8, 16))


# --- Same working day ---------------------------------------------------------------


def same_day(start: datetime) -> datetime | None:
    return CAL.deadline(start, SameWorkingDay(source=SRC))


@pytest.mark.parametrize(
    ("start", "expected_utc"),
    [
        (london(2027, 7, 7, 0, 0), utc(2027, 7, 7, 16)),  # midnight: that day
        (london(2027, 7, 7, 10, 0), utc(2027, 7, 7, 16)),  # morning: that day
        (london(2027, 7, 7, 16, 59, 59), utc(2027, 7, 7, 16)),  # just before close
        (london(2027, 7, 7, 17, 0), utc(2027, 7, 8, 16)),  # at close: next day
        (london(2027, 7, 7, 17, 30), utc(2027, 7, 8, 16)),  # after close: next day
        (london(2027, 7, 9, 17, 30), utc(2027, 7, 12, 16)),  # Friday evening: Monday
        (london(2027, 7, 10, 10, 0), utc(2027, 7, 12, 16)),  # Saturday: Monday
        (london(2027, 7, 11, 10, 0), utc(2027, 7, 12, 16)),  # Sunday: Monday
        (london(2027, 8, 30, 10, 0), utc(2027, 8, 31, 16)),  # bank holiday: next day
        (london(2027, 3, 26, 10, 0), utc(2027, 3, 30, 16)),  # Good Friday: Tue after Easter
        (london(2027, 12, 24, 17, 0), utc(2027, 12, 29, 17)),  # Christmas Eve at close
        (london(2027, 1, 13, 10, 0), utc(2027, 1, 13, 17)),  # winter: 17:00 UTC
    ],
)
def test_same_working_day(start: datetime, expected_utc: datetime) -> None:
    assert_same_instant(same_day(start), expected_utc)
    assert same_day(start) == CAL.same_working_day(start)


def test_same_working_day_uses_local_date() -> None:
    # 23:30 UTC Wed 7 July 2027 is 00:30 BST Thursday: Thursday 17:00 BST.
    assert_same_instant(same_day(utc(2027, 7, 7, 23, 30)), utc(2027, 7, 8, 16))
    # 16:30 UTC in summer is 17:30 BST, after close: the next working day.
    assert_same_instant(same_day(utc(2027, 7, 7, 16, 30)), utc(2027, 7, 8, 16))
    # 16:30 UTC in winter is 16:30 GMT, before close: the same day.
    assert_same_instant(same_day(utc(2027, 1, 13, 16, 30)), utc(2027, 1, 13, 17))


# --- Hours ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "expected_local_time"),
    [
        # Saturday 12:00 GMT + 48 h crosses the start of BST: 13:00 BST Monday.
        (london(2027, 3, 27, 12, 0), time(13, 0)),
        # Saturday 12:00 BST + 48 h crosses the end of BST: 11:00 GMT Monday.
        (london(2027, 10, 30, 12, 0), time(11, 0)),
        # No change of clocks: the same wall-clock time.
        (london(2027, 7, 7, 12, 0), time(12, 0)),
    ],
)
def test_hours_are_elapsed_time_across_dst(start: datetime, expected_local_time: time) -> None:
    result = CAL.deadline(start, Hours(hours=48, source=SRC))
    assert result is not None
    assert result.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=48)
    assert CAL.local(result).time() == expected_local_time


def test_hours_ignore_working_days() -> None:
    # Friday 10:00 + 72 h is Monday 10:00 even over a bank holiday weekend.
    start = london(2027, 8, 27, 10, 0)
    result = CAL.deadline(start, Hours(hours=72, source=SRC))
    assert_same_instant(result, london(2027, 8, 30, 10, 0))


# --- Refusals and the none timescale -------------------------------------------------


def test_no_timescale_has_no_deadline() -> None:
    assert CAL.deadline(london(2027, 7, 7, 10), NoTimescale(source=SRC)) is None


@pytest.mark.parametrize(
    "timescale",
    [wd(1), Hours(hours=48, source=SRC), SameWorkingDay(source=SRC)],
)
def test_naive_datetimes_are_refused(timescale: WorkingDays | Hours | SameWorkingDay) -> None:
    naive = datetime(2027, 7, 7, 10, 0)
    with pytest.raises(ValueError):
        CAL.deadline(naive, timescale)


def test_naive_datetimes_are_refused_by_each_entry_point() -> None:
    naive = datetime(2027, 7, 7, 10, 0)
    with pytest.raises(ValueError):
        CAL.add_working_days(naive, 1)
    with pytest.raises(ValueError):
        CAL.same_working_day(naive)
    with pytest.raises(ValueError):
        CAL.local(naive)


@pytest.mark.parametrize("days", [0, -1])
def test_zero_or_negative_working_days_are_refused(days: int) -> None:
    with pytest.raises(ValueError):
        CAL.add_working_days(london(2027, 7, 7, 10), days)


# --- Extra closures --------------------------------------------------------------------


def test_extra_closure_dates_are_skipped() -> None:
    closures = [date(2027, 7, 8), date(2027, 7, 9)]
    cal = WorkingDayCalendar(CalendarSpec(), extra_closures=closures)
    assert not cal.is_working_day(date(2027, 7, 8))
    assert CAL.is_working_day(date(2027, 7, 8))
    start = london(2027, 7, 7, 10)
    assert_same_instant(cal.add_working_days(start, 1), utc(2027, 7, 12, 16))
    assert_same_instant(cal.add_working_days(start, 2), utc(2027, 7, 13, 16))
    assert_same_instant(cal.same_working_day(london(2027, 7, 8, 10)), utc(2027, 7, 12, 16))
    assert cal.working_days_between(date(2027, 7, 7), date(2027, 7, 13)) == 2


def test_extra_closure_as_the_start_day_still_never_counts() -> None:
    cal = WorkingDayCalendar(CalendarSpec(), extra_closures=[date(2027, 7, 7)])
    assert_same_instant(cal.add_working_days(london(2027, 7, 7, 10), 1), utc(2027, 7, 8, 16))


def test_closing_every_day_is_an_error_not_a_hang() -> None:
    start = date(2027, 1, 1)
    closures = [start + timedelta(days=i) for i in range(800)]
    cal = WorkingDayCalendar(CalendarSpec(), extra_closures=closures)
    with pytest.raises(ValueError):
        cal.add_working_days(london(2027, 1, 1, 10), 1)


# --- Other nations -----------------------------------------------------------------------


def nation(code: Nation) -> WorkingDayCalendar:
    return WorkingDayCalendar(CalendarSpec(nation=code))


def one_wd_day(cal: WorkingDayCalendar, start: datetime) -> date:
    return cal.local(cal.add_working_days(start, 1)).date()


def test_scotland_differs_from_england() -> None:
    sct = nation("SCT")
    # New Year 2027: 1 Jan is a Friday and 2 Jan (a Scottish holiday) a
    # Saturday, so Scotland observes it on Monday 4 January.
    assert holidays.country_holidays("GB", subdiv="SCT", years=2027).get(date(2027, 1, 4))
    new_year = london(2026, 12, 31, 10)
    assert one_wd_day(CAL, new_year) == date(2027, 1, 4)
    assert one_wd_day(sct, new_year) == date(2027, 1, 5)
    # 2 January on a weekday (Friday 2 Jan 2026) is a holiday only in Scotland.
    assert CAL.is_working_day(date(2026, 1, 2))
    assert not sct.is_working_day(date(2026, 1, 2))
    # St Andrew's Day, Sunday 30 Nov 2025, is observed on Monday 1 December.
    assert one_wd_day(CAL, london(2025, 11, 28, 10)) == date(2025, 12, 1)
    assert one_wd_day(sct, london(2025, 11, 28, 10)) == date(2025, 12, 2)
    # St Andrew's Day on a weekday: Tuesday 30 Nov 2027.
    assert not sct.is_working_day(date(2027, 11, 30))
    assert CAL.is_working_day(date(2027, 11, 30))
    # Easter Monday is not a Scottish bank holiday.
    assert one_wd_day(CAL, london(2027, 3, 25, 10)) == date(2027, 3, 30)
    assert one_wd_day(sct, london(2027, 3, 25, 10)) == date(2027, 3, 29)
    # Summer bank holiday is the first Monday in August, not the last.
    assert not sct.is_working_day(date(2027, 8, 2))
    assert sct.is_working_day(date(2027, 8, 30))


def test_northern_ireland_differs_from_england() -> None:
    nir = nation("NIR")
    # St Patrick's Day, Wednesday 17 March 2027.
    assert one_wd_day(CAL, london(2027, 3, 16, 10)) == date(2027, 3, 17)
    assert one_wd_day(nir, london(2027, 3, 16, 10)) == date(2027, 3, 18)
    # Battle of the Boyne, Monday 12 July 2027.
    assert one_wd_day(CAL, london(2027, 7, 9, 10)) == date(2027, 7, 12)
    assert one_wd_day(nir, london(2027, 7, 9, 10)) == date(2027, 7, 13)
    # Sunday 12 July 2026 is observed on Monday 13 July.
    assert not nir.is_working_day(date(2026, 7, 13))
    assert CAL.is_working_day(date(2026, 7, 13))


def test_wales_shares_englands_bank_holidays() -> None:
    # The holidays package gives Wales exactly England's bank holidays; check
    # that the calendars agree on every day of 2024-2032 so that a future
    # Welsh holiday shows up here as a deliberate change.
    wls = nation("WLS")
    day, end = date(2024, 1, 1), date(2032, 12, 31)
    while day <= end:
        assert wls.is_working_day(day) == CAL.is_working_day(day), day
        day += timedelta(days=1)
    assert_same_instant(wls.add_working_days(london(2026, 12, 23, 11), 5), utc(2027, 1, 4, 17))


@pytest.mark.parametrize("code", ["ENG", "WLS", "SCT", "NIR"])
def test_each_nation_matches_the_holidays_package(code: Nation) -> None:
    cal = nation(code)
    table = holidays.country_holidays("GB", subdiv=code, years=range(2026, 2028))
    day = date(2026, 1, 1)
    while day.year < 2028:
        expected = day.weekday() < 5 and day not in table
        assert cal.is_working_day(day) == expected, (code, day)
        day += timedelta(days=1)


# --- Properties -----------------------------------------------------------------------

_ORACLE = holidays.country_holidays("GB", subdiv="ENG", years=range(2023, 2036))


def oracle_is_working(day: date) -> bool:
    return day.weekday() < 5 and day not in _ORACLE


def oracle_count(after: date, through: date) -> int:
    """Working days d with after < d <= through, independently of the calendar."""
    count, day = 0, after
    while day < through:
        day += timedelta(days=1)
        count += oracle_is_working(day)
    return count


ZONES = [UTC, LONDON, ZoneInfo("America/New_York"), ZoneInfo("Pacific/Auckland")]

instants = st.datetimes(
    min_value=datetime(2024, 1, 1),
    max_value=datetime(2032, 12, 31, 23, 59, 59),
    timezones=st.sampled_from(ZONES),
    allow_imaginary=False,
)
# Bias towards the awkward moments: midnight, close of business, DST days,
# the Christmas and Easter holidays.
awkward = st.builds(
    lambda day, t: datetime.combine(day, t, tzinfo=LONDON),
    st.sampled_from(
        [
            date(2026, 12, 23),
            date(2026, 12, 24),
            date(2026, 12, 26),
            date(2027, 12, 24),
            date(2027, 12, 31),
            date(2027, 3, 25),
            date(2027, 3, 26),
            date(2027, 3, 28),
            date(2027, 10, 29),
            date(2027, 10, 31),
            date(2028, 4, 13),
            date(2031, 12, 31),
        ]
    ),
    st.sampled_from([time(0, 0), time(8, 59), time(16, 59, 59), time(17, 0), time(23, 59)]),
)
starts = st.one_of(instants, awkward)
counts = st.integers(min_value=1, max_value=30)

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None)


def utc_of(instant: datetime) -> datetime:
    return instant.astimezone(UTC)


@PROPERTY_SETTINGS
@given(start=starts, n=counts)
def test_property_n_working_days(start: datetime, n: int) -> None:
    result = CAL.add_working_days(start, n)
    local = result.astimezone(LONDON)
    start_day = start.astimezone(LONDON).date()
    # At close of business, in London, on a working day.
    assert local.time() == time(17, 0)
    assert local.utcoffset() in (timedelta(0), timedelta(hours=1))
    assert oracle_is_working(local.date())
    # Strictly after the start; the start day never counts; exactly N working
    # days in (start date, result date] and the result is the N-th of them.
    assert utc_of(result) > utc_of(start)
    assert local.date() > start_day
    assert oracle_count(start_day, local.date()) == n
    assert CAL.working_days_between(start_day, local.date()) == n
    # The deadline helper agrees.
    assert CAL.deadline(start, wd(n)) == result


@PROPERTY_SETTINGS
@given(start=starts, n=counts)
def test_property_monotonic(start: datetime, n: int) -> None:
    earlier = CAL.add_working_days(start, n)
    later = CAL.add_working_days(start, n + 1)
    assert utc_of(later) > utc_of(earlier)
    # Nothing working lies strictly between the two result dates.
    assert oracle_count(earlier.astimezone(LONDON).date(), later.astimezone(LONDON).date()) == 1


@PROPERTY_SETTINGS
@given(start=starts, n=counts, m=counts)
def test_property_composition(start: datetime, n: int, m: int) -> None:
    first = CAL.add_working_days(start, n)
    assert utc_of(CAL.add_working_days(first, m)) == utc_of(CAL.add_working_days(start, n + m))


@PROPERTY_SETTINGS
@given(start=starts)
def test_property_same_working_day(start: datetime) -> None:
    result = CAL.same_working_day(start)
    local_start = start.astimezone(LONDON)
    local = result.astimezone(LONDON)
    assert utc_of(result) > utc_of(start)
    assert local.time() == time(17, 0)
    assert oracle_is_working(local.date())
    # Nothing working is skipped between the start day and the result day.
    assert oracle_count(local_start.date(), local.date()) <= 1
    if oracle_is_working(local_start.date()) and local_start.time() < time(17, 0):
        assert local.date() == local_start.date()
    else:
        assert local.date() > local_start.date()
        assert oracle_count(local_start.date(), local.date()) == 1
        assert utc_of(result) == utc_of(CAL.add_working_days(start, 1))


@PROPERTY_SETTINGS
@given(start=starts, hours=st.integers(min_value=1, max_value=24 * 30))
def test_property_hours_are_elapsed(start: datetime, hours: int) -> None:
    result = CAL.deadline(start, Hours(hours=hours, source=SRC))
    assert result is not None
    assert utc_of(result) - utc_of(start) == timedelta(hours=hours)
