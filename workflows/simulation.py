"""The rehearsal driver behind ``escalation simulate``.

On the time-skipping server, time should move only through timers, so the
driver itself waits (in virtual time) until the case is raised, starts the
case as a child workflow, and sends each rehearsed action as a signal at its
exact instant. A refused action is then recorded on the case's own timeline.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict
from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from workflows.disagreement import DisagreementWorkflow
    from workflows.messages import RaiseDisagreement


class RehearsedAction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: datetime
    signal: str
    payload: dict


class RehearsalPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    case_workflow_id: str
    request: RaiseDisagreement
    raise_at: datetime
    actions: list[RehearsedAction]
    horizon: datetime


@workflow.defn(name="Rehearsal")
class RehearsalWorkflow:
    @workflow.run
    async def run(self, plan: RehearsalPlan) -> None:
        await self._sleep_until(plan.raise_at, "until the concern is raised")
        # Abandoned, not watched: awaiting the child and then giving up at
        # the horizon would cancel the case, which a rehearsal must not do.
        case = await workflow.start_child_workflow(
            DisagreementWorkflow.run,
            plan.request,
            id=plan.case_workflow_id,
            parent_close_policy=workflow.ParentClosePolicy.ABANDON,
            static_summary=f"Rehearsal · {plan.request.policy.partnership}",
        )
        for action in sorted(plan.actions, key=lambda a: a.at):
            if action.at > plan.horizon:
                break
            await self._sleep_until(action.at, f"until {action.signal}")
            try:
                await case.signal(action.signal, action.payload)
            except ApplicationError:
                # The case has already closed; its timeline says so.
                break
        await self._sleep_until(plan.horizon, "simulation horizon")

    @staticmethod
    async def _sleep_until(at: datetime, summary: str) -> None:
        delay = at - workflow.now()
        if delay > timedelta(0):
            await workflow.sleep(delay, summary=summary)
