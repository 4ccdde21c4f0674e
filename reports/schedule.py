"""One Temporal Schedule per partnership for its quarterly theme report.

By default each fires at 00:05 local on the first day of January, April,
July and October, and its workflow waits for 09:00 on the first working day
(``workflows.report``). A partnership's own cadence is a cron expression in
ESCALATION_REPORT_SCHEDULES (e.g. ``{"wirral": "0 9 5 1,4,7,10 *"}``), fired
as given in the partnership's time zone, or in the one a ``CRON_TZ=`` prefix
names. Creating them is idempotent: one that exists is updated to
the configured cadence, never duplicated.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from policies.model import Policy
from workflows.report import QuarterlyReport, QuarterlyReportWorkflow

QUARTER_MONTHS = (1, 4, 7, 10)


def schedule_id(policy_id: str) -> str:
    return f"quarterly-report-{policy_id}"


def _schedule(policy: Policy, task_queue: str, cron: str | None, time_zone: str | None) -> Schedule:
    if cron:
        spec = ScheduleSpec(cron_expressions=[cron], time_zone_name=time_zone or policy.time_zone)
    else:
        spec = ScheduleSpec(
            calendars=[
                ScheduleCalendarSpec(
                    month=[ScheduleRange(m) for m in QUARTER_MONTHS],
                    day_of_month=[ScheduleRange(1)],
                    hour=[ScheduleRange(0)],
                    minute=[ScheduleRange(5)],
                    comment="first day of each quarter; the report waits for 09:00 on the "
                    "first working day",
                )
            ],
            time_zone_name=policy.time_zone,
        )
    return Schedule(
        action=ScheduleActionStartWorkflow(
            QuarterlyReportWorkflow.run,
            QuarterlyReport(policy_id=policy.id, wait_for_working_day=not cron),
            id=f"quarterly-report-{policy.id}",
            task_queue=task_queue,
        ),
        spec=spec,
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_schedules(
    client: Client,
    task_queue: str,
    policies: Iterable[Policy],
    cadences: Mapping[str, str] | None = None,
    time_zones: Mapping[str, str] | None = None,
) -> list[str]:
    """Create (or bring up to date) every partnership's schedule; the ids."""
    cadences, time_zones = cadences or {}, time_zones or {}
    done = []
    for policy in policies:
        wanted = _schedule(policy, task_queue, cadences.get(policy.id), time_zones.get(policy.id))
        sid = schedule_id(policy.id)
        try:
            await client.create_schedule(sid, wanted)
        except ScheduleAlreadyRunningError:

            def _update(_: ScheduleUpdateInput, wanted: Schedule = wanted) -> ScheduleUpdate:
                return ScheduleUpdate(schedule=wanted)

            await client.get_schedule_handle(sid).update(_update)
        done.append(sid)
    return done
