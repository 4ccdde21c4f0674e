"""Deadline arithmetic as activities (DESIGN.md section 3).

Working-day arithmetic reads holiday tables, which change when the
``holidays`` package is upgraded. Computing every instant here, outside the
workflow, records it in the case's history, so a running case keeps the
deadlines it was given even if next year's tables differ on replay.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

from temporalio import activity
from temporalio.exceptions import ApplicationError

from escalation.clitools import local_text
from policies.calendar import WorkingDayCalendar
from policies.ladder import stage_deadline
from policies.model import CalendarSpec
from workflows.messages import Clock, ClockRequest, ReminderRequest


def plan_clock(calendar: WorkingDayCalendar, request: ClockRequest) -> Clock:
    """A stage's clock: its deadline, the deadline day's morning reminder, the
    acknowledgement due and the first reminder. Pure, so the API can tell a
    raiser the deadline the worker's activity will record for the case."""
    if request.fixed_deadline is not None:
        deadline: datetime | None = request.fixed_deadline
    else:
        entry = None
        if request.entry_within is not None and request.entry_from is not None:
            entry = (request.entry_within, request.entry_from)
        deadline = stage_deadline(
            calendar,
            request.timescale,
            request.start,
            request.override,
            request.deadline_from,
            entry,
        )
    basis = request.basis
    if request.not_later_than is not None and (
        deadline is None or request.not_later_than <= deadline
    ):
        deadline, basis = request.not_later_than, "policy"
    day_reminder = None
    earliest_reminder = max(request.start, request.reminders_from or request.start)
    if deadline is not None:
        candidate = calendar.start_of_business_on_day_of(deadline)
        if earliest_reminder < candidate < deadline:
            day_reminder = candidate
    acknowledgement_due = None
    if request.acknowledgement is not None:
        due = calendar.deadline(request.start, request.acknowledgement)
        if due is not None and (deadline is None or due < deadline):
            acknowledgement_due = due
    next_reminder = None
    if deadline is None and request.reminder_every is not None:
        next_reminder = calendar.add_working_days(request.start, request.reminder_every.days)
    form_chase: list[datetime] = []
    if request.form_within is not None:
        form_chase = _form_chase(calendar, request, deadline)
    return Clock(
        form_chase=form_chase,
        form_due_text=local_text(form_chase[0], request.calendar.time_zone) if form_chase else None,
        started_at=request.start,
        deadline=deadline,
        deadline_text=local_text(deadline, request.calendar.time_zone) if deadline else None,
        deadline_basis=basis,
        deadline_day_reminder_at=day_reminder,
        acknowledgement_due=acknowledgement_due,
        next_reminder_at=next_reminder,
    )


# A form is chased at most this often (when it falls due, then at the
# reminder cadence while the stage lasts).
_MAX_FORM_CHASES = 12


def _form_chase(
    calendar: WorkingDayCalendar, request: ClockRequest, deadline: datetime | None
) -> list[datetime]:
    """When a form owed from the clock's start falls due, then each reminder
    at the cadence while the stage lasts."""
    assert request.form_within is not None
    due = calendar.add_working_days(request.start, request.form_within.days)
    every = request.reminder_every.days if request.reminder_every else 5
    chase = [due]
    while len(chase) < _MAX_FORM_CHASES:
        following = calendar.add_working_days(chase[-1], every)
        if deadline is not None and following >= deadline:
            break
        chase.append(following)
    return chase


def _impossible(what: str) -> ApplicationError:
    """Arithmetic that can never succeed (an instant at the edge of the
    calendar): retrying it would only fail again, for ever, so the activity
    fails for good and the workflow decides. The message names no instant:
    the instants come from what a person typed."""
    return ApplicationError(
        f"{what} cannot be worked out: an instant is beyond the calendar's range",
        type="ImpossibleDeadline",
        non_retryable=True,
    )


class DeadlineActivities:
    """Holds the deployment's extra closure dates (e.g. a council's closure
    days between Christmas and New Year), which are not in any policy."""

    def __init__(self, extra_closures: Iterable[date] = ()) -> None:
        self.extra_closures = frozenset(extra_closures)

    def _calendar(self, spec: CalendarSpec) -> WorkingDayCalendar:
        return WorkingDayCalendar(spec, self.extra_closures)

    @activity.defn(name="plan_stage_clock")
    async def plan_stage_clock(self, request: ClockRequest) -> Clock:
        try:
            return plan_clock(self._calendar(request.calendar), request)
        except OverflowError:
            raise _impossible("the stage's clock") from None

    @activity.defn(name="next_reminder")
    async def next_reminder(self, request: ReminderRequest) -> datetime:
        calendar = self._calendar(request.calendar)
        try:
            return calendar.add_working_days(request.after, request.every.days)
        except OverflowError:
            raise _impossible("the next reminder") from None
