"""The quarterly theme report, run by each partnership's Temporal Schedule.

The schedule starts this workflow at the start of each quarter's first day
(or at the partnership's own cadence); the workflow asks when the report is
due (09:00 on the first working day, which a calendar spec cannot say),
sleeps until then, and has its activity build, keep and mail the report.
Everything that reads the clock, the register or the mail is an activity.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict
from temporalio import workflow
from temporalio.common import RetryPolicy


class QuarterlyReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy_id: str
    # Wait for the first working day at 09:00 (the default cadence); a
    # partnership's own cadence fires when the report is wanted.
    wait_for_working_day: bool = True


class ReportDue(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy_id: str
    started_at: datetime


class SendReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy_id: str
    # The report covers the last whole quarter before this instant.
    at: datetime


class ReportSent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    report_id: str
    period: str
    emailed_to: int


@workflow.defn(name="QuarterlyReport")
class QuarterlyReportWorkflow:
    @workflow.run
    async def run(self, job: QuarterlyReport) -> ReportSent:
        started = workflow.now()
        at = started
        if job.wait_for_working_day:
            at = await workflow.execute_activity(
                "report_due_at",
                ReportDue(policy_id=job.policy_id, started_at=started),
                result_type=datetime,
                start_to_close_timeout=timedelta(seconds=30),
            )
            if at > workflow.now():
                await workflow.sleep(at - workflow.now(), summary="until the report is due")
        return await workflow.execute_activity(
            "send_quarterly_report",
            SendReport(policy_id=job.policy_id, at=at),
            result_type=ReportSent,
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=10)),
        )
