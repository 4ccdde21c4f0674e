"""What sending a notice costs the worker, apart from Temporal.

``python -m bench.probe_notices [COUNT] [IN_FLIGHT]`` starts the SendGrid
stand-in (``bench.capture``) as its own process, builds the worker's notice
activity as the worker does (the real SendGrid sink, a migrated SQLite
register for the ledger, the example role directory) and sends COUNT stage
notices, IN_FLIGHT at a time (as a worker runs several cases' notices at
once), each to both agencies' role holders: two copies. It prints the CPU
seconds per notice of this process (all its threads) and of the stand-in,
and how many TCP connections the stand-in was opened, so a change to the
transport or the ledger shows in CPU, not in a shared machine's wall time.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from temporalio.testing import ActivityEnvironment

from activities.email import SendGridSink
from activities.notices import Addressee, NoticeActivities
from bench.stack import HOST, free_port
from escalation.codec import KeyRing
from policies.directory import example_directory
from register import Register
from register.migrate import upgrade
from workflows.messages import Notice, Recipient

RECIPIENTS = [
    Recipient(
        role="named-professional",
        title="Named Professional",
        agency="merton-health",
        agency_kind="health",
        area="merton",
    ),
    Recipient(
        role="head-of-service",
        title="Head of Service",
        agency="merton-childrens-social-care",
        agency_kind="childrens-social-care",
        area="merton",
    ),
]


def stage_notice(i: int) -> Notice:
    reference = f"MER-PROBE{i:05d}"
    return Notice(
        notice_id=f"{reference}-00004-escalated-automatically",
        reference=reference,
        template="escalated-automatically",
        policy_id="merton",
        partnership="Merton Safeguarding Children Partnership (MSCP)",
        area="merton",
        recipients=RECIPIENTS,
        stage=2,
        stage_name="Stage 2: senior leaders",
        stage_summary="Senior Leader to Senior Leader attempt to resolve within 5 working days.",
        deadline=None,
        deadline_text=None,
        status="open",
    )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stats(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://{HOST}:{port}/stats") as answer:
        return dict(json.loads(answer.read()))


async def send(acts: NoticeActivities, count: int, in_flight: int, first: int = 0) -> None:
    gate = asyncio.Semaphore(in_flight)
    env = ActivityEnvironment()

    async def one(i: int) -> None:
        async with gate:
            receipt = await env.run(acts.send_notice, stage_notice(i))
            assert receipt.delivered and not receipt.duplicate

    await asyncio.gather(*(one(i) for i in range(first, first + count)))


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    in_flight = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    folder = Path(tempfile.mkdtemp(prefix="probe-notices-"))
    port = free_port()
    capture = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.capture",
            "--port",
            str(port),
            "--out",
            str(folder / "capture.jsonl"),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                stats(port)
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("the SendGrid stand-in did not start")
        url = f"sqlite:///{folder / 'register.sqlite3'}"
        upgrade(url)
        register = Register.from_url(url, KeyRing.generate())
        sink = SendGridSink("SG.probe", register, host=f"http://{HOST}:{port}")
        acts = NoticeActivities(
            sink, example_directory(), Addressee("Probe", "probe@merton.example.org")
        )
        asyncio.run(
            send(acts, 5, 1, first=count)
        )  # warm up: imports, templates, the first connection
        before = stats(port)
        cpu, capture_cpu, wall = time.process_time(), cpu_seconds(capture.pid), time.monotonic()
        asyncio.run(send(acts, count, in_flight))
        cpu = time.process_time() - cpu
        capture_cpu = cpu_seconds(capture.pid) - capture_cpu
        wall = time.monotonic() - wall
        after = stats(port)
        emails = after["received"] - before["received"]
        print(
            f"{count} notices, {in_flight} in flight: {emails} emails; "
            f"{after['connections'] - before['connections']} connections opened\n"
            f"  this process: {cpu:.2f} CPU s = {cpu / count * 1000:.2f} ms a notice, "
            f"{cpu / max(emails, 1) * 1000:.2f} ms an email\n"
            f"  the stand-in: {capture_cpu:.2f} CPU s = {capture_cpu / count * 1000:.2f} ms a "
            f"notice\n  wall {wall:.2f} s (not meaningful on a busy machine)"
        )
        register.close()
    finally:
        capture.terminate()
        capture.wait(10)
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
