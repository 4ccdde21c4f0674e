"""Small helpers: percentiles, progress lines, the capture log."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, TypedDict


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of the values; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


class Summary(TypedDict):
    """Of a list of values; each figure None if the list is empty."""

    count: int
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None
    min: float | None
    mean: float | None


def summary(values: list[float]) -> Summary:
    return {
        "count": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values) if values else None,
        "min": min(values) if values else None,
        "mean": sum(values) / len(values) if values else None,
    }


def say(text: str) -> None:
    print(text, flush=True)


class Progress:
    """Prints one line per 10% of a known amount of work."""

    def __init__(self, label: str, total: int) -> None:
        self.label = label
        self.total = max(total, 1)
        self.done = 0
        self.started = time.monotonic()
        self._next = 10

    def add(self, n: int = 1) -> None:
        self.set(self.done + n)

    def set(self, done: int) -> None:
        self.done = done
        pct = 100 * self.done // self.total
        if pct >= self._next:
            elapsed = time.monotonic() - self.started
            say(f"    {self.label}: {self.done}/{self.total} ({pct}%) after {elapsed:.1f}s")
            while self._next <= pct:
                self._next += 10
        sys.stdout.flush()


class CaptureLog:
    """Reads the capture server's JSON lines as they are appended."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = ""
        self.records: list[dict[str, Any]] = []
        # (reference, template) -> arrival times, in order of arrival.
        self.arrivals: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.ledger_keys: defaultdict[str, int] = defaultdict(int)

    def poll(self) -> int:
        try:
            with self.path.open("r", encoding="utf-8") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
                self._offset = handle.tell()
        except FileNotFoundError:
            return 0
        text = self._partial + chunk
        lines = text.split("\n")
        self._partial = lines.pop()
        added = 0
        for line in lines:
            if not line.strip():
                continue
            record = json.loads(line)
            self.records.append(record)
            ref, template = record.get("case_reference"), record.get("template")
            if ref and template:
                self.arrivals[(ref, template)].append(float(record["t"]))
            if record.get("ledger_key"):
                self.ledger_keys[record["ledger_key"]] += 1
            added += 1
        return added

    def first_after(self, reference: str, template: str, after: float) -> float | None:
        for t in self.arrivals.get((reference, template), ()):
            if t >= after:
                return t
        return None

    def duplicates(self) -> int:
        """Emails that arrived more than once (the same ledger key)."""
        return sum(n - 1 for n in self.ledger_keys.values() if n > 1)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (and its waited-for children)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    # After the command: state is field 3, so utime/stime (14, 15) are at 11, 12.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    with open("/proc/stat", encoding="ascii") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


class CpuMeter:
    """CPU seconds used by each of our processes, and by everything else on
    the machine, between ``start`` and ``stop``: the evidence for where the
    time went, and for how quiet the machine was."""

    def __init__(self, pids: dict[str, int], metrics_port: int | None = None) -> None:
        self.pids = pids
        self.metrics_port = metrics_port
        self._start: dict[str, float] = {}
        self._requests: dict[str, float] = {}
        self._wall = 0.0

    def _sample(self) -> dict[str, float]:
        sample = {name: process_cpu_s(pid) for name, pid in self.pids.items()}
        sample["bench"] = process_cpu_s(os.getpid())
        sample["_machine_busy"], sample["_machine_total"] = machine_cpu_s()
        return sample

    def start(self) -> None:
        self._start = self._sample()
        if self.metrics_port:
            self._requests = frontend_requests(self.metrics_port)
        self._wall = time.monotonic()

    def stop(self) -> dict[str, Any]:
        end = self._sample()
        used: dict[str, Any] = {k: round(end[k] - self._start[k], 2) for k in end}
        ours = sum(v for k, v in used.items() if not k.startswith("_"))
        busy = used.pop("_machine_busy")
        used.pop("_machine_total")
        wall = time.monotonic() - self._wall
        used["other_processes"] = round(max(busy - ours, 0.0), 2)
        used["wall_s"] = round(wall, 1)
        used["machine_busy_pct"] = round(100 * busy / (wall * (os.cpu_count() or 1)), 1)
        if self.metrics_port:
            used["requests"] = request_delta(self._requests, frontend_requests(self.metrics_port))
        return used


def frontend_requests(metrics_port: int) -> dict[str, float]:
    """The Temporal frontend's request counts by operation (Prometheus text)."""
    import urllib.request

    counts: dict[str, float] = defaultdict(float)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode("utf-8", "replace")
    except OSError:
        return {}
    for line in text.splitlines():
        if not line.startswith("service_requests{") or 'service_name="frontend"' not in line:
            continue
        labels, _, value = line.rpartition(" ")
        operation = labels.split('operation="', 1)[1].split('"', 1)[0]
        counts[operation] += float(value)
    return dict(counts)


def request_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    delta = {k: int(after.get(k, 0) - before.get(k, 0)) for k in after}
    return dict(sorted(((k, v) for k, v in delta.items() if v), key=lambda kv: -kv[1]))


def env_int(name: str, default: int) -> int:
    """A whole-number setting from the environment, ``default`` where unset."""
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def env_float(name: str, default: float) -> float:
    """A number setting from the environment, ``default`` where unset."""
    value = os.environ.get(name, "").strip()
    return float(value) if value else default
