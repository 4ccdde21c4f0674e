"""The baseline: a trivial workflow and its own worker, on the same server.

``python -m bench.trivial --address HOST:PORT --task-queue Q`` hosts it
until SIGTERM. The benchmark starts the same number of these with a bare
``client.start_workflow`` as it raises cases through the API, so the
product's overhead can be read as a ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

WORKFLOW_NAME = "BenchTrivial"


@workflow.defn(name=WORKFLOW_NAME)
class TrivialWorkflow:
    @workflow.run
    async def run(self, n: int) -> int:
        return n


async def _serve(address: str, task_queue: str) -> None:
    client = await Client.connect(address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Worker(client, task_queue=task_queue, workflows=[TrivialWorkflow]):
        print("trivial worker polling", task_queue, flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    args = parser.parse_args()
    asyncio.run(_serve(args.address, args.task_queue))


if __name__ == "__main__":
    main()
