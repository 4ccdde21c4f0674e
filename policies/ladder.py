"""Which timescale governs a stage, and the ladder that runs if nobody acts.

``stage_deadline`` is the single rule for a stage's deadline; the workflow's
deadline activity and ``policy explain`` both call it, so what the command
line promises is what a running case does.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from policies.calendar import WorkingDayCalendar
from policies.model import Hours, Immediately, NoTimescale, Policy, SameWorkingDay, WorkingDays

AnyTimescale = WorkingDays | Hours | SameWorkingDay | Immediately | NoTimescale


def risk_override(
    policy: Policy, index: int, risk_from_stage: int | None
) -> WorkingDays | Hours | SameWorkingDay | None:
    """The immediate-risk timescale that applies to stage ``index``, given the
    stage at which risk was flagged (None: no immediate risk)."""
    rule = policy.immediate_risk
    if risk_from_stage is None or rule.timescale_override is None:
        return None
    if rule.override_applies_to == "current-stage":
        return rule.timescale_override if index == risk_from_stage else None
    return rule.timescale_override if index >= risk_from_stage else None


def earliest(*instants: datetime | None) -> datetime | None:
    known = [i for i in instants if i is not None]
    return min(known) if known else None


def stage_deadline(
    calendar: WorkingDayCalendar,
    timescale: AnyTimescale,
    start: datetime,
    override: WorkingDays | Hours | SameWorkingDay | None = None,
    own_from: datetime | None = None,
    entry: tuple[WorkingDays | Hours, datetime] | None = None,
) -> datetime | None:
    """The stage's own deadline or, under immediate risk, whichever is less of
    that and the override counted from the stage's start. ``own_from``: where
    the policy counts the stage's own timescale from an earlier instant (the
    raise, an earlier stage's start)."""
    own = calendar.deadline(own_from or start, timescale)
    if entry is not None:
        # The next stage's entry deadline: escalate by then at the latest.
        own = earliest(own, calendar.deadline(entry[1], entry[0]))
    if override is None:
        return own
    return earliest(own, calendar.deadline(start, override))


class PlannedStage(BaseModel):
    model_config = ConfigDict(frozen=True)

    index: int
    key: str
    name: str
    starts: datetime | None
    deadline: datetime | None
    timescale: str


def explain(
    policy: Policy,
    calendar: WorkingDayCalendar,
    raised: datetime,
    immediate_risk: bool = False,
) -> list[PlannedStage]:
    """Every stage with when it starts and its deadline if nobody acts: each
    deadline starts the next stage; after a stage with no timescale nothing
    starts by itself."""
    risk_from = 0 if immediate_risk else None
    plan: list[PlannedStage] = []
    start: datetime | None = raised
    for index, stage in enumerate(policy.stages):
        override = risk_override(policy, index, risk_from)
        anchor = policy.timescale_anchor(index)
        own_from = None
        if anchor is not None:
            own_from = raised if anchor < 0 else plan[anchor].starts
        entry_anchor = policy.entry_anchor(index)
        entry = None
        if entry_anchor is not None:
            entry_from = raised if entry_anchor < 0 else plan[entry_anchor].starts
            nxt = policy.stages[index + 1].enter_within
            if entry_from is not None and nxt is not None:
                entry = (nxt.within, entry_from)
        deadline = (
            stage_deadline(calendar, stage.timescale, start, override, own_from, entry)
            if start
            else None
        )
        label = stage.timescale.describe()
        if override is not None:
            label = f"{label} (immediate risk: {override.describe()})"
        plan.append(
            PlannedStage(
                index=index,
                key=stage.key,
                name=stage.name,
                starts=start,
                deadline=deadline,
                timescale=label,
            )
        )
        start = deadline
    return plan
