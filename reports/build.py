"""One report for a partnership and a period, as the CLI, the schedule's
activity and the API build it."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine

from policies.directory import Directory
from policies.model import Policy
from reports.figures import Figures, compute
from reports.period import Period, PeriodError


def directory_agencies(directory: Directory | None, policy_id: str) -> list[tuple[str, str]]:
    """Every agency the role directory lists for the partnership (key, name)."""
    entry = directory.partnership(policy_id) if directory else None
    if entry is None:
        return []
    found: dict[str, str] = {}
    for area in entry.areas.values():
        for key, agency in area.agencies.items():
            found.setdefault(key, agency.name)
    for key, agency in entry.agencies.items():
        found.setdefault(key, agency.name)
    return sorted(found.items())


def check_not_future(period: Period, policy: Policy, now: datetime) -> None:
    start, _ = period.bounds(policy.time_zone)
    if start > now:
        raise PeriodError(f"{period.label} has not begun yet")


def build(
    engine: Engine,
    policy: Policy,
    period: Period,
    now: datetime | None = None,
    directory: Directory | None = None,
) -> Figures:
    now = now or datetime.now(UTC)
    check_not_future(period, policy, now)
    return compute(engine, policy, period, now, directory_agencies(directory, policy.id))
