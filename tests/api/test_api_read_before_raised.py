"""A case read before the worker has recorded its raise: the API answers a
raise at once, from the same rules the worker applies, so a GET that
follows at once must not contradict it with a half-made case (no events,
no deadline). It waits for the raise and, if the worker takes too long,
says so (409, try again) rather than answer the half-made state."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest_asyncio
from api_helpers import raise_body
from temporalio import activity
from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.deadlines import DeadlineActivities
from activities.notices import MemorySink, NoticeActivities
from activities.stage_start import StageStartActivities
from api.main import create_app
from escalation.settings import Settings
from workflows.disagreement import DisagreementWorkflow
from workflows.messages import CaseState, StageStart, StageStarted

PRACTITIONER = "merton-health-practitioner"


@dataclass
class Gated:
    """The worker's activity that plans the first stage's clock (and sends
    its notice), held until the test opens it: the window between the
    case's start and its raise being recorded, which a busy worker opens by
    chance."""

    opened: asyncio.Event
    stage_start: StageStartActivities

    @activity.defn(name="start_stage")
    async def start_stage(self, start: StageStart) -> StageStarted:
        await self.opened.wait()
        return await self.stage_start.start_stage(start)


@pytest_asyncio.fixture(scope="module")
async def gated_api(
    dev_env: WorkflowEnvironment, settings: Settings, tokens: dict[str, str]
) -> AsyncIterator[tuple[httpx.AsyncClient, asyncio.Event]]:
    queue = f"gated-{uuid.uuid4()}"
    notices = NoticeActivities(MemorySink())
    deadlines = DeadlineActivities()
    gate = Gated(asyncio.Event(), StageStartActivities(deadlines, notices))
    worker = Worker(
        dev_env.client,
        task_queue=queue,
        workflows=[DisagreementWorkflow],
        activities=[
            gate.start_stage,
            deadlines.plan_stage_clock,
            deadlines.next_reminder,
            notices.send_notice,
        ],
    )
    app = create_app(
        settings.model_copy(update={"task_queue": queue}),
        client=dev_env.client,
    )
    async with worker, app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {tokens[PRACTITIONER]}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api.test", headers=headers
        ) as http:
            yield http, gate.opened
        gate.opened.set()


async def _half_made_state(env: WorkflowEnvironment, ref: str) -> CaseState:
    handle = env.client.get_workflow_handle(f"disagreement-{ref}")
    for _ in range(60):
        try:
            return await handle.query(
                DisagreementWorkflow.get_state, rpc_timeout=timedelta(seconds=1)
            )
        except (RPCError, WorkflowQueryFailedError):
            await asyncio.sleep(0.5)
    raise AssertionError("the case never answered its query")


async def test_a_case_read_before_its_raise_is_recorded_is_not_half_made(
    gated_api: tuple[httpx.AsyncClient, asyncio.Event], dev_env: WorkflowEnvironment
) -> None:
    http, opened = gated_api
    raised = await http.post("/disagreements", json=raise_body())
    assert raised.status_code == 201, raised.text
    ref = raised.json()["reference"]
    # The worker holds its first workflow task open while the clock is
    # planned, and after a while completes it to keep it alive (as a slow
    # worker does): from then on the case answers queries, half-made.
    half_made = await _half_made_state(dev_env, ref)
    assert half_made.events == [] and half_made.clock.deadline is None

    early = await http.get(f"/disagreements/{ref}")

    assert early.status_code == 409, early.text
    assert early.json()["type"] == "/problems/case-not-ready"
    assert early.headers["retry-after"] == "1"

    opened.set()
    late = await http.get(f"/disagreements/{ref}")
    assert late.status_code == 200, late.text
    state = late.json()
    assert state["events"][0]["type"] == "raised"
    assert state["clock"]["deadline"] == raised.json()["deadline"].replace("+00:00", "Z")
