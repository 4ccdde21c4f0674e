"""`make run`'s stack, started as a user would, survives a restart: an open
case keeps its stage and deadline, and its timer still fires afterwards."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowHandle

from escalation import run
from escalation.converter import data_converter
from escalation.settings import Settings
from escalation.simulate import parties
from policies.loader import get_policy
from tests.canary_helpers import Stack
from workflows.disagreement import DisagreementWorkflow
from workflows.messages import Actor, CaseState, RaiseDisagreement, ShortenDeadline


def test_the_banner_says_where_to_open_the_pages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Someone who is not a developer starts from the address printed: the
    pages, not the API's documentation."""
    ports = argparse.Namespace(ui_port=28233, temporal_port=27233, api_port=28001)
    run._banner("127.0.0.1", ports, tmp_path, with_api=True)
    printed = capsys.readouterr().out
    assert "Pages           http://localhost:28001/ (sign in as a demonstration user" in printed
    run._banner("127.0.0.1", ports, tmp_path, with_api=False)
    assert "Pages" not in capsys.readouterr().out


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(tmp_path / "data")
    yield stack
    stack.kill()  # however the test ended, leave nothing running


async def test_an_open_case_and_its_deadline_survive_a_restart(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The client must use the stack's data folder (its payload key lives there).
    monkeypatch.setenv("ESCALATION_DATA_DIR", str(stack.data_dir))
    stack.start()
    assert f"http://localhost:{stack.ports['ui']}".encode() in stack.output
    client = await Client.connect(stack.address, data_converter=data_converter())
    # Both worker processes take the cases' steps from the one task queue.
    assert len(await _polling_workers(client)) == Settings.model_fields["worker_processes"].default
    policy = get_policy("merton")
    raising, receiving, area = parties(policy)
    request = RaiseDisagreement(
        reference="RESTART-TEST",
        policy=policy,
        area=area,
        raised_by=Actor(id="p1", name="Raiser", agency=raising.key, role="practitioner"),
        raising_agency=raising,
        receiving_agency=receiving,
        summary="survives a restart",
    )
    handle = await client.start_workflow(
        DisagreementWorkflow.run, request, id="disagreement-RESTART-TEST", task_queue="escalation"
    )
    state = await _wait_for_stage_started(handle)
    deadline = state.clock.deadline
    assert deadline is not None

    assert stack.stop() == 0
    assert b"Temporal dev server stopped" in stack.output
    assert (stack.data_dir / "temporal.db").exists()

    stack.start()  # the same data folder and ports
    client = await Client.connect(stack.address, data_converter=data_converter())
    handle = client.get_workflow_handle("disagreement-RESTART-TEST")
    after = await handle.query(DisagreementWorkflow.get_state)
    assert after.status == "open" and after.stage == 0
    assert after.clock.deadline == deadline
    assert after.next_seq == state.next_seq  # no event lost or made twice

    # The case still acts by itself after the restart: bring the deadline to
    # a few seconds from now and watch it escalate.
    soon = datetime.now(UTC) + timedelta(seconds=3)
    manager = Actor(id="m1", name="Manager", agency=receiving.key, role="manager")
    await handle.execute_update(
        DisagreementWorkflow.shorten_deadline,
        ShortenDeadline(by=manager, deadline=soon, reason="restart test"),
    )
    for _ in range(60):
        after = await handle.query(DisagreementWorkflow.get_state)
        if after.stage == 1:
            break
        await asyncio.sleep(0.5)
    assert after.stage == 1
    assert after.stage_entries[1].how == "auto_escalated"
    await handle.terminate("test over")
    assert stack.stop() == 0


async def _polling_workers(client: Client) -> set[str]:
    """The identities (pid@host) polling the cases' workflow tasks, once
    every worker has begun to poll."""
    request = DescribeTaskQueueRequest(
        namespace="default",
        task_queue=TaskQueue(name="escalation"),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    expected = Settings.model_fields["worker_processes"].default
    identities: set[str] = set()
    for _ in range(60):
        described = await client.workflow_service.describe_task_queue(request)
        identities = {poller.identity for poller in described.pollers}
        if len(identities) >= expected:
            break
        await asyncio.sleep(0.5)
    return identities


async def _wait_for_stage_started(handle: WorkflowHandle) -> CaseState:
    for _ in range(60):
        try:
            state = await handle.query(DisagreementWorkflow.get_state)
        except Exception:  # the first workflow task may not have run yet
            state = None
        # Its deadline set and a notice counted (the case lets its events go
        # once recorded). A stage's deadline and first notice come from one
        # local activity, and the notice is counted as it is made, before
        # that activity answers: a query in between sees no deadline yet.
        if state is not None and state.notices_sent and state.clock.deadline is not None:
            return state
        await asyncio.sleep(0.5)
    raise AssertionError("the case never started")
