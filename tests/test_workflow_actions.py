"""Manager actions on the real disagreement workflow, worker and activities
(DESIGN.md section 4), on the session's time-skipping server.

The server's clock is shared and only moves forward, so every case is raised
"now" and every expectation is computed from instants the case itself
recorded (its stage's start, the moment an action was applied) with the
policy's working-day calendar. Time stays still between the calls here: only
``handle.result()`` and ``env.sleep()`` let the server skip ahead, and results
are awaited with auto time-skipping off, since a closed case needs no timer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import date, timedelta
from typing import Any

import pytest
from temporalio.api.common.v1 import SearchAttributes, WorkflowExecution
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import SearchAttributeKey
from temporalio.converter import decode_typed_search_attributes
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from escalation import search_attributes as sa
from escalation.converter import data_converter
from policies.calendar import WorkingDayCalendar
from policies.loader import get_policy
from policies.model import Policy
from tests.conftest import (
    Harness,
    barrier,
    escalation_form,
    make_request,
    owner_labels,
    raising_manager,
    receiving_manager,
    state_of,
)
from workflows.disagreement import PATCH_ALL_CHANGES_TO_2026_12_07, DisagreementWorkflow
from workflows.messages import (
    Acknowledge,
    ActionResult,
    Actor,
    AddNote,
    CaseOutcome,
    CaseState,
    ChildDetails,
    ConfirmOutcome,
    Escalate,
    FlagImmediateRisk,
    Notice,
    RaiseDisagreement,
    Resolve,
    ShortenDeadline,
    Withdraw,
)

POLICIES = ("merton", "staffordshire-stoke", "cheshire", "wirral", "hillingdon")
STAGE_COUNTS = {"merton": 5, "staffordshire-stoke": 6, "cheshire": 4, "wirral": 4, "hillingdon": 4}

# Where the outcome must be confirmed in writing, and within how many working
# days (None: required, with no timescale). Merton §5.1, Staffordshire
# Stage 5 ¶3 and Hillingdon's Additional Notes require it "at all stages";
# Cheshire Step 1 ¶2 without a timescale; Wirral nowhere.
WRITTEN_CONFIRMATION: dict[tuple[str, int], int | None] = {
    ("merton", 0): None,
    ("merton", 1): None,
    ("merton", 2): 5,
    ("merton", 3): 5,
    ("merton", 4): None,
    ("staffordshire-stoke", 0): 1,
    ("staffordshire-stoke", 1): 1,
    ("staffordshire-stoke", 2): 2,
    ("staffordshire-stoke", 3): None,
    ("staffordshire-stoke", 4): None,
    ("staffordshire-stoke", 5): None,
    ("cheshire", 1): None,
    **{("hillingdon", i): None for i in range(4)},
}

# What the business team is sent when a case is resolved, by stage: the forms
# the policy names (DESIGN.md sections 4 and 6).
RESOLUTION_RECORDS: dict[tuple[str, int], list[str]] = {
    ("merton", 1): ["escalation-pro-forma"],
    ("merton", 2): ["escalation-pro-forma"],
    ("merton", 3): ["escalation-pro-forma"],
    ("cheshire", 3): [],  # the partnership records every step 3 outcome
    ("wirral", 1): ["appendix-1"],
    ("wirral", 2): ["appendix-2"],
    ("staffordshire-stoke", 5): [],
    ("hillingdon", 0): [],  # "advised of any outcome"
    ("hillingdon", 1): ["escalation-notification"],
    ("hillingdon", 2): ["escalation-notification"],
    ("hillingdon", 3): ["escalation-notification"],
}

# Each policy's urgent contacts for a case in an area (DESIGN.md section 6).
URGENT_CONTACTS: dict[tuple[str, str], list[str]] = {
    ("merton", "merton"): ["mscp-executive"],
    ("staffordshire-stoke", "staffordshire"): ["staffordshire-scb-manager"],
    ("staffordshire-stoke", "stoke-on-trent"): ["stoke-scb-manager"],
    ("cheshire", "cheshire-west"): ["cheshire-west-iart"],
    ("cheshire", "cheshire-east"): ["cheshire-east-consultation-service"],
    ("cheshire", "halton"): ["halton-icart"],
    ("cheshire", "warrington"): ["warrington-mars"],
    ("wirral", "wirral"): ["central-advice-and-duty-service"],
    ("hillingdon", "hillingdon"): ["business-team"],
}


# --- Helpers ------------------------------------------------------------------


def calendar(policy: Policy) -> WorkingDayCalendar:
    return WorkingDayCalendar(policy.calendar_spec())


def owners(policy: Policy, request: RaiseDisagreement, index: int) -> list[str]:
    """Recipient labels of a stage's owners in the two agencies."""
    return owner_labels(policy, (request.raising_agency, request.receiving_agency), index)


def extras(policy: Policy, index: int, when: str) -> list[str]:
    kinds = {"health", "childrens-social-care"}  # make_request's two agencies
    return [
        n.role
        for n in policy.stages[index].extra_notices
        if n.when == when and (n.only_if_agency_kind is None or n.only_if_agency_kind in kinds)
    ]


def labels(notice: Notice) -> list[str]:
    return [r.label for r in notice.recipients]


CHANGE_VERSION = SearchAttributeKey.for_keyword_list("TemporalChangeVersion")


@asynccontextmanager
async def open_case(harness: Harness, request: RaiseDisagreement) -> AsyncIterator[WorkflowHandle]:
    """Raise a case and wait until the raise is carried out (an operator's
    note is the barrier); terminate it afterwards if it is still running, so
    no case outlives its worker and stalls the shared server's clock."""
    handle = await harness.raise_case(request)
    try:
        await barrier(handle)
        yield handle
    finally:
        if await is_running(harness.client, handle.id):
            # Let the task in hand finish first (the barrier is answered only
            # once it has): the time-skipping server keeps time still for a
            # workflow task that a termination cut short, stalling every
            # later test's clock.
            with contextlib.suppress(WorkflowUpdateFailedError):
                await barrier(handle)
            await handle.terminate("test over")


async def describe_raw(client: Client, workflow_id: str) -> Any:
    return await client.workflow_service.describe_workflow_execution(
        DescribeWorkflowExecutionRequest(
            namespace=client.namespace, execution=WorkflowExecution(workflow_id=workflow_id)
        )
    )


async def is_running(client: Client, workflow_id: str) -> bool:
    described = await describe_raw(client, workflow_id)
    status = described.workflow_execution_info.status
    return status == WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING


async def search_attributes(client: Client, workflow_id: str) -> dict[str, Any]:
    """The case's typed search attributes, read from the raw description.

    The time-skipping server keeps an unset attribute as a null payload
    (binary/null), which ``WorkflowHandle.describe()`` cannot decode; a
    null is read here as "not set", which is what a real server stores."""
    described = await describe_raw(client, workflow_id)
    kept = SearchAttributes()
    for name, payload in described.workflow_execution_info.search_attributes.indexed_fields.items():
        if payload.metadata.get("encoding") != b"binary/null":
            kept.indexed_fields[name].CopyFrom(payload)
    return {pair.key.name: pair.value for pair in decode_typed_search_attributes(kept)}


async def outcome(env: WorkflowEnvironment, handle: WorkflowHandle) -> CaseOutcome:
    """The result of a case that has closed (no timer needed to get there)."""
    with env.auto_time_skipping_disabled():
        return await asyncio.wait_for(handle.result(), timeout=20)


async def wait_for(
    handle: WorkflowHandle, predicate: Callable[[CaseState], bool], seconds: float = 20
) -> CaseState:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        state = await state_of(handle)
        if predicate(state):
            return state
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met; events: {[e.type for e in state.events]}")
        await asyncio.sleep(0.05)


async def escalate(
    handle: WorkflowHandle, policy: Policy, by: Actor, target: int, **kwargs: Any
) -> ActionResult:
    return await handle.execute_update(
        DisagreementWorkflow.escalate,
        Escalate(by=by, reason="Not resolved", form=escalation_form(policy, target), **kwargs),
    )


async def climb(handle: WorkflowHandle, policy: Policy, by: Actor, target: int) -> None:
    state = await state_of(handle)
    for index in range(state.stage + 1, target + 1):
        result = await escalate(handle, policy, by, index)
        assert result.stage == index


def case_notices(harness: Harness, reference: str) -> list[Notice]:
    return [n for n in harness.sink.notices if n.reference == reference]


def events_after(state: CaseState, seq: int) -> list[Any]:
    return [e for e in state.events if e.seq > seq]


# --- Resolution at every stage ---------------------------------------------------


@pytest.mark.parametrize(
    ("policy_id", "stage"),
    [(p, s) for p in POLICIES for s in range(STAGE_COUNTS[p])],
)
async def test_resolution_at_every_stage(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness], policy_id: str, stage: int
) -> None:
    harness = new_worker()
    request = make_request(policy_id, await ts_env.get_current_time())
    policy = request.policy
    manager = receiving_manager(request)
    confirmed_in_writing = (policy_id, stage) in WRITTEN_CONFIRMATION
    confirmation_days = WRITTEN_CONFIRMATION.get((policy_id, stage))
    async with harness.worker(), open_case(harness, request) as handle:
        await climb(handle, policy, manager, stage)
        before_state = await state_of(handle)
        before = before_state.next_seq - 1
        result = await handle.execute_update(
            DisagreementWorkflow.resolve, Resolve(by=manager, outcome="Agreed a plan")
        )
        state = await state_of(handle)
        resolved = next(e for e in events_after(state, before) if e.type == "resolved")
        assert resolved.by == manager.id
        assert state.outcome == "Agreed a plan"
        # Recorded once the step's clock is planned: a moment after the action.
        assert state.resolved_at is not None
        assert timedelta(0) <= resolved.at - state.resolved_at < timedelta(seconds=2)
        notices = [n for n in case_notices(harness, request.reference) if n.stage == stage]
        told = [n for n in notices if n.template == "resolved"]
        assert len(told) == 1
        # Feedback to the person who first raised it, the stage's owners, and
        # the earlier stages' owners where the policy says so.
        earlier = [
            label
            for feedback in policy.stages[stage].outcome_to
            for key in feedback.stages
            for label in owners(policy, request, policy.stage_index(key))
        ]
        assert labels(told[0]) == list(
            dict.fromkeys([*owners(policy, request, stage), "raiser", *earlier])
        )
        records = [
            n
            for n in notices
            if n.template == "business-team-record" and n.context.get("event") == "resolved"
        ]
        expected_forms = RESOLUTION_RECORDS.get((policy_id, stage))
        if expected_forms is None:
            assert records == []
        else:
            assert len(records) == 1
            assert labels(records[0]) == ["business-team"]
            assert records[0].forms == expected_forms

        if not confirmed_in_writing:
            assert result.status == "resolved"
            assert result.deadline is None
            assert [e.type for e in events_after(state, before) if e.type != "notice"] == [
                "resolved",
                "closed",
            ]
            closed_at = state.resolved_at
        else:
            # Resolved, but open until the outcome is confirmed in writing.
            assert result.status == "awaiting-confirmation"
            assert state.is_open
            rule = policy.stages[stage].written_confirmation
            assert rule is not None
            if confirmation_days is None:
                assert result.deadline is None and state.clock.deadline is None
                assert state.clock.next_reminder_at == calendar(policy).add_working_days(
                    state.resolved_at, policy.reminder_cadence(stage).days
                )
                assert resolved.detail == "written confirmation due (no timescale)"
                assert told[0].context == {"confirmation": "due-no-timescale"}
            else:
                start = state.resolved_at
                if rule.counts_from == "stage-start":
                    start = before_state.clock.started_at
                due = calendar(policy).add_working_days(start, confirmation_days)
                assert result.deadline == due
                assert state.clock.deadline == due
                assert state.clock.deadline_basis == "confirmation"
                assert resolved.detail == "written confirmation due"
                assert told[0].context == {"confirmation": "due"}
            confirmed = await handle.execute_update(
                DisagreementWorkflow.confirm,
                ConfirmOutcome(by=manager, confirmation="Letter sent"),
            )
            assert confirmed.status == "resolved"
            assert confirmed.deadline is None
            state = await state_of(handle)
            # (Merton's pro-forma asks for what the resolution left blank: a
            # form-due reminder before the confirmation.)
            after = [
                e for e in events_after(state, resolved.seq) if e.type not in ("notice", "reminder")
            ]
            assert [e.type for e in after] == ["confirmed", "closed"]
            assert after[0].by == manager.id
            closed_at = state.closed_at
            assert closed_at is not None
            assert timedelta(0) <= after[0].at - closed_at < timedelta(seconds=2)
            confirmation = [
                n
                for n in case_notices(harness, request.reference)
                if n.template == "outcome-confirmed"
            ]
            assert len(confirmation) == 1
            assert labels(confirmation[0]) == [*owners(policy, request, stage), "raiser"]

        # The workflow completes, every handler answered.
        done = await outcome(ts_env, handle)
        assert done == CaseOutcome(
            reference=request.reference, status="resolved", stage=stage, closed_at=closed_at
        )


# --- Signals: the same actions from the Temporal UI or CLI ----------------------------


async def test_resolve_by_signal_as_an_operator(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness]
) -> None:
    harness = new_worker()
    request = make_request("wirral", await ts_env.get_current_time())
    async with harness.worker(), open_case(harness, request) as handle:
        await handle.signal("resolve", Resolve(outcome="Agreed by phone"))
        done = await outcome(ts_env, handle)
        assert done.status == "resolved"
        assert done.stage == 0
        state = await state_of(handle)
        resolved = [e for e in state.events if e.type == "resolved"]
        assert len(resolved) == 1
        assert resolved[0].by == "operator"  # Actor's default
        assert state.outcome == "Agreed by phone"
        assert [n.template for n in case_notices(harness, request.reference)][-1] == "resolved"


async def test_resolve_and_confirm_by_signal(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness]
) -> None:
    harness = new_worker()
    request = make_request("staffordshire-stoke", await ts_env.get_current_time())
    async with harness.worker(), open_case(harness, request) as handle:
        await handle.signal("resolve", Resolve(outcome="Agreed"))
        state = await wait_for(handle, lambda s: s.status == "awaiting-confirmation")
        assert state.is_open
        await handle.signal("confirm", ConfirmOutcome())
        done = await outcome(ts_env, handle)
        assert done.status == "resolved"
        state = await state_of(handle)
        acted = [e for e in state.events if e.type in ("resolved", "confirmed", "closed")]
        assert [(e.type, e.by) for e in acted] == [
            ("resolved", "operator"),
            ("confirmed", "operator"),
            ("closed", "operator"),
        ]


async def test_a_refused_signal_is_recorded_on_the_case(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness]
) -> None:
    harness = new_worker()
    request = make_request("merton", await ts_env.get_current_time())
    async with harness.worker(), open_case(harness, request) as handle:
        await handle.signal("confirm", ConfirmOutcome())
        await handle.signal(
            "escalate",
            Escalate(reason="Skip ahead", to_stage=3),
        )
        await handle.signal("add_note", AddNote(text="Called the school"))
        state = await wait_for(handle, lambda s: any(e.type == "note" for e in s.events))
        refused = [e for e in state.events if e.type == "refused"]
        assert [(e.by, e.stage, e.detail) for e in refused] == [
            (
                "operator",
                0,
                "cannot confirm the outcome: the case is not awaiting written confirmation "
                "(it is open)",
            ),
            ("operator", 0, "only a case at immediate risk may jump past the next stage"),
        ]
        # Nothing else changed, and the case carries on.
        assert state.status == "open"
        assert state.stage == 0
        assert state.notes[-1].text == "Called the school"
        assert state.notes[-1].by.id == "operator"


# --- Withdraw, note, acknowledge, escalate ------------------------------------------


async def test_withdraw_tells_everyone_involved_so_far(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness]
) -> None:
    harness = new_worker()
    request = make_request("merton", await ts_env.get_current_time())
    policy = request.policy
    by = raising_manager(request)
    async with harness.worker(), open_case(harness, request) as handle:
        await climb(handle, policy, receiving_manager(request), 1)
        result = await handle.execute_update(
            DisagreementWorkflow.withdraw, Withdraw(by=by, reason="Agreed informally")
        )
        assert result.status == "withdrawn"
        assert result.deadline is None
        state = await state_of(handle)
        tail = [e for e in state.events if e.type in ("withdrawn", "closed")]
        assert [(e.type, e.by) for e in tail] == [("withdrawn", by.id), ("closed", by.id)]
        withdrawn = [
            n for n in case_notices(harness, request.reference) if n.template == "withdrawn"
        ]
        assert len(withdrawn) == 1
        # The business team too: Merton's stage 1 brings it in (its pro-forma).
        assert set(labels(withdrawn[0])) == {
            *owners(policy, request, 0),
            *owners(policy, request, 1),
            "raiser",
            "business-team",
        }
        done = await outcome(ts_env, handle)
        assert (done.status, done.stage) == ("withdrawn", 1)


async def test_withdraw_while_awaiting_written_confirmation(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness]
) -> None:
    harness = new_worker()
    request = make_request("staffordshire-stoke", await ts_env.get_current_time())
    manager = receiving_manager(request)
    async with harness.worker(), open_case(harness, request) as handle:
        await handle.execute_update(
            DisagreementWorkflow.resolve, Resolve(by=manager, outcome="Agreed")
        )
        result = await handle.execute_update(
            DisagreementWorkflow.withdraw,
            Withdraw(by=raising_manager(request), reason="Raised in error"),
        )
        assert result.status == "withdrawn"
        assert (await outcome(ts_env, handle)).status == "withdrawn"


async def test_an_update_sent_with_the_start_is_answered_at_once(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness]
) -> None:
    """No "not ready, try again": the case exists from its first instant."""
    harness = new_worker()
    request = make_request("merton", await ts_env.get_current_time())
    async with harness.worker():
        handle = await harness.raise_case(request)
        try:
            result = await handle.execute_update(
                DisagreementWorkflow.acknowledge, Acknowledge(by=receiving_manager(request))
            )
            assert result.stage == 0 and result.status == "open"
            state = await state_of(handle)
            assert "acknowledged" in [e.type for e in state.events]
        finally:
            await handle.terminate("test over")


async def test_immediate_risk_while_awaiting_written_confirmation_tells_the_urgent_contacts(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness]
) -> None:
    """A resolved case awaiting written confirmation still takes a flag of
    immediate risk: the urgent contacts are told, the confirmation's own
    deadline is unchanged, and the case still closes on confirmation."""
    harness = new_worker()
    request = make_request("merton", await ts_env.get_current_time())
    manager = receiving_manager(request)
    async with harness.worker(), open_case(harness, request) as handle:
        await climb(handle, request.policy, manager, 2)
        await handle.execute_update(
            DisagreementWorkflow.resolve, Resolve(by=manager, outcome="Agreed")
        )
        before = await state_of(handle)
        assert before.status == "awaiting-confirmation"
        result = await handle.execute_update(
            DisagreementWorkflow.immediate_risk,
            FlagImmediateRisk(by=manager, reason="New injury seen at school"),
        )
        assert result.status == "awaiting-confirmation"
        after = await state_of(handle)
        assert after.immediate_risk
        assert after.clock.deadline == before.clock.deadline
        urgent = [
            n for n in case_notices(harness, request.reference) if n.template == "immediate-risk"
        ]
        assert urgent and "mscp-executive" in labels(urgent[-1])
        await handle.execute_update(DisagreementWorkflow.confirm, ConfirmOutcome(by=manager))
        assert (await outcome(ts_env, handle)).status == "resolved"


async def test_add_note_is_recorded_with_who_wrote_it(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness]
) -> None:
    harness = new_worker()
    request = make_request("cheshire", await ts_env.get_current_time())
    manager = receiving_manager(request)
    async with harness.worker(), open_case(harness, request) as handle:
        before = await state_of(handle)
        result = await handle.execute_update(
            DisagreementWorkflow.add_note, AddNote(by=manager, text="Strategy discussion held")
        )
        assert (result.status, result.stage) == ("open", 0)
        state = await state_of(handle)
        assert state.notes[-1].text == "Strategy discussion held"
        assert state.notes[-1].by == manager
        note = [e for e in state.events if e.type == "note"]
        assert [e.by for e in note] == ["operator", manager.id]
        assert state.notes[-1].at == note[-1].at
        # A note changes nothing else.
        assert (state.stage, state.status, state.clock) == (
            before.stage,
            before.status,
            before.clock,
        )


async def test_acknowledge_records_who_and_clears_the_acknowledgement_due(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness]
) -> None:
    harness = new_worker()
    request = make_request("merton", await ts_env.get_current_time())
    policy = request.policy
    manager = receiving_manager(request)
    async with harness.worker(), open_case(harness, request) as handle:
        state = await state_of(handle)
        assert state.clock.acknowledgement_due == calendar(policy).add_working_days(
            state.raised_at, 1
        )
        await handle.execute_update(
            DisagreementWorkflow.acknowledge, Acknowledge(by=manager, note="Looking into it")
        )
        state = await state_of(handle)
        assert state.acknowledged_by == manager
        assert state.clock.acknowledgement_due is None
        acknowledged = [e for e in state.events if e.type == "acknowledged"]
        assert [(e.by, e.reason) for e in acknowledged] == [(manager.id, "Looking into it")]
        # A new stage wants a new acknowledgement.
        await climb(handle, policy, manager, 1)
        state = await state_of(handle)
        assert state.acknowledged_by is None
        assert state.clock.acknowledgement_due == calendar(policy).add_working_days(
            state.clock.started_at, 1
        )


@pytest.mark.parametrize("policy_id", POLICIES)
async def test_escalating_by_hand_up_the_whole_ladder(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness], policy_id: str
) -> None:
    """Each manual escalation starts the next stage now, with the stage's own
    timescale, tells the owners of both stages and the raiser, and sends the
    business team what the policy names (forms carried in the request)."""
    harness = new_worker()
    request = make_request(policy_id, await ts_env.get_current_time())
    policy = request.policy
    cal = calendar(policy)
    manager = receiving_manager(request)
    async with harness.worker(), open_case(harness, request) as handle:
        for target in range(1, len(policy.stages)):
            before = (await state_of(handle)).next_seq - 1
            result = await escalate(handle, policy, manager, target)
            state = await state_of(handle)
            new = events_after(state, before)
            escalated, started = new[0], new[1]
            assert (escalated.type, escalated.by, escalated.stage) == (
                "escalated",
                manager.id,
                target,
            )
            assert escalated.detail == (
                f"from stage {target - 1} to stage {target}: escalated by a manager"
            )
            assert (started.type, started.stage) == ("stage_started", target)
            start = state.clock.started_at
            assert timedelta(0) <= escalated.at - start < timedelta(seconds=2)
            expected_deadline = cal.deadline(start, policy.stages[target].timescale)
            assert result.deadline == expected_deadline
            assert state.clock.deadline == expected_deadline
            assert result.stage_name == policy.stages[target].name
            assert state.stage_key == policy.stages[target].key
            if expected_deadline is None:
                assert state.clock.next_reminder_at == cal.add_working_days(start, 5)
            notices = [
                n
                for n in case_notices(harness, request.reference)
                if n.notice_id in {e.notice_id for e in new}
            ]
            told = [n for n in notices if n.template == "stage-started"]
            assert len(told) == 1
            assert set(labels(told[0])) == {
                *owners(policy, request, target - 1),
                *owners(policy, request, target),
                "raiser",
                *extras(policy, target - 1, "escalated_from"),
                *extras(policy, target, "stage_started"),
            }
            records = [n for n in notices if n.template == "business-team-record"]
            # What the team is owed on leaving the stage below and on entering
            # this one (Merton's pro-forma leaves stages 1 and 2): one record.
            wanted = [
                n for n in policy.stages[target - 1].business_team if n.when == "escalated_from"
            ] + [n for n in policy.stages[target].business_team if n.when == "stage_started"]
            assert len(records) == (1 if wanted else 0)
            if wanted:
                assert records[0].forms == sorted({n.form for n in wanted if n.form})
            form_key = policy.stages[target].form_required
            if form_key:
                assert state.escalation_forms[form_key] == escalation_form(policy, target)


async def test_merton_escalation_tells_the_csc_assistant_director(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness]
) -> None:
    """Merton: all cases at the second line are communicated to the CSC
    Assistant Director, who is also told before stage 3 (DESIGN.md section 6)."""
    harness = new_worker()
    request = make_request("merton", await ts_env.get_current_time())
    async with harness.worker(), open_case(harness, request) as handle:
        await climb(handle, request.policy, receiving_manager(request), 3)
        started = [
            n
            for n in case_notices(harness, request.reference)
            if n.template == "stage-started" and n.stage in (2, 3)
        ]
        assert [n.stage for n in started] == [2, 3]
        for notice in started:
            assert "csc-assistant-director" in labels(notice)
        records = [
            n
            for n in case_notices(harness, request.reference)
            if n.template == "business-team-record"
        ]
        # The pro-forma on leaving stage 1, then leaving stage 2 and entering
        # stage 3 (copied to MSCP) in one record.
        assert [(n.stage, n.context["event"]) for n in records] == [
            (2, "escalated"),
            (3, "stage started"),
        ]


# --- Shorten deadline -----------------------------------------------------------------


async def test_shorten_deadline_brings_the_escalation_forward(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness]
) -> None:
    harness = new_worker()
    request = make_request("merton", await ts_env.get_current_time())
    policy = request.policy
    manager = receiving_manager(request)
    async with harness.worker(), open_case(harness, request) as handle:
        state = await state_of(handle)
        policy_deadline = state.clock.deadline
        assert policy_deadline == calendar(policy).add_working_days(state.raised_at, 5)
        now = await ts_env.get_current_time()
        first = (now + timedelta(hours=6)).replace(microsecond=0)
        result = await handle.execute_update(
            DisagreementWorkflow.shorten_deadline,
            ShortenDeadline(by=manager, deadline=first, reason="Child protection conference"),
        )
        assert result.deadline == first
        state = await state_of(handle)
        assert state.clock.deadline == first
        assert state.clock.deadline_basis == "shortened"
        assert state.clock.started_at == state.raised_at  # same stage, same start
        shortened = [e for e in state.events if e.type == "deadline_shortened"]
        assert [(e.by, e.deadline) for e in shortened] == [(manager.id, first)]
        told = [
            n
            for n in case_notices(harness, request.reference)
            if n.template == "deadline-shortened"
        ]
        assert len(told) == 1
        assert labels(told[0]) == [*owners(policy, request, 0), "raiser"]
        assert told[0].deadline == first

        # Shorter again is fine; the case then escalates at that instant.
        second = first - timedelta(hours=3)
        await handle.execute_update(
            DisagreementWorkflow.shorten_deadline,
            ShortenDeadline(by=manager, deadline=second, reason="Sooner still"),
        )
        await ts_env.sleep(second - now + timedelta(minutes=5))
        state = await wait_for(handle, lambda s: s.stage == 1)
        assert state.clock.started_at == second
        auto = [e for e in state.events if e.type == "auto_escalated"]
        assert len(auto) == 1
        assert auto[0].at - second < timedelta(seconds=2)
        assert state.clock.deadline == calendar(policy).add_working_days(second, 5)
        assert state.clock.deadline_basis == "policy"


async def test_an_overdue_final_stage(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness]
) -> None:
    """Past the final stage's deadline the case is overdue: it cannot be
    shortened or escalated, flagging immediate risk changes no deadline and
    sends no extra reminder, and it can still be resolved."""
    harness = new_worker()
    request = make_request("merton", await ts_env.get_current_time())
    policy = request.policy
    manager = receiving_manager(request)
    async with harness.worker(), open_case(harness, request) as handle:
        await climb(handle, policy, manager, 4)
        now = await ts_env.get_current_time()
        due = (now + timedelta(hours=1)).replace(microsecond=0)
        await handle.execute_update(
            DisagreementWorkflow.shorten_deadline,
            ShortenDeadline(by=manager, deadline=due, reason="Panel meets today"),
        )
        await ts_env.sleep(timedelta(hours=2))
        state = await wait_for(handle, lambda s: s.status == "overdue")
        overdue = [e for e in state.events if e.type == "overdue"]
        assert len(overdue) == 1
        assert overdue[0].at - due < timedelta(seconds=2)
        reminders = [e for e in state.events if e.template == "overdue-final-stage"]
        assert [e.to for e in reminders] == [[*owners(policy, request, 4), "business-team"]]
        assert state.clock.next_reminder_at == calendar(policy).add_working_days(due, 5)
        closed = await search_attributes(ts_env.client, handle.id)
        assert closed[sa.STATUS.name] == "overdue"
        assert sa.DEADLINE.name not in closed  # nothing left to fall due

        result = await handle.execute_update(
            DisagreementWorkflow.immediate_risk, FlagImmediateRisk(by=manager, reason="Harm")
        )
        assert (result.status, result.deadline) == ("overdue", due)
        after = await state_of(handle)
        assert after.clock == state.clock
        assert [e.type for e in events_after(after, state.next_seq - 1)] == [
            "immediate_risk",
            "notice",
        ]

        for update, action, message in [
            (
                DisagreementWorkflow.shorten_deadline,
                ShortenDeadline(by=manager, deadline=due + timedelta(days=1), reason="x"),
                "the final stage's deadline has already passed",
            ),
            (
                DisagreementWorkflow.escalate,
                Escalate(by=manager, reason="Higher"),
                "already at the final stage (Stage 4: independent person); there is nowhere higher",
            ),
        ]:
            with pytest.raises(WorkflowUpdateFailedError) as caught:
                await handle.execute_update(update, action)
            assert isinstance(caught.value.cause, ApplicationError)
            assert caught.value.cause.message == message

        result = await handle.execute_update(
            DisagreementWorkflow.resolve, Resolve(by=manager, outcome="Panel decided")
        )
        # §5.1: confirmed in writing between the parties, at every stage.
        assert result.status == "awaiting-confirmation"
        await handle.execute_update(DisagreementWorkflow.confirm, ConfirmOutcome(by=manager))
        assert (await outcome(ts_env, handle)).status == "resolved"


async def test_deployment_closure_days_are_not_working_days(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness]
) -> None:
    harness = new_worker()
    request = make_request("merton", await ts_env.get_current_time())
    plain = calendar(request.policy)
    raised_on = request.raised_at.astimezone(plain.zone).date()  # type: ignore[union-attr]
    first = plain.next_working_day(raised_on)
    closures = [first, plain.next_working_day(first)]
    closed = WorkingDayCalendar(request.policy.calendar_spec(), closures)
    async with harness.worker(extra_closures=closures), open_case(harness, request) as handle:
        state = await state_of(handle)
    assert state.clock.deadline == closed.add_working_days(state.raised_at, 5)
    assert state.clock.deadline != plain.add_working_days(state.raised_at, 5)
    assert state.clock.acknowledgement_due == closed.add_working_days(state.raised_at, 1)


async def test_the_business_team_may_resolve(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness]
) -> None:
    harness = new_worker()
    request = make_request("hillingdon", await ts_env.get_current_time())
    team = Actor(id="bt-1", name="Business support", role="business-team")
    async with harness.worker(), open_case(harness, request) as handle:
        await climb(handle, request.policy, receiving_manager(request), 1)
        result = await handle.execute_update(
            DisagreementWorkflow.resolve, Resolve(by=team, outcome="Agreed at panel")
        )
        # Confirmed in writing "between the parties": the team may record it.
        assert result.status == "awaiting-confirmation"
        result = await handle.execute_update(DisagreementWorkflow.confirm, ConfirmOutcome(by=team))
        assert result.status == "resolved"
        assert (await outcome(ts_env, handle)).status == "resolved"
        state = await state_of(handle)
    assert [e.by for e in state.events if e.type in ("resolved", "confirmed")] == ["bt-1"] * 2


# --- Immediate risk -------------------------------------------------------------------


@pytest.mark.parametrize(("policy_id", "area"), sorted(URGENT_CONTACTS))
async def test_immediate_risk_at_raise_tells_the_urgent_contacts_at_once(
    ts_env: WorkflowEnvironment,
    new_worker: Callable[[], Harness],
    policy_id: str,
    area: str,
) -> None:
    harness = new_worker()
    request = make_request(
        policy_id, await ts_env.get_current_time(), immediate_risk=True, area=area
    )
    policy = request.policy
    cal = calendar(policy)
    async with harness.worker(), open_case(harness, request) as handle:
        state = await state_of(handle)
        assert [e.type for e in state.events if e.type != "notice"][:3] == [
            "raised",
            "immediate_risk",
            "stage_started",
        ]
        assert state.immediate_risk is True
        assert state.risk_from_stage == 0
        notices = case_notices(harness, request.reference)
        assert notices[0].template == "immediate-risk"  # before anything else
        usual = [*owners(policy, request, 0), "raiser", "business-team"]
        assert set(usual) <= set(labels(notices[0]))
        urgent = [r for r in labels(notices[0]) if r not in usual]
        assert urgent == [r for r in URGENT_CONTACTS[(policy_id, area)] if r not in usual]
        # Every recipient is in this case's area (or names no area at all).
        assert {r.area for r in notices[0].recipients} == {area}
        expected = {
            "merton": cal.add_working_days(request.raised_at, 2),
            "wirral": cal.same_working_day(request.raised_at),
        }.get(policy_id, cal.deadline(request.raised_at, policy.stages[0].timescale))
        assert state.clock.deadline == expected


@pytest.mark.parametrize("policy_id", ["staffordshire-stoke", "cheshire", "hillingdon"])
async def test_immediate_risk_mid_case_without_override_keeps_the_timescale(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness], policy_id: str
) -> None:
    harness = new_worker()
    request = make_request(policy_id, await ts_env.get_current_time())
    policy = request.policy
    manager = receiving_manager(request)
    async with harness.worker(), open_case(harness, request) as handle:
        await climb(handle, policy, manager, 1)
        before = await state_of(handle)
        result = await handle.execute_update(
            DisagreementWorkflow.immediate_risk,
            FlagImmediateRisk(by=manager, reason="Child disclosed harm"),
        )
        state = await state_of(handle)
        assert result.deadline == before.clock.deadline
        assert state.clock == before.clock
        assert state.immediate_risk is True
        flagged = [e for e in state.events if e.type == "immediate_risk"]
        assert [(e.by, e.detail) for e in flagged] == [(manager.id, "flagged at stage 1")]
        urgent = [
            n for n in case_notices(harness, request.reference) if n.template == "immediate-risk"
        ]
        assert len(urgent) == 1
        assert set(URGENT_CONTACTS[(policy_id, request.area or "")]) <= set(labels(urgent[0]))
        # Later stages keep their own timescales too.
        result = await escalate(handle, policy, manager, 2)
        state = await state_of(handle)
        assert result.deadline == calendar(policy).deadline(
            state.clock.started_at, policy.stages[2].timescale
        )


async def test_merton_immediate_risk_mid_case_brings_deadlines_forward(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness]
) -> None:
    harness = new_worker()
    request = make_request("merton", await ts_env.get_current_time())
    policy = request.policy
    cal = calendar(policy)
    manager = receiving_manager(request)
    async with harness.worker(), open_case(harness, request) as handle:
        own = (await state_of(handle)).clock.deadline
        result = await handle.execute_update(
            DisagreementWorkflow.immediate_risk,
            FlagImmediateRisk(by=manager, reason="Child disclosed harm"),
        )
        state = await state_of(handle)
        flagged = next(e for e in state.events if e.type == "immediate_risk")
        two_days = cal.add_working_days(flagged.at, 2)
        assert two_days < own
        assert result.deadline == two_days
        assert state.clock.deadline == two_days
        assert state.clock.deadline_basis == "immediate-risk"
        assert state.clock.started_at == state.raised_at
        urgent = [
            n for n in case_notices(harness, request.reference) if n.template == "immediate-risk"
        ]
        assert "mscp-executive" in labels(urgent[0])
        # Later stages use the 2 working days.
        result = await escalate(handle, policy, manager, 1)
        state = await state_of(handle)
        assert result.deadline == cal.add_working_days(state.clock.started_at, 2)
        assert state.clock.deadline_basis == "immediate-risk"


async def test_wirral_immediate_risk_mid_case_is_same_working_day_for_the_current_stage(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness]
) -> None:
    harness = new_worker()
    request = make_request("wirral", await ts_env.get_current_time())
    policy = request.policy
    cal = calendar(policy)
    manager = receiving_manager(request)
    async with harness.worker(), open_case(harness, request) as handle:
        result = await handle.execute_update(
            DisagreementWorkflow.immediate_risk,
            FlagImmediateRisk(by=manager, reason="Child disclosed harm"),
        )
        state = await state_of(handle)
        flagged = next(e for e in state.events if e.type == "immediate_risk")
        assert result.deadline == cal.same_working_day(flagged.at)
        assert state.clock.deadline_basis == "immediate-risk"
        urgent = [
            n for n in case_notices(harness, request.reference) if n.template == "immediate-risk"
        ]
        assert "central-advice-and-duty-service" in labels(urgent[0])
        # Only the current stage: stage 2 keeps no written timescale.
        result = await escalate(handle, policy, manager, 1)
        assert result.deadline is None


# --- Hillingdon: start higher, or jump -------------------------------------------------


@pytest.mark.parametrize("start_stage", [1, 2, 3])
async def test_hillingdon_starts_at_a_later_stage_for_immediate_risk(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness], start_stage: int
) -> None:
    harness = new_worker()
    request = make_request(
        "hillingdon",
        await ts_env.get_current_time(),
        immediate_risk=True,
        start_stage=start_stage,
    )
    policy = request.policy
    async with harness.worker(), open_case(harness, request) as handle:
        state = await state_of(handle)
        assert state.stage == start_stage
        assert state.stages_reached == [start_stage]
        assert state.clock.deadline is None
        assert state.clock.next_reminder_at == calendar(policy).add_working_days(state.raised_at, 5)
        started = [e for e in state.events if e.type == "stage_started"]
        assert [(e.stage, e.detail) for e in started] == [(start_stage, "raised at this stage")]
        notices = case_notices(harness, request.reference)
        assert [n.template for n in notices] == [
            "immediate-risk",
            "stage-started",
            "business-team-record",
        ]
        assert "business-team" in labels(notices[0])
        assert labels(notices[1]) == [*owners(policy, request, start_stage), "raiser"]
        # Stage 2's record of every ongoing disagreement is owed even when a
        # case starts beyond it.
        assert labels(notices[2]) == ["business-team"]


@pytest.mark.parametrize("how", ["flag-with-jump", "escalate-with-to-stage"])
async def test_hillingdon_jumps_to_a_later_stage_mid_case(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness], how: str
) -> None:
    harness = new_worker()
    request = make_request("hillingdon", await ts_env.get_current_time())
    policy = request.policy
    manager = receiving_manager(request)
    async with harness.worker(), open_case(harness, request) as handle:
        before = (await state_of(handle)).next_seq - 1
        if how == "flag-with-jump":
            result = await handle.execute_update(
                DisagreementWorkflow.immediate_risk,
                FlagImmediateRisk(by=manager, reason="Serious injury", jump_to_stage=3),
            )
        else:
            await handle.execute_update(
                DisagreementWorkflow.immediate_risk,
                FlagImmediateRisk(by=manager, reason="Serious injury"),
            )
            result = await escalate(handle, policy, manager, 3, to_stage=3)
        assert (result.stage, result.deadline) == (3, None)
        state = await state_of(handle)
        assert state.stages_reached == [0, 3]
        assert state.risk_from_stage == (3 if how == "flag-with-jump" else 0)
        new = [e for e in events_after(state, before) if e.type != "notice"]
        assert [e.type for e in new] == ["immediate_risk", "escalated", "stage_started"]
        assert new[1].detail.startswith("from stage 0 to stage 3: ")
        assert all(e.by == manager.id for e in new)
        told = [
            n
            for n in case_notices(harness, request.reference)
            if n.template == "stage-started" and n.stage == 3
        ]
        assert set(labels(told[0])) == {
            *owners(policy, request, 0),
            *owners(policy, request, 3),
            "raiser",
        }
        # The stage-2 record the business team keeps is not jumped over.
        assert any(
            n.template == "business-team-record" and n.stage == 3
            for n in case_notices(harness, request.reference)
        )


# --- The query, search attributes, notices ------------------------------------------


async def test_the_query_returns_the_whole_case(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness]
) -> None:
    harness = new_worker()
    request = make_request("merton", await ts_env.get_current_time())
    policy = request.policy
    manager = receiving_manager(request)
    async with harness.worker(), open_case(harness, request) as handle:
        await handle.execute_update(DisagreementWorkflow.acknowledge, Acknowledge(by=manager))
        await handle.execute_update(
            DisagreementWorkflow.add_note, AddNote(by=manager, text="Spoke to the GP")
        )
        await escalate(handle, policy, manager, 1)
        await handle.execute_update(
            DisagreementWorkflow.immediate_risk, FlagImmediateRisk(by=manager, reason="Harm")
        )
        state = await state_of(handle)

    assert state.reference == request.reference
    assert (state.policy_id, state.policy_version) == ("merton", policy.version)
    assert state.partnership == policy.partnership
    assert state.area == "merton"
    assert state.raising_agency == request.raising_agency
    assert state.receiving_agency == request.receiving_agency
    assert state.categories == ["thresholds"]
    assert state.raised_by == request.raised_by
    assert state.raised_at == request.raised_at
    assert (state.status, state.stage, state.stage_key) == ("open", 1, "line-managers")
    assert state.stage_name == policy.stages[1].name
    assert (state.highest_stage_reached, state.stages_reached) == (1, [0, 1])
    assert state.acknowledged_by is None  # acknowledged at stage 0, not yet at stage 1
    assert (state.immediate_risk, state.risk_from_stage) == (True, 1)
    assert state.clock.deadline is not None
    assert state.clock.deadline_text and state.clock.deadline_text.endswith(("GMT", "BST"))
    assert state.clock.deadline_basis == "immediate-risk"
    assert [(n.by.id, n.text) for n in state.notes] == [
        ("operator", "barrier"),
        (manager.id, "Spoke to the GP"),
    ]
    # Events are numbered in order, each with when, stage and who acted.
    assert [e.seq for e in state.events] == list(range(1, len(state.events) + 1))
    assert state.next_seq == len(state.events) + 1
    assert all(a.at <= b.at for a, b in zip(state.events, state.events[1:], strict=False))
    actions = [(e.type, e.by) for e in state.events if e.type not in ("notice", "reminder")]
    assert actions == [
        ("raised", "raiser-1"),
        ("stage_started", "raiser-1"),
        ("note", "operator"),  # open_case's barrier
        ("acknowledged", manager.id),
        ("note", manager.id),
        ("escalated", manager.id),
        ("stage_started", manager.id),
        ("immediate_risk", manager.id),
    ]
    sent = {n.notice_id: n for n in case_notices(harness, request.reference)}
    notice_events = [e for e in state.events if e.type == "notice"]
    assert len(notice_events) == len(sent) > 0
    for event in notice_events:
        notice = sent[event.notice_id]
        assert event.template == notice.template
        assert event.to == labels(notice)
        assert event.stage == notice.stage


async def test_search_attributes_follow_the_case(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness]
) -> None:
    harness = new_worker()
    request = make_request("merton", await ts_env.get_current_time())
    policy = request.policy
    manager = receiving_manager(request)
    async with harness.worker(), open_case(harness, request) as handle:
        state = await state_of(handle)
        typed = (await handle.describe()).typed_search_attributes
        assert typed.get(sa.PARTNERSHIP) == "merton"
        assert typed.get(sa.AREA) == "merton"
        assert typed.get(sa.STAGE_INDEX) == 0
        assert typed.get(sa.STAGE_NAME) == "practitioners"
        assert typed.get(sa.STATUS) == "open"
        assert typed.get(sa.DEADLINE) == state.clock.deadline
        assert typed.get(sa.IMMEDIATE_RISK) is False
        assert typed.get(sa.AGENCIES) == ["merton-health", "merton-childrens-social-care"]
        assert typed.get(sa.CATEGORIES) == ["thresholds"]
        # Only the product's non-identifying attributes are set, and the
        # SDK's own record of the workflow.patched ids the case went through.
        names = {pair.key.name for pair in typed}
        assert names == {key.name for key in sa.ALL} | {"TemporalChangeVersion"}
        # A new case asks one patch for every change made before it.
        assert typed.get(CHANGE_VERSION) == [PATCH_ALL_CHANGES_TO_2026_12_07]

        await escalate(handle, policy, manager, 1)
        await handle.execute_update(
            DisagreementWorkflow.immediate_risk, FlagImmediateRisk(by=manager, reason="Harm")
        )
        state = await state_of(handle)
        typed = (await handle.describe()).typed_search_attributes
        assert typed.get(sa.STAGE_INDEX) == 1
        assert typed.get(sa.STAGE_NAME) == "line-managers"
        assert typed.get(sa.DEADLINE) == state.clock.deadline
        assert typed.get(sa.IMMEDIATE_RISK) is True

        await handle.execute_update(
            DisagreementWorkflow.resolve, Resolve(by=manager, outcome="Agreed")
        )
        await handle.execute_update(DisagreementWorkflow.confirm, ConfirmOutcome(by=manager))
        await outcome(ts_env, handle)
        closed = await search_attributes(ts_env.client, handle.id)
        assert closed[sa.STATUS.name] == "resolved"
        assert closed[sa.STAGE_INDEX.name] == 1
        assert sa.DEADLINE.name not in closed  # no deadline on a closed case


async def test_notice_ids_are_deterministic_and_unique_per_case(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness]
) -> None:
    async def run(harness: Harness, request: RaiseDisagreement) -> tuple[list[str], Any]:
        manager = receiving_manager(request)
        async with harness.worker(), open_case(harness, request) as handle:
            await climb(handle, request.policy, manager, 2)
            await handle.execute_update(
                DisagreementWorkflow.resolve, Resolve(by=manager, outcome="Agreed")
            )
            await handle.execute_update(DisagreementWorkflow.confirm, ConfirmOutcome(by=manager))
            await outcome(ts_env, handle)
            state = await state_of(handle)
            history = await handle.fetch_history()
        ids = [n.notice_id for n in case_notices(harness, request.reference)]
        sent = [e for e in state.events if e.type in ("notice", "reminder")]
        recorded = [e.notice_id for e in sent]
        assert ids == recorded
        # Named by what each is for: the stage, the template, and how many of
        # that template the stage had sent before.
        for index, event in enumerate(sent):
            count = sum(
                1
                for e in sent[: index + 1]
                if (e.stage, e.template) == (event.stage, event.template)
            )
            assert event.notice_id == (
                f"{request.reference}-s{event.stage}n{count}-{event.template}"
            )
        return ids, history

    now = await ts_env.get_current_time()
    first = make_request("merton", now)
    other = make_request("merton", now)
    ids, history = await run(new_worker(), first)
    other_ids, _ = await run(new_worker(), other)
    assert len(set(ids)) == len(ids) > 5
    assert not set(ids) & set(other_ids)
    # The same case run again (same reference, a new worker and sink) sends
    # exactly the same notice ids: a retried send is recognised as a duplicate.
    again, _ = await run(new_worker(), first)
    assert again == ids
    # And the history replays without nondeterminism.
    replayer = Replayer(workflows=[DisagreementWorkflow], data_converter=data_converter())
    await replayer.replay_workflow(history)


CHILD_NAME = "Peregrina Zanzibar-Quockett"
CHILD_NHS = "943 476 5919"
CHILD_ADDRESS = "17 Lanternfish Row, Merton"


# Where each policy's business team is sent a form, so every form is produced.
FORM_STAGE = {"merton": 3, "staffordshire-stoke": 4, "cheshire": 3, "wirral": 2, "hillingdon": 3}


@pytest.mark.parametrize("policy_id", POLICIES)
async def test_no_child_identifying_data_leaves_the_case(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness], policy_id: str
) -> None:
    """The child's details travel in the request only: never in a notice, a
    search attribute, the workflow id or the case's recorded events."""
    harness = new_worker()
    request = make_request(policy_id, await ts_env.get_current_time(), immediate_risk=True)
    request = request.model_copy(
        update={
            "child": ChildDetails(
                name=CHILD_NAME,
                date_of_birth=date(2016, 4, 9),
                address=CHILD_ADDRESS,
                nhs_number=CHILD_NHS,
            )
        }
    )
    policy = request.policy
    manager = receiving_manager(request)
    stage = FORM_STAGE[policy_id]
    async with harness.worker(), open_case(harness, request) as handle:
        await handle.execute_update(DisagreementWorkflow.acknowledge, Acknowledge(by=manager))
        await climb(handle, policy, manager, stage)
        resolution_form = {
            f.key: "Agreed at a meeting"
            for form in policy.forms
            for f in form.fields_from("resolution")
        }
        await handle.execute_update(
            DisagreementWorkflow.resolve,
            Resolve(by=manager, outcome="Plan agreed", form=resolution_form),
        )
        if (policy_id, stage) in WRITTEN_CONFIRMATION:
            await handle.execute_update(DisagreementWorkflow.confirm, ConfirmOutcome(by=manager))
        open_attributes = (await describe_raw(ts_env.client, handle.id)).workflow_execution_info
        await outcome(ts_env, handle)
        state = await state_of(handle)
        closed = await describe_raw(ts_env.client, handle.id)

    notices = case_notices(harness, request.reference)
    assert any(n.template == "business-team-record" and n.forms for n in notices)
    canaries = [
        CHILD_NAME,
        "Peregrina",
        "Zanzibar",
        CHILD_NHS,
        CHILD_NHS.replace(" ", ""),
        CHILD_ADDRESS,
        "Lanternfish",
        "2016-04-09",
        "9 April 2016",
    ]

    def found(text: str) -> list[str]:
        return [c for c in canaries if c in text]

    # Nothing in any notice: its words, recipients, context or form names.
    leaks = [
        (n.notice_id, found(n.model_dump_json(exclude={"filled_forms"})))
        for n in notices
        if found(n.model_dump_json(exclude={"filled_forms"}))
    ]
    assert leaks == []
    # Forms filled from the case (attached for the business team, where that
    # work is in place) hold the child's details only in the fields the
    # policy's own form marks as identifying, never in an anonymised form.
    for notice in notices:
        for form in getattr(notice, "filled_forms", []):
            # The business team's record, or the form sent on to the person it
            # is addressed to (Staffordshire's senior manager).
            assert notice.template in ("business-team-record", "form-sent")
            if notice.template == "business-team-record":
                assert labels(notice) == ["business-team"]
            for field in form.fields:
                if found(field.value):
                    assert field.identifying and not form.anonymised, (form.key, field.key)
    # Nor in the words of any email rendered from a notice (where rendered).
    for email in getattr(harness.sink, "emails", []):
        if email.reference == request.reference:
            assert found(f"{email.subject}\n{email.text}\n{email.html}") == []
    for described in (open_attributes, closed.workflow_execution_info):
        raw = described.search_attributes.SerializeToString()
        assert [c for c in canaries if c.encode() in raw] == []
    assert found(handle.id) == found(request.reference) == []
    assert found(state.model_dump_json()) == []


async def test_many_updates_at_once_all_get_an_answer(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness]
) -> None:
    """Updates racing a resolution are each answered (applied, or refused
    because the case closed) before the workflow completes."""
    harness = new_worker()
    request = make_request("cheshire", await ts_env.get_current_time())
    manager = receiving_manager(request)
    async with harness.worker(), open_case(harness, request) as handle:
        calls = [
            handle.execute_update(
                DisagreementWorkflow.add_note, AddNote(by=manager, text=f"note {i}")
            )
            for i in range(4)
        ]
        calls.insert(
            2,
            handle.execute_update(DisagreementWorkflow.resolve, Resolve(by=manager, outcome="Ok")),
        )
        answers = await asyncio.gather(*calls, return_exceptions=True)
        done = await outcome(ts_env, handle)
    assert done.status == "resolved"
    assert any(isinstance(a, ActionResult) and a.status == "resolved" for a in answers)
    for answer in answers:
        if isinstance(answer, WorkflowUpdateFailedError):
            # Accepted before the case closed, refused once it had.
            assert isinstance(answer.cause, ApplicationError)
            assert answer.cause.message == "cannot add a note: the case is closed (resolved)"
        elif isinstance(answer, BaseException):
            # Arrived after the workflow had completed (rare: the server answers).
            assert "complete" in str(answer).lower(), answer
        else:
            assert isinstance(answer, ActionResult)


def test_every_policy_is_covered() -> None:
    for policy_id in POLICIES:
        assert len(get_policy(policy_id).stages) == STAGE_COUNTS[policy_id]
