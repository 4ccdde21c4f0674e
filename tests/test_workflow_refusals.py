"""Every action the disagreement workflow refuses, sent as an update to the
real workflow on the session's time-skipping server (DESIGN.md section 4:
"the API can refuse an invalid action ... with a clear error").

A refusal by an update's validator reaches the caller as
``WorkflowUpdateFailedError`` whose cause is an ``ApplicationError`` of type
``ActionRefused`` carrying the message shown to the user; the case itself is
untouched (the update was never accepted, so nothing is recorded).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.api.common.v1 import Payload, WorkflowExecution
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from policies.model import Policy
from tests.conftest import (
    Harness,
    barrier,
    escalation_form,
    make_request,
    raising_manager,
    receiving_manager,
    state_of,
)
from workflows.disagreement import DisagreementWorkflow
from workflows.messages import (
    MAX_TEXT,
    NOTE_CHARACTERS_PER_CASE,
    NOTES_PER_STAGE,
    Acknowledge,
    Actor,
    AddNote,
    CaseState,
    ConfirmOutcome,
    Escalate,
    FlagImmediateRisk,
    RaiseDisagreement,
    Resolve,
    ShortenDeadline,
    Withdraw,
)

# --- Helpers ------------------------------------------------------------------


async def describe_status(client: Client, workflow_id: str) -> Any:
    described = await client.workflow_service.describe_workflow_execution(
        DescribeWorkflowExecutionRequest(
            namespace=client.namespace, execution=WorkflowExecution(workflow_id=workflow_id)
        )
    )
    return described.workflow_execution_info.status


@asynccontextmanager
async def open_case(harness: Harness, request: RaiseDisagreement) -> AsyncIterator[WorkflowHandle]:
    handle = await harness.raise_case(request)
    try:
        await barrier(handle)
        yield handle
    finally:
        status = await describe_status(harness.client, handle.id)
        if status == WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING:
            await handle.terminate("test over")


async def climb(handle: WorkflowHandle, policy: Policy, by: Actor, target: int) -> None:
    state = await state_of(handle)
    for index in range(state.stage + 1, target + 1):
        await handle.execute_update(
            DisagreementWorkflow.escalate,
            Escalate(by=by, reason="Not resolved", form=escalation_form(policy, index)),
        )


async def refused(call: Awaitable[Any]) -> ApplicationError:
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await call
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError), cause
    assert cause.type == "ActionRefused"
    assert cause.non_retryable
    return cause


# --- The refusals ---------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """Bring a case to a position, then send one update that must be refused
    with exactly ``message`` (a callable: some messages name the case's own
    deadline or stage)."""

    id: str
    policy_id: str
    setup: Callable[[WorkflowHandle, RaiseDisagreement], Awaitable[None]]
    act: Callable[[WorkflowHandle, RaiseDisagreement, CaseState], Awaitable[Any]]
    message: Callable[[RaiseDisagreement, CaseState], str]
    immediate_risk: bool = False


async def _nothing(handle: WorkflowHandle, request: RaiseDisagreement) -> None:
    return None


def _to_stage(target: int) -> Callable[[WorkflowHandle, RaiseDisagreement], Awaitable[None]]:
    async def setup(handle: WorkflowHandle, request: RaiseDisagreement) -> None:
        await climb(handle, request.policy, receiving_manager(request), target)

    return setup


async def _resolved_awaiting_confirmation(
    handle: WorkflowHandle, request: RaiseDisagreement
) -> None:
    await handle.execute_update(
        DisagreementWorkflow.resolve,
        Resolve(by=receiving_manager(request), outcome="Agreed"),
    )


async def _resolved_at_stage_2(handle: WorkflowHandle, request: RaiseDisagreement) -> None:
    await _to_stage(2)(handle, request)
    await _resolved_awaiting_confirmation(handle, request)


async def _acknowledged(handle: WorkflowHandle, request: RaiseDisagreement) -> None:
    await handle.execute_update(
        DisagreementWorkflow.acknowledge, Acknowledge(by=receiving_manager(request))
    )


async def _flagged(handle: WorkflowHandle, request: RaiseDisagreement) -> None:
    await handle.execute_update(
        DisagreementWorkflow.immediate_risk,
        FlagImmediateRisk(by=receiving_manager(request), reason="Harm disclosed"),
    )


def _escalate(form: dict[str, str] | None = None, to_stage: int | None = None) -> Any:
    async def act(handle: WorkflowHandle, request: RaiseDisagreement, state: CaseState) -> Any:
        return await handle.execute_update(
            DisagreementWorkflow.escalate,
            Escalate(
                by=receiving_manager(request),
                reason="Still unresolved",
                form=form or {},
                to_stage=to_stage,
            ),
        )

    return act


def _shorten(to: Callable[[CaseState], datetime]) -> Any:
    async def act(handle: WorkflowHandle, request: RaiseDisagreement, state: CaseState) -> Any:
        return await handle.execute_update(
            DisagreementWorkflow.shorten_deadline,
            ShortenDeadline(by=receiving_manager(request), deadline=to(state), reason="Sooner"),
        )

    return act


def _jump(target: int) -> Any:
    async def act(handle: WorkflowHandle, request: RaiseDisagreement, state: CaseState) -> Any:
        return await handle.execute_update(
            DisagreementWorkflow.immediate_risk,
            FlagImmediateRisk(by=receiving_manager(request), reason="Harm", jump_to_stage=target),
        )

    return act


async def _confirm(handle: WorkflowHandle, request: RaiseDisagreement, state: CaseState) -> Any:
    return await handle.execute_update(
        DisagreementWorkflow.confirm, ConfirmOutcome(by=receiving_manager(request))
    )


async def _acknowledge(handle: WorkflowHandle, request: RaiseDisagreement, state: CaseState) -> Any:
    return await handle.execute_update(
        DisagreementWorkflow.acknowledge, Acknowledge(by=receiving_manager(request))
    )


async def _acknowledge_as_raiser(
    handle: WorkflowHandle, request: RaiseDisagreement, state: CaseState
) -> Any:
    return await handle.execute_update(
        DisagreementWorkflow.acknowledge, Acknowledge(by=raising_manager(request))
    )


async def _resolve(handle: WorkflowHandle, request: RaiseDisagreement, state: CaseState) -> Any:
    return await handle.execute_update(
        DisagreementWorkflow.resolve, Resolve(by=receiving_manager(request), outcome="Agreed")
    )


async def _resolve_as_outsider(
    handle: WorkflowHandle, request: RaiseDisagreement, state: CaseState
) -> Any:
    outsider = Actor(id="x", name="Someone else", agency="merton-police", role="manager")
    return await handle.execute_update(
        DisagreementWorkflow.resolve, Resolve(by=outsider, outcome="Agreed")
    )


async def _withdraw_as_outsider(
    handle: WorkflowHandle, request: RaiseDisagreement, state: CaseState
) -> Any:
    outsider = Actor(id="x", name="Someone else", agency="merton-police", role="practitioner")
    return await handle.execute_update(
        DisagreementWorkflow.withdraw, Withdraw(by=outsider, reason="Not mine")
    )


async def _flag_again(handle: WorkflowHandle, request: RaiseDisagreement, state: CaseState) -> Any:
    return await handle.execute_update(
        DisagreementWorkflow.immediate_risk,
        FlagImmediateRisk(by=receiving_manager(request), reason="Again"),
    )


STAFFORDSHIRE_FORM = {
    "summary-of-concerns": "Threshold not met for a strategy meeting",
    "requested-action": "Hold a strategy meeting",
}


def _text(message: str) -> Callable[[RaiseDisagreement, CaseState], str]:
    return lambda request, state: message


def _notes(count: int, text: str) -> Callable[[WorkflowHandle, RaiseDisagreement], Awaitable[None]]:
    async def setup(handle: WorkflowHandle, request: RaiseDisagreement) -> None:
        for _ in range(count):
            await handle.execute_update(
                DisagreementWorkflow.add_note, AddNote(by=receiving_manager(request), text=text)
            )

    return setup


def _add_note(text: str) -> Any:
    async def act(handle: WorkflowHandle, request: RaiseDisagreement, state: CaseState) -> Any:
        return await handle.execute_update(
            DisagreementWorkflow.add_note, AddNote(by=receiving_manager(request), text=text)
        )

    return act


REFUSALS = [
    Refusal(
        "a-stage's-fifty-first-note",
        "merton",
        _notes(NOTES_PER_STAGE - 1, "Discussed at the strategy meeting"),  # and the barrier's
        _add_note("One more"),
        _text(
            "this stage already has 50 notes, the most a stage keeps; add to an earlier "
            "note's subject in the agencies' own records, or move the case on"
        ),
    ),
    Refusal(
        "notes-past-the-case's-total",
        "merton",
        _notes(NOTE_CHARACTERS_PER_CASE // MAX_TEXT - 1, "x" * MAX_TEXT),
        _add_note("x" * MAX_TEXT),
        _text(
            "the case's notes would pass 200,000 characters, the most a case keeps (190,007 "
            "so far); keep longer records in the agencies' own systems and note where they are"
        ),
    ),
    Refusal(
        "a-deadline-beyond-the-horizon-on-a-stage-without-one",
        "hillingdon",
        _nothing,
        _shorten(lambda s: s.raised_at + timedelta(days=400)),
        _text("a deadline may be at most 366 days ahead; a deadline may only be brought forward"),
    ),
    Refusal(
        "escalate-past-the-final-stage-merton",
        "merton",
        _to_stage(4),
        _escalate(),
        _text("already at the final stage (Stage 4: independent person); there is nowhere higher"),
    ),
    Refusal(
        "escalate-past-the-final-stage-hillingdon",
        "hillingdon",
        _to_stage(3),
        _escalate(),
        _text(
            "already at the final stage (Stage 4: LSCB/SAB chair or resolution panel); "
            "there is nowhere higher"
        ),
    ),
    Refusal(
        "lengthen-the-deadline",
        "merton",
        _nothing,
        _shorten(lambda s: s.clock.deadline + timedelta(days=1)),  # type: ignore[operator]
        lambda r, s: (
            "a deadline may only be shortened, never lengthened: the current deadline is "
            f"{s.clock.deadline_text}"
        ),
    ),
    Refusal(
        "shorten-to-the-same-deadline",
        "wirral",
        _nothing,
        _shorten(lambda s: s.clock.deadline),  # type: ignore[arg-type, return-value]
        lambda r, s: (
            "a deadline may only be shortened, never lengthened: the current deadline is "
            f"{s.clock.deadline_text}"
        ),
    ),
    Refusal(
        "shorten-into-the-past",
        "cheshire",
        _nothing,
        _shorten(lambda s: s.raised_at - timedelta(hours=1)),
        _text("the new deadline must be in the future"),
    ),
    Refusal(
        "shorten-without-a-time-zone",
        "merton",
        _nothing,
        _shorten(lambda s: (s.raised_at + timedelta(hours=2)).replace(tzinfo=None)),
        _text("the new deadline needs a time zone"),
    ),
    Refusal(
        "staffordshire-stage-3-without-its-form",
        "staffordshire-stoke",
        _to_stage(1),
        _escalate(),
        _text(
            "escalating to Stage 3: senior managers (formal escalation) needs the Formal "
            "Escalation Form: missing 'Summary of Concerns, including the specific "
            "difference/s which has resulted in utilising the Escalation process (including "
            "how every effort has been made to resolve this matter at a local level within "
            "Stages 1 & 2)', 'Requested Action'"
        ),
    ),
    Refusal(
        "staffordshire-stage-3-with-a-blank-field",
        "staffordshire-stoke",
        _to_stage(1),
        _escalate(form={**STAFFORDSHIRE_FORM, "requested-action": "   "}),
        _text(
            "escalating to Stage 3: senior managers (formal escalation) needs the Formal "
            "Escalation Form: missing 'Requested Action'"
        ),
    ),
    Refusal(
        "cheshire-step-3-without-appendix-a",
        "cheshire",
        _to_stage(2),
        _escalate(form={"step-1-manager": "not an escalation field"}),
        _text(
            "escalating to Step 3: delegated safeguarding partners needs the Form for "
            "submitting professional challenge cases for escalation and resolution to the Local "
            "Safeguarding Children's Partnership (Step 3): missing 'Brief details about the "
            "inter-agency disagreement'"
        ),
    ),
    Refusal(
        "confirm-when-not-awaiting-confirmation",
        "merton",
        _nothing,
        _confirm,
        _text(
            "cannot confirm the outcome: the case is not awaiting written confirmation (it is open)"
        ),
    ),
    Refusal(
        "confirm-where-no-confirmation-is-owed",
        "wirral",
        _to_stage(1),
        _confirm,
        _text(
            "cannot confirm the outcome: the case is not awaiting written confirmation (it is open)"
        ),
    ),
    Refusal(
        "resolve-again-while-awaiting-confirmation",
        "staffordshire-stoke",
        _resolved_awaiting_confirmation,
        _resolve,
        _text(
            "the case is resolved and awaits written confirmation of the outcome; "
            "confirm it, reopen it (no real agreement) or withdraw"
        ),
    ),
    Refusal(
        "escalate-while-awaiting-confirmation",
        "merton",
        _resolved_at_stage_2,
        _escalate(),
        _text(
            "the case is resolved and awaits written confirmation of the outcome; "
            "confirm it, reopen it (no real agreement) or withdraw"
        ),
    ),
    Refusal(
        "acknowledge-twice",
        "cheshire",
        _acknowledged,
        _acknowledge,
        _text("already acknowledged at this stage by Receiving manager"),
    ),
    Refusal(
        "acknowledge-by-the-raising-agency",
        "hillingdon",
        _nothing,
        _acknowledge_as_raiser,
        _text("only the receiving agency acknowledges the concern"),
    ),
    Refusal(
        "resolve-by-an-agency-not-party-to-the-case",
        "merton",
        _nothing,
        _resolve_as_outsider,
        _text("cannot resolve: only the two agencies, the business team or an operator may"),
    ),
    Refusal(
        "withdraw-by-an-agency-not-party-to-the-case",
        "merton",
        _nothing,
        _withdraw_as_outsider,
        _text("cannot withdraw: only the two agencies, the business team or an operator may"),
    ),
    Refusal(
        "immediate-risk-flagged-twice",
        "wirral",
        _flagged,
        _flag_again,
        _text("immediate risk is already flagged on this case"),
    ),
    Refusal(
        "immediate-risk-flagged-twice-since-raise",
        "merton",
        _nothing,
        _flag_again,
        _text("immediate risk is already flagged on this case"),
        immediate_risk=True,
    ),
    *[
        Refusal(
            f"jump-on-{policy_id}",
            policy_id,
            _nothing,
            _jump(2),
            _text(f"the {policy_id} policy does not allow a jump to a later stage"),
        )
        for policy_id in ("merton", "staffordshire-stoke", "cheshire", "wirral")
    ],
    Refusal(
        "escalate-past-the-next-stage-on-a-policy-without-jump",
        "merton",
        _flagged,
        _escalate(to_stage=3),
        _text("the merton policy does not allow a jump to a later stage"),
    ),
    Refusal(
        "hillingdon-jump-without-immediate-risk",
        "hillingdon",
        _nothing,
        _escalate(to_stage=3),
        _text("only a case at immediate risk may jump past the next stage"),
    ),
    Refusal(
        "hillingdon-jump-backwards",
        "hillingdon",
        _to_stage(2),
        _jump(1),
        _text("stage 1 is not a later stage of this ladder (now at stage 2, final stage 3)"),
    ),
    Refusal(
        "hillingdon-jump-past-the-final-stage",
        "hillingdon",
        _nothing,
        _jump(4),
        _text("stage 4 is not a later stage of this ladder (now at stage 0, final stage 3)"),
    ),
]


@pytest.mark.parametrize("refusal", REFUSALS, ids=lambda r: r.id)
async def test_update_is_refused_with_a_clear_message(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness], refusal: Refusal
) -> None:
    harness = new_worker()
    request = make_request(
        refusal.policy_id, await ts_env.get_current_time(), immediate_risk=refusal.immediate_risk
    )
    async with harness.worker(), open_case(harness, request) as handle:
        await refusal.setup(handle, request)
        before = await state_of(handle)
        cause = await refused(refusal.act(handle, request, before))
        assert cause.message == refusal.message(request, before)
        # Refused by the validator: never accepted, nothing recorded or sent.
        after = await state_of(handle)
        assert after == before
        assert not any(e.type == "refused" for e in after.events)


# --- Whatever a person sends ------------------------------------------------------


def raw(encoding: bytes, data: bytes = b"") -> RawValue:
    """A payload exactly as a careless operator or a hand-made client could
    send it, past the product's converter and codec."""
    return RawValue(Payload(metadata={"encoding": encoding}, data=data))


def plain_client(client: Client) -> Client:
    """The same server without the codec: what the Temporal CLI is when
    ``--codec-endpoint`` is left out."""
    return Client(client.service_client, namespace=client.namespace)


MALFORMED_SIGNALS: list[tuple[str, str, list[Any], str]] = [
    (
        "no-input",
        "resolve",
        [],
        "the resolve signal needs exactly one input (a JSON object; an operator may send {} "
        "where nothing more is needed); it had 0",
    ),
    (
        "two-inputs",
        "add_note",
        [{"text": "one"}, {"text": "two"}],
        "the add_note signal needs exactly one input (a JSON object; an operator may send {} "
        "where nothing more is needed); it had 2",
    ),
    (
        "labelled-encrypted-but-not",
        "withdraw",
        [raw(b"binary/encrypted", b'{"reason": "Plain text"}')],
        "the withdraw signal's input could not be decrypted (encrypted payload has no "
        "encryption-key-id metadata); send it through the codec endpoint (--codec-endpoint, "
        "--codec-auth)",
    ),
    (
        "not-json",
        "escalate",
        [raw(b"json/plain", b"{reason: no quotes")],
        "the escalate signal's input is not a valid escalate: input: Invalid JSON: key must be "
        "a string at line 1 column 2",
    ),
    (
        "ill-typed",
        "shorten_deadline",
        [{"deadline": "next Tuesday", "reason": ""}],
        "the shorten_deadline signal's input is not a valid shorten_deadline: deadline: Input "
        "should be a valid datetime or date, invalid character in year; reason: String should "
        "have at least 1 character",
    ),
    ("null", "confirm", [None], "the confirm signal's input is empty; it needs a JSON object"),
    (
        "unknown-name",
        "resolv",
        [{"outcome": "Agreed"}],
        "no action is called 'resolv'; the actions are acknowledge, resolve, confirm, reopen, "
        "escalate, submit_form, immediate_risk, shorten_deadline, add_note, withdraw",
    ),
]


# Sent past the codec: through it, the payload labelled encrypted would be
# encrypted in turn, and decrypt to itself.
PAST_THE_CODEC = {"labelled-encrypted-but-not"}


async def test_a_malformed_signal_is_recorded_as_refused_and_the_case_goes_on(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness]
) -> None:
    """Every way a signal can be wrong, sent to one case as the Temporal CLI
    sends them through the codec endpoint: each is recorded on the case as
    refused, saying what was wrong and not what was sent, and the case still
    takes actions and still escalates at its deadline."""
    harness = new_worker()
    request = make_request("merton", await ts_env.get_current_time())
    plain = plain_client(ts_env.client)
    async with harness.worker(), open_case(harness, request) as handle:
        for key, name, inputs, _ in MALFORMED_SIGNALS:
            sender = plain.get_workflow_handle(handle.id) if key in PAST_THE_CODEC else handle
            await sender.signal(name, args=inputs)
        # Not one of them stops the case's workflow tasks.
        with ts_env.auto_time_skipping_disabled():
            await asyncio.wait_for(barrier(handle), 30)
        state = await state_of(handle)
        refusals = [e for e in state.events if e.type == "refused"]
        assert [e.detail for e in refusals] == [m[3] for m in MALFORMED_SIGNALS]
        assert {e.by for e in refusals} == {"operator"}
        assert not any("Plain text" in (e.detail or "") for e in refusals)
        # The case goes on: its deadline still escalates it.
        assert state.clock.deadline is not None
        await ts_env.sleep(
            state.clock.deadline - await ts_env.get_current_time() + timedelta(minutes=1)
        )
        assert (await state_of(handle)).stage == 1


async def test_a_malformed_update_is_refused_to_its_sender_and_the_case_goes_on(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness]
) -> None:
    """An update can answer: one whose name is no action, or whose input is
    missing or does not decrypt, is refused to whoever sent it (nothing is
    recorded: a rejected update never enters the case), and the case still
    takes the next action."""
    harness = new_worker()
    request = make_request("merton", await ts_env.get_current_time())
    plain = plain_client(ts_env.client)
    async with harness.worker(), open_case(harness, request) as handle:
        as_sent = plain.get_workflow_handle(handle.id)
        cause = await refused(handle.execute_update("resolv", {"outcome": "Agreed"}))
        assert cause.message.startswith("no action is called 'resolv'; the actions are ")
        for inputs in ([], [raw(b"binary/encrypted", b'{"outcome": "Agreed"}')]):
            with ts_env.auto_time_skipping_disabled(), pytest.raises(WorkflowUpdateFailedError):
                await asyncio.wait_for(as_sent.execute_update("resolve", args=inputs), 20)
        await handle.execute_update(
            DisagreementWorkflow.resolve, Resolve(by=receiving_manager(request), outcome="Agreed")
        )
        assert (await state_of(handle)).status == "awaiting-confirmation"


def unencrypted_refusal(name: str, command: str) -> str:
    kind = "signal" if command == "signal" else "update"
    return (
        f"the {name} {kind} arrived unencrypted and is refused: send it again through the "
        f"codec endpoint, temporal workflow {command} --codec-endpoint <API address>/codec "
        '--codec-auth "Bearer <operator token>" (see the README on acting from the CLI)'
    )


async def test_an_action_sent_unencrypted_is_refused_with_how_to_send_it(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness]
) -> None:
    """An operator's signal and update sent as the Temporal CLI sends them
    when ``--codec-endpoint`` is left out (plain JSON): the signal is recorded
    on the case as refused and the update refused to its sender, each saying
    how to send it; neither changes the case, which still takes the same
    action encrypted and still escalates at its deadline. The update's text
    never enters the history; the signal's does, as it was sent."""
    harness = new_worker()
    request = make_request("merton", await ts_env.get_current_time())
    plain = plain_client(ts_env.client).get_workflow_handle(f"disagreement-{request.reference}")
    async with harness.worker(), open_case(harness, request) as handle:
        before = await state_of(handle)
        await plain.signal("withdraw", {"reason": "Signalled in plain words"})
        with ts_env.auto_time_skipping_disabled():
            cause = await refused(
                asyncio.wait_for(plain.execute_update("add_note", {"text": "Noted in plain"}), 20)
            )
        assert cause.message == unencrypted_refusal("add_note", "update execute")
        await barrier(handle)

        after = await state_of(handle)
        new_events = after.events[len(before.events) :]
        (refusal,) = [e for e in new_events if e.type == "refused"]
        assert refusal.detail == unencrypted_refusal("withdraw", "signal")
        assert refusal.by == "operator"
        # The barrier's note is the only change: the notes, their tallies and
        # the events that record them.
        unchanged = {
            "events",
            "next_seq",
            "recorded_seq",
            "notes",
            "notes_at_stage",
            "note_characters",
        }
        assert after.model_dump(exclude=unchanged) == before.model_dump(exclude=unchanged)
        assert after.status == "open"
        assert [n.text for n in after.notes] == [n.text for n in before.notes] + ["barrier"]

        history = b"".join(e.SerializeToString() for e in (await handle.fetch_history()).events)
        assert b"Noted in plain" not in history
        assert b"Signalled in plain words" in history

        # The same action, encrypted, is taken; the deadline still escalates.
        note = AddNote(by=receiving_manager(request), text="Noted through the codec")
        await handle.execute_update(DisagreementWorkflow.add_note, note)
        assert (await state_of(handle)).notes[-1].text == "Noted through the codec"
        assert after.clock.deadline is not None
        await ts_env.sleep(
            after.clock.deadline - await ts_env.get_current_time() + timedelta(minutes=1)
        )
        assert (await state_of(handle)).stage == 1


async def test_a_raise_dated_beyond_the_calendar_is_recorded_and_the_case_goes_on(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness]
) -> None:
    """An operator starting a case by hand with an instant no calendar
    reaches (the API refuses it; the Temporal CLI does not): the deadline
    activity fails for good. The case records that it could not work out its
    deadline, stays open without one, and takes people's actions."""
    harness = new_worker()
    request = make_request("merton", await ts_env.get_current_time()).model_copy(
        update={"raised_at": datetime(9999, 12, 31, 23, 0, tzinfo=UTC)}
    )
    async with harness.worker():
        handle = await harness.raise_case(request)
        # Bounded: a case that failed instead would never answer.
        with ts_env.auto_time_skipping_disabled():
            await asyncio.wait_for(barrier(handle), 30)
        state = await state_of(handle)
        (failed,) = [e for e in state.events if e.type == "clock_failed"]
        assert failed.detail is not None and "ImpossibleDeadline" in failed.detail
        assert "could not be worked out" in failed.detail
        assert state.status == "open" and state.clock.deadline is None
        await handle.execute_update(
            DisagreementWorkflow.withdraw,
            Withdraw(by=raising_manager(request), reason="Started by mistake"),
        )
        assert (await state_of(handle)).status == "withdrawn"


# --- A closed case -----------------------------------------------------------------


async def test_an_action_reaching_a_closed_case_is_refused(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness]
) -> None:
    """A resolve that arrives together with the signal that closes the case
    passes validation, then is refused when applied: the case has closed.

    The worker is stopped while both arrive, so they reach the workflow in one
    task: the signal first, then the update (workflow caching is off so the
    second worker can pick the case up at once)."""
    harness = new_worker()
    request = make_request("merton", await ts_env.get_current_time())
    manager = receiving_manager(request)
    handle = await harness.raise_case(request)
    try:
        async with harness.worker(max_cached_workflows=0):
            await barrier(handle)
        raiser_side = raising_manager(request)
        await handle.signal(
            "withdraw",
            Withdraw(by=raiser_side, reason="Raised in error"),
        )
        late = asyncio.create_task(
            handle.execute_update(
                DisagreementWorkflow.resolve, Resolve(by=manager, outcome="Agreed")
            )
        )
        await asyncio.sleep(1.0)  # the update reaches the server first
        async with harness.worker(max_cached_workflows=0):
            cause = await refused(late)
            assert cause.message == "cannot resolve: the case is closed (withdrawn)"
            with ts_env.auto_time_skipping_disabled():
                done = await asyncio.wait_for(handle.result(), timeout=20)
            state = await state_of(handle)
        assert done.status == "withdrawn"
        # Accepted, then refused when applied: recorded on the case.
        tail = [e for e in state.events if e.type not in ("notice", "reminder")][-3:]
        assert [(e.type, e.by) for e in tail] == [
            ("withdrawn", raiser_side.id),
            ("closed", raiser_side.id),
            ("refused", manager.id),
        ]
        assert tail[-1].detail == "cannot resolve: the case is closed (withdrawn)"
    finally:
        status = await describe_status(ts_env.client, handle.id)
        if status == WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING:
            await handle.terminate("test over")


async def test_acting_on_a_completed_case_fails(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness]
) -> None:
    """Once resolved, the workflow completes: a later update cannot reach it."""
    harness = new_worker()
    request = make_request("cheshire", await ts_env.get_current_time())
    async with harness.worker(), open_case(harness, request) as handle:
        await _resolve(handle, request, await state_of(handle))
        with ts_env.auto_time_skipping_disabled():
            await asyncio.wait_for(handle.result(), timeout=20)
        with pytest.raises(Exception) as caught:
            await _resolve(handle, request, await state_of(handle))
        assert "complete" in str(caught.value).lower() or "not found" in str(caught.value).lower()
        # The query still answers, for the record.
        assert (await state_of(handle)).status == "resolved"


# --- Refused raises -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy_id", "changes", "message"),
    [
        (
            "merton",
            {"start_stage": 2, "immediate_risk": True},
            # §4.2.1: immediate risk skips the practitioners, no further.
            "the merton policy lets an immediate-risk case start higher only at "
            "'Stage 1: line managers'",
        ),
        (
            "cheshire",
            {"start_stage": 1, "immediate_risk": True},
            "the cheshire policy starts every case at 'Day 1-2: practitioners'; only an "
            "immediate-risk case may start higher, and only where the policy allows it",
        ),
        (
            "hillingdon",
            {"start_stage": 2},
            "the hillingdon policy starts every case at 'Stage 1: practitioners'; only an "
            "immediate-risk case may start higher, and only where the policy allows it",
        ),
        (
            "hillingdon",
            {"start_stage": 4, "immediate_risk": True},
            "start_stage 4 is past the final stage (3)",
        ),
        (
            "cheshire",
            {"area": "knowsley"},
            "unknown area 'knowsley'; the cheshire areas are "
            "['cheshire-east', 'cheshire-west', 'halton', 'warrington']",
        ),
        (
            "staffordshire-stoke",
            {"area": None},
            "the staffordshire-stoke policy covers several areas; name one of "
            "['staffordshire', 'stoke-on-trent']",
        ),
    ],
)
async def test_an_invalid_raise_fails_the_case_at_once(
    ts_env: WorkflowEnvironment,
    new_worker: Callable[[], Harness],
    policy_id: str,
    changes: dict[str, Any],
    message: str,
) -> None:
    harness = new_worker()
    request = make_request(policy_id, await ts_env.get_current_time()).model_copy(update=changes)
    async with harness.worker():
        handle = await harness.raise_case(request)
        with ts_env.auto_time_skipping_disabled(), pytest.raises(WorkflowFailureError) as caught:
            await asyncio.wait_for(handle.result(), timeout=20)
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "InvalidRaise"
    assert cause.message == message
    assert harness.sink.notices == []


async def test_a_raise_between_one_agency_and_itself_fails(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness]
) -> None:
    harness = new_worker()
    request = make_request("wirral", await ts_env.get_current_time())
    request = request.model_copy(update={"receiving_agency": request.raising_agency})
    async with harness.worker():
        handle = await harness.raise_case(request)
        with ts_env.auto_time_skipping_disabled(), pytest.raises(WorkflowFailureError) as caught:
            await asyncio.wait_for(handle.result(), timeout=20)
    assert isinstance(caught.value.cause, ApplicationError)
    assert caught.value.cause.message == "a disagreement needs two different agencies"
