"""The worker process: hosts the disagreement workflow and its activities.

``build_worker`` is what the tests, the simulator and ``escalation worker``
all use, so every one of them runs the same registrations.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import signal
from collections.abc import Callable, Iterable
from datetime import date, timedelta

from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.deadlines import DeadlineActivities
from activities.notices import Addressee, NoticeActivities, NoticeSink
from activities.record import RecordActivities
from activities.report import ReportActivities, report_mailer
from activities.stage_start import StageStartActivities
from escalation.action_links import LinkMaker
from escalation.codec import KeyRing
from escalation.converter import data_converter
from escalation.settings import Settings
from policies.directory import Directory
from register import Register
from register.migrate import require_current
from workflows.disagreement import DisagreementWorkflow
from workflows.report import QuarterlyReportWorkflow

log = logging.getLogger("escalation.worker")

# How long a workflow task may wait on this worker's own (sticky) queue before
# the server moves it to the shared queue, where any worker takes it. A worker
# killed outright (a clean stop hands its tasks back at once) leaves the cases
# it held waiting this long, their deadlines and actions with them: two
# minutes once delayed escalations by 120 s after a crash. A moved task costs
# a replay of the case's history, so a close-of-business burst, whose tasks
# queue on the worker for longer than this, replays more (README,
# Performance: the burst's lag and the chaos drill's recovery, both measured).
# ESCALATION_WORKER_STICKY_TIMEOUT sets it for the worker process.
STICKY_SCHEDULE_TO_START = timedelta(seconds=Settings.model_fields["worker_sticky_timeout"].default)

# How often the worker hands the allocator's free pages back to the system.
TRIM_EVERY_SECONDS = 10.0

# The collector's thresholds in the worker: its youngest generation is
# collected after this many new container objects rather than Python's 700,
# each older one after 20 and 100 collections of the one below. Every case
# the worker holds is thousands of objects the collector would otherwise
# walk again and again: its pauses held a deadline's notice or a manager's
# resolution back by a few hundred milliseconds (two runs either side: spread
# lag max 0.95-0.96 s -> 0.56-0.68 s, resolve p99 507 -> 133-224 ms; README,
# Performance).
COLLECTOR_THRESHOLDS = (50_000, 20, 100)


def _malloc_trim() -> Callable[[], object] | None:
    """glibc's malloc_trim, where there is one. After a close-of-business burst
    the allocator keeps the pages a thousand activations freed, so the
    worker's resident memory stays at the burst's peak."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0)


async def _give_back_memory(stop: asyncio.Event) -> None:
    trim = _malloc_trim()
    if trim is None:
        return
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), TRIM_EVERY_SECONDS)
        # A ctypes call releases the GIL: the worker's tasks go on meanwhile.
        await asyncio.to_thread(trim)


def tune_collector() -> None:
    """Leave what the worker loaded at start (modules, policies, the
    register's tables) out of every collection from now on, and collect the
    rest less often."""
    gc.freeze()
    gc.set_threshold(*COLLECTOR_THRESHOLDS)


def build_worker(
    client: Client,
    task_queue: str,
    sink: NoticeSink,
    extra_closures: Iterable[date] = (),
    *,
    register: Register | None = None,
    directory: Directory | None = None,
    sender: Addressee | None = None,
    public_url: str | None = None,
    links: LinkMaker | None = None,
    sandboxed: bool = True,
    **options: object,
) -> Worker:
    """The worker for the disagreement workflow and its activities.

    ``sandboxed`` (the default, and what every test runs) runs each case in
    the SDK's sandbox, which fails a workflow that reaches for the clock, the
    network or the environment. The production worker turns it off unless
    ESCALATION_WORKER_SANDBOX says otherwise: the sandbox re-imports the
    workflow module for every case (README's Performance section).

    ``register`` is where the cases record themselves; without one (the
    simulator, most tests) a throwaway register in memory. ``links`` makes
    the action links in the notices (none without it)."""
    deadlines = DeadlineActivities(extra_closures)
    # Without a directory (simulation, tests) notices are captured unresolved.
    notices = NoticeActivities(
        sink, directory=directory, sender=sender, public_url=public_url, links=links
    )
    # Without one (simulation, most tests), a register in memory: the cases
    # still record themselves exactly as in production.
    register = register or Register.in_memory(KeyRing.generate())
    record = RecordActivities(register)
    stage_start = StageStartActivities(deadlines, notices)
    # The quarterly report goes out by the notices' transport, on its own path.
    report = ReportActivities(register, report_mailer(sink), directory, sender, extra_closures)
    extra_workflows = list(options.pop("workflows", []))  # type: ignore[call-overload]
    options.setdefault("sticky_queue_schedule_to_start_timeout", STICKY_SCHEDULE_TO_START)
    if not sandboxed:
        options.setdefault("workflow_runner", UnsandboxedWorkflowRunner())
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[DisagreementWorkflow, QuarterlyReportWorkflow, *extra_workflows],
        activities=[
            deadlines.plan_stage_clock,
            deadlines.next_reminder,
            notices.send_notice,
            stage_start.start_stage,
            record.record_case,
            report.report_due_at,
            report.send_quarterly_report,
        ],
        graceful_shutdown_timeout=timedelta(seconds=10),
        **options,  # type: ignore[arg-type]
    )


async def connect(settings: Settings) -> Client:
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(),
    )


def action_links(settings: Settings) -> LinkMaker | None:
    """The notices' action links, signed with the key the API checks them
    with; none where the service has no public address to link to."""
    if not settings.public_url:
        return None
    from api.cases import load_secret

    return LinkMaker(
        load_secret(settings), settings.public_url, timedelta(days=settings.action_link_days)
    )


async def run_worker(settings: Settings) -> None:
    from activities.email import notice_setup

    require_current(settings.register_url)
    client = await connect(settings)
    register = Register.from_settings(settings)
    setup = notice_setup(settings, register)  # SendGrid, or the .eml outbox without an API key
    worker = build_worker(
        client,
        settings.task_queue,
        setup.sink,
        settings.extra_closures,
        register=register,
        directory=setup.directory,
        sender=setup.sender,
        public_url=settings.public_url,
        links=action_links(settings),
        sandboxed=settings.worker_sandbox,
        max_cached_workflows=settings.worker_cached_cases,
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=settings.worker_sticky_timeout),
    )
    tune_collector()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "worker polling task queue %r on %s (namespace %r); notices to %s; workflow %s",
        settings.task_queue,
        settings.temporal_address,
        settings.temporal_namespace,
        setup.description,
        "sandboxed" if settings.worker_sandbox else "not sandboxed",
    )
    async with worker:
        trimming = asyncio.create_task(_give_back_memory(stop))
        await stop.wait()
        log.info("stopping: finishing the tasks in hand")
        await trimming
    register.close()
    log.info("worker stopped")
