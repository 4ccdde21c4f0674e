"""Record the workflow histories that ``test_replay.py`` replays.

Run with ``make histories`` (``python -m tests.record_histories``) after a
deliberate change to the workflow's commands, and only together with a
``workflow.patched`` guard: the checked-in histories stand for cases already
running in production, which must keep replaying. Without arguments it
records only the scenarios that have no history yet; name a scenario to
record it again.

Each scenario is a real case on the time-skipping server, covering one path
of the ladder: nobody acting, resolution with and without written
confirmation, immediate risk at raise and mid-case, the Hillingdon jump, the
Wirral same-working-day route, withdrawal, operator signals, and the manager
actions sent as updates.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from temporalio.api.common.v1 import Payload
from temporalio.client import (
    Client,
    WorkflowContinuedAsNewError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.testing import WorkflowEnvironment

from activities.notices import MemorySink, OutboxSink
from escalation.codec import EncryptionCodec, KeyRing
from escalation.converter import LabellingPayloadConverter, plain_data_converter
from escalation.simulate import Act, parties, rehearse, start_test_server
from policies.loader import get_policy
from tests import crashing_worker
from tests.conftest import raising_manager, receiving_manager
from workers.worker import build_worker
from workflows import ladder
from workflows.disagreement import DisagreementWorkflow
from workflows.messages import (
    NOTES_PER_STAGE,
    Acknowledge,
    Actor,
    AddNote,
    ConfirmOutcome,
    RaiseDisagreement,
    Resolve,
    ShortenDeadline,
    Withdraw,
)

HISTORIES = Path(__file__).parent / "histories"
LONDON = ZoneInfo("Europe/London")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=LONDON)


# name: (policy, raised, immediate risk, start stage, actions, horizon)
REHEARSALS: dict[str, tuple[str, str, bool, int, list[tuple[str, str]], str]] = {
    "merton-unattended": ("merton", "2027-03-01T10:00", False, 0, [], "2027-05-01T10:00"),
    "merton-resolve-with-confirmation": (
        "merton",
        "2027-03-01T10:00",
        False,
        0,
        [
            ("2027-03-02T10:00", "acknowledge"),
            ("2027-03-03T10:00", "escalate"),
            ("2027-03-04T10:00", "escalate"),
            ("2027-03-05T10:00", "resolve"),
            ("2027-03-22T10:00", "confirm"),
        ],
        "2027-04-30T10:00",
    ),
    "merton-immediate-risk-mid-case": (
        "merton",
        "2027-03-01T10:00",
        False,
        0,
        [("2027-03-02T11:00", "immediate-risk"), ("2027-03-10T11:00", "resolve")],
        "2027-04-01T10:00",
    ),
    "staffordshire-unattended": (
        "staffordshire-stoke",
        "2027-03-01T10:00",
        False,
        0,
        [],
        "2027-04-15T10:00",
    ),
    "cheshire-immediate-risk-then-withdrawn": (
        "cheshire",
        "2027-03-01T10:00",
        True,
        0,
        [("2027-03-12T10:00", "note"), ("2027-03-15T10:00", "withdraw")],
        "2027-04-01T10:00",
    ),
    "wirral-same-working-day": (
        "wirral",
        "2027-03-01T10:00",
        True,
        0,
        [("2027-03-20T10:00", "resolve")],
        "2027-04-01T10:00",
    ),
    "hillingdon-jump": (
        "hillingdon",
        "2027-03-01T10:00",
        False,
        0,
        [("2027-03-02T10:00", "immediate-risk:3"), ("2027-03-03T10:00", "escalate")],
        "2027-04-01T10:00",
    ),
    # Since the immediate-risk-while-awaiting-confirmation patch.
    "merton-immediate-risk-while-awaiting-confirmation": (
        "merton",
        "2027-03-01T10:00",
        False,
        0,
        [
            ("2027-03-02T10:00", "escalate"),
            ("2027-03-02T11:00", "escalate"),
            ("2027-03-03T10:00", "resolve"),
            ("2027-03-04T10:00", "immediate-risk"),
            ("2027-03-05T10:00", "confirm"),
        ],
        "2027-04-01T10:00",
    ),
    # Since the business-team-for-skipped-stages patch: the jump and the later
    # start tell the business team of the stages passed over.
    "hillingdon-jump-tells-business-team": (
        "hillingdon",
        "2027-03-01T10:00",
        False,
        0,
        [("2027-03-02T10:00", "immediate-risk:3"), ("2027-03-05T10:00", "resolve")],
        "2027-04-01T10:00",
    ),
    # Since the local-activities patch: the stage clock, reminders
    # and notices are local activities, recorded as markers.
    "merton-resolve-with-confirmation-local-activities": (
        "merton",
        "2027-03-01T10:00",
        False,
        0,
        [
            ("2027-03-02T10:00", "acknowledge"),
            ("2027-03-03T10:00", "escalate"),
            ("2027-03-05T10:00", "resolve"),
            ("2027-03-22T10:00", "confirm"),
        ],
        "2027-04-30T10:00",
    ),
    "staffordshire-unattended-local-activities": (
        "staffordshire-stoke",
        "2027-03-01T10:00",
        False,
        0,
        [],
        "2027-04-15T10:00",
    ),
    "wirral-same-working-day-local-activities": (
        "wirral",
        "2027-03-01T10:00",
        True,
        0,
        [("2027-03-20T10:00", "resolve")],
        "2027-04-01T10:00",
    ),
    # Since the case-register patch: every change written to the register,
    # and who acted and why recorded on each event.
    "merton-resolve-with-confirmation-register": (
        "merton",
        "2027-03-01T10:00",
        False,
        0,
        [
            ("2027-03-02T10:00", "acknowledge"),
            ("2027-03-03T10:00", "escalate"),
            ("2027-03-04T10:00", "note"),
            ("2027-03-05T10:00", "resolve"),
            ("2027-03-22T10:00", "confirm"),
        ],
        "2027-04-30T10:00",
    ),
    "staffordshire-unattended-register": (
        "staffordshire-stoke",
        "2027-03-01T10:00",
        False,
        0,
        [],
        "2027-04-15T10:00",
    ),
    "hillingdon-raised-at-stage-3-immediate-risk": (
        "hillingdon",
        "2027-03-01T10:00",
        True,
        2,
        [("2027-03-03T10:00", "withdraw")],
        "2027-04-01T10:00",
    ),
    # Since the policies' duties were encoded in full: a written decision due
    # from the formal escalation, a confirmation without a timescale reopened
    # and escalated, a form owed on entering a stage by its deadline, and a
    # direct route past stages that are not relevant.
    "staffordshire-confirmation-counted-from-stage-start": (
        "staffordshire-stoke",
        "2027-03-01T09:00",
        False,
        0,
        [
            ("2027-03-01T09:30", "escalate"),
            ("2027-03-01T15:05", "escalate"),
            ("2027-03-03T10:00", "resolve"),
            ("2027-03-03T16:00", "confirm"),
        ],
        "2027-03-20T10:00",
    ),
    "merton-confirmation-reopened-then-escalated": (
        "merton",
        "2027-03-01T10:00",
        False,
        0,
        [
            ("2027-03-01T11:00", "escalate"),
            ("2027-03-02T10:00", "resolve"),
            ("2027-03-10T10:00", "reopen"),
            ("2027-03-10T11:00", "escalate"),
            ("2027-03-11T10:00", "resolve"),
            ("2027-03-12T10:00", "confirm"),
        ],
        "2027-04-01T10:00",
    ),
    "staffordshire-form-due-after-deadline": (
        "staffordshire-stoke",
        "2027-03-01T10:00",
        False,
        0,
        [("2027-03-05T10:00", "form"), ("2027-03-05T11:00", "resolve")],
        "2027-03-20T10:00",
    ),
    "staffordshire-direct-to-board-representative": (
        "staffordshire-stoke",
        "2027-03-01T10:00",
        False,
        0,
        [("2027-03-01T10:30", "escalate"), ("2027-03-01T11:00", "escalate:4")],
        "2027-04-01T10:00",
    ),
}
# Since search attributes are upserted only when they change: the same case
# as the register's history, whose steps leave them as they were.
REHEARSALS["merton-resolve-with-confirmation-publish-changes"] = REHEARSALS[
    "merton-resolve-with-confirmation-register"
]
# Since a new case asks one patch for every change before it: the same case
# again. (Not a rehearsal that signals: these histories are recorded without
# encryption, and replayed through the codec a signal's plain input is one
# that arrived unencrypted, which a case since that change refuses. The
# updates' history covers the actions.)
REHEARSALS["staffordshire-unattended-all-changes"] = REHEARSALS["staffordshire-unattended-register"]
# Since a stage's clock and its first notice go in one activity, under the
# next all-changes marker: the same two cases again.
REHEARSALS["staffordshire-unattended-stage-start"] = REHEARSALS["staffordshire-unattended-register"]


async def record_rehearsal(env: WorkflowEnvironment, name: str) -> None:
    policy_id, raised, risk, start_stage, acts, horizon = REHEARSALS[name]
    parsed = []
    for when, action in acts:
        verb, _, stage = action.partition(":")
        parsed.append(Act(at(when), verb, int(stage) if stage else None))
    result = await rehearse(
        env, get_policy(policy_id), at(raised), risk, parsed, at(horizon), start_stage
    )
    await save(name, result.case)


def fake_request(reference: str, raised_at: datetime | None = None) -> RaiseDisagreement:
    """A Merton case between health and children's social care, raised now
    (the workflow's start) unless told."""
    policy = get_policy("merton")
    raising, receiving, area = parties(policy)
    return RaiseDisagreement(
        reference=reference,
        policy=policy,
        area=area,
        raised_by=Actor(id="p-1", name="Raiser", agency=raising.key, role="practitioner"),
        raising_agency=raising,
        receiving_agency=receiving,
        categories=["thresholds"],
        summary="Recorded for replay",
        raised_at=raised_at,
    )


@contextlib.asynccontextmanager
async def recorded_case(
    env: WorkflowEnvironment, reference: str
) -> AsyncIterator[tuple[RaiseDisagreement, WorkflowHandle]]:
    """A fake Merton case raised now, with a worker holding it."""
    request = fake_request(reference, await env.get_current_time())
    task_queue = f"record-{uuid.uuid4()}"
    async with build_worker(env.client, task_queue, MemorySink()):
        yield request, await start_case(env, request, task_queue)


async def start_case(
    env: WorkflowEnvironment, request: RaiseDisagreement, task_queue: str
) -> WorkflowHandle:
    return await env.client.start_workflow(
        DisagreementWorkflow.run,
        request,
        id=f"disagreement-{request.reference}",
        task_queue=task_queue,
    )


async def record_updates(env: WorkflowEnvironment, name: str) -> None:
    """Manager actions as updates (the API's path), answered by the case."""
    async with recorded_case(env, "REPLAY-UPDATES") as (request, handle):
        now = request.raised_at
        assert now is not None
        manager = receiving_manager(request)
        await handle.execute_update(DisagreementWorkflow.acknowledge, Acknowledge(by=manager))
        await handle.execute_update(DisagreementWorkflow.add_note, AddNote(by=manager, text="Met"))
        await handle.execute_update(
            DisagreementWorkflow.shorten_deadline,
            ShortenDeadline(by=manager, deadline=now + timedelta(days=2), reason="Child at risk"),
        )
        await handle.execute_update(
            DisagreementWorkflow.resolve, Resolve(by=manager, outcome="Agreed")
        )
        if (await handle.query(DisagreementWorkflow.get_state)).status == "awaiting-confirmation":
            # Merton §5.1 (since the duties were encoded): confirmed in writing.
            await handle.execute_update(DisagreementWorkflow.confirm, ConfirmOutcome(by=manager))
        await handle.result()
        await save(name, handle)


async def record_withdraw_by_receiving_side(env: WorkflowEnvironment, name: str) -> None:
    """The receiving side's withdrawal, sent as a signal, refused on the case
    (workflow.patched 'withdraw-by-raising-side-only'); the raiser's accepted."""
    async with recorded_case(env, "REPLAY-WITHDRAW") as (request, handle):
        receiving, raising = receiving_manager(request), raising_manager(request)
        await handle.signal("withdraw", Withdraw(by=receiving, reason="Not ours"))
        await handle.execute_update(DisagreementWorkflow.add_note, AddNote(by=raising, text="x"))
        await handle.execute_update(
            DisagreementWorkflow.withdraw, Withdraw(by=raising, reason="Sorted")
        )
        await handle.result()
        await save(name, handle)


async def record_crash_and_interleave(name: str) -> None:
    """A worker dies after the automatic escalation's notice went out and
    before its workflow task completed; a manager's note arrives while no
    worker holds the case, and the retried task applies it first
    (workflow.patched 'notice-id-by-identity': the notice keeps its id, so
    it is not sent again). Real time on a dev server: a worker is killed."""
    from tests.conftest import barrier, start_dev_server
    from tests.test_notice_identity import shorten_to_seconds_away
    from tests.test_workflow_register import poll

    task_queue = f"record-{uuid.uuid4()}"
    env = await start_dev_server(plain_data_converter())
    with tempfile.TemporaryDirectory() as folder:
        crashing = crashing_worker.spawn(
            "escalated-automatically",
            env.client,
            task_queue,
            Path(folder),
            f"sqlite:///{folder}/register.sqlite3",
            plain=True,
        )
        try:
            request = fake_request("REPLAY-CRASH")
            manager = receiving_manager(request)
            handle = await start_case(env, request, task_queue)
            await barrier(handle)
            await shorten_to_seconds_away(handle, manager)
            assert await asyncio.to_thread(crashing.wait, 60) == 9
            await handle.signal("add_note", AddNote(by=manager, text="x"))
            async with build_worker(env.client, task_queue, OutboxSink(Path(folder) / "outbox")):
                # The retried task escalates (after the note) before the outcome.
                await poll(handle, lambda s: s.stage == 1, "the escalation", timeout=60)
                await handle.execute_update(
                    DisagreementWorkflow.resolve, Resolve(by=manager, outcome="Agreed")
                )
                await handle.execute_update(
                    DisagreementWorkflow.confirm, ConfirmOutcome(by=manager)
                )
                await handle.result()
                await save(name, handle)
        finally:
            if crashing.poll() is None:
                crashing.kill()
            await env.shutdown()


async def record_malformed_signals(env: WorkflowEnvironment, name: str) -> None:
    """Signals with no input, two inputs, an empty (null) input, an input
    that is not the action, and a name that is no action, each recorded as
    refused (workflow.patched 'malformed-signals-refused'); then the raiser
    withdraws."""
    async with recorded_case(env, "REPLAY-MALFORMED") as (request, handle):
        raising = raising_manager(request)
        await handle.signal("resolve")
        await handle.signal("add_note", args=[{"text": "one"}, {"text": "two"}])
        await handle.signal("confirm", None)
        await handle.signal("escalate", {"reason": ""})
        await handle.signal("resolv", {"outcome": "Agreed"})
        await handle.execute_update(
            DisagreementWorkflow.withdraw, Withdraw(by=raising, reason="Sorted")
        )
        await handle.result()
        await save(name, handle)


async def record_bounded_notes(env: WorkflowEnvironment, name: str) -> None:
    """A stage's fifty notes, then a fifty-first and a deadline beyond the
    horizon sent as signals, each recorded as refused (workflow.patched
    'bounded-notes-and-deadlines'); then the raiser withdraws."""
    async with recorded_case(env, "REPLAY-BOUNDED") as (request, handle):
        now = request.raised_at
        assert now is not None
        raising = raising_manager(request)
        for number in range(NOTES_PER_STAGE):
            note = AddNote(by=raising, text=f"Note {number}")
            await handle.execute_update(DisagreementWorkflow.add_note, note)
        await handle.signal("add_note", AddNote(by=raising, text="One too many"))
        far = ShortenDeadline(by=raising, deadline=now + timedelta(days=400), reason="x")
        await handle.signal("shorten_deadline", far)
        await handle.execute_update(
            DisagreementWorkflow.withdraw, Withdraw(by=raising, reason="Sorted")
        )
        await handle.result()
        await save(name, handle)


async def record_continued_by_length(env: WorkflowEnvironment, name: str) -> None:
    """A case whose history passes ladder.CONTINUE_AS_NEW_AFTER_EVENTS (here
    by operators' signals it refuses) continues as new by its own rule
    (workflow.patched 'continue-as-new-sooner'; 'continue-as-new-by-length'
    at the earlier bar of 4,000 in the history recorded under it), before any
    suggestion from the server. The history is the first run's."""
    async with recorded_case(env, "REPLAY-LONG") as (request, handle):
        first = env.client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id)
        # One at a time (a workflow task each) until the history is long;
        # then none, so that the task that continues as new is not cut short
        # by a signal arriving under it.
        while len((await first.fetch_history()).events) < ladder.CONTINUE_AS_NEW_AFTER_EVENTS:
            for _ in range(10):
                await handle.signal("resolv", {})
        with contextlib.suppress(WorkflowContinuedAsNewError):
            await first.result(follow_runs=False)
        await handle.terminate("recorded")
        await save(name, first)


async def record_clock_failure(env: WorkflowEnvironment, name: str) -> None:
    """A case started by hand with an instant beyond the calendar's range:
    its deadline cannot be worked out, which the case records
    (workflow.patched 'clock-failure-recorded'); then the raiser withdraws."""
    request = fake_request("REPLAY-CLOCK", datetime(9999, 12, 31, 23, 0, tzinfo=UTC))
    task_queue = f"record-{uuid.uuid4()}"
    async with build_worker(env.client, task_queue, MemorySink()):
        handle = await start_case(env, request, task_queue)
        await handle.execute_update(
            DisagreementWorkflow.withdraw,
            Withdraw(by=raising_manager(request), reason="Started by mistake"),
        )
        await handle.result()
        await save(name, handle)


class _DecodesOnly(EncryptionCodec):
    """The product's codec as a worker decodes with it (a payload that
    arrived unencrypted is marked so), encrypting nothing: the history of a
    case refusing unencrypted actions must replay without a key."""

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)


async def record_unencrypted_actions(env: WorkflowEnvironment, name: str) -> None:
    """An operator's withdrawal signalled and a note sent as an update, both
    without the codec endpoint: the signal recorded as refused
    (workflow.patched 'unencrypted-actions-refused'), the update refused by
    its validator (nothing in the history); the deadline still escalates."""
    worker_converter = dataclasses.replace(
        plain_data_converter(),
        payload_converter_class=LabellingPayloadConverter,
        payload_codec=_DecodesOnly(KeyRing.generate(), lenient=True),
    )
    worker_client = Client(**{**env.client.config(), "data_converter": worker_converter})
    request = fake_request("REPLAY-UNENCRYPTED", await env.get_current_time())
    task_queue = f"record-{uuid.uuid4()}"
    async with build_worker(worker_client, task_queue, MemorySink()):
        handle = await start_case(env, request, task_queue)
        await handle.signal("withdraw", Withdraw(reason="Sent without the codec"))
        with contextlib.suppress(WorkflowUpdateFailedError):
            await handle.execute_update(DisagreementWorkflow.add_note, AddNote(text="Plain"))
            raise AssertionError("an unencrypted update was accepted")
        state = await handle.query(DisagreementWorkflow.get_state)
        assert state.clock.deadline is not None
        await env.sleep(state.clock.deadline - await env.get_current_time() + timedelta(hours=1))
        state = await handle.query(DisagreementWorkflow.get_state)
        assert state.stage == 1 and [e.type for e in state.events].count("refused") == 1
        await handle.terminate("recorded")
        await save(name, handle)


async def save(name: str, handle: WorkflowHandle) -> None:
    history = await handle.fetch_history()
    HISTORIES.mkdir(exist_ok=True)
    path = HISTORIES / f"{name}.json"
    path.write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n")
    print(f"recorded {path.relative_to(Path.cwd())} ({len(history.events)} events)")


async def main(names: list[str]) -> None:
    jobs: dict[str, Callable[[WorkflowEnvironment], Awaitable[None]]] = {
        name: (lambda env, name=name: record_rehearsal(env, name)) for name in REHEARSALS
    }
    jobs["merton-updates"] = lambda env: record_updates(env, "merton-updates")
    jobs["merton-updates-local-activities"] = lambda env: record_updates(
        env, "merton-updates-local-activities"
    )
    jobs["merton-updates-all-changes"] = lambda env: record_updates(
        env, "merton-updates-all-changes"
    )
    jobs["merton-updates-stage-start"] = lambda env: record_updates(
        env, "merton-updates-stage-start"
    )
    jobs["merton-withdraw-by-receiving-side-refused"] = lambda env: (
        record_withdraw_by_receiving_side(env, "merton-withdraw-by-receiving-side-refused")
    )
    jobs["merton-malformed-signals-refused"] = lambda env: record_malformed_signals(
        env, "merton-malformed-signals-refused"
    )
    jobs["merton-bounded-notes-refused"] = lambda env: record_bounded_notes(
        env, "merton-bounded-notes-refused"
    )
    jobs["merton-continued-as-new-sooner"] = lambda env: record_continued_by_length(
        env, "merton-continued-as-new-sooner"
    )
    jobs["merton-clock-failure-recorded"] = lambda env: record_clock_failure(
        env, "merton-clock-failure-recorded"
    )
    jobs["merton-unencrypted-actions-refused"] = lambda env: record_unencrypted_actions(
        env, "merton-unencrypted-actions-refused"
    )
    crash = "merton-crash-after-notice-then-note"
    # Its own dev server (a worker is killed in real time).
    crash_jobs = {crash: lambda: record_crash_and_interleave(crash)}
    # Without names, only the histories not yet recorded: the others stand for
    # cases recorded under earlier code and must not be overwritten by today's.
    for name in names or [n for n in crash_jobs if not (HISTORIES / f"{n}.json").exists()]:
        if name in crash_jobs:
            await crash_jobs[name]()
    for name in names or [n for n in jobs if not (HISTORIES / f"{n}.json").exists()]:
        if name in crash_jobs:
            continue
        # A server each: the time-skipping clock only moves forward.
        # Unencrypted: the histories hold fake cases and must replay with no key.
        env = await start_test_server(converter=plain_data_converter())
        try:
            await jobs[name](env)
        finally:
            await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
