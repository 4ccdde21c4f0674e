"""Where a slow resolution waits: the evidence behind the README's Performance
section, for whoever takes the resolve-latency target further.

``python -m bench.probe_resolve [COUNT] [PRELOAD]`` starts the benchmark's
stack, optionally raises PRELOAD open cases first (as the burst leaves the
worker holding 1,000), then raises COUNT cases at 20/s and resolves each one
second later. It prints the resolve latency, the event times of the slowest
resolutions' histories (where the wait falls: on the task queue, or in the
worker) and the dev server's own mean latency per operation from its
Prometheus metrics (persistence, matching, frontend).

It also prints the CPU milliseconds each process spent per raise and
resolve (the figure to compare on a shared machine, where latency is not),
and with ``PROBE_PROFILE=DIR`` it records the worker and the API with
``py-spy`` (on the PATH or beside this Python) for the raise-and-resolve
phase, as raw stacks in ``DIR/worker.txt`` and ``DIR/api.txt`` (``--gil``:
only the samples where Python holds the GIL, i.e. its CPU).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

from temporalio.client import Client

from bench.run import RESULTS, Api, paced, raise_many, read_tokens, settle, warm_up
from bench.stack import Stack
from bench.stats import CpuMeter

SERVER_LATENCIES = (
    "asyncmatch_latency",
    "syncmatch_latency",
    "persistence_latency",
    "service_latency",
)


def persistence_seconds(metrics: str) -> float:
    """Seconds the server spent in persistence calls, all operations summed."""
    pattern = re.compile(r"^persistence_latency_sum\{.*\} (\S+)$")
    return sum(float(m.group(1)) for m in map(pattern.match, metrics.splitlines()) if m)


def server_latencies(metrics: str, top: int = 15) -> list[tuple[float, int, str]]:
    """(mean seconds, count, 'metric operation') from Prometheus histograms."""
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, float] = defaultdict(float)
    pattern = re.compile(r"^(\w+?)_(sum|count)\{(.*)\} (\S+)$")
    for line in metrics.splitlines():
        found = pattern.match(line)
        if not found or found.group(1) not in SERVER_LATENCIES:
            continue
        name, kind, labels, value = found.groups()
        operation = re.search(r'operation="([^"]+)"', labels)
        key = f"{name} {operation.group(1) if operation else ''}"
        (sums if kind == "sum" else counts)[key] += float(value)
    rows = [(sums[k] / counts[k], int(counts[k]), k) for k in sums if counts[k]]
    return sorted(rows, reverse=True)[:top]


async def probe(stack: Stack, count: int, preload: int) -> None:
    api = Api(stack.api_url, read_tokens(stack.data_dir), connections=64)
    client = await Client.connect(stack.temporal_address)
    await warm_up(api, client)
    if preload:
        await raise_many(api, preload, 16, "preload")
        await settle(stack, "after the preload")
    timings: list[tuple[float, str, float]] = []

    async def raise_and_resolve(_i: int) -> bool:
        reference, _ = await api.raise_case()
        if reference is None:
            return False
        await asyncio.sleep(1.0)
        asked = time.time()
        ok, elapsed = await api.act(reference, "resolve", {"outcome": "Probe: agreed."})
        if ok:
            timings.append((elapsed, reference, asked))
        return ok

    before = _metrics(stack)
    meter = CpuMeter({name: proc.pid for name, proc in stack.procs.items()})
    profilers = _profile(stack)
    meter.start()
    began = time.monotonic()
    await paced(count, 20.0, raise_and_resolve, "raise+resolve", count / 20 + 90)
    wall = time.monotonic() - began
    used = meter.stop()
    for profiler in profilers:
        profiler.send_signal(2)  # py-spy writes its file on SIGINT
        profiler.wait(60)
    print("\nCPU ms per raise and resolve, by process:")
    for name, seconds in used.items():
        if isinstance(seconds, float) and name not in ("wall_s", "machine_busy_pct"):
            print(f"  {name:16} {seconds * 1000 / count:7.1f}")
    print(f"  (machine busy {used['machine_busy_pct']}%)")
    busy = persistence_seconds(_metrics(stack)) - persistence_seconds(before)
    print(
        f"\nwhile raising and resolving: {busy:.1f} s in persistence calls in {wall:.1f} s "
        f"({busy / wall:.0%} of the wall time; the dev server's SQLite has one connection)"
    )
    timings.sort()
    if timings:
        p50 = timings[len(timings) // 2][0]
        p95 = timings[min(len(timings) - 1, int(len(timings) * 0.95))][0]
        print(f"\nresolve p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms ({len(timings)} ok)")
    for elapsed, reference, asked in timings[-3:]:
        history = await client.get_workflow_handle(f"disagreement-{reference}").fetch_history()
        print(f"\n{reference}: resolve answered in {elapsed * 1000:.0f} ms (asked at 0)")
        for event in history.events:
            at = event.event_time.ToDatetime().timestamp() - asked
            print(f"  {at * 1000:8.0f} ms  {event.WhichOneof('attributes')}")
    metrics = _metrics(stack)
    print("\nThe dev server's mean latency per operation (whole run):")
    for mean, n, key in server_latencies(metrics):
        print(f"  {mean * 1000:9.1f} ms  n={n:<6} {key}")
    await api.close()


def _profile(stack: Stack) -> list[subprocess.Popen[bytes]]:
    folder = os.environ.get("PROBE_PROFILE")
    if not folder:
        return []
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return [
        subprocess.Popen(
            [spy, "record", "--gil", "--nonblocking", "-r", "200", "-f", "raw"]
            + ["-o", str(out / f"{name}.txt"), "-p", str(stack.procs[name].pid)],
            stdout=subprocess.DEVNULL,
        )
        for name in ("worker", "api")
    ]


def _metrics(stack: Stack) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.metrics_port}/metrics") as answer:
        return str(answer.read().decode())


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    preload = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    run_dir = RESULTS / "probe"
    shutil.rmtree(run_dir, ignore_errors=True)
    stack = Stack(run_dir)
    stack.start()
    try:
        asyncio.run(probe(stack, count, preload))
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
