"""``/disagreements``: raise, list, read and act on cases.

Every action is the workflow update of the same name, sent with the caller
as the actor; the case's own validator decides, and a refusal comes back as
409 with its reason. A case the caller may not see answers 404, exactly as
a case that does not exist.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Path, Query, Request, Response

from api import cases, problems
from api.deps import CurrentUser, HmacKey, RegisterDep, SettingsDep, TemporalClient
from api.problems import ProblemError
from api.schemas import (
    ACTION_EXAMPLES,
    ACTION_RESULT_EXAMPLE,
    CASE_SUMMARY_EXAMPLE,
    RAISE_EXAMPLE,
    RAISE_RESPONSE_EXAMPLE,
    AcknowledgeBody,
    CaseLinks,
    CaseList,
    ConfirmBody,
    DeadlineBody,
    EscalateBody,
    FormBody,
    ImmediateRiskBody,
    Instant,
    Key,
    NoteBody,
    RaiseRequest,
    RaiseResponse,
    ReopenBody,
    ResolveBody,
    WithdrawBody,
)
from policies.loader import builtin_policies
from register.listing import CaseQuery, InvalidPageToken, Sort, decode_token, encode_token
from workflows.disagreement import DisagreementWorkflow
from workflows.messages import (
    Acknowledge,
    ActionResult,
    AddNote,
    CaseRecord,
    CaseStatus,
    ConfirmOutcome,
    Escalate,
    FlagImmediateRisk,
    Reopen,
    Resolve,
    ShortenDeadline,
    SubmitForm,
    Withdraw,
)

router = APIRouter(prefix="/disagreements", tags=["disagreements"])

RefPath = Annotated[
    str,
    Path(
        max_length=64,
        description="The case reference, e.g. MER-7K2Q9XAB.",
        openapi_examples={"case": {"summary": "A Merton case", "value": "MER-7K2Q9XAB"}},
    ),
]


def _ok(example: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"example": example}}}


def _invalid_raise(detail: str, **extensions: Any) -> ProblemError:
    return ProblemError(
        422, problems.INVALID_RAISE, "The case cannot be raised", detail, **extensions
    )


# --- Raise -------------------------------------------------------------------------------


@router.post(
    "",
    status_code=201,
    response_model=RaiseResponse,
    summary="Raise a disagreement",
    description="Start a case under the partnership's policy, as the caller's agency. "
    "Answers 201 with the reference, stage and deadline; 200 for a retried request with "
    "the same Idempotency-Key (the same case, never a second one); 202 for a retried "
    "request whose case is not yet answering.",
    responses={
        201: _ok(RAISE_RESPONSE_EXAMPLE, "The case was raised"),
        200: _ok(RAISE_RESPONSE_EXAMPLE, "A retried request: the case it already raised"),
        202: _ok(
            {**RAISE_RESPONSE_EXAMPLE, "deadline": None, "deadline_text": None, "pending": True},
            "A retried request whose case is not yet answering",
        ),
        **problems.responses(401, 403, 422, 503),
    },
)
async def raise_disagreement(
    body: Annotated[
        RaiseRequest,
        Body(
            openapi_examples={
                "merton": {
                    "summary": "Health disagrees with children's social care",
                    "value": RAISE_EXAMPLE,
                },
                "immediate-risk": {
                    "summary": "The child is at immediate risk of significant harm",
                    "value": {**RAISE_EXAMPLE, "immediate_risk": True, "child": None},
                },
            }
        ),
    ],
    user: CurrentUser,
    client: TemporalClient,
    settings: SettingsDep,
    secret: HmacKey,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=255,
            pattern=r"^[\x21-\x7e]+$",
            description="Any unique string (e.g. a UUID) per disagreement: a retry with the "
            "same key returns the same case and never starts a second one.",
            openapi_examples={"uuid": {"value": "5f0c3c3e-2b1a-4d8e-9f57-2d1f3c9e7a10"}},
        ),
    ] = None,
) -> RaiseResponse:
    raised = await cases.raise_case(client, settings, secret, user, body, idempotency_key)
    started, state, policy, request = raised.started, raised.state, raised.policy, raised.request
    response.headers["Location"] = cases.case_path(started.reference)
    if not started.created:
        response.headers["Idempotent-Replayed"] = "true"
    if state is None:
        response.status_code = 202
        stage = policy.stages[request.start_stage]
        return RaiseResponse(
            reference=started.reference,
            policy=policy.id,
            status="open",
            stage=request.start_stage,
            stage_key=stage.key,
            stage_name=stage.name,
            deadline=None,
            immediate_risk=request.immediate_risk,
            raised_at=None,
            pending=True,
            links=CaseLinks(self=cases.case_path(started.reference)),
        )
    response.status_code = 201 if started.created else 200
    return RaiseResponse(
        reference=state.reference,
        policy=state.policy_id,
        status=state.status,
        stage=state.stage,
        stage_key=state.stage_key,
        stage_name=state.stage_name,
        deadline=state.clock.deadline if state.is_open else None,
        deadline_text=state.clock.deadline_text if state.is_open else None,
        immediate_risk=state.immediate_risk,
        raised_at=state.raised_at,
        links=CaseLinks(self=cases.case_path(state.reference)),
    )


# --- List and read -------------------------------------------------------------------

LIST_PARAMETERS = frozenset(
    {
        "partnership",
        "area",
        "stage",
        "status",
        "overdue",
        "immediate_risk",
        "agency",
        "category",
        "raised_from",
        "raised_to",
        "closed_from",
        "closed_to",
        "sort",
        "page_size",
        "page_token",
    }
)


def _check_range(
    low_name: str, low: datetime | None, high_name: str, high: datetime | None
) -> None:
    if low is not None and high is not None and low >= high:
        raise problems.invalid_query(low_name, f"must be before {high_name}")


@router.get(
    "",
    response_model=CaseList,
    summary="List cases",
    description="The cases the caller may see (their agency's, or their partnership's for "
    "the business team), open or closed, from the register: newest first, or soonest "
    "deadline first with `sort=deadline`. Filters combine with AND; status may be repeated. "
    "Dates are instants with an offset; `*_from` is inclusive, `*_to` exclusive.",
    responses={
        200: _ok({"items": [CASE_SUMMARY_EXAMPLE], "next_page_token": None}),
        **problems.responses(401, 422, 503),
    },
)
async def list_disagreements(
    request: Request,
    user: CurrentUser,
    register: RegisterDep,
    secret: HmacKey,
    partnership: Annotated[
        str | None,
        Query(
            max_length=64,
            description="Policy id.",
            openapi_examples={"merton": {"value": "merton"}},
        ),
    ] = None,
    area: Annotated[Key | None, Query(description="Area key within the partnership.")] = None,
    stage: Annotated[int | None, Query(ge=0, le=99, description="Current stage index.")] = None,
    status: Annotated[
        list[CaseStatus] | None,
        Query(
            description="Case status; repeat for several.",
            openapi_examples={"open": {"value": ["open", "overdue"]}},
        ),
    ] = None,
    overdue: Annotated[
        bool | None,
        Query(description="Past the final stage's deadline, or past the current deadline."),
    ] = None,
    immediate_risk: Annotated[bool | None, Query(description="Immediate risk flagged.")] = None,
    agency: Annotated[
        Key | None,
        Query(
            description="An agency key that is a party to the case.",
            openapi_examples={"health": {"value": "merton-health"}},
        ),
    ] = None,
    category: Annotated[Key | None, Query(description="A category key.")] = None,
    raised_from: Annotated[Instant | None, Query(description="Raised at or after.")] = None,
    raised_to: Annotated[Instant | None, Query(description="Raised before.")] = None,
    closed_from: Annotated[Instant | None, Query(description="Closed at or after.")] = None,
    closed_to: Annotated[Instant | None, Query(description="Closed before.")] = None,
    sort: Annotated[
        Sort, Query(description="`raised` (newest first) or `deadline` (soonest first).")
    ] = "raised",
    page_size: Annotated[int, Query(ge=1, le=100)] = 25,
    page_token: Annotated[
        str | None,
        Query(max_length=512, description="next_page_token from the previous page."),
    ] = None,
) -> CaseList:
    unknown = sorted(set(request.query_params) - LIST_PARAMETERS)
    if unknown:
        raise problems.invalid_query(
            unknown[0],
            f"is not a filter here; the filters are {', '.join(sorted(LIST_PARAMETERS))}",
        )
    if partnership is not None and partnership not in builtin_policies():
        raise problems.invalid_query(
            "partnership",
            f"unknown partnership {partnership!r}; the partnerships are "
            f"{', '.join(sorted(builtin_policies()))}",
        )
    _check_range("raised_from", raised_from, "raised_to", raised_to)
    _check_range("closed_from", closed_from, "closed_to", closed_to)
    after = None
    if page_token:
        try:
            after = decode_token(secret, sort, page_token)
        except InvalidPageToken as exc:
            raise problems.invalid_query("page_token", str(exc)) from None
    query = CaseQuery(
        scope=cases.register_scope(user),
        now=datetime.now(UTC),
        partnership=partnership,
        area=area,
        stage=stage,
        statuses=status or (),
        overdue=overdue,
        immediate_risk=immediate_risk,
        agency=agency,
        category=category,
        raised_from=raised_from,
        raised_to=raised_to,
        closed_from=closed_from,
        closed_to=closed_to,
        sort=sort,
        page_size=page_size,
        after=after,
    )
    items, last = await cases.list_cases(register, query)
    return CaseList(items=items, next_page_token=encode_token(secret, sort, last) if last else None)


CASE_STATE_EXAMPLE: dict[str, Any] = {
    "reference": "MER-7K2Q9XAB",
    "policy_id": "merton",
    "policy_version": "2019-08",
    "partnership": "Merton Safeguarding Children Partnership (MSCP)",
    "area": "merton",
    "raising_agency": {"key": "merton-health", "name": "Merton health", "kind": "health"},
    "receiving_agency": {
        "key": "merton-childrens-social-care",
        "name": "Merton children's social care",
        "kind": "childrens-social-care",
    },
    "categories": ["thresholds"],
    "raised_by": {
        "id": "merton-health-practitioner",
        "name": "Priya Shah",
        "email": "priya.shah@health.merton.example",
        "agency": "merton-health",
        "role": "practitioner",
    },
    "raised_at": "2026-12-23T11:00:00Z",
    "status": "open",
    "stage": 0,
    "stage_key": "practitioners",
    "stage_name": "Practitioners",
    "highest_stage_reached": 0,
    "clock": {
        "started_at": "2026-12-23T11:00:00Z",
        "deadline": "2027-01-04T17:00:00Z",
        "deadline_text": "Mon 4 Jan 2027 17:00 GMT",
        "deadline_basis": "policy",
        "deadline_passed": False,
        "deadline_day_reminder_at": "2027-01-04T09:00:00Z",
        "acknowledgement_due": "2026-12-24T17:00:00Z",
        "next_reminder_at": None,
    },
    "acknowledged_by": None,
    "immediate_risk": False,
    "events": [
        {
            "seq": 1,
            "at": "2026-12-23T11:00:00Z",
            "type": "raised",
            "stage": 0,
            "deadline": "2027-01-04T17:00:00Z",
            "by": "merton-health-practitioner",
        }
    ],
}


@router.get(
    "/{reference}",
    response_model=CaseRecord,
    summary="A case, whole",
    description="What the case is about (summary, decision disputed, the child's details), "
    "where it stands (stage, deadline, who has acted) and its timeline, every event with "
    "who acted and their reason. Read live from the running case (its events the register "
    "has not yet confirmed, with the register's), or from the register once it has closed "
    "(`source`), for as long as the register keeps it.",
    responses={200: _ok(CASE_STATE_EXAMPLE), **problems.responses(401, 404, 409, 422, 503)},
)
async def get_disagreement(
    reference: RefPath,
    user: CurrentUser,
    client: TemporalClient,
    register: RegisterDep,
    settings: SettingsDep,
) -> CaseRecord:
    return await cases.read_case(client, register, reference, user, settings.action_timeout_seconds)


# --- Actions -------------------------------------------------------------------------------

_ACTION_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _ok(ACTION_RESULT_EXAMPLE, "The case's new position"),
    **problems.responses(401, 404, 409, 422, 503),
}


def _example(name: str) -> dict[str, Any]:
    return {name: {"value": ACTION_EXAMPLES[name]}}


async def _act(
    client: Any, settings: Any, user: Any, reference: str, verb: str, update: Any, action: Any
) -> ActionResult:
    case = await cases.find_case(client, reference, user, verb)
    return await cases.act(case, update, action, settings.action_timeout_seconds)


@router.post(
    "/{reference}/acknowledge",
    response_model=ActionResult,
    summary="Acknowledge the concern",
    description="The receiving agency acknowledges the concern at the current stage.",
    responses=_ACTION_RESPONSES,
)
async def acknowledge(
    reference: RefPath,
    user: CurrentUser,
    client: TemporalClient,
    settings: SettingsDep,
    body: Annotated[AcknowledgeBody | None, Body(openapi_examples=_example("acknowledge"))] = None,
) -> ActionResult:
    body = body or AcknowledgeBody()
    action = Acknowledge(by=user.actor(), note=body.note)
    return await _act(
        client, settings, user, reference, "acknowledge", DisagreementWorkflow.acknowledge, action
    )


@router.post(
    "/{reference}/resolve",
    response_model=ActionResult,
    summary="Resolve the disagreement",
    description="Record the outcome. Where the policy requires written confirmation, the "
    "case then awaits it (POST .../confirm).",
    responses=_ACTION_RESPONSES,
)
async def resolve(
    reference: RefPath,
    body: Annotated[ResolveBody, Body(openapi_examples=_example("resolve"))],
    user: CurrentUser,
    client: TemporalClient,
    settings: SettingsDep,
) -> ActionResult:
    action = Resolve(by=user.actor(), outcome=body.outcome, form=body.form)
    return await _act(
        client, settings, user, reference, "resolve", DisagreementWorkflow.resolve, action
    )


@router.post(
    "/{reference}/confirm",
    response_model=ActionResult,
    summary="Confirm the outcome in writing",
    responses=_ACTION_RESPONSES,
)
async def confirm(
    reference: RefPath,
    user: CurrentUser,
    client: TemporalClient,
    settings: SettingsDep,
    body: Annotated[ConfirmBody | None, Body(openapi_examples=_example("confirm"))] = None,
) -> ActionResult:
    body = body or ConfirmBody()
    action = ConfirmOutcome(by=user.actor(), confirmation=body.confirmation)
    return await _act(
        client, settings, user, reference, "confirm", DisagreementWorkflow.confirm, action
    )


@router.post(
    "/{reference}/escalate",
    response_model=ActionResult,
    summary="Escalate to the next stage now",
    description="Stages that need a form (e.g. Staffordshire stage 3) need its fields in `form`.",
    responses=_ACTION_RESPONSES,
)
async def escalate(
    reference: RefPath,
    body: Annotated[EscalateBody, Body(openapi_examples=_example("escalate"))],
    user: CurrentUser,
    client: TemporalClient,
    settings: SettingsDep,
) -> ActionResult:
    action = Escalate(by=user.actor(), reason=body.reason, form=body.form, to_stage=body.to_stage)
    return await _act(
        client, settings, user, reference, "escalate", DisagreementWorkflow.escalate, action
    )


@router.post(
    "/{reference}/immediate-risk",
    response_model=ActionResult,
    summary="Flag immediate risk of significant harm",
    description="Tells the policy's urgent contacts at once and applies its immediate-risk "
    "timescale; `jump_to_stage` where the policy allows a jump.",
    responses=_ACTION_RESPONSES,
)
async def immediate_risk(
    reference: RefPath,
    body: Annotated[ImmediateRiskBody, Body(openapi_examples=_example("immediate-risk"))],
    user: CurrentUser,
    client: TemporalClient,
    settings: SettingsDep,
) -> ActionResult:
    action = FlagImmediateRisk(
        by=user.actor(), reason=body.reason, jump_to_stage=body.jump_to_stage
    )
    return await _act(
        client,
        settings,
        user,
        reference,
        "immediate-risk",
        DisagreementWorkflow.immediate_risk,
        action,
    )


@router.post(
    "/{reference}/deadline",
    response_model=ActionResult,
    summary="Shorten the current stage's deadline",
    description="A timescale that protects the child, whichever is less: a deadline may "
    "only be brought forward, never put back.",
    responses=_ACTION_RESPONSES,
)
async def shorten_deadline(
    reference: RefPath,
    body: Annotated[DeadlineBody, Body(openapi_examples=_example("deadline"))],
    user: CurrentUser,
    client: TemporalClient,
    settings: SettingsDep,
) -> ActionResult:
    action = ShortenDeadline(by=user.actor(), deadline=body.deadline, reason=body.reason)
    return await _act(
        client,
        settings,
        user,
        reference,
        "deadline",
        DisagreementWorkflow.shorten_deadline,
        action,
    )


@router.post(
    "/{reference}/notes",
    response_model=ActionResult,
    summary="Record a discussion",
    responses=_ACTION_RESPONSES,
)
async def add_note(
    reference: RefPath,
    body: Annotated[NoteBody, Body(openapi_examples=_example("notes"))],
    user: CurrentUser,
    client: TemporalClient,
    settings: SettingsDep,
) -> ActionResult:
    action = AddNote(by=user.actor(), text=body.text)
    return await _act(
        client, settings, user, reference, "note", DisagreementWorkflow.add_note, action
    )


@router.post(
    "/{reference}/withdraw",
    response_model=ActionResult,
    summary="Withdraw the disagreement",
    responses=_ACTION_RESPONSES,
)
async def withdraw(
    reference: RefPath,
    body: Annotated[WithdrawBody, Body(openapi_examples=_example("withdraw"))],
    user: CurrentUser,
    client: TemporalClient,
    settings: SettingsDep,
) -> ActionResult:
    action = Withdraw(by=user.actor(), reason=body.reason)
    return await _act(
        client, settings, user, reference, "withdraw", DisagreementWorkflow.withdraw, action
    )


@router.post(
    "/{reference}/reopen",
    response_model=ActionResult,
    summary="Reopen an outcome that was not agreed after all",
    description="A case awaiting written confirmation returns to its stage (and may then be "
    "escalated), where the confirmation shows there was no real agreement.",
    responses=_ACTION_RESPONSES,
)
async def reopen(
    reference: RefPath,
    body: Annotated[ReopenBody, Body(openapi_examples=_example("reopen"))],
    user: CurrentUser,
    client: TemporalClient,
    settings: SettingsDep,
) -> ActionResult:
    action = Reopen(by=user.actor(), reason=body.reason)
    return await _act(
        client, settings, user, reference, "reopen", DisagreementWorkflow.reopen, action
    )


@router.post(
    "/{reference}/form",
    response_model=ActionResult,
    summary="Send the form the current stage is waiting for",
    description="Where a case reached a stage that needs a form without it (by its "
    "deadline), the named person sends it here; the stage records when it arrived.",
    responses=_ACTION_RESPONSES,
)
async def submit_form(
    reference: RefPath,
    body: Annotated[FormBody, Body(openapi_examples=_example("form"))],
    user: CurrentUser,
    client: TemporalClient,
    settings: SettingsDep,
) -> ActionResult:
    action = SubmitForm(by=user.actor(), form=body.form)
    return await _act(
        client, settings, user, reference, "form", DisagreementWorkflow.submit_form, action
    )
