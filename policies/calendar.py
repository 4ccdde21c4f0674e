"""Working-day arithmetic, exactly as DESIGN.md section 3 sets it out.

A working day is Monday to Friday, except the public holidays of the
partnership's nation (from the ``holidays`` package, always with a
subdivision) and any extra closure dates the deployment configures. Every
instant going in or out is timezone-aware; deadlines fall at close of
business in the partnership's own zone, so daylight saving is honoured by
construction.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

from policies.model import (
    CalendarSpec,
    Hours,
    Immediately,
    NoTimescale,
    SameWorkingDay,
    WorkingDays,
)

# A stretch of consecutive non-working days longer than this means the
# configuration is wrong (e.g. a whole year of closures); refusing beats
# looping for ever.
_MAX_CLOSED_RUN = 366


@lru_cache(maxsize=64)
def _public_holidays(nation: str, year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays("GB", subdiv=nation, years=year).keys())


class WorkingDayCalendar:
    def __init__(self, spec: CalendarSpec, extra_closures: Iterable[date] = ()) -> None:
        self.spec = spec
        self.zone = ZoneInfo(spec.time_zone)
        self.extra_closures = frozenset(extra_closures)

    # --- Days ---------------------------------------------------------------

    def is_working_day(self, day: date) -> bool:
        if day.weekday() >= 5 or day in self.extra_closures:
            return False
        return day not in _public_holidays(self.spec.nation, day.year)

    def next_working_day(self, day: date) -> date:
        """The first working day strictly after ``day``."""
        for _ in range(_MAX_CLOSED_RUN):
            day += timedelta(days=1)
            if self.is_working_day(day):
                return day
        raise ValueError(f"no working day within {_MAX_CLOSED_RUN} days after {day}")

    def working_days_between(self, start: date, end: date) -> int:
        """Working days d with start < d <= end."""
        count, day = 0, start
        while day < end:
            day += timedelta(days=1)
            count += self.is_working_day(day)
        return count

    # --- Instants -----------------------------------------------------------

    def local(self, instant: datetime) -> datetime:
        if instant.tzinfo is None:
            raise ValueError("instants must carry a time zone")
        return instant.astimezone(self.zone)

    def at_local_time(self, day: date, at: time) -> datetime:
        return datetime.combine(day, at, tzinfo=self.zone)

    def close_of_business(self, day: date) -> datetime:
        return self.at_local_time(day, self.spec.close_of_business)

    def start_of_business(self, day: date) -> datetime:
        return self.at_local_time(day, self.spec.start_of_business)

    def add_working_days(self, start: datetime, days: int) -> datetime:
        """Close of business on the N-th working day strictly after the start's
        local date; the start day never counts, whatever its time."""
        if days < 1:
            raise ValueError("working days must be at least 1; use same_working_day for 0")
        day = self.local(start).date()
        for _ in range(days):
            day = self.next_working_day(day)
        return self.close_of_business(day)

    def same_working_day(self, start: datetime) -> datetime:
        local = self.local(start)
        today = local.date()
        if self.is_working_day(today) and local < self.close_of_business(today):
            return self.close_of_business(today)
        return self.close_of_business(self.next_working_day(today))

    def deadline(
        self,
        start: datetime,
        timescale: WorkingDays | Hours | SameWorkingDay | Immediately | NoTimescale,
    ) -> datetime | None:
        """When a clock started at ``start`` runs out, or None if it never does."""
        if isinstance(timescale, WorkingDays):
            return self.add_working_days(start, timescale.days)
        if isinstance(timescale, Hours):
            # Elapsed time: arithmetic on a zoned datetime would be wall-clock
            # time and gain or lose an hour across a daylight-saving change.
            return self.local(start).astimezone(UTC) + timedelta(hours=timescale.hours)
        if isinstance(timescale, SameWorkingDay):
            return self.same_working_day(start)
        if isinstance(timescale, Immediately):
            return self.local(start).astimezone(UTC)
        return None

    def start_of_business_on_day_of(self, instant: datetime) -> datetime:
        return self.start_of_business(self.local(instant).date())
