"""The partnerships' theme reports, as the schedule built and mailed them.

Only the business team of the report's partnership and operators may list
or read them: a report is anonymised, but it is the partnership's own
management information. A report outside the caller's reach answers 404,
as if it did not exist.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel

from api import problems
from api.deps import CurrentUser, RegisterDep
from api.problems import ProblemError
from api.users import User

router = APIRouter(prefix="/reports", tags=["reports"])


class ReportSummary(BaseModel):
    id: str
    partnership: str
    period: str
    period_from: str
    period_to: str
    generated_at: datetime
    emailed_to: int


class ReportDetail(ReportSummary):
    figures: dict[str, Any]


_EXAMPLE = {
    "id": "wirral-2027-Q1",
    "partnership": "wirral",
    "period": "2027-Q1",
    "period_from": "2027-01-01",
    "period_to": "2027-03-31",
    "generated_at": "2027-04-01T08:00:00Z",
    "emailed_to": 1,
}


def _allowed(user: User, partnership: str) -> bool:
    return user.role == "operator" or (
        user.role == "business-team" and user.partnership == partnership
    )


def _refuse_others(user: User) -> None:
    if user.role not in ("operator", "business-team"):
        raise ProblemError(
            403,
            problems.FORBIDDEN,
            "Not allowed",
            "reports are for the partnership's business team and operators",
        )


def _summary(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "partnership": row.policy_id,
        "period": row.period,
        "period_from": row.period_from,
        "period_to": row.period_to,
        "generated_at": row.generated_at,
        "emailed_to": row.emailed_to,
    }


@router.get(
    "",
    summary="The partnership's theme reports, newest period first",
    responses={
        200: {"description": "OK", "content": {"application/json": {"example": [_EXAMPLE]}}},
        **problems.responses(401, 403, 503),
    },
)
async def list_reports(user: CurrentUser, register: RegisterDep) -> list[ReportSummary]:
    _refuse_others(user)
    scope = None if user.role == "operator" else user.partnership
    rows = await asyncio.to_thread(register.reports, scope)
    return [ReportSummary(**_summary(r)) for r in rows]


@router.get(
    "/{report_id}",
    summary="One theme report: its figures as JSON, or the PDF or CSV that was mailed",
    responses={
        200: {
            "description": "OK",
            "content": {
                "application/json": {
                    "example": {**_EXAMPLE, "figures": {"period": {"label": "2027-Q1"}}}
                },
                "application/pdf": {"example": "(the PDF that was mailed)"},
                "text/csv": {"example": "partnership,period,section,row,column,value"},
            },
        },
        **problems.responses(401, 403, 404, 422, 503),
    },
    response_model=ReportDetail,
)
async def get_report(
    report_id: Annotated[
        str, Path(max_length=48, openapi_examples={"wirral": {"value": "wirral-2027-Q1"}})
    ],
    user: CurrentUser,
    register: RegisterDep,
    format: Annotated[
        Literal["json", "pdf", "csv"], Query(openapi_examples={"pdf": {"value": "pdf"}})
    ] = "json",
) -> Any:
    _refuse_others(user)
    row = await asyncio.to_thread(register.report, report_id)
    if row is None or not _allowed(user, row.policy_id):
        raise problems.not_found("No such report")
    if format == "pdf":
        return Response(row.pdf, media_type="application/pdf")
    if format == "csv":
        return Response(row.csv, media_type="text/csv; charset=utf-8")
    return ReportDetail(**_summary(row), figures=row.figures)
