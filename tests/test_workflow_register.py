"""The real workflow writes itself to the register: after every path the
register holds the case exactly as the case holds itself, every event once,
with who acted and why; a register that is down holds up no deadline and is
caught up when it returns; a worker killed between the register's write and
its workflow task completing leaves every event there exactly once."""

from __future__ import annotations

import asyncio
import base64
import signal
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

import workflows.ladder as ladder
from escalation.codec import KeyRing
from escalation.converter import payload_codec
from register import Register
from register.migrate import upgrade
from tests import crashing_worker
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
    CaseRecord,
    CaseState,
    ConfirmOutcome,
    Escalate,
    RaiseDisagreement,
    Resolve,
    ShortenDeadline,
    Withdraw,
)

RING = KeyRing.generate()


def file_register(folder: Path) -> Register:
    url = f"sqlite:///{folder / 'register.sqlite3'}"
    upgrade(url)
    return Register.from_url(url, RING)


def same_record(register: Register, state: CaseState) -> CaseRecord:
    """The register's copy of the case equals the case's own, event by event."""
    record = register.case(state.reference)
    assert record is not None, "the register has no such case"
    fields = ("seq", "type", "stage", "by", "by_name", "by_role", "reason", "detail", "notice_id")
    assert [e.model_dump(include=set(fields)) for e in record.events] == [
        e.model_dump(include=set(fields)) for e in state.events
    ]
    assert len({e.seq for e in record.events}) == len(record.events)
    for name in (
        "status",
        "stage",
        "highest_stage_reached",
        "outcome",
        "closed_at",
        "immediate_risk",
    ):
        assert getattr(record, name) == getattr(state, name), name
    return record


async def closed(handle: WorkflowHandle) -> CaseState:
    await handle.result()
    return await state_of(handle)


async def test_a_case_to_written_confirmation_is_in_the_register_whole(
    new_worker: type[Harness], ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    harness = new_worker()
    register = file_register(tmp_path)
    request = make_request("merton", await ts_env.get_current_time())
    request.decision_disputed = "The referral was closed with no further action"
    receiving, raising = receiving_manager(request), raising_manager(request)
    practitioner = Actor(
        id="raiser-1", name="Priya Shah", agency=request.raising_agency.key, role="practitioner"
    )
    async with harness.worker(register=register):
        handle = await harness.raise_case(request)
        await handle.execute_update(
            DisagreementWorkflow.acknowledge, Acknowledge(by=receiving, note="Seen it")
        )
        await handle.execute_update(
            DisagreementWorkflow.escalate,
            Escalate(by=practitioner, reason="No agreement between the practitioners"),
        )
        await handle.execute_update(
            DisagreementWorkflow.add_note, AddNote(by=raising, text="Called the duty manager")
        )
        await handle.execute_update(
            DisagreementWorkflow.escalate, Escalate(by=raising, reason="Still no agreement")
        )
        await handle.execute_update(
            DisagreementWorkflow.resolve, Resolve(by=receiving, outcome="Strategy meeting held")
        )
        await handle.execute_update(
            DisagreementWorkflow.confirm,
            ConfirmOutcome(by=receiving, confirmation="Confirmed by letter of 5 March"),
        )
        state = await closed(handle)

    record = same_record(register, state)
    assert record.status == "resolved" and record.source == "register"
    assert record.about is not None and record.about.summary == request.summary
    assert record.about.decision_disputed == "The referral was closed with no further action"
    by_type = {e.type: e for e in record.events}
    escalated = [e for e in record.events if e.type == "escalated"]
    # Who really acted, and why: the practitioner, not "a manager".
    assert escalated[0].text == (
        f"escalated by Priya Shah, practitioner at {request.raising_agency.name}: "
        "No agreement between the practitioners"
    )
    assert by_type["acknowledged"].reason == "Seen it"
    assert by_type["resolved"].reason == "Strategy meeting held"
    assert by_type["confirmed"].reason == "Confirmed by letter of 5 March"
    assert [n.text for n in record.notes] == ["Called the duty manager"]
    with register.engine.connect() as connection:
        from sqlalchemy import select

        from register import tables as t

        confirmations = connection.execute(select(t.Confirmation.stage)).scalars().all()
        notices = connection.execute(select(t.Notice.template)).scalars().all()
        forms = connection.execute(select(t.FormSent.form)).scalars().all()
    assert confirmations == [2]
    # Merton's pro-forma goes to the business team at stage 2.
    expected_forms = sorted({f for e in state.events for f in e.forms})
    assert expected_forms and sorted(set(forms)) == expected_forms
    assert sorted(set(notices)) == sorted({e.template for e in state.events if e.template})
    register.close()


async def test_a_note_on_an_open_case_reaches_the_register_while_it_runs(
    new_worker: type[Harness], ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """A step that changes nothing the Temporal UI filters on (a recorded
    discussion) is still written to the register: lists and reports read
    the register, and an open case may run for months."""
    harness = new_worker()
    register = file_register(tmp_path)
    request = make_request("merton", await ts_env.get_current_time())
    raising = raising_manager(request)
    async with harness.worker(register=register):
        handle = await harness.raise_case(request)
        await handle.execute_update(
            DisagreementWorkflow.add_note, AddNote(by=raising, text="Called the duty manager")
        )
        state = await state_of(handle)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + 30
        with ts_env.auto_time_skipping_disabled():
            while (register.recorded_seq(request.reference) or 0) < state.next_seq - 1:
                assert loop.time() < give_up, "the register never received the note"
                await asyncio.sleep(0.2)
        record = register.case(request.reference)
        assert record is not None
        assert [n.text for n in record.notes] == ["Called the duty manager"]
        assert record.status == "open"
        await handle.terminate("test over")
    register.close()


async def test_an_escalation_with_a_form_and_a_withdrawal(
    new_worker: type[Harness], ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    harness = new_worker()
    register = file_register(tmp_path)
    request = make_request("staffordshire-stoke", await ts_env.get_current_time())
    policy = request.policy
    raising = raising_manager(request)
    async with harness.worker(register=register):
        handle = await harness.raise_case(request)
        for target in (1, 2, 3):
            await handle.execute_update(
                DisagreementWorkflow.escalate,
                Escalate(
                    by=raising, reason=f"Up to {target}", form=escalation_form(policy, target)
                ),
            )
        await handle.execute_update(
            DisagreementWorkflow.withdraw, Withdraw(by=raising, reason="Resolved outside")
        )
        state = await closed(handle)
    record = same_record(register, state)
    assert record.status == "withdrawn"
    # The stage 3 form's fields are free text: sealed, and read back whole.
    assert record.escalation_forms == state.escalation_forms and record.escalation_forms
    register.close()


async def test_a_register_that_is_down_holds_up_no_deadline_and_catches_up(
    dev_server: WorkflowEnvironment, tmp_path: Path
) -> None:
    """The register's database has no tables yet (as good as down): the case
    still escalates at its deadline and tells everyone; once the database is
    there, the retrying write brings the register up to date. On a dev server
    (real time): the deadline is brought forward to a few seconds away."""
    harness = Harness(dev_server.client)
    url = f"sqlite:///{tmp_path / 'later.sqlite3'}"
    register = Register.from_url(url, RING)
    request = make_request("merton", datetime.now(UTC))
    manager = receiving_manager(request)
    async with harness.worker(register=register):
        handle = await harness.raise_case(request)
        await barrier(handle)
        soon = datetime.now(UTC) + timedelta(seconds=3)
        await handle.execute_update(
            DisagreementWorkflow.shorten_deadline,
            ShortenDeadline(by=manager, deadline=soon, reason="Conference tomorrow"),
        )
        state = await poll(
            handle,
            lambda s: (
                s.stage == 1 and any(e.template == "escalated-automatically" for e in s.events)
            ),
            "the deadline to escalate the case and tell everyone",
        )
        assert any(
            n.template == "escalated-automatically" and n.reference == request.reference
            for n in harness.sink.notices
        )
        assert state.recorded_seq == 0, "the register was written while it was down"

        upgrade(url)  # the database is back
        state = await poll(
            handle,
            lambda s: s.recorded_seq == s.next_seq - 1,
            "the register to be caught up",
            timeout=90,
        )
        same_record(register, state)
        await handle.terminate("test over")
    register.close()


async def poll(
    handle: WorkflowHandle,
    check: Callable[[CaseState], bool],
    what: str,
    timeout: float = 30,
) -> CaseState:
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout
    while True:
        state = await state_of(handle)
        if check(state):
            return state
        if loop.time() > give_up:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


# --- A worker killed half-way ------------------------------------------------------------


async def test_a_worker_killed_after_the_register_write_leaves_each_event_once(
    dev_server: WorkflowEnvironment, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'register.sqlite3'}"
    upgrade(url)
    harness = Harness(dev_server.client)
    crashing = crashing_worker.spawn(
        "register", dev_server.client, harness.task_queue, tmp_path, url
    )
    register = Register.from_url(url, payload_codec().ring)
    try:
        request = make_request("merton", datetime.now(UTC))
        handle = await harness.raise_case(request)
        code = await asyncio.to_thread(crashing.wait, 60)
        assert code == 9, crashing.stderr.read().decode()[-2000:] if crashing.stderr else code
        assert (tmp_path / "died").exists()
        written = register.case(request.reference)
        assert written is not None and written.events, "nothing reached the register"
        # Another worker takes the case over: the raise's task runs again.
        async with harness.worker(register=register):
            await handle.execute_update(
                DisagreementWorkflow.add_note,
                AddNote(by=receiving_manager(request), text="After the crash"),
            )
            await handle.execute_update(
                DisagreementWorkflow.resolve,
                Resolve(by=receiving_manager(request), outcome="Agreed"),
            )
            # Merton §5.1: confirmed in writing between the parties at every stage.
            await handle.execute_update(
                DisagreementWorkflow.confirm, ConfirmOutcome(by=receiving_manager(request))
            )
            state = await closed(handle)
        record = same_record(register, state)
        assert [e.seq for e in record.events] == list(range(1, state.next_seq))
        assert [e.type for e in record.events].count("raised") == 1
    finally:
        if crashing.poll() is None:
            crashing.send_signal(signal.SIGKILL)
        register.close()


async def test_rebuild_fills_in_what_the_register_lacks(
    dev_server: WorkflowEnvironment,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A register restored from an old backup (here: an empty one) is filled
    in from the cases Temporal still holds, each once, and told which
    events only a backup can give back (a case keeps none its register
    confirmed); a second run adds nothing."""
    from escalation.cli import main
    from escalation.settings import get_settings

    since = datetime.now(UTC) - timedelta(seconds=1)
    harness = Harness(dev_server.client)
    request = make_request("merton", datetime.now(UTC))
    async with harness.worker():  # its own register, which the restore has lost
        handle = await harness.raise_case(request)
        await handle.execute_update(
            DisagreementWorkflow.escalate,
            Escalate(by=raising_manager(request), reason="No agreement"),
        )
        state = await poll(
            handle,
            lambda s: s.recorded_seq == s.next_seq - 1,
            "its own register to confirm every event",
        )

        ring = payload_codec().ring
        keys = ",".join(f"{i}:{base64.b64encode(k).decode()}" for i, k in ring.keys.items())
        monkeypatch.setenv("ESCALATION_CODEC_KEYS", keys)
        monkeypatch.setenv("ESCALATION_DATA_DIR", str(tmp_path))
        monkeypatch.setenv("TEMPORAL_ADDRESS", dev_server.client.service_client.config.target_host)
        get_settings.cache_clear()
        try:
            assert main(["register", "migrate"]) == 0
            for _ in range(50):  # the list is eventually consistent
                listed = [
                    w async for w in dev_server.client.list_workflows(f"WorkflowId = '{handle.id}'")
                ]
                if listed:
                    break
                await asyncio.sleep(0.2)
            capsys.readouterr()
            # The command runs its own event loop; the worker goes on in this one.
            rebuild = ["register", "rebuild", "--since", since.isoformat()]
            assert await asyncio.to_thread(main, rebuild) == 0
            out = capsys.readouterr().out
            assert "1 added to the register" in out and f"added      {request.reference}" in out
            # The case let go of the events its own register confirmed: the
            # rebuild says which the restored register still lacks.
            lacking = f"lacking    {request.reference} ({state.next_seq - 1} earlier events"
            assert lacking in out
            assert await asyncio.to_thread(main, rebuild) == 0
            out = capsys.readouterr().out
            assert "1 already whole" in out and lacking in out
            assert main(["register", "rebuild", "--since", "yesterday"]) == 1
        finally:
            get_settings.cache_clear()
        register = Register.from_url(f"sqlite:///{tmp_path / 'register.sqlite3'}", ring)
        record = register.case(request.reference)
        assert record is not None and record.status == state.status
        assert record.about is not None and record.about.summary == request.summary
        register.close()
        await handle.terminate("test over")


# --- What the case keeps --------------------------------------------------------------


async def caught_up(handle: WorkflowHandle, ts_env: WorkflowEnvironment) -> CaseState:
    """The case's own state (not read whole) once the register has confirmed
    every event."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + 30
    with ts_env.auto_time_skipping_disabled():
        while True:
            live = await handle.query(DisagreementWorkflow.get_state)
            if live.recorded_seq == live.next_seq - 1:
                return live
            assert loop.time() < give_up, "the register never caught up"
            await asyncio.sleep(0.2)


async def test_a_case_keeps_only_what_the_register_has_not_confirmed_and_its_bounds_hold(
    new_worker: type[Harness],
    ts_env: WorkflowEnvironment,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Dozens of notes and events: once the register holds them the case lets
    them go (its state stays small, and a run continued as new carries only
    that), the register and the case together still tell the whole story,
    and a stage's fifty notes and the case's 200,000 characters are still
    refused past their limits."""
    monkeypatch.setattr(ladder, "CONTINUE_AS_NEW_AFTER_EVENTS", 60)
    harness = new_worker()
    register = file_register(tmp_path)
    request = make_request("merton", await ts_env.get_current_time())
    manager = receiving_manager(request)

    async def note(text: str) -> None:
        await handle.execute_update(DisagreementWorkflow.add_note, AddNote(by=manager, text=text))

    async with harness.worker(register=register):
        handle = await harness.raise_case(request)
        for number in range(NOTES_PER_STAGE):
            await note(f"Call {number} with the duty manager")
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await note("One more call")
        assert f"already has {NOTES_PER_STAGE} notes" in str(refused.value.cause)
        await handle.execute_update(
            DisagreementWorkflow.escalate,
            Escalate(by=raising_manager(request), reason="No agreement"),
        )
        long_notes = (NOTE_CHARACTERS_PER_CASE - 2_000) // MAX_TEXT
        for _ in range(long_notes):
            await note("x" * MAX_TEXT)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await note("y" * MAX_TEXT)
        assert f"would pass {NOTE_CHARACTERS_PER_CASE:,} characters" in str(refused.value.cause)
        live = await caught_up(handle, ts_env)
        await handle.terminate("test over")

    # The case holds no event and no note the register has, and is small.
    assert live.events == [] and live.notes == []
    assert live.next_seq > NOTES_PER_STAGE + long_notes
    assert len(live.model_dump_json()) < 10_000
    # Read whole, nothing is missing: every event once, every note's text.
    whole = register.whole(live)
    assert [e.seq for e in whole.events] == list(range(1, live.next_seq))
    assert len(whole.notes) == NOTES_PER_STAGE + long_notes
    assert whole.notes[0].text == "Call 0 with the duty manager"
    assert "One more call" not in {n.text for n in whole.notes}
    # It continued as new, and the new run was given only what it runs on.
    continued = 0
    first = ts_env.client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id)
    async for event in first.fetch_history_events():
        if event.HasField("workflow_execution_continued_as_new_event_attributes"):
            continued += 1
            attributes = event.workflow_execution_continued_as_new_event_attributes
            [carried] = await ts_env.client.data_converter.decode(
                attributes.input.payloads, [RaiseDisagreement]
            )
            assert carried.resume is not None
            kept = carried.resume.events
            assert all(e.seq > carried.resume.recorded_seq for e in kept), kept
            assert len(kept) < 20 and carried.resume.notes_at_stage
    assert continued == 1  # the first run's last event
    register.close()
