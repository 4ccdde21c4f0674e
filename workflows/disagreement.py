"""The disagreement workflow: one execution per professional disagreement.

It sleeps until the next instant the case must act by itself (an
acknowledgement falling due, the deadline day's morning, the deadline, a
reminder), applies manager actions in the order they arrive, and records
everything in the case's state. The rules live in ``workflows.ladder``; this
class owns only time, ordering and side effects (activities).

Manager actions arrive as updates (validated, answered with the case's new
position or a clear refusal) or as signals of the same name, so an operator
can act from the Temporal UI or CLI. Every action goes through one queue, so
an update and a timer can never interleave half-way through a transition.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pydantic
from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    # `import a.b as c`, not `from a import b`: the sandbox re-imports this
    # module's own package, and `from workflows import ladder` would then load
    # a fresh copy of ladder for every case instead of passing it through.
    import workflows.ladder as ladder
    import workflows.snapshots as snapshots
    import workflows.timeline as timeline
    from escalation import search_attributes as sa
    from escalation.codec import (
        CodecDecodeError,
        UnencryptedRefusal,
        UnreadableValue,
        arrived_unencrypted,
        send_through_the_codec,
    )
    from policies.model import Policy
    from workflows.ladder import Refused, Step
    from workflows.messages import (
        REMINDER_TEMPLATES,
        Acknowledge,
        Action,
        ActionResult,
        Actor,
        AddNote,
        CaseAbout,
        CaseEvent,
        CaseOutcome,
        CaseRecord,
        CaseState,
        ClockRequest,
        ConfirmOutcome,
        DeliveryFailed,
        Escalate,
        FilledForm,
        FlagImmediateRisk,
        Notice,
        NoticeReceipt,
        RaiseDisagreement,
        RecordCase,
        RecordReceipt,
        ReminderRequest,
        Reopen,
        Resolve,
        ShortenDeadline,
        StageStart,
        StageStarted,
        SubmitForm,
        Withdraw,
    )

# workflow.patched ids: each marks a change to what running cases do.
# A case started since this marker takes every change named below without
# asking for each: its history carries this one marker, where a new case's
# first workflow task carried four (each with the SDK's search-attribute
# upsert), work for the server on every raise. Cases started before it ask
# for each change as they always did, so their histories replay unchanged.
PATCH_ALL_CHANGES = "all-changes-to-2026-12-06"
# The same for a case started since this one, which also enters a stage in
# one local activity (activities.stage_start: the stage's clock and the
# notice that it has started) where it took two: one marker in the history
# and one round of hand-overs in the worker fewer. A case started before
# keeps two for its run (a patch asked at a run's start is new only to a
# new run, so this marker alone stands for the change).
PATCH_ALL_CHANGES_TO_2026_12_07 = "all-changes-to-2026-12-07"
PATCH_BUSINESS_TEAM_FOR_SKIPPED_STAGES = "business-team-for-skipped-stages"
PATCH_RISK_WHILE_AWAITING_CONFIRMATION = "immediate-risk-while-awaiting-confirmation"

ACTIVITY_TIMEOUT = timedelta(seconds=30)
# Notices keep retrying (with backoff) for a day before the failure shows.
NOTICE_TIMEOUT = timedelta(hours=24)
# The notice patches (see tests/test_replay.py): a notice the mail service
# refuses is recorded and reported instead of failing the case, and a
# delivery failure reported by SendGrid's webhook sends the business team a
# notice. Both issue commands that earlier histories never saw.
PATCH_NOTICE_FAILURE = "notice-failure-recorded"
PATCH_DELIVERY_FAILED = "delivery-failed-notice"
# The stage clock, reminders and notices run as local activities in
# the worker that holds the case, recorded as markers, not as activity tasks
# dispatched through the server: a raise or an escalation is then one
# workflow task instead of four to six. Earlier cases keep dispatched ones.
PATCH_LOCAL_ACTIVITIES = "local-activities"
# A case whose history the server finds long continues as new as soon as the
# action in hand has answered, not at its next timer.
PATCH_CONTINUE_AFTER_ACTIONS = "continue-as-new-after-actions"
# Only the raising side, the business team or an operator may withdraw; a
# receiving-side withdrawal was applied before.
PATCH_WITHDRAW_BY_RAISING_SIDE = "withdraw-by-raising-side-only"
# A notice's id (and the mail ledger's key) names what the notice is for: the
# stage, its template and how many of that template the stage has sent. It
# was the sequence number of the next event, which shifts when a workflow
# task retried after a crash applies an action that arrived meanwhile first,
# so a notice already emailed went out again under a new id.
PATCH_NOTICE_IDENTITY = "notice-id-by-identity"
# A signal whose input is missing, doubled, undecodable or not the action its
# name says, or whose name is no action, is recorded on the case as refused.
# Before, it was dropped with a worker log line, or failed every workflow
# task of the case from then on.
PATCH_MALFORMED_SIGNALS = "malformed-signals-refused"
# A case's notes are bounded (workflows.messages: a number per stage, a total
# length) and a shortened deadline lies within the horizon: a case's state
# must fit in one payload to answer a query and to continue as new.
PATCH_BOUNDED_ACTIONS = "bounded-notes-and-deadlines"
# A case continues as new once its history passes a length of its own
# (ladder.CONTINUE_AS_NEW_AFTER_EVENTS), not only when the server suggests it.
PATCH_CONTINUE_BY_LENGTH = "continue-as-new-by-length"
# That length lowered from 4,000 events to 150 (ladder), so that a worker that
# does not hold a long-lived case replays a short run before it answers.
PATCH_CONTINUE_SOONER = "continue-as-new-sooner"
# The calendar arithmetic failing for good (an instant an operator's start
# or signal put beyond the calendar's range) is recorded on the case, which
# keeps the clock it had and waits for people to act; before, the case failed.
PATCH_CLOCK_FAILURE = "clock-failure-recorded"
# A step that leaves the case's search attributes as they were upserts
# nothing: every reminder and note upserted all nine unchanged, each upsert
# an event in the run's history and work for the server.
PATCH_PUBLISH_CHANGES = "publish-only-changes"
# A signal whose input arrived unencrypted (an operator's CLI without the
# codec endpoint: what they typed is in the history in plain) is recorded on
# the case as refused, saying how to send it; before, it was applied. An
# update so sent is refused by its validator, which leaves nothing in the
# history to replay (and a validator cannot ask for a patch).
PATCH_UNENCRYPTED_ACTIONS = "unencrypted-actions-refused"
# A local activity retries in the worker for this long before the worker
# hands the wait to a server timer (the SDK's default is a minute).
LOCAL_RETRY_THRESHOLD = timedelta(seconds=30)
# The case writes itself to the register (the lasting record) after every
# change, and records who acted and why on each event.
PATCH_REGISTER = "case-register"
# A register write is first tried in the worker that holds the case (no
# extra round trip through the server); if the register does not answer in
# this long, the write becomes an ordinary activity that retries until it
# does, while the case goes on: a register that is down delays the record,
# never a deadline or a notice.
REGISTER_LOCAL_TIMEOUT = timedelta(seconds=5)
REGISTER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
)


@workflow.defn(name="Disagreement")
class DisagreementWorkflow:
    @workflow.init
    def __init__(self, request: RaiseDisagreement) -> None:
        # The case exists from the first instant, so an update or query that
        # arrives with the start is answered rather than told to retry.
        # The worker's one copy of this policy (workflows/snapshots.py). The
        # input is assigned in place: the SDK holds on to it for the run.
        request.policy = snapshots.shared(request.policy)
        self._request: RaiseDisagreement | None = request
        self._policy: Policy | None = request.policy
        self._problems = [] if request.resume else ladder.raise_problems(request)
        self._state: CaseState | None = request.resume
        if self._state is not None:
            # Carried over from a run that kept every event: its tallies.
            ladder.tally_kept(self._state)
        if self._state is None and not self._problems:
            raised_at = request.raised_at or workflow.now()
            self._state = ladder.new_state(request, raised_at)
        # Actions in arrival order; a signal that carried no usable action is
        # queued as its refusal, to be recorded in its turn.
        self._queue: deque[tuple[int | None, Action | Refused]] = deque()
        self._answers: dict[int, ActionResult | Refused] = {}
        self._tickets = 0
        # Delivery failures signalled by the SendGrid webhook.
        self._failures: deque[DeliveryFailed] = deque()
        # The changes this run takes, asked at its start (see run).
        self._all_changes = False
        # Register writes: changes made and changes written (see _recorder).
        self._registering = False
        self._notice_identity = False
        self._publish_changes = False
        # What this run last upserted (None: nothing yet in this run).
        self._published: list[SearchAttributeUpdate[Any]] | None = None
        self._changes = 0
        self._written = 0
        self._closing = False

    # --- Run ------------------------------------------------------------------

    @workflow.run
    async def run(self, request: RaiseDisagreement) -> CaseOutcome:
        if self._problems:
            raise ApplicationError(
                "; ".join(self._problems), type="InvalidRaise", non_retryable=True
            )
        # First of all: whether this case takes every change at once (the
        # newest marker first: a new case records that one alone).
        self._all_changes = workflow.patched(PATCH_ALL_CHANGES_TO_2026_12_07)
        if not self._all_changes:
            workflow.patched(PATCH_ALL_CHANGES)
        self._registering = self._patched(PATCH_REGISTER)
        # Asked once, at the run's start, before any activity: a patch first
        # asked in the middle of a step lands in the history beside the
        # register's write, which runs concurrently, on either side of it,
        # and a replay that meets them the other way round fails.
        self._notice_identity = self._patched(PATCH_NOTICE_IDENTITY)
        self._publish_changes = self._patched(PATCH_PUBLISH_CHANGES)
        if self._registering:
            # A run continued as new writes what the run before it had not.
            state = self.state
            if request.resume is not None and (
                state.recorded_seq < state.next_seq - 1 or not state.about_recorded
            ):
                self._changes += 1
            recorder = asyncio.create_task(self._recorder())
        if request.resume is None:
            features = self._features(None)
            await self._carry_out(ladder.raise_case(self.policy, self.state, features))

        while self.state.is_open:
            if self._failures:
                await self._delivery_failed(self._failures.popleft())
                continue
            if self._queue:
                await self._apply_next()
                continue
            if self._history_long():
                if workflow.all_handlers_finished():
                    workflow.continue_as_new(request.model_copy(update={"resume": self.state}))
                # A manager's action has been applied, but its handler has not
                # yet answered: let it, then continue as new. Before this, a
                # case that only received actions waited for its next timer.
                if self._patched(PATCH_CONTINUE_AFTER_ACTIONS):
                    await workflow.wait_condition(
                        lambda: (
                            workflow.all_handlers_finished()
                            or bool(self._queue)
                            or bool(self._failures)
                        )
                    )
                    continue
            wakeup = ladder.next_wakeup(self.state)
            timeout = None
            if wakeup is not None:
                timeout = max(wakeup.at - workflow.now(), timedelta(0))
            try:
                await workflow.wait_condition(
                    lambda: bool(self._queue) or bool(self._failures),
                    timeout=timeout,
                    timeout_summary=wakeup.summary(self.state) if wakeup else None,
                )
            except TimeoutError:
                assert wakeup is not None
                await self._wake(wakeup)

        # Refuse what is still queued (the case closed under it), then let
        # every handler answer before the workflow completes.
        while self._queue:
            await self._apply_next()
        while self._failures:
            await self._delivery_failed(self._failures.popleft())
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self._registering:
            # A closed case is in the register whole before its workflow ends.
            self._closing = True
            await recorder
        return CaseOutcome(
            reference=self.state.reference,
            status=self.state.status,
            stage=self.state.stage,
            closed_at=self.state.closed_at,
        )

    @property
    def policy(self) -> Policy:
        assert self._policy is not None
        return self._policy

    @property
    def state(self) -> CaseState:
        assert self._state is not None
        return self._state

    async def _wake(self, wakeup: ladder.Wakeup) -> None:
        now = workflow.now()
        if wakeup.kind == "deadline":
            step = ladder.deadline_passed(self.policy, self.state, now)
        elif wakeup.kind == "deadline-day":
            step = ladder.deadline_day(self.policy, self.state)
        elif wakeup.kind == "acknowledgement":
            step = ladder.acknowledgement_due(self.policy, self.state)
        elif wakeup.kind == "form":
            step = ladder.form_chase_due(self.policy, self.state)
        else:
            step = ladder.reminder_due(self.policy, self.state, now)
        await self._carry_out(step)

    async def _apply_next(self) -> None:
        ticket, action = self._queue.popleft()
        if isinstance(action, Refused):
            self._record("refused", actor=Actor(), detail=str(action))
            self._changes += 1
            return
        try:
            features = self._features(action)
            step = ladder.apply(self.policy, self.state, action, workflow.now(), features)
        except Refused as refusal:
            self._record("refused", actor=action.by, detail=str(refusal))
            self._changes += 1
            if ticket is not None:
                self._answers[ticket] = refusal
            return
        await self._carry_out(step)
        if ticket is not None:
            self._answers[ticket] = self._result()

    def _patched(self, patch_id: str) -> bool:
        """Whether the case takes this change (one named before
        ``PATCH_ALL_CHANGES``): every change, for a case started since either
        all-changes marker; otherwise as ``workflow.patched`` says (the SDK
        remembers each answer for the run)."""
        return (
            self._all_changes or workflow.patched(PATCH_ALL_CHANGES) or workflow.patched(patch_id)
        )

    def _history_long(self) -> bool:
        info = workflow.info()
        if info.is_continue_as_new_suggested():
            return True
        # Each asked only once the history is long, so shorter ones carry no
        # marker; a run that began before the lower bar keeps the earlier one.
        length = info.get_current_history_length()
        if length >= ladder.CONTINUE_AS_NEW_AFTER_EVENTS and self._patched(PATCH_CONTINUE_SOONER):
            return True
        return length >= ladder.EARLIER_CONTINUE_AS_NEW_AFTER_EVENTS and (
            self._patched(PATCH_CONTINUE_BY_LENGTH)
        )

    def _features(self, action: Action | None) -> ladder.Features:
        """Ask ``workflow.patched`` only where a change makes a difference,
        so histories that never reach it carry no marker."""
        skips = ladder.skips_stages(self.state, action)
        risk_awaiting = ladder.risk_while_awaiting(self.state, action)
        withdraw = ladder.withdrawn_by_receiving_side(self.state, action)
        bounded = ladder.out_of_bounds(self.state, action, workflow.now()) is not None
        if not skips and not risk_awaiting and not withdraw and not bounded:
            return ladder.ALL_FEATURES
        return ladder.Features(
            business_team_for_skipped_stages=(
                self._patched(PATCH_BUSINESS_TEAM_FOR_SKIPPED_STAGES) if skips else True
            ),
            immediate_risk_while_awaiting_confirmation=(
                self._patched(PATCH_RISK_WHILE_AWAITING_CONFIRMATION) if risk_awaiting else True
            ),
            withdraw_by_raising_side_only=(
                self._patched(PATCH_WITHDRAW_BY_RAISING_SIDE) if withdraw else True
            ),
            bounded_actions=self._patched(PATCH_BOUNDED_ACTIONS) if bounded else True,
        )

    # --- Carrying out a step ----------------------------------------------------

    async def _carry_out(self, step: Step) -> None:
        started: tuple[ladder.PlannedNotice, Notice, StageStarted | None] | None = None
        if step.clock is not None:
            if self._together(step):
                first = step.notices.pop(0)
                started = (first, *await self._start_stage(step.clock, first))
            else:
                await self._plan_clock(step.clock, replan=step.replan)
            # A form newly owed is asked for with the due date just planned.
            step.notices += ladder.form_asks(self.policy, self.state)
        if step.reminder_after is not None:
            cadence = self.policy.reminder_cadence(self.state.stage)
            try:
                self.state.clock.next_reminder_at = await self._activity(
                    "next_reminder",
                    ReminderRequest(
                        calendar=self.policy.calendar_spec(),
                        after=step.reminder_after,
                        every=cadence,
                    ),
                    result_type=datetime,
                    start_to_close_timeout=ACTIVITY_TIMEOUT,
                    summary="next reminder",
                )
            except FailureError as failure:
                self._clock_failed(failure, "the next reminder")
        for event in step.events:
            self._record(event.type, actor=event.by, detail=event.detail, reason=event.reason)
        if started is not None:
            planned, notice, outcome = started
            if outcome is not None and outcome.receipt is not None:
                self._sent(planned, notice, outcome.receipt)
            elif outcome is not None and outcome.refused is not None:
                refused = ApplicationError(outcome.refused.message, type=outcome.refused.type)
                await self._failed(planned, notice, _failure_reason(refused))
            else:
                await self._deliver(planned, notice.with_clock(self.state.clock))
        for planned in step.notices:
            await self._send(planned)
        self._publish()

    def _together(self, step: Step) -> bool:
        """Whether the stage's clock and its first notice go in one activity:
        a stage newly entered (not a deadline moved), nothing else planned
        between them, and a notice without forms (forms are filled from the
        case as it stands after the clock)."""
        return (
            self._all_changes
            and not step.replan
            and step.reminder_after is None
            and bool(step.notices)
            and not step.notices[0].forms
        )

    async def _start_stage(
        self, request: ClockRequest, planned: ladder.PlannedNotice
    ) -> tuple[Notice, StageStarted | None]:
        """The stage's clock planned and its first notice sent, in one local
        activity: the notice, and what became of it (None: the clock alone
        was planned, the notice still has to go)."""
        notice = self._notice(planned)
        try:
            started: StageStarted = await workflow.execute_local_activity(
                "start_stage",
                StageStart(clock=request, notice=notice),
                result_type=StageStarted,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                local_retry_threshold=LOCAL_RETRY_THRESHOLD,
                summary=f"deadline for stage {self.state.stage}, "
                f"{planned.template} → {', '.join(r.label for r in planned.recipients)}",
            )
        except FailureError:
            # Only a clock that cannot be worked out gets here (the notice's
            # own failures come back in the result): planned on its own, it
            # fails again and is recorded as such, and the notice goes after.
            await self._plan_clock(request, replan=False)
            return notice, None
        self.state.clock = started.clock
        return notice, started

    async def _activity(
        self,
        name: str,
        arg: Any,
        *,
        result_type: type,
        summary: str,
        start_to_close_timeout: timedelta,
        schedule_to_close_timeout: timedelta | None = None,
    ) -> Any:
        if self._patched(PATCH_LOCAL_ACTIVITIES):
            return await workflow.execute_local_activity(
                name,
                arg,
                result_type=result_type,
                summary=summary,
                start_to_close_timeout=start_to_close_timeout,
                schedule_to_close_timeout=schedule_to_close_timeout,
                local_retry_threshold=LOCAL_RETRY_THRESHOLD,
            )
        return await workflow.execute_activity(
            name,
            arg,
            result_type=result_type,
            summary=summary,
            start_to_close_timeout=start_to_close_timeout,
            schedule_to_close_timeout=schedule_to_close_timeout,
        )

    async def _plan_clock(self, request: ClockRequest, replan: bool) -> None:
        old = self.state.clock
        try:
            clock = await self._activity(
                "plan_stage_clock",
                request,
                result_type=type(old),
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                summary=f"deadline for stage {self.state.stage}",
            )
        except FailureError as failure:
            self._clock_failed(failure, "the stage's deadline")
            return
        if replan:
            clock.started_at = old.started_at
            if clock.acknowledgement_due is None and self.state.acknowledged_by is None:
                clock.acknowledgement_due = old.acknowledgement_due
            if clock.deadline == old.deadline:
                clock.deadline_basis = old.deadline_basis
                clock.deadline_day_reminder_at = old.deadline_day_reminder_at
            # A new deadline leaves a form owed at the stage still owed.
            if not clock.form_chase:
                clock.form_chase, clock.form_due_text = old.form_chase, old.form_due_text
        self.state.clock = clock

    def _clock_failed(self, failure: FailureError, what: str) -> None:
        """Only a failure for good reaches here (a deadline activity retries
        anything else): recorded, and the case goes on without the date."""
        if not self._patched(PATCH_CLOCK_FAILURE):
            raise failure
        self._record(
            "clock_failed",
            detail=f"{what} could not be worked out ({_failure_reason(failure)}); "
            "the case will not move by itself until someone acts on it",
        )

    async def _send(self, planned: ladder.PlannedNotice) -> None:
        await self._deliver(planned, self._notice(planned))

    def _notice(self, planned: ladder.PlannedNotice) -> Notice:
        state = self.state
        stage = self.policy.stages[state.stage]
        if self._notice_identity:
            notice_id = notice_identity(state, planned.template)
        else:
            notice_id = f"{state.reference}-{state.next_seq:05d}-{planned.template}"
        return Notice(
            notice_id=notice_id,
            reference=state.reference,
            template=planned.template,
            policy_id=state.policy_id,
            partnership=state.partnership,
            area=state.area,
            recipients=planned.recipients,
            stage=state.stage,
            stage_name=stage.name,
            stage_summary=stage.summary,
            deadline=state.clock.deadline,
            deadline_text=state.clock.deadline_text,
            status=state.status,
            forms=planned.forms,
            context=planned.context,
            case_url=self._request.case_url if self._request else None,
            # The forms filled from the case, for the PDF attachments
            # (activity input only: no change to the commands issued).
            filled_forms=self._fill_forms(planned.forms),
            # Activity input only, like the filled forms: who is on which side,
            # for the action links in each recipient's copy.
            receiving_agency=state.receiving_agency.key,
        )

    async def _deliver(self, planned: ladder.PlannedNotice, notice: Notice) -> None:
        try:
            receipt = await self._activity(
                "send_notice",
                notice,
                result_type=NoticeReceipt,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                schedule_to_close_timeout=NOTICE_TIMEOUT,
                summary=f"{planned.template} → {', '.join(r.label for r in planned.recipients)}",
            )
        # A dispatched activity fails as ActivityError (the cause inside), a
        # local one as the cause itself.
        except FailureError as failure:
            # A refused notice (SendGrid 4xx) or one that could not be
            # sent in a day is recorded and reported, not fatal to the case.
            if not self._patched(PATCH_NOTICE_FAILURE):
                raise
            await self._failed(planned, notice, _failure_reason(failure))
            return
        self._sent(planned, notice, receipt)

    async def _failed(self, planned: ladder.PlannedNotice, notice: Notice, reason: str) -> None:
        self._record(
            "notice_failed",
            to=[r.label for r in planned.recipients],
            template=planned.template,
            notice_id=notice.notice_id,
            detail=reason,
        )
        if planned.template != "delivery-failed":
            await self._report_undelivered(
                DeliveryFailed(notice_id=notice.notice_id, event="rejected", reason=reason),
                planned.template,
            )

    def _sent(self, planned: ladder.PlannedNotice, notice: Notice, receipt: NoticeReceipt) -> None:
        state = self.state
        kind = "reminder" if planned.template in REMINDER_TEMPLATES else "notice"
        self._record(
            kind,
            to=[r.label for r in planned.recipients],
            template=planned.template,
            notice_id=notice.notice_id,
            forms=list(planned.forms) if self._registering else [],
        )
        # Roles nobody holds in the directory (the activity has told
        # the business team); recorded on the case, never skipped silently.
        if receipt.unfilled_roles:
            for label in receipt.unfilled_roles:
                if label not in state.unfilled_roles:
                    state.unfilled_roles.append(label)
            self._record(
                "unfilled_roles",
                to=list(receipt.unfilled_roles),
                template=planned.template,
                notice_id=notice.notice_id,
                detail="nobody in the role directory holds these roles; the business team "
                "was sent the notice instead",
            )

    def _fill_forms(self, keys: list[str]) -> list[FilledForm]:
        if not keys or self._request is None:
            return []
        # Emailed copies name nobody; the complete form is downloaded.
        return ladder.filled_forms(
            self.policy, self.state, self._request, keys, workflow.now(), for_email=True
        )

    async def _delivery_failed(self, report: DeliveryFailed) -> None:
        """A notice bounced or was dropped (SendGrid's event webhook): record
        it on the case and tell the business team."""
        state = self.state
        key = (report.notice_id, report.recipient, report.event)
        if any((f.notice_id, f.recipient, f.event) == key for f in state.delivery_failures):
            return
        state.delivery_failures.append(report)
        recipient = f" to {report.recipient}" if report.recipient else ""
        self._record(
            "delivery_failed",
            notice_id=report.notice_id,
            detail=f"{report.event}{recipient}: {report.reason}".strip(": "),
        )
        template = report.template or _template_of(report.notice_id)
        # Never report the failure of a failure report: that would loop.
        if template != "delivery-failed" and self._patched(PATCH_DELIVERY_FAILED):
            await self._report_undelivered(report, template)
        self._publish()

    async def _report_undelivered(self, report: DeliveryFailed, failed_template: str) -> None:
        context = {
            "failed_notice": report.notice_id,
            "failed_template": failed_template,
            "event": report.event,
            "reason": report.reason,
        }
        if report.recipient:
            context["recipient"] = report.recipient
        await self._send(
            ladder.PlannedNotice(
                "delivery-failed", [ladder.business_team(self.policy, self.state)], context=context
            )
        )

    def _record(
        self,
        type_: Any,
        actor: Actor | None = None,
        reason: str | None = None,
        **fields: Any,
    ) -> None:
        state = self.state
        if actor is not None:
            fields["by"] = actor.id
            if self._registering:
                fields.update(by_name=actor.name, by_role=actor.role, by_agency=actor.agency)
        if self._registering and reason is not None:
            fields["reason"] = reason
        deadline = state.clock.deadline if state.is_open else None
        event = CaseEvent(
            seq=state.next_seq,
            at=workflow.now(),
            type=type_,
            stage=state.stage,
            deadline=deadline,
            **fields,
        )
        state.events.append(event)
        ladder.tally(state, event)
        state.next_seq += 1

    def _publish(self) -> None:
        """Search attributes and the UI's current details, after every change."""
        state = self.state
        deadline = (
            state.clock.deadline if state.is_open and not state.clock.deadline_passed else None
        )
        updates: list[SearchAttributeUpdate[Any]] = [
            sa.PARTNERSHIP.value_set(state.policy_id),
            sa.AREA.value_set(state.area) if state.area else sa.AREA.value_unset(),
            sa.STAGE_INDEX.value_set(state.stage),
            sa.STAGE_NAME.value_set(state.stage_key),
            sa.STATUS.value_set(state.status),
            sa.DEADLINE.value_set(deadline) if deadline else sa.DEADLINE.value_unset(),
            sa.IMMEDIATE_RISK.value_set(state.immediate_risk),
            sa.AGENCIES.value_set([state.raising_agency.key, state.receiving_agency.key]),
            sa.CATEGORIES.value_set(list(state.categories)),
        ]
        # The register is written after every change, whether or not the
        # search attributes moved (a note, a notice sent, a reminder).
        if updates != self._published or not self._publish_changes:
            self._published = updates
            workflow.upsert_search_attributes(updates)
        workflow.set_current_details(ladder.current_details(state))
        self._changes += 1

    # --- The register -----------------------------------------------------------

    async def _recorder(self) -> None:
        """Writes the case to the register after each change, one write at a
        time and in order, beside the case's own work: the main loop never
        waits for it, so a register that is down holds up nothing else."""
        while True:
            await workflow.wait_condition(lambda: self._changes > self._written or self._closing)
            if self._changes <= self._written:
                return
            target = self._changes
            state = self.state
            update = RecordCase(
                case=state.model_copy(
                    update={
                        "events": [e for e in state.events if e.seq > state.recorded_seq],
                        "notes": [],
                    }
                ),
                after_seq=state.recorded_seq,
                about=None if state.about_recorded else self._about(),
            )
            receipt = await self._write_record(update)
            state.recorded_seq = max(state.recorded_seq, receipt.recorded_seq)
            state.about_recorded = state.about_recorded or update.about is not None
            # The register holds them now: the case keeps only what it runs
            # on (no command depends on the events, so replay is unchanged).
            ladder.let_go_recorded(self.policy, state)
            self._written = target

    async def _write_record(self, update: RecordCase) -> RecordReceipt:
        try:
            receipt: RecordReceipt = await workflow.execute_local_activity(
                "record_case",
                update,
                result_type=RecordReceipt,
                summary="record in the register",
                start_to_close_timeout=REGISTER_LOCAL_TIMEOUT,
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
            return receipt
        except FailureError:
            pass
        while True:
            try:
                receipt = await workflow.execute_activity(
                    "record_case",
                    update,
                    result_type=RecordReceipt,
                    summary="record in the register (retrying)",
                    start_to_close_timeout=ACTIVITY_TIMEOUT,
                    retry_policy=REGISTER_RETRY,
                )
                return receipt
            except FailureError as failure:
                # Only a non-retryable failure ends up here; the write is
                # tried again later rather than given up: the record matters.
                workflow.logger.warning("register write refused: %s", _failure_reason(failure))
                await workflow.sleep(timedelta(minutes=10))

    def _about(self) -> CaseAbout | None:
        if self._request is None:
            return None
        return CaseAbout(
            summary=self._request.summary,
            decision_disputed=self._request.decision_disputed,
            child=self._request.child,
        )

    def _result(self) -> ActionResult:
        state = self.state
        return ActionResult(
            reference=state.reference,
            status=state.status,
            stage=state.stage,
            stage_name=state.stage_name,
            deadline=state.clock.deadline if state.is_open else None,
        )

    # --- Handlers -----------------------------------------------------------

    async def _submit(self, action: Action) -> ActionResult:
        self._tickets += 1
        ticket = self._tickets
        self._queue.append((ticket, action))
        await workflow.wait_condition(lambda: ticket in self._answers)
        answer = self._answers.pop(ticket)
        if isinstance(answer, Refused):
            raise ApplicationError(str(answer), type="ActionRefused", non_retryable=True)
        return answer

    def _validate(self, action: Action) -> None:
        if action.arrived_unencrypted:
            update = workflow.current_update_info()
            raise UnencryptedRefusal(_sent_unencrypted(update.name if update else "", "update"))
        if self._state is None:
            raise ApplicationError(
                "the case was never raised: " + "; ".join(self._problems),
                type="InvalidRaise",
                non_retryable=True,
            )
        try:
            ladder.check(self.policy, self.state, action, workflow.now())
        except Refused as refusal:
            raise ApplicationError(str(refusal), type="ActionRefused", non_retryable=True) from None

    @workflow.query(name="state")
    def get_state(self) -> CaseState:
        if self._state is None:
            raise ApplicationError("the case was never raised", type="InvalidRaise")
        return self.state

    @workflow.query(name="record")
    def get_record(self) -> CaseRecord:
        """The case's state and what it is about, with the events and notes
        the register has not yet confirmed (for GET /disagreements/{ref},
        which adds the register's, and ``escalation register rebuild``)."""
        if self._state is None:
            raise ApplicationError("the case was never raised", type="InvalidRaise")
        state = self.state
        return CaseRecord(
            **{**dict(state), "events": timeline.with_text(state)},
            about=self._about(),
            source="case",
        )

    @workflow.query(name="form")
    def get_form(self, key: str) -> FilledForm | None:
        """One of the policy's forms filled from the case as it stands (for
        GET /disagreements/{ref}/forms/{form}), or None if the case's policy
        has no such form; it holds the child's details where the form asks."""
        if self._state is None or self._request is None:
            raise ApplicationError("the case was never raised", type="InvalidRaise")
        if key not in {f.key for f in self.policy.forms}:
            return None
        return ladder.filled_forms(self.policy, self.state, self._request, [key], workflow.now())[0]

    @workflow.update(name="acknowledge")
    async def acknowledge(self, action: Acknowledge) -> ActionResult:
        return await self._submit(action)

    @acknowledge.validator
    def _check_acknowledge(self, action: Acknowledge) -> None:
        self._validate(action)

    @workflow.update(name="resolve")
    async def resolve(self, action: Resolve) -> ActionResult:
        return await self._submit(action)

    @resolve.validator
    def _check_resolve(self, action: Resolve) -> None:
        self._validate(action)

    @workflow.update(name="confirm")
    async def confirm(self, action: ConfirmOutcome) -> ActionResult:
        return await self._submit(action)

    @confirm.validator
    def _check_confirm(self, action: ConfirmOutcome) -> None:
        self._validate(action)

    @workflow.update(name="escalate")
    async def escalate(self, action: Escalate) -> ActionResult:
        return await self._submit(action)

    @escalate.validator
    def _check_escalate(self, action: Escalate) -> None:
        self._validate(action)

    @workflow.update(name="immediate_risk")
    async def immediate_risk(self, action: FlagImmediateRisk) -> ActionResult:
        return await self._submit(action)

    @immediate_risk.validator
    def _check_immediate_risk(self, action: FlagImmediateRisk) -> None:
        self._validate(action)

    @workflow.update(name="shorten_deadline")
    async def shorten_deadline(self, action: ShortenDeadline) -> ActionResult:
        return await self._submit(action)

    @shorten_deadline.validator
    def _check_shorten_deadline(self, action: ShortenDeadline) -> None:
        self._validate(action)

    @workflow.update(name="add_note")
    async def add_note(self, action: AddNote) -> ActionResult:
        return await self._submit(action)

    @add_note.validator
    def _check_add_note(self, action: AddNote) -> None:
        self._validate(action)

    @workflow.update(name="withdraw")
    async def withdraw(self, action: Withdraw) -> ActionResult:
        return await self._submit(action)

    @withdraw.validator
    def _check_withdraw(self, action: Withdraw) -> None:
        self._validate(action)

    @workflow.update(name="reopen")
    async def reopen(self, action: Reopen) -> ActionResult:
        return await self._submit(action)

    @reopen.validator
    def _check_reopen(self, action: Reopen) -> None:
        self._validate(action)

    @workflow.update(name="submit_form")
    async def submit_form(self, action: SubmitForm) -> ActionResult:
        return await self._submit(action)

    @submit_form.validator
    def _check_submit_form(self, action: SubmitForm) -> None:
        self._validate(action)

    # --- Signals ------------------------------------------------------------

    @workflow.signal(dynamic=True)
    def on_signal(self, name: str, inputs: Sequence[RawValue]) -> None:
        """Every signal: the manager actions under their update's name (for
        operators in the Temporal UI or CLI, whom a signal cannot answer) and
        SendGrid's delivery failures. Inputs are read here, not by the SDK,
        so that whatever a person sends becomes an action or its recorded
        refusal, and never a failed workflow task."""
        try:
            # The patch is asked only then, so histories without one carry no marker.
            if (
                self._state is not None
                and _unencrypted(inputs)
                and self._patched(PATCH_UNENCRYPTED_ACTIONS)
            ):
                raise Refused(_sent_unencrypted(name, "signal"))
            value = _read_signal(name, inputs)
        except Refused as refusal:
            # Dropped before the patch, as the SDK did with an input it could
            # not read; a case that was never raised has nowhere to record it.
            if self._state is not None and self._patched(PATCH_MALFORMED_SIGNALS):
                self._queue.append((None, refusal))
            else:
                workflow.logger.warning("a signal was refused: %s", refusal)
            return
        if isinstance(value, DeliveryFailed):
            self._failures.append(value)
        else:
            self._queue.append((None, value))

    @workflow.update(dynamic=True)
    async def on_unknown_update(self, name: str, inputs: Sequence[RawValue]) -> None:
        raise AssertionError("the validator refuses every update without a handler")

    @on_unknown_update.validator
    def _check_unknown_update(self, name: str, inputs: Sequence[RawValue]) -> None:
        raise ApplicationError(_unknown_action(name), type="ActionRefused", non_retryable=True)


# Signals and the actions they carry: the updates' names, and the webhook's.
SIGNALS: dict[str, type[Action] | type[DeliveryFailed]] = {
    "acknowledge": Acknowledge,
    "resolve": Resolve,
    "confirm": ConfirmOutcome,
    "reopen": Reopen,
    "escalate": Escalate,
    "submit_form": SubmitForm,
    "immediate_risk": FlagImmediateRisk,
    "shorten_deadline": ShortenDeadline,
    "add_note": AddNote,
    "withdraw": Withdraw,
    "delivery_failed": DeliveryFailed,
}


def _unknown_action(name: str) -> str:
    actions = ", ".join(n for n in SIGNALS if n != "delivery_failed")
    # The name is whatever was typed: shown back cut short, never logged.
    return f"no action is called {name[:64]!r}; the actions are {actions}"


def _unencrypted(inputs: Sequence[RawValue]) -> bool:
    return any(arrived_unencrypted(value.payload) for value in inputs)


def _sent_unencrypted(name: str, kind: str) -> str:
    """The refusal of an action that arrived unencrypted, saying how to send
    it (README, operating the cases)."""
    shown = f"the {name} {kind}" if name in SIGNALS else f"this {kind}"
    command = "signal" if kind == "signal" else "update execute"
    return f"{shown} arrived unencrypted and is refused: {send_through_the_codec(command)}"


def _read_signal(name: str, inputs: Sequence[RawValue]) -> Action | DeliveryFailed:
    """The action a signal carries, or ``Refused`` saying what is wrong with
    it. The reasons name fields and what was wrong with them, never the
    values given (which may be anything, a child's name included)."""
    kind = SIGNALS.get(name)
    if kind is None:
        raise Refused(_unknown_action(name))
    if len(inputs) != 1:
        raise Refused(
            f"the {name} signal needs exactly one input (a JSON object; "
            f"an operator may send {{}} where nothing more is needed); it had {len(inputs)}"
        )
    try:
        value = workflow.payload_converter().from_payload(inputs[0].payload, kind)
    except CodecDecodeError as error:
        raise Refused(
            f"the {name} signal's input could not be decrypted ({error}); send it through "
            "the codec endpoint (--codec-endpoint, --codec-auth)"
        ) from None
    except (UnreadableValue, pydantic.ValidationError) as error:
        raise Refused(
            f"the {name} signal's input is not a valid {name}: {_problems(error)}"
        ) from None
    except Exception as error:  # noqa: BLE001 - any unreadable input is refused, whatever broke
        raise Refused(
            f"the {name} signal's input could not be read as JSON ({type(error).__name__})"
        ) from None
    if not isinstance(value, kind):
        raise Refused(f"the {name} signal's input is empty; it needs a JSON object")
    return value


def _problems(error: UnreadableValue | pydantic.ValidationError) -> str:
    """Where and what was wrong, for the first five problems; never the values."""
    if isinstance(error, pydantic.ValidationError):
        # A converter without ours (pydantic's own) raises it unwrapped.
        error = UnreadableValue.from_validation(error, "")
    return "; ".join(f"{where}: {message}" for where, _, message in error.problems[:5])


def notice_identity(state: CaseState, template: str) -> str:
    """``<reference>-s<stage>n<count>-<template>``: the ``count``-th notice of
    ``template`` at the case's current stage. Deterministic from what the
    notice is for, whatever else a retried task applied before it; counts
    the notice whether or not it is then delivered."""
    key = f"{state.stage}:{template}"
    count = state.notices_sent.get(key, 0) + 1
    state.notices_sent[key] = count
    return f"{state.reference}-s{state.stage}n{count}-{template}"


# Notice ids are "<reference>-s<stage>n<count>-<template>" (notice_identity),
# or "<reference>-<seq:05d>-<template>" on notices sent before it; templates
# have no digits.
_NOTICE_ID = re.compile(r"-(?:\d{5}|s\d+n\d+)-([a-z-]+)$")


def _template_of(notice_id: str) -> str:
    found = _NOTICE_ID.search(notice_id)
    return found.group(1) if found else "notice"


def _failure_reason(failure: FailureError) -> str:
    cause = failure.cause if isinstance(failure, ActivityError) else failure
    if isinstance(cause, ApplicationError):
        return f"{cause.type or 'error'}: {cause.message}"[:500]
    if cause is not None:
        return f"{type(cause).__name__}: {cause}"[:500]
    return str(failure)[:500]
