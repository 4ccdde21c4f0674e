"""``/policies``: the partnerships' escalation policies, as data.

Policies are the partnerships' published documents, so any signed-in user
may read any of them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from api import problems
from api.deps import CurrentUser, SettingsDep
from api.problems import ProblemError
from api.schemas import (
    EXPLAIN_EXAMPLE,
    POLICY_SUMMARY_EXAMPLE,
    AreaSummary,
    ExplainedStage,
    Explanation,
    PolicySummary,
    StageSummary,
)
from escalation.clitools import INSTANT_FORMAT, CliError, parse_instant
from policies.calendar import WorkingDayCalendar
from policies.ladder import explain
from policies.loader import UnknownPolicyError, builtin_policies, get_policy
from policies.model import Policy

router = APIRouter(prefix="/policies", tags=["policies"])

EXPLAIN_HORIZON = timedelta(days=3653)

PolicyId = Annotated[
    str,
    Path(
        max_length=64,
        description="A policy id, e.g. merton.",
        openapi_examples={"merton": {"value": "merton"}},
    ),
]


def _ok(example: Any) -> dict[str, Any]:
    return {"description": "OK", "content": {"application/json": {"example": example}}}


def _policy(policy_id: str) -> Policy:
    try:
        return get_policy(policy_id)
    except UnknownPolicyError as exc:
        raise ProblemError(404, problems.NOT_FOUND, "Not found", str(exc)) from None


def _summary(policy: Policy) -> PolicySummary:
    return PolicySummary(
        id=policy.id,
        version=policy.version,
        name=policy.name,
        partnership=policy.partnership,
        areas=[AreaSummary(key=a.key, name=a.name) for a in policy.areas],
        stages=[
            StageSummary(index=i, key=s.key, name=s.name, timescale=s.timescale.describe())
            for i, s in enumerate(policy.stages)
        ],
    )


@router.get(
    "",
    response_model=list[PolicySummary],
    summary="The built-in policies",
    responses={200: _ok([POLICY_SUMMARY_EXAMPLE]), **problems.responses(401)},
)
async def list_policies(user: CurrentUser) -> list[PolicySummary]:
    return [_summary(p) for p in builtin_policies().values()]


@router.get(
    "/{policy_id}",
    response_model=Policy,
    summary="One policy in full",
    description="Every stage, timescale, role and form, each with the section of the "
    "partnership's document it encodes.",
    responses={
        200: _ok(
            {
                "id": "merton",
                "version": "2019-08",
                "name": "Merton escalation policy",
                "partnership": "Merton Safeguarding Children Partnership (MSCP)",
                "stages": [
                    {
                        "key": "practitioners",
                        "name": "Practitioners",
                        "timescale": {
                            "kind": "working_days",
                            "days": 5,
                            "source": "§4.2.1",
                        },
                        "source": "§4.2",
                    }
                ],
            }
        ),
        **problems.responses(401, 404, 422),
    },
)
async def get_policy_route(policy_id: PolicyId, user: CurrentUser) -> Policy:
    return _policy(policy_id)


@router.get(
    "/{policy_id}/explain",
    response_model=Explanation,
    summary="The ladder that runs if nobody acts",
    description="Every stage with when it starts and its deadline if nobody acts; each "
    "deadline starts the next stage. A stage with no timescale has a null deadline and the "
    "stages after it a null start. The same as `escalation policy explain --json`.",
    responses={200: _ok(EXPLAIN_EXAMPLE), **problems.responses(401, 404, 422)},
)
async def explain_policy(
    policy_id: PolicyId,
    user: CurrentUser,
    settings: SettingsDep,
    raised: Annotated[
        str,
        Query(
            max_length=64,
            description="When the disagreement is raised, ISO 8601; without an offset it is "
            "local time in the policy's zone; between 2000 and ten years from now.",
            openapi_examples={
                "local": {"value": "2026-12-23T11:00"},
                "utc": {"value": "2026-12-23T11:00:00+00:00"},
            },
        ),
    ],
    immediate_risk: Annotated[
        bool, Query(description="The child is at immediate risk from the start.")
    ] = False,
) -> Explanation:
    policy = _policy(policy_id)
    try:
        when = parse_instant(raised, policy.time_zone, what="raised")
    except CliError:
        # Not the message, which quotes what was typed (it may be anything).
        raise ProblemError(
            422,
            problems.VALIDATION,
            "The request is not valid",
            f"raised: not a date and time; expected {INSTANT_FORMAT}",
        ) from None
    earliest, latest = datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) + EXPLAIN_HORIZON
    if not earliest <= when <= latest:
        # Working-day arithmetic near the end of the calendar overflows.
        raise ProblemError(
            422,
            problems.VALIDATION,
            "The request is not valid",
            f"raised must be between 2000-01-01 and {latest:%Y-%m-%d}",
        )
    calendar = WorkingDayCalendar(policy.calendar_spec(), settings.extra_closures)
    plan = explain(policy, calendar, when, immediate_risk=immediate_risk)
    return Explanation(
        policy=policy.id,
        raised=when,
        immediate_risk=immediate_risk,
        stages=[
            ExplainedStage(
                index=s.index,
                key=s.key,
                name=s.name,
                timescale=s.timescale,
                starts=s.starts,
                deadline=s.deadline,
            )
            for s in plan
        ],
    )
