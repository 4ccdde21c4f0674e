"""The rehearsal driver behind ``escalation simulate``.

On the time-skipping server, time should move only through timers, so the
driver itself waits (in virtual time) until the case is raised, starts the
case as a child workflow, and sends each rehearsed action as a signal at its
exact instant. A refused action is then recorded on the case's own timeline.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows.disagreement import DisagreementWorkflow
    from workflows.messages import CaseOutcome, RaiseDisagreement


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
    async def run(self, plan: RehearsalPlan) -> CaseOutcome | None:
        await self._sleep_until(plan.raise_at, "until the concern is raised")
        case = await workflow.start_child_workflow(
            DisagreementWorkflow.run,
            plan.request,
            id=plan.case_workflow_id,
            parent_close_policy=workflow.ParentClosePolicy.ABANDON,
            static_summary=f"Rehearsal · {plan.request.policy.partnership}",
        )
        outcome: list[CaseOutcome] = []

        async def watch() -> None:
            outcome.append(await case)

        watcher = asyncio.create_task(watch())
        for action in sorted(plan.actions, key=lambda a: a.at):
            if outcome or action.at > plan.horizon:
                break
            await self._sleep_until(action.at, f"until {action.signal}")
            if not outcome:
                await case.signal(action.signal, action.payload)
        remaining = plan.horizon - workflow.now()
        if remaining > timedelta(0):
            try:
                await workflow.wait_condition(
                    lambda: bool(outcome), timeout=remaining, timeout_summary="simulation horizon"
                )
            except TimeoutError:
                pass
        if not outcome:
            watcher.cancel()
        return outcome[0] if outcome else None

    @staticmethod
    async def _sleep_until(at: datetime, summary: str) -> None:
        delay = at - workflow.now()
        if delay > timedelta(0):
            await workflow.sleep(delay, summary=summary)
