"""The period a report covers: a quarter (``2027-Q1``) or whole days from one
date to another, in the partnership's own time zone."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

_QUARTER = re.compile(r"(\d{4})-Q([1-4])")


class PeriodError(ValueError):
    """What the user asked for is not a period a report can cover."""


@dataclass(frozen=True)
class Period:
    first: date  # inclusive
    last: date  # inclusive
    label: str

    @classmethod
    def quarter(cls, year: int, q: int) -> Period:
        first = date(year, 3 * q - 2, 1)
        return cls(first, _next_quarter_start(first) - timedelta(days=1), f"{year}-Q{q}")

    @classmethod
    def parse_quarter(cls, text: str) -> Period:
        found = _QUARTER.fullmatch(text.strip().upper())
        if not found:
            raise PeriodError(f"--quarter: cannot read {text!r}; expected YYYY-Qn, e.g. 2027-Q1")
        return cls.quarter(int(found[1]), int(found[2]))

    @classmethod
    def days(cls, first: date, last: date) -> Period:
        if first > last:
            raise PeriodError("--from is after --to")
        return cls(first, last, f"{first.isoformat()} to {last.isoformat()}")

    @classmethod
    def containing(cls, day: date) -> Period:
        return cls.quarter(day.year, (day.month - 1) // 3 + 1)

    @property
    def is_quarter(self) -> bool:
        return _QUARTER.fullmatch(self.label) is not None

    def bounds(self, zone: str) -> tuple[datetime, datetime]:
        """The period as instants [start, end): midnight to midnight, local."""
        tz = ZoneInfo(zone)
        return (
            datetime.combine(self.first, time(), tz),
            datetime.combine(self.last + timedelta(days=1), time(), tz),
        )

    def previous(self) -> Period:
        """The quarter before, or as many days just before."""
        if self.is_quarter:
            return Period.containing(self.first - timedelta(days=1))
        length = self.last - self.first
        last = self.first - timedelta(days=1)
        return Period.days(last - length, last)

    def year_before(self) -> Period:
        if self.is_quarter:
            return Period.quarter(self.first.year - 1, (self.first.month - 1) // 3 + 1)
        return Period.days(_year_back(self.first), _year_back(self.last))

    def quarters_to_date(self, n: int = 8) -> list[Period]:
        """The last ``n`` quarters, oldest first, ending with the one this
        period ends in."""
        out = [Period.containing(self.last)]
        while len(out) < n:
            out.insert(0, out[0].previous())
        return out

    def describe(self) -> str:
        span = f"{_long(self.first)} to {_long(self.last)}"
        if self.is_quarter:
            return f"{self.label} ({span})"
        return span


def _next_quarter_start(first: date) -> date:
    return date(first.year + 1, 1, 1) if first.month == 10 else date(first.year, first.month + 3, 1)


def _year_back(day: date) -> date:
    try:
        return day.replace(year=day.year - 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year - 1, day=28)


def _long(day: date) -> str:
    return f"{day.day} {day:%B %Y}"
