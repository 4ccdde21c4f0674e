"""``/healthz`` (the API is up) and ``/readyz`` (Temporal and the register are
reachable and a worker polls the task queue). Neither needs a token."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError

from api import problems
from api.deps import RegisterDep, SettingsDep, TemporalClient
from api.problems import ProblemError
from api.schemas import Health, Readiness
from register import RegisterUnavailableError

router = APIRouter(tags=["health"])

READY_TIMEOUT = 5.0
_OK_EXAMPLE = {"description": "OK", "content": {"application/json": {"example": {"status": "ok"}}}}


@router.get(
    "/healthz",
    response_model=Health,
    summary="The API is up",
    responses={
        200: {"description": "OK", "content": {"application/json": {"example": {"status": "ok"}}}}
    },
)
async def healthz() -> Health:
    return Health()


async def _pollers(client: Client, task_queue: str, kind: Any) -> int:
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=kind,
        ),
        timeout=timedelta(seconds=READY_TIMEOUT),
    )
    return len(response.pollers)


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Temporal and the register are reachable and a worker polls the task queue",
    responses={
        200: {
            "description": "Ready",
            "content": {
                "application/json": {
                    "example": {
                        "status": "ready",
                        "temporal": "localhost:7233 (namespace default)",
                        "task_queue": "escalation",
                        "workflow_pollers": 1,
                        "activity_pollers": 1,
                        "register_database": "reachable",
                    }
                }
            },
        },
        **problems.responses(503),
    },
)
async def readyz(client: TemporalClient, register: RegisterDep, settings: SettingsDep) -> Readiness:
    where = f"{settings.temporal_address} (namespace {settings.temporal_namespace})"
    try:
        await asyncio.wait_for(run_in_threadpool(register.ping), READY_TIMEOUT)
    except (RegisterUnavailableError, TimeoutError) as exc:
        raise ProblemError(
            503,
            problems.NOT_READY,
            "Not ready",
            f"the register (the case record's database) cannot be reached ({type(exc).__name__})",
            register_database="unreachable",
        ) from None
    try:
        healthy = await asyncio.wait_for(client.service_client.check_health(), READY_TIMEOUT)
        workflow = await _pollers(
            client, settings.task_queue, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
        )
        activity = await _pollers(
            client, settings.task_queue, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY
        )
    except (RPCError, TimeoutError, RuntimeError) as exc:
        raise ProblemError(
            503,
            problems.NOT_READY,
            "Not ready",
            f"Temporal at {where} cannot be reached ({type(exc).__name__})",
            temporal=where,
        ) from None
    if not healthy:
        raise ProblemError(
            503,
            problems.NOT_READY,
            "Not ready",
            f"Temporal at {where} is not serving",
            temporal=where,
        )
    if not workflow or not activity:
        raise ProblemError(
            503,
            problems.NOT_READY,
            "Not ready",
            f"no worker polls the task queue {settings.task_queue!r}",
            temporal=where,
            task_queue=settings.task_queue,
            workflow_pollers=workflow,
            activity_pollers=activity,
        )
    return Readiness(
        temporal=where,
        task_queue=settings.task_queue,
        workflow_pollers=workflow,
        activity_pollers=activity,
        register_database="reachable",
    )
