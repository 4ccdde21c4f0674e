"""What a cached workflow costs the worker, with none of the product in it:
the evidence behind the README's reason for the worker-memory figure.

``python -m bench.probe_memory [CASES] [STEPS...]`` starts a dev server (in
memory) and, in this process, a worker for a trivial workflow that runs STEPS
local activities (each passes a 200-byte string in and out), accepts one
update, then waits on a timer for days, as an open case does. For each STEPS
(default 1 and 21) it starts CASES workflows (default 1,000) on a fresh task
queue, updates each once, and prints this process's resident memory per
cached workflow. The difference between the two figures, divided by the
difference in steps, is what the SDK keeps for every local activity of a
cached run for as long as the run stays cached.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import uuid
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from bench.stack import rss_kib
from escalation.temporal_bin import temporal_cli

PAYLOAD = "x" * 200
CONCURRENCY = 16


@activity.defn
async def echo(text: str) -> str:
    return text


@workflow.defn
class Steps:
    def __init__(self) -> None:
        self.closed = False

    @workflow.update
    async def touch(self) -> str:
        return "ok"

    @workflow.run
    async def run(self, steps: int) -> None:
        for _ in range(steps):
            await workflow.execute_local_activity(
                echo, PAYLOAD, start_to_close_timeout=timedelta(seconds=30)
            )
        await workflow.wait_condition(lambda: self.closed, timeout=timedelta(days=10))


async def per_case_kib(client: Client, cases: int, steps: int) -> tuple[float, float]:
    """(resident MiB before, KiB per cached workflow after) for one run."""
    queue = f"probe-memory-{uuid.uuid4()}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[Steps],
        activities=[echo],
        workflow_runner=UnsandboxedWorkflowRunner(),
        max_cached_workflows=cases + 100,
    ):
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(i: int) -> None:
            async with gate:
                handle = await client.start_workflow(
                    Steps.run, steps, id=f"{queue}-{i}", task_queue=queue
                )
                await handle.execute_update(Steps.touch)

        await asyncio.gather(*(one(i) for i in range(5)))  # warm the worker up
        await asyncio.sleep(1)
        gc.collect()
        before, _ = rss_kib(os.getpid())
        await asyncio.gather(*(one(i) for i in range(5, cases + 5)))
        await asyncio.sleep(3)
        gc.collect()
        after, _ = rss_kib(os.getpid())
    return before / 1024, (after - before) / cases


async def probe(cases: int, steps: list[int]) -> None:
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=temporal_cli())
    try:
        figures = []
        for k in steps:
            before, kib = await per_case_kib(env.client, cases, k)
            figures.append((k, kib))
            print(
                f"{k:3d} local activities: {kib:6.1f} KiB per cached workflow "
                f"({cases} cached; this process {before:.1f} MiB before)",
                flush=True,
            )
        if len(figures) > 1:
            (k0, m0), (k1, m1) = figures[0], figures[-1]
            print(f"each local activity keeps {(m1 - m0) / (k1 - k0):.1f} KiB while cached")
    finally:
        await env.shutdown()


def main() -> int:
    cases = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    steps = [int(a) for a in sys.argv[2:]] or [1, 21]
    asyncio.run(probe(cases, steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
