"""A notice is sent once whatever order a retried workflow task applies what
it holds: a worker killed after a local activity sent a case's emails and
before its workflow task completed, with a manager's action arriving
meanwhile, must not send the same notice again under another id."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.notices import OutboxSink
from register import Register
from register.migrate import upgrade
from tests import crashing_worker
from tests.conftest import Harness, barrier, make_request, receiving_manager
from tests.registers import remember
from tests.test_workflow_register import poll
from workers.worker import build_worker
from workflows.disagreement import DisagreementWorkflow
from workflows.messages import Actor, AddNote, ShortenDeadline


async def shorten_to_seconds_away(handle: WorkflowHandle, manager: Actor) -> None:
    """Bring the deadline to a few seconds from now; on a machine so busy
    that the instant had passed when the case applied it, try again."""
    while True:
        soon = datetime.now(UTC) + timedelta(seconds=3)
        try:
            await handle.execute_update(
                DisagreementWorkflow.shorten_deadline,
                ShortenDeadline(by=manager, deadline=soon, reason="Conference tomorrow"),
            )
            return
        except WorkflowUpdateFailedError as failed:
            cause = failed.cause
            if not (isinstance(cause, ApplicationError) and "future" in cause.message):
                raise


def sent_notices(outbox: Path) -> Counter[str]:
    """Each notice's emails in the outbox, by the notice's template and stage:
    what the people on the case received."""
    received: Counter[str] = Counter()
    for path in outbox.glob("*.eml"):
        headers = dict(
            line.split(": ", 1)
            for line in path.read_text().split("\n\n", 1)[0].splitlines()
            if ": " in line
        )
        received[headers["X-Escalation-Template"]] += 1
    return received


async def test_a_worker_killed_after_sending_an_escalation_sends_it_once(
    dev_server: WorkflowEnvironment, tmp_path: Path
) -> None:
    """Real time on a dev server: the deadline is brought a few seconds
    forward; the worker that escalates the case dies once the escalation's
    notice is in the outbox; a manager's note arrives while nobody holds the
    case; a second worker with the same outbox (the same ledger) takes over."""
    url = f"sqlite:///{tmp_path / 'register.sqlite3'}"
    upgrade(url)
    harness = Harness(dev_server.client)
    crashing = crashing_worker.spawn(
        "escalated-automatically", dev_server.client, harness.task_queue, tmp_path, url
    )
    outbox = tmp_path / "outbox"
    request = make_request("merton", datetime.now(UTC))
    manager = receiving_manager(request)
    try:
        handle = await harness.raise_case(request)
        await barrier(handle)  # the crashing worker holds the case
        await shorten_to_seconds_away(handle, manager)
        code = await asyncio.to_thread(crashing.wait, 60)
        assert code == 9, crashing.stderr.read().decode()[-2000:] if crashing.stderr else code
        assert sent_notices(outbox)["escalated-automatically"] == 1
        # While nobody holds the case, a manager adds a note.
        await handle.signal("add_note", AddNote(by=manager, text="Called the chair"))
        register = remember(Register.from_url(url, crashing_worker.payload_codec().ring))
        worker = build_worker(
            dev_server.client, harness.task_queue, OutboxSink(outbox), register=register
        )
        async with worker:
            state = await poll(
                handle,
                lambda s: (
                    s.stage == 1
                    and any(e.type == "note" for e in s.events)
                    and any(e.template == "escalated-automatically" for e in s.events)
                ),
                "the escalation and the note on the case",
                timeout=60,
            )
            await handle.terminate("test over")
        register.close()
    finally:
        if crashing.poll() is None:
            crashing.send_signal(signal.SIGKILL)
    # The retried task applied the note first: the escalation's events and
    # notices came after it, not where the dead worker had put them.
    types = [e.type for e in state.events]
    note = next(e.seq for e in state.events if e.reason == "Called the chair")
    assert note < next(e.seq for e in state.events if e.type == "auto_escalated"), types
    noticed = [e for e in state.events if e.notice_id]
    # Every notice the case records was sent, once, under its own id.
    assert len({e.notice_id for e in noticed}) == len(noticed)
    received = sent_notices(outbox)
    assert received == Counter(e.template for e in noticed), received
    assert received["escalated-automatically"] == 1
