"""The system under test, on loopback: dev server, worker, API, capture, baseline worker.

Started directly rather than through ``escalation run`` so the benchmark can
give each process its environment (notices to the capture server through the
real SendGrid sink, demo users) and read the worker's own process id for its
memory. Every port is chosen free at start; every process is stopped by its
own id. ``make chaos`` (``chaos.drill``) starts the same stack without the
baseline worker, and kills and restarts the worker and the dev server in it
(``Stack.kill``, ``Stack.restart``): each comes back on the same port, with
the same files.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from escalation import search_attributes
from escalation.run import DEV_SERVER_CONFIG, DEV_SERVER_SQLITE_PRAGMAS, Service
from escalation.temporal_bin import temporal_cli
from policies.directory import EXAMPLE_FILE
from register.migrate import upgrade

HOST = "127.0.0.1"
START_TIMEOUT = 90.0
TASK_QUEUE = "escalation-bench"
TRIVIAL_QUEUE = "bench-trivial"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class StackError(RuntimeError):
    pass


def _wait_port(proc: Service, port: int, timeout: float = START_TIMEOUT) -> None:
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if not proc.running():
            raise StackError(f"{proc.name} exited while starting:\n{proc.tail()}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return
        time.sleep(0.2)
    raise StackError(f"{proc.name} did not listen on {HOST}:{port} within {timeout:.0f}s")


def _log_count(proc: Service, needle: str) -> int:
    try:
        return proc.log_path.read_text(errors="replace").count(needle)
    except OSError:
        return 0


def _wait_log(proc: Service, needle: str, timeout: float = START_TIMEOUT, seen: int = 0) -> None:
    """Until the log holds the needle more than ``seen`` times (a restarted
    process appends to the log of the one before it)."""
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if not proc.running():
            raise StackError(f"{proc.name} exited while starting:\n{proc.tail()}")
        if _log_count(proc, needle) > seen:
            return
        time.sleep(0.1)
    raise StackError(f"{proc.name} did not report {needle!r} within {timeout:.0f}s")


WORKER_READY = "worker polling task queue"


@dataclass
class Stack:
    data_dir: Path
    temporal_port: int = 0
    api_port: int = 0
    capture_port: int = 0
    metrics_port: int = 0
    # The baseline: a worker for a trivial workflow (the bench's comparison).
    baseline: bool = True
    procs: dict[str, Service] = field(default_factory=dict)
    worker_env: dict[str, str] = field(default_factory=dict)
    # Worker processes on the one task queue (the bench asks for as many as make run starts).
    workers: int = 1
    codec_keys: str = ""
    _factories: dict[str, Callable[[], Service]] = field(default_factory=dict)

    @property
    def temporal_address(self) -> str:
        return f"{HOST}:{self.temporal_port}"

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.api_port}"

    @property
    def capture_file(self) -> Path:
        return self.data_dir / "capture.jsonl"

    @property
    def worker(self) -> Service:
        return self.procs["worker"]

    @property
    def all_workers(self) -> list[Service]:
        """The worker, then any others (``worker2``, ...)."""
        return [self.procs[k] for k in self.procs if k.startswith("worker")]

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.temporal_port = free_port()
        self.api_port = free_port()
        self.capture_port = free_port()
        self.metrics_port = free_port()
        py = sys.executable
        self.codec_keys = _codec_keys()
        common = {
            "TEMPORAL_ADDRESS": self.temporal_address,
            "TEMPORAL_NAMESPACE": "default",
            "ESCALATION_TASK_QUEUE": TASK_QUEUE,
            "ESCALATION_DATA_DIR": str(self.data_dir),
            "PYTHONUNBUFFERED": "1",
            # One key for both processes, so neither races to create the file.
            "ESCALATION_CODEC_KEYS": self.codec_keys,
            "ESCALATION_EXTRA_CLOSURES": "[]",
        }
        self.worker_env = {
            **common,
            # The real SendGrid sink, pointed at the capture server.
            "SENDGRID_API_KEY": "SG.bench." + secrets.token_urlsafe(24),
            "ESCALATION_SENDGRID_HOST": f"http://{HOST}:{self.capture_port}",
            # The stand-in's Email Activity shows a copy as soon as it has
            # taken it (SendGrid's lags, hence 2 minutes by default), so a
            # copy posted by a killed worker and never received is posted
            # again after 2 seconds rather than 2 minutes.
            "SENDGRID_ACTIVITY_LAG": "2",
            "ESCALATION_DIRECTORY_FILE": str(EXAMPLE_FILE),
            "ESCALATION_SENDER_EMAIL": "escalation@bench.invalid",
        }
        api_env = {**common, "ESCALATION_DEMO_USERS": "true"}
        server = partial(
            Service,
            "Temporal dev server",
            [
                temporal_cli(),
                "server",
                "start-dev",
                "--db-filename",
                str(self.data_dir / "temporal.db"),
                *_server_tuning(),
                "--ip",
                HOST,
                "--port",
                str(self.temporal_port),
                "--headless",
                "--metrics-port",
                str(self.metrics_port),
                "--log-level",
                "warn",
                *search_attributes.dev_server_args(),
            ],
            self.data_dir / "temporal.log",
        )
        capture = Service(
            "capture server",
            [
                py,
                "-m",
                "bench.capture",
                "--port",
                str(self.capture_port),
                "--out",
                str(self.capture_file),
            ],
            self.data_dir / "capture.log",
        )
        worker = partial(
            Service,
            "worker",
            [py, "-m", "escalation.cli", "worker"],
            self.data_dir / "worker.log",
            env=self.worker_env,
        )
        self._factories = {"server": server, "worker": worker}
        api = Service(
            "API",
            [
                py,
                "-m",
                "uvicorn",
                "api.main:app",
                "--host",
                HOST,
                "--port",
                str(self.api_port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            self.data_dir / "api.log",
            env=api_env,
        )
        trivial = Service(
            "baseline worker",
            [
                py,
                "-m",
                "bench.trivial",
                "--address",
                self.temporal_address,
                "--task-queue",
                TRIVIAL_QUEUE,
            ],
            self.data_dir / "trivial.log",
        )
        try:
            self._launch(capture)
            _wait_port(capture, self.capture_port)
            self._launch(server())
            _wait_port(self.procs["server"], self.temporal_port)
            # The register, migrated as `make run` does it.
            upgrade(self.register_url)
            self._launch(worker())
            _wait_log(self.worker, WORKER_READY)
            for i in range(2, self.workers + 1):
                other = Service(
                    f"worker {i}",
                    [py, "-m", "escalation.cli", "worker"],
                    self.data_dir / f"worker{i}.log",
                    env=self.worker_env,
                )
                self._launch(other, f"worker{i}")
                _wait_log(other, WORKER_READY)
            if self.baseline:
                self._launch(trivial)
                _wait_log(trivial, "trivial worker polling")
            self._launch(api)
            _wait_port(api, self.api_port)
        except BaseException:
            self.stop()
            raise

    def _launch(self, proc: Service, key: str | None = None) -> None:
        key = (
            key
            or {
                "Temporal dev server": "server",
                "capture server": "capture",
                "worker": "worker",
                "API": "api",
                "baseline worker": "trivial",
            }[proc.name]
        )
        proc.start()
        self.procs[key] = proc

    @property
    def register_url(self) -> str:
        return f"sqlite:///{(self.data_dir / 'register.sqlite3').resolve()}"

    def kill(self, key: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Stop one process with a signal and wait for it to be gone: SIGKILL
        as a crash, SIGTERM as an orderly stop (killed if it takes too long)."""
        process = self.procs[key].process
        assert process is not None
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(60.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log = self.procs[key].log
        if log is not None:
            log.close()

    def restart(self, key: str) -> Service:
        """Start the worker or the dev server again, as it was, and wait
        until it serves: the server on its port, the worker polling."""
        fresh = self._factories[key]()
        seen = _log_count(fresh, WORKER_READY) if key == "worker" else 0
        self._launch(fresh)
        if key == "worker":
            _wait_log(fresh, WORKER_READY, seen=seen)
        else:
            _wait_port(fresh, self.temporal_port)
        return fresh

    def check(self) -> None:
        for proc in self.procs.values():
            if not proc.running():
                raise StackError(f"the {proc.name} stopped unexpectedly:\n{proc.tail()}")

    def stop(self) -> None:
        others = [k for k in self.procs if k.startswith("worker") and k != "worker"]
        for key in ("api", "trivial", *others, "worker", "server", "capture"):
            proc = self.procs.get(key)
            if proc is not None:
                proc.stop()


def _server_tuning() -> list[str]:
    """SQLite pragmas and dynamic config values for the dev server (default:
    those of ``make run``: a WAL journal synced at checkpoints, one partition
    per task queue, search attributes cached); BENCH_SQLITE_PRAGMAS and
    BENCH_SERVER_CONFIG (comma lists) let an experiment change them, e.g.
    BENCH_SQLITE_PRAGMAS=journal_mode=wal for SQLite's default of a sync at
    every commit, or BENCH_SERVER_CONFIG= for the dev server's defaults."""
    pragmas = os.environ.get("BENCH_SQLITE_PRAGMAS", ",".join(DEV_SERVER_SQLITE_PRAGMAS))
    config = os.environ.get("BENCH_SERVER_CONFIG", ",".join(DEV_SERVER_CONFIG))
    args: list[str] = []
    for pragma in filter(None, (p.strip() for p in pragmas.split(","))):
        args += ["--sqlite-pragma", pragma]
    for value in filter(None, (c.strip() for c in config.split(","))):
        args += ["--dynamic-config-value", value]
    return args


def _codec_keys() -> str:
    import base64

    return "bench:" + base64.b64encode(secrets.token_bytes(32)).decode()


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in KiB, from /proc/<pid>/status."""
    rss = hwm = 0
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm
