"""The deadline activities fail for good, not for ever, on instants that no
retry can make work (the edge of the calendar)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.deadlines import DeadlineActivities
from policies.loader import get_policy
from policies.model import NoTimescale, WorkingDays
from workflows.messages import ClockRequest, ReminderRequest

FAR = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-14)))


def clock_request(**changes: object) -> ClockRequest:
    policy = get_policy("wirral")
    request = ClockRequest(
        calendar=policy.calendar_spec(),
        start=datetime(2026, 12, 1, 10, tzinfo=UTC),
        timescale=NoTimescale(source="test"),
        basis="shortened",
    )
    return request.model_copy(update=changes)


async def test_a_deadline_at_the_end_of_the_calendar_fails_for_good() -> None:
    acts = DeadlineActivities()
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(acts.plan_stage_clock, clock_request(fixed_deadline=FAR))
    assert caught.value.non_retryable and caught.value.type == "ImpossibleDeadline"
    assert "9999" not in caught.value.message


async def test_a_reminder_past_the_end_of_the_calendar_fails_for_good() -> None:
    request = ReminderRequest(
        calendar=get_policy("wirral").calendar_spec(),
        after=datetime(9999, 12, 30, tzinfo=UTC),
        every=WorkingDays(days=5, source="test"),
    )
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(DeadlineActivities().next_reminder, request)
    assert caught.value.non_retryable


async def test_an_ordinary_shortened_deadline_is_still_planned() -> None:
    soon = datetime(2026, 12, 2, 12, tzinfo=UTC)
    clock = await ActivityEnvironment().run(
        DeadlineActivities().plan_stage_clock, clock_request(fixed_deadline=soon)
    )
    assert clock.deadline == soon
