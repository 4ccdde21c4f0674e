"""A long case continues as new without losing anything: its record, its
clock, its search attributes, and its ability to escalate by itself.

The server suggests continuing as new once a history is long (thousands of
events in production). A dev server told to suggest it after a few dozen
events lets a test reach that point with a handful of notes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest_asyncio
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from escalation import search_attributes as sa
from escalation.codec import KeyRing
from escalation.converter import data_converter
from escalation.temporal_bin import temporal_cli
from register import Register
from register.migrate import upgrade
from tests.conftest import Harness, barrier, make_request, receiving_manager, state_of
from workflows.disagreement import DisagreementWorkflow
from workflows.messages import AddNote, ShortenDeadline

SUGGEST_AFTER_EVENTS = 40


@pytest_asyncio.fixture
async def short_history_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        # A busy machine can take longer than the SDK's 5 s to start one.
        dev_server_startup_timeout=timedelta(seconds=60),
        dev_server_existing_path=temporal_cli(),
        data_converter=data_converter(),
        search_attributes=list(sa.ALL),
        dev_server_extra_args=[
            "--dynamic-config-value",
            f"limit.historyCount.suggestContinueAsNew={SUGGEST_AFTER_EVENTS}",
        ],
    )
    try:
        yield env
    finally:
        await env.shutdown()


async def test_a_long_case_continues_as_new_and_loses_nothing(
    short_history_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    harness = Harness(short_history_env.client)
    request = make_request("merton", datetime.now(UTC))
    manager = receiving_manager(request)
    url = f"sqlite:///{tmp_path / 'register.sqlite3'}"
    upgrade(url)
    register = Register.from_url(url, KeyRing.generate())
    async with harness.worker(register=register):
        handle = await harness.raise_case(request)
        await barrier(handle)
        first_run = (await handle.describe()).run_id
        before = await state_of(handle)

        notes: list[str] = []
        for _ in range(30):
            text = f"Note {uuid.uuid4().hex[:6]}"
            await handle.execute_update(
                DisagreementWorkflow.add_note, AddNote(by=manager, text=text)
            )
            notes.append(text)
            if (await handle.describe()).run_id != first_run:
                break
        latest = await handle.describe()
        assert latest.run_id != first_run, "the case never continued as new"
        old_run = harness.client.get_workflow_handle(handle.id, run_id=first_run)
        assert (await old_run.describe()).status == WorkflowExecutionStatus.CONTINUED_AS_NEW
        # The first run continued after the last note had answered, and its
        # history replays (sandboxed, as every replay test runs).
        replayer = Replayer(workflows=[DisagreementWorkflow], data_converter=data_converter())
        await replayer.replay_workflow(await old_run.fetch_history())

        # Everything the case knew is still there, in the new run.
        state = await state_of(handle)
        assert [n.text for n in state.notes if n.by == manager] == notes
        assert [e.type for e in state.events][: len(before.events)] == [
            e.type for e in before.events
        ]
        assert (state.status, state.stage, state.clock.deadline) == (
            "open",
            0,
            before.clock.deadline,
        )
        attrs = latest.typed_search_attributes
        assert attrs.get(sa.PARTNERSHIP) == "merton"
        assert attrs.get(sa.STATUS) == "open"
        assert attrs.get(sa.DEADLINE) == before.clock.deadline
        assert sorted(attrs.get(sa.AGENCIES) or []) == sorted(
            [request.raising_agency.key, request.receiving_agency.key]
        )

        # And it still escalates by itself when its deadline passes.
        soon = datetime.now(UTC) + timedelta(seconds=3)
        await handle.execute_update(
            DisagreementWorkflow.shorten_deadline,
            ShortenDeadline(by=manager, deadline=soon, reason="continue-as-new test"),
        )
        for _ in range(60):
            state = await state_of(handle)
            if state.stage == 1:
                break
            await asyncio.sleep(0.5)
        assert state.stage == 1
        assert "escalated-automatically" in [
            n.template for n in harness.sink.notices if n.stage == 1
        ]

        # The register holds the case across both runs, every event once.
        for _ in range(60):
            record = register.case(request.reference)
            if record is not None and record.recorded_seq == state.next_seq - 1:
                break
            await asyncio.sleep(0.25)
        assert record is not None
        assert [(e.seq, e.type) for e in record.events] == [(e.seq, e.type) for e in state.events]
        assert [n.text for n in record.notes if n.by == manager] == notes
        await handle.terminate("test over")
    register.close()
