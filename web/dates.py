"""Dates as the GOV.UK style guide writes them: "Tuesday 8 December 2026, 5pm"."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")


def _time(moment: datetime) -> str:
    hour = moment.hour % 12 or 12
    suffix = "am" if moment.hour < 12 else "pm"
    if moment.hour == 12 and moment.minute == 0:
        return "midday"
    if moment.hour == 0 and moment.minute == 0:
        return "midnight"
    minutes = f":{moment.minute:02d}" if moment.minute else ""
    return f"{hour}{minutes}{suffix}"


def long_date(moment: datetime | None, zone: ZoneInfo = LONDON) -> str:
    """Day, date and time in the partnership's time zone (every policy here
    is English, so Europe/London)."""
    if moment is None:
        return ""
    local = moment.astimezone(zone)
    return f"{local:%A} {local.day} {local:%B %Y}, {_time(local)}"


def short_date(moment: datetime | None, zone: ZoneInfo = LONDON) -> str:
    if moment is None:
        return ""
    local = moment.astimezone(zone)
    return f"{local.day} {local:%B %Y}"
