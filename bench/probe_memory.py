"""What a cached workflow costs the worker, with none of the product in it:
the evidence behind the README's reason for the worker-memory figure.

``python -m bench.probe_memory [--input-bytes B] [CASES] [STEPS...]`` starts a
dev server (in memory) and, in this process, a worker for a trivial workflow
that takes a B-byte input (default 200), runs STEPS local activities (each
passes a 200-byte string in and out), accepts one update, then waits on a
timer for days, as an open case does. For each STEPS (default 1 and 21) it
starts CASES workflows (default 1,000) on a fresh task queue, updates each
once, and prints this process's resident memory per cached workflow. The
difference between two figures, divided by the difference in steps, is what
the SDK keeps for every local activity of a cached run for as long as the run
stays cached; two runs with different B show what it keeps of the input.
"""

from __future__ import annotations

import argparse
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
    async def run(self, steps: int, text: str) -> None:
        for _ in range(steps):
            await workflow.execute_local_activity(
                echo, PAYLOAD, start_to_close_timeout=timedelta(seconds=30)
            )
        await workflow.wait_condition(lambda: self.closed, timeout=timedelta(days=10))


async def per_case_kib(
    client: Client, cases: int, steps: int, input_bytes: int
) -> tuple[float, float]:
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
                    Steps.run, args=[steps, "x" * input_bytes], id=f"{queue}-{i}", task_queue=queue
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


async def probe(cases: int, steps: list[int], input_bytes: int) -> None:
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=temporal_cli())
    try:
        figures = []
        for k in steps:
            before, kib = await per_case_kib(env.client, cases, k, input_bytes)
            figures.append((k, kib))
            print(
                f"{k:3d} local activities, {input_bytes}-byte input: {kib:6.1f} KiB per "
                f"cached workflow ({cases} cached; this process {before:.1f} MiB before)",
                flush=True,
            )
        if len(figures) > 1:
            (k0, m0), (k1, m1) = figures[0], figures[-1]
            print(f"each local activity keeps {(m1 - m0) / (k1 - k0):.1f} KiB while cached")
    finally:
        await env.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.probe_memory")
    parser.add_argument("--input-bytes", type=int, default=200)
    parser.add_argument("cases", type=int, nargs="?", default=1000)
    parser.add_argument("steps", type=int, nargs="*", default=[1, 21])
    args = parser.parse_args()
    asyncio.run(probe(args.cases, args.steps, args.input_bytes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
