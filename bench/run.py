"""``python -m bench.run`` (``make bench``): the product under load, against bare Temporal.

Starts its own stack on loopback (``bench.stack``): the Temporal dev server
persisted to a SQLite file in WAL mode, the product's worker with notices going
through the real SendGrid sink to a capture server that timestamps each one
(``bench.capture``), the API, and a worker for a trivial baseline workflow.
Then, using only the product's own features through the API (raise, shorten
the deadline, resolve):

1. simulation: wall time of ``escalation simulate`` for each of the five
   policies (before the stack starts, on a quiet machine); the longest counts;
2. burst: N cases raised, every deadline moved to the same instant T; the lag
   from T to each case's ``escalated-automatically`` notice arriving;
3. worker memory: the worker's VmRSS with those N cases open (and cached);
4. spread: the same N cases (now at the next stage) with deadlines spread
   evenly over a window; lag from each deadline to its notice;
5. API: raises paced at 20/s, each resolved by the receiving agency's manager
   one second after it was raised; then as many bare ``start_workflow`` calls
   of a trivial workflow, paced the same; then both closed-loop at the same
   concurrency for capacity, whose ratio is the product's overhead.

Environment: BENCH_N (default 1000), BENCH_SPREAD_SECONDS (default 120),
BENCH_API_RATE (20), BENCH_API_SECONDS (15), BENCH_SATURATION_COUNT (150),
BENCH_CONCURRENCY (16), BENCH_SKIP (comma list of scenario names:
simulate,register,long,burst,spread,api); for the scale scenarios, BENCH_PRELOAD (open
cases raised before the burst, default 0) and BENCH_WORKERS (worker processes
on the one task queue, default: as many as `make run` starts); for experiments on the server,
BENCH_SQLITE_PRAGMAS and BENCH_SERVER_CONFIG (see bench.stack).

Figures go to bench/results/latest.json (and a timestamped copy), the table
to bench/results/latest.md and the terminal. Logs and the SQLite file of the
run stay in bench/results/run/ for inspection until the next run. A run named
by BENCH_ROUND (``make bench``'s scale rounds) writes ``<round>.json`` and
``<round>.md`` and keeps its files in ``run-<round>/`` instead, so the rounds of
one ``make bench`` do not overwrite each other.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from api.schemas import RAISE_EXAMPLE
from bench.long_case import QUERY_TARGET_MS, scenario_long_case
from bench.register_list import scenario_register
from bench.stack import TRIVIAL_QUEUE, Stack, StackError, rss_kib
from bench.stats import (
    CaptureLog,
    CpuMeter,
    Progress,
    Summary,
    env_float,
    env_int,
    frontend_requests,
    machine_cpu_s,
    say,
    summary,
)
from bench.trivial import WORKFLOW_NAME
from escalation.settings import Settings
from workflows.ladder import HISTORY_WARNING

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
POLICIES = ("merton", "staffordshire-stoke", "cheshire", "wirral", "hillingdon")
ESCALATION_TEMPLATE = "escalated-automatically"
RAISER = "merton-health-practitioner"
MANAGER = "merton-csc-manager"

# The API's own documented example, as a benchmark case.
RAISE_BODY: dict[str, Any] = {
    **RAISE_EXAMPLE,
    "summary": "Benchmark case: health believes the threshold for a strategy discussion is met.",
    "child": {"name": "Bench Child", "date_of_birth": "2019-04-01"},
}

TARGETS = {
    "burst_max_lag_s": 60.0,
    "spread_p99_lag_s": 2.0,
    "raise_p95_ms": 150.0,
    "resolve_p95_ms": 250.0,
    "throughput_ratio": 0.70,
    # Closed loop: raises answered per second against bare starts, same run.
    "capacity_ratio": 0.80,
    "worker_rss_mib": 350.0,
    # More than 1,000 open (BENCH_PRELOAD): the scale target, 10,000 cases.
    "scale_rss_mib": 1536.0,
    "simulate_s": 5.0,
    "register_list_p95_ms": 50.0,
}


class Config:
    def __init__(self) -> None:
        self.n = env_int("BENCH_N", 1000)
        self.spread_seconds = env_float("BENCH_SPREAD_SECONDS", 120.0)
        self.api_rate = env_float("BENCH_API_RATE", 20.0)
        self.api_seconds = env_float("BENCH_API_SECONDS", 15.0)
        self.api_count = max(1, int(self.api_rate * self.api_seconds))
        self.saturation_count = env_int("BENCH_SATURATION_COUNT", min(150, self.api_count))
        self.concurrency = env_int("BENCH_CONCURRENCY", 16)
        self.skip = {s.strip() for s in os.environ.get("BENCH_SKIP", "").split(",") if s.strip()}
        # Scale: open cases raised before the burst (which raises N more), and
        # worker processes on the one task queue (by default what make run has).
        self.preload = env_int("BENCH_PRELOAD", 0)
        self.workers = env_int("BENCH_WORKERS", Settings.model_fields["worker_processes"].default)

    def as_dict(self) -> dict[str, Any]:
        return {k: (sorted(v) if isinstance(v, set) else v) for k, v in vars(self).items()}


# --- HTTP helpers ---------------------------------------------------------------------


def read_tokens(data_dir: Path) -> dict[str, str]:
    tokens = {}
    for line in (data_dir / "demo-tokens.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or "\t" not in line:
            continue
        user, _, token = line.partition("\t")
        tokens[user.strip()] = token.strip()
    return tokens


class Api:
    def __init__(self, base_url: str, tokens: dict[str, str], connections: int) -> None:
        self.http = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(30.0),
            # No client-side queue: an open-loop request waits at the API, not in
            # the pool (a pool of hundreds of waiters costs the bench much CPU).
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=connections),
        )
        self.tokens = tokens
        self.errors: dict[str, int] = {}
        self.error_samples: list[str] = []

    def _auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def _failed(self, what: str, detail: str) -> None:
        key = f"{what}: {detail[:120]}"
        self.errors[key] = self.errors.get(key, 0) + 1
        if len(self.error_samples) < 10:
            self.error_samples.append(key)

    async def raise_case(self) -> tuple[str | None, float]:
        started = time.perf_counter()
        try:
            response = await self.http.post(
                "/disagreements", json=RAISE_BODY, headers=self._auth(RAISER)
            )
        except httpx.HTTPError as exc:
            self._failed("raise", type(exc).__name__)
            return None, time.perf_counter() - started
        elapsed = time.perf_counter() - started
        if response.status_code not in (200, 201, 202):
            self._failed("raise", f"{response.status_code} {response.text}")
            return None, elapsed
        if response.status_code == 202:
            self._failed("raise", "202 accepted (first deadline not planned within the wait)")
        return str(response.json()["reference"]), elapsed

    async def act(self, reference: str, verb: str, body: dict[str, Any]) -> tuple[bool, float]:
        started = time.perf_counter()
        try:
            response = await self.http.post(
                f"/disagreements/{reference}/{verb}", json=body, headers=self._auth(MANAGER)
            )
        except httpx.HTTPError as exc:
            self._failed(verb, type(exc).__name__)
            return False, time.perf_counter() - started
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            self._failed(verb, f"{response.status_code} {response.text}")
            return False, elapsed
        return True, elapsed

    async def shorten(self, reference: str, deadline: float) -> bool:
        when = datetime.fromtimestamp(deadline, UTC).isoformat(timespec="milliseconds")
        ok, _ = await self.act(
            reference, "deadline", {"deadline": when, "reason": "Benchmark: deadline moved."}
        )
        return ok

    async def close(self) -> None:
        await self.http.aclose()


async def pool(
    count: int,
    concurrency: int,
    job: Callable[[int], Awaitable[Any]],
    label: str,
    timeout: float,
) -> tuple[list[Any], float]:
    """Run job(0..count-1) with at most `concurrency` at once; bounded in time."""
    progress = Progress(label, count)
    results: list[Any] = [None] * count
    queue = iter(range(count))
    started = time.monotonic()

    async def runner() -> None:
        for i in queue:
            results[i] = await job(i)
            progress.add()

    runners = [asyncio.create_task(runner()) for _ in range(min(concurrency, count))]
    try:
        await asyncio.wait_for(asyncio.gather(*runners), timeout)
    except TimeoutError:
        say(f"    {label}: stopped at the {timeout:.0f}s limit after {progress.done}/{count}")
        for r in runners:
            r.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
    return results, time.monotonic() - started


async def paced(
    count: int,
    rate: float,
    job: Callable[[int], Awaitable[Any]],
    label: str,
    timeout: float,
) -> tuple[list[Any], float, float]:
    """Start job(i) at i/rate seconds (open loop). Returns the results, the
    time the last one was started and the time the last one finished."""
    progress = Progress(label, count)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    finished = [t0]

    async def one(i: int) -> Any:
        try:
            return await job(i)
        finally:
            finished[0] = max(finished[0], loop.time())
            progress.add()

    tasks = []
    for i in range(count):
        delay = t0 + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    issued = loop.time() - t0
    remaining = max(1.0, timeout - issued)
    done, pending = await asyncio.wait(tasks, timeout=remaining)
    for task in pending:
        task.cancel()
    if pending:
        say(f"    {label}: {len(pending)} still running at the time limit; cancelled")
        await asyncio.gather(*pending, return_exceptions=True)
    results = [t.result() if t in done and not t.exception() else None for t in tasks]
    return results, issued, finished[0] - t0


async def wait_for_notices(
    capture: CaptureLog,
    expected: dict[str, float],
    label: str,
    give_up_at: float,
    stack: Stack,
) -> dict[str, float]:
    """Arrival time of each reference's escalation notice at or after its
    deadline (epoch seconds), until all arrived or `give_up_at` passes."""
    arrived: dict[str, float] = {}
    progress = Progress(label, len(expected))
    last_check = 0.0
    while True:
        capture.poll()
        for reference, deadline in expected.items():
            if reference in arrived:
                continue
            # A notice for this case before its new deadline cannot be the one.
            t = capture.first_after(reference, ESCALATION_TEMPLATE, deadline - 5.0)
            if t is not None:
                arrived[reference] = t
        progress.set(len(arrived))
        if len(arrived) == len(expected) or time.time() > give_up_at:
            return arrived
        if time.monotonic() - last_check > 5:
            stack.check()
            last_check = time.monotonic()
        await asyncio.sleep(0.25)


async def settle(stack: Stack, why: str, limit: float = 90.0) -> float:
    """Wait until the cases stop working (no workflow task or activity
    completed for two seconds, by the server's own counters), so one
    scenario's tail is not measured in the next. Returns the seconds waited."""
    started = time.monotonic()
    keys = ("RespondWorkflowTaskCompleted", "RespondActivityTaskCompleted")
    last = -1.0
    quiet = 0
    while time.monotonic() - started < limit:
        counts = frontend_requests(stack.metrics_port)
        done = sum(counts.get(k, 0.0) for k in keys)
        quiet = quiet + 1 if done == last else 0
        if quiet >= 2:
            break
        last = done
        await asyncio.sleep(1.0)
    waited = time.monotonic() - started
    say(f"    settled in {waited:.0f}s {why}")
    return waited


async def planned(stack: Stack, before: dict[str, float], cases: int, limit: float) -> float:
    """Wait until the worker has completed a workflow task for each of
    ``cases`` new cases (a raise's first task plans it), counted from
    ``before``: a worker far behind can pause for seconds (a full cache
    makes new cases wait), which ``settle`` would take for the end."""
    started = time.monotonic()
    key = "RespondWorkflowTaskCompleted"
    progress = Progress("planned", cases)
    while time.monotonic() - started < limit:
        done = frontend_requests(stack.metrics_port).get(key, 0.0) - before.get(key, 0.0)
        progress.set(min(int(done), cases))
        if done >= cases:
            break
        await asyncio.sleep(2.0)
    return time.monotonic() - started


async def sleep_until(epoch: float, why: str) -> None:
    delay = epoch - time.time()
    if delay > 0:
        say(f"    waiting {delay:.1f}s {why}")
        await asyncio.sleep(delay)


# --- Scenarios ---------------------------------------------------------------------------


def scenario_simulate() -> dict[str, Any]:
    say("\n[simulate] `escalation simulate POLICY --json` for each policy")
    exe = Path(sys.executable).parent / "escalation"
    argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "escalation.cli"]
    runs = {}
    for policy in POLICIES:
        before = os.times()
        busy_before, _ = machine_cpu_s()
        started = time.perf_counter()
        done = subprocess.run(
            [*argv, "simulate", policy, "--json"], capture_output=True, text=True, timeout=120
        )
        wall = time.perf_counter() - started
        after = os.times()
        busy_after, _ = machine_cpu_s()
        own_cpu = (after.children_user - before.children_user) + (
            after.children_system - before.children_system
        )
        if done.returncode != 0:
            raise RuntimeError(f"simulate {policy} failed: {done.stderr[-2000:]}")
        timeline = json.loads(done.stdout)
        events = timeline["events"]
        timed = sum(1 for e in events if e["type"] in ("auto_escalated", "reminder", "overdue"))
        runs[policy] = {
            "wall_s": round(wall, 3),
            "events": len(events),
            "timer_driven_events": timed,
            "final": timeline["final"],
            "cpu_s": round(own_cpu, 2),
            "other_processes_cpu_s": round(max(busy_after - busy_before - own_cpu, 0.0), 2),
        }
        say(
            f"    {policy:<20} {wall:5.2f}s  {len(events)} events ({timed} timer-driven); "
            f"CPU {own_cpu:.2f}s, other processes {runs[policy]['other_processes_cpu_s']:.2f}s"
        )
    longest = max(runs, key=lambda p: (runs[p]["timer_driven_events"], runs[p]["events"]))
    slowest = max(runs, key=lambda p: runs[p]["wall_s"])
    return {
        "runs": runs,
        "longest_ladder": longest,
        "longest_ladder_wall_s": runs[longest]["wall_s"],
        "max_wall_s": runs[slowest]["wall_s"],
        "slowest": slowest,
    }


async def raise_many(api: Api, n: int, concurrency: int, label: str) -> tuple[list[str], float]:
    async def job(_i: int) -> tuple[str | None, float]:
        return await api.raise_case()

    results, elapsed = await pool(n, concurrency, job, label, timeout=max(120.0, n * 0.5))
    refs = [r[0] for r in results if r is not None and r[0] is not None]
    return refs, elapsed


async def shorten_many(
    api: Api, deadlines: dict[str, float], concurrency: int, label: str, timeout: float
) -> tuple[set[str], float]:
    order = sorted(deadlines, key=deadlines.__getitem__)

    async def job(i: int) -> bool:
        return await api.shorten(order[i], deadlines[order[i]])

    results, elapsed = await pool(len(order), concurrency, job, label, timeout=timeout)
    return {ref for ref, ok in zip(order, results, strict=True) if ok}, elapsed


class LagRow(TypedDict):
    """A sampled case's steps, each with its seconds after the deadline."""

    reference: str
    steps: list[tuple[str, float]]


class Step(TypedDict):
    """A step's time after the deadline, over the sampled cases."""

    step: str
    cases: int
    median_s: float | None
    max_s: float | None


STEP_NAMES = {
    EventType.EVENT_TYPE_TIMER_FIRED: "timer fired",
    EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED: "workflow task scheduled",
    EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED: "workflow task started",
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED: "workflow task completed",
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: "activity scheduled",
    EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED: "activity started",
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: "activity completed",
}


async def where_the_lag_went(
    client: Client, deadlines: dict[str, float], arrivals: dict[str, float], sample: int = 25
) -> list[LagRow]:
    """For a sample of cases, the history's steps from the deadline to the
    escalation notice (seconds after the deadline), from the server's own
    event times: the timer firing, each workflow task and activity (deadline
    planning, then the notice) being scheduled, started and completed."""
    chosen = sorted(arrivals, key=arrivals.__getitem__)
    if len(chosen) > sample:
        step = len(chosen) / sample
        chosen = [chosen[int(i * step)] for i in range(sample)]
    rows: list[LagRow] = []
    for reference in chosen:
        deadline = deadlines[reference]
        handle = client.get_workflow_handle(f"disagreement-{reference}")
        try:
            history = await asyncio.wait_for(handle.fetch_history(), 20)
        except Exception:  # noqa: BLE001 - evidence only; never fail the run
            continue
        steps: list[tuple[str, float]] = []
        fired = False
        activities = 0
        for event in history.events:
            at = event.event_time.ToDatetime(tzinfo=UTC).timestamp()
            if not fired:
                if event.event_type == EventType.EVENT_TYPE_TIMER_FIRED and at >= deadline - 1:
                    fired = True
                    steps.append(("timer fired", at - deadline))
                continue
            name = STEP_NAMES.get(event.event_type)
            if name is None:
                continue
            if name == "activity scheduled":
                activities += 1
            label = f"{name} #{activities}" if name.startswith("activity") else name
            steps.append((label, at - deadline))
            if name == "activity completed" and activities >= 2:
                break
        steps.append(("notice arrived", arrivals[reference] - deadline))
        rows.append({"reference": reference, "steps": steps})
    return rows


def summarise_steps(rows: list[LagRow]) -> list[Step]:
    """The median time after the deadline of each step, over the sampled cases."""
    order: list[str] = []
    times: dict[str, list[float]] = {}
    for row in rows:
        seen: dict[str, int] = {}
        for label, t in row["steps"]:
            seen[label] = seen.get(label, 0) + 1
            key = label if seen[label] == 1 else f"{label} ({seen[label]})"
            if key not in times:
                times[key] = []
                order.append(key)
            times[key].append(t)
    out: list[Step] = []
    for key in order:
        values = times[key]
        s = summary(values)
        out.append({"step": key, "cases": len(values), "median_s": s["p50"], "max_s": s["max"]})
    return out


async def scenario_burst(
    cfg: Config, stack: Stack, api: Api, capture: CaptureLog, client: Client
) -> tuple[dict[str, Any], list[str], float]:
    n = cfg.n
    say(f"\n[burst] {n} cases, every deadline moved to the same instant")
    refs, raise_s = await raise_many(api, n, cfg.concurrency, "raise")
    rate = len(refs) / raise_s if raise_s else 1.0
    say(f"    raised {len(refs)} in {raise_s:.1f}s ({rate:.1f}/s)")
    # The API answers a raise before the worker has planned the case; the
    # worker catches up here, so the shortens below do not queue behind it.
    planned_s = await settle(stack, "while the worker plans the new cases")
    # Every shorten must be in before T. A shorten costs the worker less than
    # a raise and its planning (no new workflow), so that time and ten seconds
    # are enough.
    pace = len(refs) / (raise_s + planned_s) if raise_s + planned_s else 1.0
    deadline = math.ceil(time.time() + len(refs) / pace + 10)
    shortened, shorten_s = await shorten_many(
        api,
        dict.fromkeys(refs, float(deadline)),
        cfg.concurrency,
        "shorten deadline",
        timeout=max(5.0, deadline - time.time() - 1),
    )
    margin = deadline - time.time()
    say(f"    shortened {len(shortened)} in {shorten_s:.1f}s; T is {margin:.1f}s away")
    await sleep_until(deadline, "for the deadline T")
    arrived = await wait_for_notices(
        capture,
        dict.fromkeys(shortened, float(deadline)),
        "escalation notices",
        deadline + 180,
        stack,
    )
    lags = [t - deadline for t in arrived.values()]
    lost = len(shortened) - len(arrived)
    s = summary(lags)
    result: dict[str, object] = {
        "cases": n,
        "raised": len(refs),
        "raise_rate_per_s": round(rate, 1),
        "planned_after_s": round(planned_s, 1),
        "deadline_moved": len(shortened),
        "shorten_s": round(shorten_s, 1),
        "shorten_rate_per_s": round(len(shortened) / shorten_s, 1) if shorten_s else None,
        "deadline_epoch": deadline,
        "notices": len(arrived),
        "lost": lost,
        "lag_s": s,
        "all_in_by_s": max(lags) if lags and not lost else None,
    }
    if lags:
        say(
            f"    lag p50 {s['p50']:.2f}s  p99 {s['p99']:.2f}s  max {s['max']:.2f}s; "
            f"{len(arrived)}/{len(shortened)} arrived, {lost} missing"
        )
    rows = await where_the_lag_went(client, dict.fromkeys(arrived, float(deadline)), arrived)
    steps = summarise_steps(rows)
    result["steps"] = steps
    for step in steps:
        say(
            f"      {step['step']:<32} median T+{step['median_s']:.2f}s  max T+{step['max_s']:.2f}s"
        )
    escalated = [r for r in shortened if r in arrived]
    shorten_rate = len(shortened) / shorten_s if shorten_s else rate
    return result, escalated, shorten_rate


def workers_rss_kib(stack: Stack) -> tuple[int, int]:
    """(VmRSS, VmHWM) summed over the worker processes, in KiB."""
    sizes = [rss_kib(proc.pid) for proc in stack.all_workers]
    return sum(r for r, _ in sizes), sum(h for _, h in sizes)


def scenario_memory(stack: Stack, baseline_kib: int, cases: int) -> dict[str, Any]:
    sizes = [rss_kib(proc.pid) for proc in stack.all_workers]
    rss, hwm = sum(r for r, _ in sizes), sum(h for _, h in sizes)
    workers = len(sizes)
    per_case = (rss - baseline_kib) / cases if cases else None
    result = {
        "cases_open": cases,
        "workers": workers,
        "baseline_mib": round(baseline_kib / 1024, 1),
        "rss_mib": round(rss / 1024, 1),
        "rss_each_mib": [round(r / 1024, 1) for r, _ in sizes],
        "peak_mib": round(hwm / 1024, 1),
        "per_case_kib": round(per_case, 1) if per_case is not None else None,
        # A worker keeps at most this many cases (the product's default);
        # past it, memory per case open falls and per case cached is the cost.
        "cached": min(cases, Settings.model_fields["worker_cached_cases"].default * workers),
        # A worker's own bound: with more workers, each holds its share.
        "target_mib": TARGETS["worker_rss_mib" if cases <= 1000 else "scale_rss_mib"],
    }
    say(
        f"\n[memory] {result['workers']} worker(s) VmRSS {rss / 1024:.1f} MiB with {cases} open "
        "cases "
        f"(idle {baseline_kib / 1024:.1f} MiB, {result['per_case_kib']} KiB per case; "
        f"peak {hwm / 1024:.1f} MiB)"
    )
    return result


async def scenario_spread(
    cfg: Config,
    stack: Stack,
    api: Api,
    capture: CaptureLog,
    client: Client,
    refs: list[str],
    rate: float,
) -> dict[str, Any]:
    n = len(refs)
    window = cfg.spread_seconds
    say(f"\n[spread] {n} open cases, deadlines spread evenly over {window:.0f}s")
    if not refs:
        return {"cases": 0}
    # The window opens once most of the shortens are in, not all, to keep
    # `make bench` inside ten minutes: shortens go in deadline order, each
    # well before its own deadline, and the first seconds of the window share
    # the machine with the last shortens (reported as overlap_s).
    per_shorten = 1.0 / max(rate, 1.0)
    lead = max(10.0, 0.9 * n * per_shorten, 1.3 * n * max(0.0, per_shorten - window / n) + 5)
    start = math.ceil(time.time() + lead)
    step = window / n
    deadlines = {ref: start + i * step for i, ref in enumerate(refs)}
    shortened, shorten_s = await shorten_many(
        api,
        deadlines,
        cfg.concurrency,
        "shorten deadline",
        timeout=max(5.0, start + window - time.time()),
    )
    shortens_done = time.time()
    overlap = max(0.0, shortens_done - start)
    say(
        f"    shortened {len(shortened)} in {shorten_s:.1f}s; "
        f"overlap with the window {overlap:.1f}s"
    )
    await sleep_until(start, "for the first deadline")
    expected = {ref: deadlines[ref] for ref in shortened}
    arrived = await wait_for_notices(
        capture, expected, "escalation notices", start + window + 120, stack
    )
    lags = [arrived[ref] - expected[ref] for ref in arrived]
    lost = len(expected) - len(arrived)
    worst = sorted(arrived, key=lambda ref: arrived[ref] - expected[ref])[-10:]
    rows = await where_the_lag_went(client, expected, {r: arrived[r] for r in worst}, 10)
    s = summary(lags)
    result = {
        "cases": n,
        "window_s": window,
        "deadline_moved": len(shortened),
        "overlap_s": round(overlap, 1),
        "notices": len(arrived),
        "lost": lost,
        "lag_s": s,
        # The same, for the deadlines after the last shorten was in.
        "lag_after_overlap_s": summary(
            [arrived[ref] - expected[ref] for ref in arrived if expected[ref] > shortens_done]
        ),
        "slowest_steps": summarise_steps(rows),
    }
    if lags:
        say(
            f"    lag p50 {s['p50']:.2f}s  p99 {s['p99']:.2f}s  max {s['max']:.2f}s; "
            f"{len(arrived)}/{len(expected)} arrived"
        )
    return result


async def scenario_api(
    cfg: Config, stack: Stack, api: Api, client: Client, meter: CpuMeter, cpu: dict[str, Any]
) -> dict[str, Any]:
    count, rate = cfg.api_count, cfg.api_rate
    say(
        f"\n[api] {count} raises at {rate:g}/s through the API, each resolved 1s later; "
        f"then {count} bare start_workflow at {rate:g}/s"
    )
    raise_lat: list[float] = []
    resolve_lat: list[float] = []

    async def raise_and_resolve(_i: int) -> bool:
        reference, elapsed = await api.raise_case()
        if reference is None:
            return False
        raise_lat.append(elapsed)
        await asyncio.sleep(1.0)
        ok, elapsed = await api.act(reference, "resolve", {"outcome": "Benchmark: agreed."})
        if ok:
            resolve_lat.append(elapsed)
        return ok

    limit = count / rate + 90
    meter.start()
    outcomes, raise_issued, raise_done = await paced(
        count, rate, raise_and_resolve, "raise+resolve", limit
    )
    # The cases' notices go on after the last answer: count their CPU here.
    await settle(stack, "after the raises and resolutions")
    cpu["api_raise_resolve"] = meter.stop()
    say(f"    CPU seconds: {cpu['api_raise_resolve']}")
    run = f"{int(time.time())}"
    start_lat: list[float] = []

    async def bare_start(i: int) -> bool:
        started = time.perf_counter()
        await client.start_workflow(
            WORKFLOW_NAME, i, id=f"bench-trivial-{run}-p-{i}", task_queue=TRIVIAL_QUEUE
        )
        start_lat.append(time.perf_counter() - started)
        return True

    meter.start()
    _, start_issued, start_done = await paced(count, rate, bare_start, "bare start", limit)
    cpu["api_bare_start"] = meter.stop()
    say(f"    CPU seconds: {cpu['api_bare_start']}")

    k, c = cfg.saturation_count, cfg.concurrency
    say(f"    capacity: {k} raises and {k} bare starts, {c} at a time (closed loop)")

    async def sat_raise(_i: int) -> bool:
        reference, _ = await api.raise_case()
        return reference is not None

    async def sat_start(i: int) -> bool:
        await client.start_workflow(
            WORKFLOW_NAME, i, id=f"bench-trivial-{run}-s-{i}", task_queue=TRIVIAL_QUEUE
        )
        return True

    meter.start()
    sat_raises, sat_raise_s = await pool(k, c, sat_raise, "raise (capacity)", timeout=k * 0.5 + 60)
    # A raise is answered before the worker plans the case: wait for it.
    caught_up_s = await settle(stack, "while the worker plans the raised cases")
    cpu["capacity_raise"] = meter.stop()
    meter.start()
    sat_starts, sat_start_s = await pool(k, c, sat_start, "bare start (capacity)", timeout=120)
    cpu["capacity_bare_start"] = meter.stop()
    say(f"    CPU seconds, raises: {cpu['capacity_raise']}")
    say(f"    CPU seconds, bare starts: {cpu['capacity_bare_start']}")
    raise_cap = sum(1 for r in sat_raises if r) / sat_raise_s
    start_cap = sum(1 for r in sat_starts if r) / sat_start_s
    r, v, b = ms(raise_lat), ms(resolve_lat), ms(start_lat)
    ratio = round(raise_cap / start_cap, 3) if start_cap else None
    result = {
        "rate_per_s": rate,
        "count": count,
        "raise_ms": r,
        "resolve_ms": v,
        "bare_start_ms": b,
        "paced_raise_throughput_per_s": round(len(raise_lat) / raise_done, 1)
        if raise_done
        else None,
        "paced_start_throughput_per_s": round(len(start_lat) / start_done, 1)
        if start_done
        else None,
        "paced_ratio": (
            round(len(raise_lat) / raise_done / (len(start_lat) / start_done), 3)
            if raise_done and start_done and start_lat
            else None
        ),
        "capacity": {
            "concurrency": c,
            "count": k,
            "raise_per_s": round(raise_cap, 1),
            "bare_start_per_s": round(start_cap, 1),
            "worker_caught_up_s": round(caught_up_s, 1),
            "ratio": ratio,
            # What each costs, the worker's catching up included: on a busy
            # machine the figure to compare between runs.
            "cpu_ms_per_raise": _per_op(cpu["capacity_raise"], k),
            "cpu_ms_per_bare_start": _per_op(cpu["capacity_bare_start"], k),
        },
        "raise_resolve_unfinished": sum(1 for o in outcomes if o is None),
        "errors": dict(api.errors),
    }
    say(f"    raise   p50 {r['p50']}ms p95 {r['p95']}ms p99 {r['p99']}ms ({r['count']} ok)")
    say(f"    resolve p50 {v['p50']}ms p95 {v['p95']}ms p99 {v['p99']}ms ({v['count']} ok)")
    say(f"    bare start_workflow p50 {b['p50']}ms p95 {b['p95']}ms p99 {b['p99']}ms")
    say(f"    capacity: raise {raise_cap:.1f}/s, bare start {start_cap:.1f}/s (ratio {ratio})")
    return result


def _per_op(used: dict[str, Any], count: int) -> dict[str, float]:
    """CPU milliseconds per operation of each of our processes."""
    ours = ("server", "api", "trivial", "capture")
    return {
        name: round(seconds * 1000 / count, 1)
        for name, seconds in used.items()
        if isinstance(seconds, float) and (name in ours or name.startswith("worker"))
    }


def ms(values: list[float]) -> Summary:
    """A latency summary in milliseconds."""
    s = summary(values)
    return {
        "count": s["count"],
        "p50": _in_ms(s["p50"]),
        "p95": _in_ms(s["p95"]),
        "p99": _in_ms(s["p99"]),
        "max": _in_ms(s["max"]),
        "min": _in_ms(s["min"]),
        "mean": _in_ms(s["mean"]),
    }


def _in_ms(seconds: float | None) -> float | None:
    return round(seconds * 1000, 1) if isinstance(seconds, float) else seconds


# --- Report --------------------------------------------------------------------------


def _fmt(x: Any, unit: str = "", digits: int = 2) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{digits}f}{unit}"
    return f"{x}{unit}"


def verdicts(results: dict[str, Any]) -> dict[str, bool | None]:
    out: dict[str, bool | None] = {}
    burst = results.get("burst")
    if burst:
        lag = burst["lag_s"]["max"]
        out["burst"] = bool(
            burst["lost"] == 0
            and burst["deadline_moved"] == burst["cases"]
            and lag is not None
            and lag <= TARGETS["burst_max_lag_s"]
        )
    spread = results.get("spread")
    if spread and spread.get("cases"):
        p99 = spread["lag_s"]["p99"]
        out["spread"] = bool(
            spread["lost"] == 0 and p99 is not None and p99 <= TARGETS["spread_p99_lag_s"]
        )
    api = results.get("api")
    if api:
        out["raise"] = api["raise_ms"]["p95"] is not None and (
            api["raise_ms"]["p95"] <= TARGETS["raise_p95_ms"]
        )
        out["resolve"] = api["resolve_ms"]["p95"] is not None and (
            api["resolve_ms"]["p95"] <= TARGETS["resolve_p95_ms"]
        )
        ratio = api["paced_ratio"]
        out["throughput"] = ratio is not None and ratio >= TARGETS["throughput_ratio"]
        capacity = api["capacity"]["ratio"]
        out["capacity"] = capacity is not None and capacity >= TARGETS["capacity_ratio"]
    memory = results.get("memory")
    if memory:
        largest = max(memory.get("rss_each_mib") or [memory["rss_mib"]])
        out["memory"] = largest <= memory["target_mib"]
    capture = results.get("capture")
    if capture:
        out["once"] = capture["duplicates"] == 0
    sim = results.get("simulate")
    if sim:
        out["simulate"] = sim["max_wall_s"] < TARGETS["simulate_s"]
    register = results.get("register")
    if register:
        worst = max(v["p95_ms"] for v in register["lists"].values())
        out["register"] = worst < TARGETS["register_list_p95_ms"]
    long_case = results.get("long_case")
    if long_case:
        out["long_events"] = long_case["max_events_per_run"] < HISTORY_WARNING
        query = long_case["query_ms"]
        out["long_query"] = max(query["warm_max"], query["cold"]) < QUERY_TARGET_MS
    return out


def table(results: dict[str, Any]) -> str:
    ok = verdicts(results)
    mark = {True: "met", False: "**missed**", None: "n/a"}
    rows = [
        "| Scenario | Measured | Target | |",
        "| --- | --- | --- | --- |",
    ]
    burst = results.get("burst")
    if burst:
        s = burst["lag_s"]
        moved = ""
        if burst["deadline_moved"] < burst["cases"]:
            moved = f"; only {burst['deadline_moved']} of {burst['cases']} deadlines moved in time"
        rows.append(
            f"| Burst: {burst['cases']} deadlines at one instant | lag p50 {_fmt(s['p50'], ' s')}, "
            f"p99 {_fmt(s['p99'], ' s')}, max {_fmt(s['max'], ' s')}; last notice at "
            f"T+{_fmt(s['max'], ' s')}; {burst['notices']}/{burst['deadline_moved']} notices, "
            f"{burst['lost']} lost{moved} | all within 60 s, none lost | "
            f"{mark[ok.get('burst')]} |"
        )
    spread = results.get("spread")
    if spread and spread.get("cases"):
        s = spread["lag_s"]
        rows.append(
            f"| Spread: {spread['cases']} deadlines over {spread['window_s']:.0f} s | "
            f"lag p50 {_fmt(s['p50'], ' s')}, p99 {_fmt(s['p99'], ' s')}, "
            f"max {_fmt(s['max'], ' s')}; {spread['lost']} lost | p99 ≤ 2 s | "
            f"{mark[ok.get('spread')]} |"
        )
    api = results.get("api")
    if api:
        r, v, b, cap = api["raise_ms"], api["resolve_ms"], api["bare_start_ms"], api["capacity"]
        rate = f"{api['rate_per_s']:g}/s"
        rows.append(
            f"| Raise via API at {rate} ({r['count']}) | p50 {_fmt(r['p50'], ' ms', 0)}, "
            f"p95 {_fmt(r['p95'], ' ms', 0)}, p99 {_fmt(r['p99'], ' ms', 0)} | p95 ≤ 150 ms | "
            f"{mark[ok.get('raise')]} |"
        )
        rows.append(
            f"| Resolve via API at {rate} ({v['count']}) | p50 {_fmt(v['p50'], ' ms', 0)}, "
            f"p95 {_fmt(v['p95'], ' ms', 0)}, p99 {_fmt(v['p99'], ' ms', 0)} | p95 ≤ 250 ms | "
            f"{mark[ok.get('resolve')]} |"
        )
        rows.append(
            f"| Bare `start_workflow` at {rate} ({b['count']}) | p50 {_fmt(b['p50'], ' ms', 0)}, "
            f"p95 {_fmt(b['p95'], ' ms', 0)}, p99 {_fmt(b['p99'], ' ms', 0)} | baseline | |"
        )
        paced = api["paced_ratio"]
        rows.append(
            f"| Throughput offered {rate} | raise {api['paced_raise_throughput_per_s']}/s vs bare "
            f"start {api['paced_start_throughput_per_s']}/s = "
            f"{_fmt(paced * 100 if paced is not None else None, '%', 0)} | ≥ 70% | "
            f"{mark[ok.get('throughput')]} |"
        )
        rows.append(
            f"| Capacity, closed loop ({cap['count']} each, {cap['concurrency']} at a time) | "
            f"raise {cap['raise_per_s']}/s vs bare start {cap['bare_start_per_s']}/s = "
            f"{_fmt(cap['ratio'] * 100 if cap['ratio'] is not None else None, '%', 0)} | "
            f"≥ {TARGETS['capacity_ratio']:.0%} | {mark[ok.get('capacity')]} |"
        )
        spent = cap.get("cpu_ms_per_raise")
        if spent:
            bare = cap["cpu_ms_per_bare_start"]
            rows.append(
                "| CPU per operation, closed loop | raise: "
                + ", ".join(f"{name} {ms:g} ms" for name, ms in spent.items() if ms)
                + "; bare start: "
                + ", ".join(f"{name} {ms:g} ms" for name, ms in bare.items() if ms)
                + " | (the figure to compare on a busy machine) | |"
            )
    memory = results.get("memory")
    if memory:
        workers = memory.get("workers", 1)
        cached = memory.get("cached", memory["cases_open"])
        per_cached = ""
        if cached < memory["cases_open"]:
            kib = (memory["rss_mib"] - memory["baseline_mib"]) * 1024 / cached
            per_cached = f", {kib:.1f} KiB per case cached ({cached})"
        who = "Worker" if workers == 1 else f"{workers} workers"
        each = memory.get("rss_each_mib") or []
        apiece = f", {' and '.join(f'{m:g}' for m in each)} MiB apiece" if workers > 1 else ""
        bound = f"≤ {memory['target_mib']:g} MiB" + (" a worker" if workers > 1 else "")
        rows.append(
            f"| {who} memory, {memory['cases_open']} cases open | VmRSS "
            f"{memory['rss_mib']} MiB{apiece} (idle {memory['baseline_mib']} MiB, "
            f"{memory['per_case_kib']} KiB per case{per_cached}) | "
            f"{bound} | {mark[ok.get('memory')]} |"
        )
    capture = results.get("capture")
    if capture:
        rows.append(
            f"| Emails sent twice (same ledger key), of {capture['emails']} | "
            f"{capture['duplicates']} | none | {mark[ok.get('once')]} |"
        )
    sim = results.get("simulate")
    if sim:
        runs = sim["runs"]
        longest = sim["longest_ladder"]
        rows.append(
            f"| `escalation simulate`, longest ladder ({longest}, "
            f"{runs[longest]['events']} events) | {runs[longest]['wall_s']:.2f} s (slowest of "
            f"five: {sim['slowest']} {sim['max_wall_s']:.2f} s) | < 5 s | "
            f"{mark[ok.get('simulate')]} |"
        )
    register = results.get("register")
    if register:
        lists = register["lists"]
        rows.append(
            f"| List {register['cases']:,} registered cases, partnership and status, "
            f"page of {register['page_size']} | p95 open {lists['open']['p95_ms']} ms, "
            f"resolved {lists['resolved']['p95_ms']} ms, by deadline "
            f"{lists['deadline']['p95_ms']} ms | < 50 ms | {mark[ok.get('register')]} |"
        )
    long_case = results.get("long_case")
    if long_case:
        runs = long_case["events_per_run"]
        query = long_case["query_ms"]
        rows.append(
            f"| A case left {long_case['weeks']} weeks at stages without a timescale "
            f"({long_case['reminders']} reminders, notes every week) | "
            f"{len(runs)} run(s), the longest {long_case['max_events_per_run']:,} events | "
            f"< {HISTORY_WARNING:,} a run | {mark[ok.get('long_events')]} |"
        )
        rows.append(
            f"| Its `state` query | held by the worker: p50 {query['warm_p50']:g} ms, "
            f"max {query['warm_max']:g} ms; not held (fetch and replay the run): "
            f"{query['cold']:g} ms | < {QUERY_TARGET_MS:g} ms | {mark[ok.get('long_query')]} |"
        )
    return "\n".join(rows)


def cpu_table(results: dict[str, Any]) -> str:
    cpu = results.get("cpu_s") or {}
    if not cpu:
        return ""
    workers = sorted({n for used in cpu.values() for n in used if n.startswith("worker")})
    names = ["server", *workers, "api", "capture", "trivial", "bench", "other_processes"]
    rows = [
        "| Phase | wall s | " + " | ".join(names) + " | machine busy |",
        "| --- " * (len(names) + 3) + "|",
    ]
    for phase, used in cpu.items():
        cells = " | ".join(f"{used.get(n, 0):.1f}" for n in names)
        rows.append(f"| {phase} | {used['wall_s']:.0f} | {cells} | {used['machine_busy_pct']}% |")
    return "CPU seconds by process (other_processes: everything else on the machine)\n\n" + (
        "\n".join(rows)
    )


def requests_table(results: dict[str, Any]) -> str:
    cpu = results.get("cpu_s") or {}
    ops = [
        "StartWorkflowExecution",
        "QueryWorkflow",
        "UpdateWorkflowExecution",
        "DescribeWorkflowExecution",
        "RespondWorkflowTaskCompleted",
        "RespondActivityTaskCompleted",
    ]
    phases = [(p, u["requests"]) for p, u in cpu.items() if u.get("requests")]
    if not phases:
        return ""
    rows = ["| Phase | " + " | ".join(ops) + " |", "| --- " * (len(ops) + 1) + "|"]
    for phase, req in phases:
        rows.append(f"| {phase} | " + " | ".join(str(req.get(op, 0)) for op in ops) + " |")
    return "Temporal frontend requests by phase (the server's own metrics)\n\n" + "\n".join(rows)


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def temporal_version() -> str:
    from escalation.temporal_bin import temporal_cli

    try:
        out = subprocess.run(
            [temporal_cli(), "--version"], capture_output=True, text=True, timeout=20
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# --- Main ------------------------------------------------------------------------------


async def warm_up(api: Api, client: Client) -> None:
    """A few cases through every path, so first-use costs are not measured."""
    for _ in range(5):
        reference, _ = await api.raise_case()
        if reference:
            await api.act(reference, "resolve", {"outcome": "Warm-up."})
    for i in range(5):
        await client.start_workflow(
            WORKFLOW_NAME,
            i,
            id=f"bench-trivial-warm-{time.time_ns()}-{i}",
            task_queue=TRIVIAL_QUEUE,
        )
    api.errors.clear()
    api.error_samples.clear()


async def run_stack_scenarios(cfg: Config, stack: Stack, results: dict[str, Any]) -> None:
    tokens = read_tokens(stack.data_dir)
    api = Api(stack.api_url, tokens, connections=max(cfg.concurrency * 2, 64))
    client = await Client.connect(stack.temporal_address)
    capture = CaptureLog(stack.capture_file)
    meter = CpuMeter({name: proc.pid for name, proc in stack.procs.items()}, stack.metrics_port)
    cpu: dict[str, Any] = {}
    results["cpu_s"] = cpu
    try:
        await warm_up(api, client)
        await asyncio.sleep(2)
        baseline, _ = workers_rss_kib(stack)
        escalated: list[str] = []
        preloaded: list[str] = []
        rate = 20.0
        if cfg.preload:
            say(f"\n[preload] {cfg.preload} open cases before the burst")
            meter.start()
            tasks_before = frontend_requests(stack.metrics_port)
            preloaded, preload_s = await raise_many(api, cfg.preload, cfg.concurrency, "preload")
            results["preload"] = {
                "cases": cfg.preload,
                "raised": len(preloaded),
                "raise_s": round(preload_s, 1),
                "planned_after_s": round(
                    await planned(stack, tasks_before, len(preloaded), limit=900), 1
                ),
                "settle_s": round(await settle(stack, "after the preload", limit=600), 1),
            }
            cpu["preload"] = meter.stop()
        if "burst" not in cfg.skip:
            meter.start()
            results["burst"], escalated, rate = await scenario_burst(
                cfg, stack, api, capture, client
            )
            cpu["burst"] = meter.stop()
            say(f"    CPU seconds: {cpu['burst']}")
            results["burst"]["errors"] = dict(api.errors)
            api.errors.clear()
            # The cases go on after their escalation notice (records to the
            # business team, search attributes): let them finish first.
            results["burst"]["settle_s"] = round(await settle(stack, "after the burst"), 1)
            # Every case raised is open, escalated or not.
            open_cases = len(preloaded) + results["burst"]["raised"]
            results["memory"] = scenario_memory(stack, baseline, open_cases)
        if "spread" not in cfg.skip and escalated:
            meter.start()
            results["spread"] = await scenario_spread(
                cfg, stack, api, capture, client, escalated, rate
            )
            cpu["spread"] = meter.stop()
            say(f"    CPU seconds: {cpu['spread']}")
            if "memory" in results:
                rss, _ = workers_rss_kib(stack)
                results["memory"]["rss_after_spread_mib"] = round(rss / 1024, 1)
            results["spread"]["errors"] = dict(api.errors)
            api.errors.clear()
        if "api" not in cfg.skip:
            await settle(stack, "before the API scenario")
            results["api"] = await scenario_api(cfg, stack, api, client, meter, cpu)
            if "memory" in results:
                rss, hwm = workers_rss_kib(stack)
                results["memory"]["rss_after_api_mib"] = round(rss / 1024, 1)
                results["memory"]["peak_after_api_mib"] = round(hwm / 1024, 1)
        capture.poll()
        results["capture"] = {"emails": len(capture.records), "duplicates": capture.duplicates()}
    finally:
        await api.close()


def main() -> int:
    began = time.monotonic()
    cfg = Config()
    RESULTS.mkdir(parents=True, exist_ok=True)
    round_name = os.environ.get("BENCH_ROUND", "").strip()
    run_dir = RESULTS / (f"run-{round_name}" if round_name else "run")
    figures = RESULTS / f"{round_name or 'latest'}.json"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    results: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": cfg.as_dict(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "temporal": temporal_version(),
            "loadavg_at_start": _loadavg(),
        },
        "targets": TARGETS,
    }
    say(f"Benchmark: N={cfg.n}, {os.cpu_count()} CPUs, {results['machine']['temporal']}")
    if "simulate" not in cfg.skip:
        results["simulate"] = scenario_simulate()
    if "register" not in cfg.skip:
        say("\nListing a register of 10,000 cases ...")
        results["register"] = scenario_register()
    if "long" not in cfg.skip:
        say("\nA case left a year at a stage without a timescale (time-skipping server) ...")
        results["long_case"] = scenario_long_case()
    stack = Stack(run_dir, workers=cfg.workers)
    say(f"\nStarting the stack (dev server with WAL, worker, API, capture) in {run_dir} ...")
    status = 0
    try:
        stack.start()
        say(
            f"    Temporal {stack.temporal_address}, API {stack.api_url}, "
            f"capture 127.0.0.1:{stack.capture_port}, worker pid {stack.worker.pid}"
        )
        asyncio.run(run_stack_scenarios(cfg, stack, results))
    except StackError as exc:
        say(f"\nThe stack failed: {exc}")
        status = 2
    except KeyboardInterrupt:
        say("\nInterrupted.")
        status = 130
    finally:
        stack.stop()
    results["total_s"] = round(time.monotonic() - began, 1)
    results["machine"]["loadavg_at_end"] = _loadavg()
    results["verdicts"] = verdicts(results)
    text = table(results)
    for extra in (cpu_table(results), requests_table(results)):
        if extra:
            text += "\n\n" + extra
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    blob = json.dumps(results, indent=2, default=str)
    figures.write_text(blob, encoding="utf-8")
    stamped = RESULTS / f"{stamp}{'-' + round_name if round_name else ''}.json"
    stamped.write_text(blob, encoding="utf-8")
    figures.with_suffix(".md").write_text(text + "\n", encoding="utf-8")
    say(f"\nResults{' (' + round_name + ')' if round_name else ''}\n")
    say(text)
    say(f"\nTotal {results['total_s']:.0f}s. Figures: {figures}")
    if status == 0 and not all(v for v in results["verdicts"].values() if v is not None):
        say("Some targets were missed (see the README's Performance section for why).")
    return status


if __name__ == "__main__":
    code = main()
    # The Temporal SDK's threads can outlive the event loop and abort the
    # interpreter's finalisation (as escalation.cli.run_main explains).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
