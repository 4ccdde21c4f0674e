"""What the API's routes read and answer, with the examples its OpenAPI shows.

Action bodies never carry the actor: who acts comes from the bearer token.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from workflows.messages import DEADLINE_HORIZON, MAX_TEXT, Agency, CaseStatus, ChildDetails, Text

Key = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=64)]
Reference = Annotated[str, Field(examples=["MER-7K2Q9XAB"])]

# Every string a person can send has a maximum length, so that no request can
# grow a case's history (or an email) without bound.
MAX_NAME = 200  # a person's or an agency's name
MAX_ADDRESS = 500
MAX_FORM_FIELDS = 40
FormFields = Annotated[
    dict[Key, Annotated[str, Field(max_length=MAX_TEXT)]], Field(max_length=MAX_FORM_FIELDS)
]

EARLIEST_BIRTH = date(1900, 1, 1)
# Any instant a person sends (a filter's bound, a deadline) lies within
# these: near the ends of the calendar an instant cannot even be converted
# to UTC, and no case is raised, due or closed outside them.
EARLIEST_INSTANT = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_INSTANT = datetime(2200, 1, 1, tzinfo=UTC)


def _bounded_instant(value: datetime) -> datetime:
    if not EARLIEST_INSTANT <= value <= LATEST_INSTANT:
        raise ValueError(
            f"must be between {EARLIEST_INSTANT:%Y-%m-%d} and {LATEST_INSTANT:%Y-%m-%d}"
        )
    return value


Instant = Annotated[AwareDatetime, AfterValidator(_bounded_instant)]


def _lone_surrogate(value: Any, pointer: str = "") -> str | None:
    """The JSON pointer of the first string holding a lone UTF-16 surrogate
    (JSON's ``"\\ud800"`` escape), which no UTF-8 text can carry."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return pointer or "/"
    elif isinstance(value, dict):
        for key, item in value.items():
            found = _lone_surrogate(key, pointer) or _lone_surrogate(item, f"{pointer}/{key}")
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _lone_surrogate(item, f"{pointer}/{index}")
            if found:
                return found
    return None


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        found = _lone_surrogate(data)
        if found:
            raise ValueError(
                f"the text at {found} holds a lone surrogate (an escape such as \\ud800 "
                "without its pair), which is not a character; send the text as UTF-8"
            )
        return data


class AgencyIn(_In, Agency):
    name: str = Field(min_length=1, max_length=MAX_NAME)


class ChildIn(_In, ChildDetails):
    name: str = Field(min_length=1, max_length=MAX_NAME)
    date_of_birth: date | None = Field(default=None, description="In the past (and after 1900).")
    address: str | None = Field(default=None, max_length=MAX_ADDRESS)
    nhs_number: str | None = Field(
        default=None,
        max_length=20,
        pattern=r"^[0-9 -]+$",
        description="Ten digits, spaces or dashes allowed.",
    )

    @field_validator("date_of_birth")
    @classmethod
    def _born_in_the_past(cls, value: date | None) -> date | None:
        if value is not None and not EARLIEST_BIRTH <= value <= datetime.now(UTC).date():
            raise ValueError(
                "a date of birth must be in the past (and after 1900); check the date (YYYY-MM-DD)"
            )
        return value


# --- Raising a case -------------------------------------------------------------


class RaiseRequest(_In):
    """A professional disagreement, raised by the caller's agency."""

    policy: Key = Field(description="The partnership's policy id (see GET /policies).")
    area: Key | None = Field(
        default=None,
        description="The area within the partnership; needed where the policy covers several.",
    )
    raising_agency: AgencyIn = Field(description="The agency raising the concern (the caller's).")
    receiving_agency: AgencyIn = Field(description="The agency whose decision is disputed.")
    categories: list[Key] = Field(
        default_factory=list,
        max_length=10,
        description="Non-identifying categories (slugs), searchable by operators.",
    )
    summary: str = Field(
        min_length=1, max_length=MAX_TEXT, description="The concern, in the raiser's words."
    )
    decision_disputed: str | None = Field(
        default=None,
        max_length=MAX_TEXT,
        description="The decision the raising agency disputes, and why. Kept only "
        "encrypted, shown only to those entitled to the case.",
    )
    child: ChildIn | None = Field(
        default=None,
        description="The child's identifying details. Kept only in the case's encrypted "
        "history, never in a search attribute, log line or list.",
    )
    immediate_risk: bool = Field(
        default=False, description="The child is at immediate risk of significant harm."
    )
    start_stage: int = Field(
        default=0,
        ge=0,
        le=99,
        description="A later first stage, where the policy allows it for immediate risk.",
    )


RAISE_EXAMPLE: dict[str, Any] = {
    "policy": "merton",
    "area": "merton",
    "raising_agency": {"key": "merton-health", "name": "Merton health", "kind": "health"},
    "receiving_agency": {
        "key": "merton-childrens-social-care",
        "name": "Merton children's social care",
        "kind": "childrens-social-care",
    },
    "categories": ["thresholds"],
    "summary": "The referral was closed with no further action; health believes the "
    "threshold for a strategy discussion is met.",
    "decision_disputed": "Children's social care closed the referral of 1 December.",
    "child": {"name": "A. Child", "date_of_birth": "2019-04-01"},
    "immediate_risk": False,
}


class CaseLinks(BaseModel):
    self: str = Field(examples=["/disagreements/MER-7K2Q9XAB"])


class RaiseResponse(BaseModel):
    reference: Reference
    policy: str = Field(examples=["merton"])
    status: CaseStatus
    stage: int
    stage_key: str
    stage_name: str
    deadline: datetime | None = Field(description="The stage's deadline (UTC).")
    deadline_text: str | None = Field(
        default=None, description="The deadline as the partnership reads it (local time)."
    )
    immediate_risk: bool
    raised_at: datetime | None
    pending: bool = Field(
        default=False,
        description="True (with 202 Accepted) when the case started but its first deadline "
        "was not yet planned; GET the case shortly.",
    )
    links: CaseLinks


RAISE_RESPONSE_EXAMPLE: dict[str, Any] = {
    "reference": "MER-7K2Q9XAB",
    "policy": "merton",
    "status": "open",
    "stage": 0,
    "stage_key": "practitioners",
    "stage_name": "Practitioners",
    "deadline": "2027-01-04T17:00:00Z",
    "deadline_text": "Mon 4 Jan 2027 17:00 GMT",
    "immediate_risk": False,
    "raised_at": "2026-12-23T11:00:00Z",
    "pending": False,
    "links": {"self": "/disagreements/MER-7K2Q9XAB"},
}


# --- Listing -------------------------------------------------------------------------


class CaseSummary(BaseModel):
    """A case as the register lists it: non-identifying fields only."""

    reference: Reference
    policy: str
    area: str | None
    stage: int
    stage_key: str
    stage_name: str
    status: CaseStatus
    deadline: datetime | None = Field(
        description="The current deadline (UTC), while it has not yet passed."
    )
    deadline_text: str | None = Field(
        default=None, description="The deadline as the partnership reads it (local time)."
    )
    immediate_risk: bool
    raising_agency: str
    receiving_agency: str
    agencies: list[str] = Field(description="The two agencies: raising, then receiving.")
    categories: list[str]
    highest_stage_reached: int
    raised_at: datetime
    resolved_at: datetime | None = None
    closed_at: datetime | None
    links: CaseLinks


class CaseList(BaseModel):
    items: list[CaseSummary]
    next_page_token: str | None = Field(
        description="Pass as page_token for the next page; null on the last page."
    )


CASE_SUMMARY_EXAMPLE: dict[str, Any] = {
    "reference": "MER-7K2Q9XAB",
    "policy": "merton",
    "area": "merton",
    "stage": 1,
    "stage_key": "line-managers",
    "stage_name": "Stage 1: line managers",
    "status": "open",
    "deadline": "2027-01-11T17:00:00Z",
    "deadline_text": "Mon 11 Jan 2027 17:00 GMT",
    "immediate_risk": False,
    "raising_agency": "merton-health",
    "receiving_agency": "merton-childrens-social-care",
    "agencies": ["merton-health", "merton-childrens-social-care"],
    "categories": ["thresholds"],
    "highest_stage_reached": 1,
    "raised_at": "2026-12-23T11:00:00Z",
    "resolved_at": None,
    "closed_at": None,
    "links": {"self": "/disagreements/MER-7K2Q9XAB"},
}


# --- Actions --------------------------------------------------------------------------


class AcknowledgeBody(_In):
    note: str | None = Field(default=None, max_length=MAX_TEXT)


class ResolveBody(_In):
    outcome: Text
    form: FormFields = Field(
        default_factory=dict, description="The resolution form's fields, where the policy has one."
    )


class ConfirmBody(_In):
    confirmation: str = Field(
        default="Outcome confirmed in writing", min_length=1, max_length=MAX_TEXT
    )


class EscalateBody(_In):
    reason: Text
    form: FormFields = Field(
        default_factory=dict,
        description="The fields of the form the next stage needs, where the policy names one.",
    )
    to_stage: int | None = Field(
        default=None,
        ge=0,
        le=99,
        description="A later stage to jump to, where the policy allows it.",
    )


class ImmediateRiskBody(_In):
    reason: Text
    jump_to_stage: int | None = Field(
        default=None,
        ge=0,
        le=99,
        description="A later stage to jump to, where the policy allows it.",
    )


class DeadlineBody(_In):
    deadline: AwareDatetime = Field(
        description="The new, earlier deadline, with its offset; at most a year ahead."
    )
    reason: Text

    @field_validator("deadline")
    @classmethod
    def _within_the_horizon(cls, value: datetime) -> datetime:
        latest = datetime.now(UTC) + DEADLINE_HORIZON
        if value > latest:
            raise ValueError(
                f"a deadline may be at most {DEADLINE_HORIZON.days} days ahead (no later "
                f"than {latest:%Y-%m-%d}); a deadline may only be brought forward"
            )
        return _bounded_instant(value)


class NoteBody(_In):
    text: Text


class WithdrawBody(_In):
    reason: Text


class ReopenBody(_In):
    reason: Text = Field(
        description="Why the outcome awaiting written confirmation was not agreed after all."
    )


class FormBody(_In):
    form: FormFields = Field(
        description="The fields of the form the current stage is waiting for (e.g. "
        "Staffordshire stage 3's, when the case reached it by its deadline)."
    )


ACTION_EXAMPLES: dict[str, dict[str, Any]] = {
    "acknowledge": {"note": "Received; the team manager will review the decision today."},
    "resolve": {"outcome": "Strategy discussion convened; both agencies agree the plan."},
    "confirm": {"confirmation": "Outcome confirmed in writing by both senior leaders."},
    "escalate": {"reason": "No agreement at practitioner level."},
    "immediate-risk": {"reason": "New information: the child is at immediate risk."},
    "deadline": {
        "deadline": "2026-12-24T12:00:00+00:00",
        "reason": "A timescale that protects the child from harm: before the holiday.",
    },
    "notes": {"text": "Discussed by phone with the duty manager; awaiting the case file."},
    "withdraw": {"reason": "Raised in error: the concern was already resolved."},
    "reopen": {"reason": "The written confirmation shows the agencies did not agree."},
    "form": {"form": {"decision": "The decision disputed", "rationale": "Why it is unsafe"}},
}

ACTION_RESULT_EXAMPLE: dict[str, Any] = {
    "reference": "MER-7K2Q9XAB",
    "status": "open",
    "stage": 1,
    "stage_name": "Stage 1: line managers",
    "deadline": "2027-01-11T17:00:00Z",
}


# --- Policies --------------------------------------------------------------------------


class AreaSummary(BaseModel):
    key: str
    name: str


class StageSummary(BaseModel):
    index: int
    key: str
    name: str
    timescale: str


class PolicySummary(BaseModel):
    id: str
    version: str
    name: str
    partnership: str
    areas: list[AreaSummary]
    stages: list[StageSummary]


POLICY_SUMMARY_EXAMPLE: dict[str, Any] = {
    "id": "merton",
    "version": "2019-08",
    "name": "Merton escalation policy",
    "partnership": "Merton Safeguarding Children Partnership (MSCP)",
    "areas": [{"key": "merton", "name": "London Borough of Merton"}],
    "stages": [
        {"index": 0, "key": "practitioners", "name": "Practitioners", "timescale": "5 working days"}
    ],
}


class ExplainedStage(BaseModel):
    index: int
    key: str
    name: str
    timescale: str
    starts: datetime | None
    deadline: datetime | None


class Explanation(BaseModel):
    """The ladder that runs if nobody acts (as `escalation policy explain --json`)."""

    policy: str
    raised: datetime
    immediate_risk: bool
    stages: list[ExplainedStage]


EXPLAIN_EXAMPLE: dict[str, Any] = {
    "policy": "merton",
    "raised": "2026-12-23T11:00:00+00:00",
    "immediate_risk": False,
    "stages": [
        {
            "index": 0,
            "key": "practitioners",
            "name": "Practitioners",
            "timescale": "5 working days",
            "starts": "2026-12-23T11:00:00+00:00",
            "deadline": "2027-01-04T17:00:00+00:00",
        },
        {
            "index": 1,
            "key": "line-managers",
            "name": "Stage 1: line managers",
            "timescale": "5 working days",
            "starts": "2027-01-04T17:00:00+00:00",
            "deadline": "2027-01-11T17:00:00+00:00",
        },
    ],
}


# --- Health ---------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready"] = "ready"
    temporal: str = Field(examples=["localhost:7233 (namespace default)"])
    task_queue: str = Field(examples=["escalation"])
    workflow_pollers: int
    activity_pollers: int
    register_database: str = Field(examples=["reachable"])
