"""A worker that dies like a SIGKILL (``os._exit(9)``) once, at a chosen
instant, for the tests of what a crash mid-task leaves behind. Run as
``python -m tests.crashing_worker WHEN ADDRESS TASK_QUEUE FLAG OUTBOX
REGISTER_URL`` with the test's key ring in ``ESCALATION_CODEC_KEYS`` (or
``CRASHING_WORKER_PLAIN=1``: no encryption, for recording a history); the
flag file says it has died once (a restarted copy then runs normally).

WHEN is ``register`` (after the register's commit, before the workflow task
completes) or a notice template (after the first notice of that template
was delivered to the outbox, before the task completes)."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client

from activities.notices import OutboxSink, OutgoingEmail
from escalation.codec import KeyRing
from escalation.converter import data_converter, payload_codec, plain_data_converter
from register import Register
from workers.worker import build_worker
from workflows.messages import Notice


def _die_once(flag: Path) -> None:
    if not flag.exists():
        flag.touch()
        os._exit(9)


def main(when: str, address: str, task_queue: str, flag: str, outbox: str, url: str) -> None:
    plain = os.environ.get("CRASHING_WORKER_PLAIN") == "1"
    ring = KeyRing.generate() if plain else KeyRing.parse(os.environ["ESCALATION_CODEC_KEYS"])

    class DiesAfterWriting(Register):
        def record(self, update: Any) -> Any:
            receipt = super().record(update)
            if when == "register":
                _die_once(Path(flag))
            return receipt

    class DiesAfterSending(OutboxSink):
        def deliver(self, notice: Notice, email: OutgoingEmail) -> None:
            super().deliver(notice, email)
            if notice.template == when:
                _die_once(Path(flag))

    async def run() -> None:
        converter = plain_data_converter() if plain else data_converter()
        client = await Client.connect(address, data_converter=converter)
        worker = build_worker(
            client,
            task_queue,
            DiesAfterSending(Path(outbox)),
            register=DiesAfterWriting.from_url(url, ring),
            sticky_queue_schedule_to_start_timeout=timedelta(seconds=1),
        )
        await worker.run()

    asyncio.run(run())


def spawn(
    when: str, client: Client, task_queue: str, folder: Path, url: str, *, plain: bool = False
) -> subprocess.Popen[bytes]:
    """Start the crashing worker on ``task_queue``, encrypting with this
    process's key ring (``plain``: not encrypting); its flag file is
    ``folder / "died"``, its outbox ``folder / "outbox"``."""
    ring = payload_codec().ring
    keys = ",".join(f"{i}:{base64.b64encode(k).decode()}" for i, k in ring.keys.items())
    env = {**os.environ, "ESCALATION_CODEC_KEYS": keys}
    if plain:
        env = {**os.environ, "CRASHING_WORKER_PLAIN": "1"}
    address = client.service_client.config.target_host
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.crashing_worker",
            when,
            address,
            task_queue,
            str(folder / "died"),
            str(folder / "outbox"),
            url,
        ],
        env=env,
        cwd=Path(__file__).parent.parent,
        stderr=subprocess.PIPE,
    )


if __name__ == "__main__":
    main(*sys.argv[1:7])
