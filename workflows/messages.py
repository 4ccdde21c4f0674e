"""What travels in and out of the disagreement workflow.

Everything here is pydantic so that the pydantic data converter carries it
intact through Temporal's history. The child's identifying details travel only
inside ``ChildDetails``; nothing in this module copies them into a reference,
a search attribute, a notice's recipients or an event.
"""

from __future__ import annotations

import base64
import json
import zlib
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_serializer,
    field_validator,
)

from policies.model import (
    AgencyKind,
    CalendarSpec,
    Hours,
    Immediately,
    NoTimescale,
    Policy,
    SameWorkingDay,
    Subject,
    WorkingDays,
)

ActorRole = Literal["practitioner", "manager", "business-team", "operator", "system"]
CaseStatus = Literal["open", "overdue", "awaiting-confirmation", "resolved", "withdrawn"]
EventType = Literal[
    "raised",
    "stage_started",
    "acknowledged",
    "notice",
    "reminder",
    "auto_escalated",
    "escalated",
    "immediate_risk",
    "deadline_shortened",
    "note",
    "resolved",
    "confirmed",
    "overdue",
    "withdrawn",
    "closed",
    "refused",
    # Notices: a role nobody holds in the directory, a notice the
    # mail service refused, a bounce or drop reported by its event webhook.
    "unfilled_roles",
    "notice_failed",
    "delivery_failed",
    # A case awaiting written confirmation reopened (there was no real
    # agreement); a stage's form asked for, and received.
    "reopened",
    "form_received",
    # The calendar could not work out a deadline or reminder (an instant
    # beyond its range): the case goes on without it.
    "clock_failed",
]
NoticeTemplate = Literal[
    "stage-started",
    "escalated-automatically",
    "acknowledgement-due",
    "deadline-day-reminder",
    "stage-reminder",
    "overdue-final-stage",
    "immediate-risk",
    "deadline-shortened",
    "resolved",
    "written-confirmation-due",
    "outcome-confirmed",
    "withdrawn",
    "business-team-record",
    # To the business team: a notice could not be delivered.
    "delivery-failed",
    # A stage entered without its form: the form is asked for, then chased.
    "form-due",
    # A stage's form, sent to the person it is addressed to.
    "form-sent",
]
# Templates that chase someone for something already owed; recorded in the
# timeline as reminders rather than notices.
REMINDER_TEMPLATES: frozenset[str] = frozenset(
    {
        "acknowledgement-due",
        "deadline-day-reminder",
        "stage-reminder",
        "overdue-final-stage",
        "written-confirmation-due",
        "form-due",
    }
)
OPEN_STATUSES: frozenset[str] = frozenset({"open", "overdue", "awaiting-confirmation"})

# What a case keeps stays bounded, so that its state answers a query and
# carries over when it continues as new (Temporal refuses a payload over
# 2 MB): every text a person gives has a maximum length, and its notes a
# number per stage and a total.
MAX_TEXT = 10_000  # a concern, a reason, a note, an outcome, a form's answer
NOTES_PER_STAGE = 50
NOTE_CHARACTERS_PER_CASE = 200_000
# The furthest ahead a person may set a deadline: no policy's ladder runs
# for longer, and an instant near the end of the calendar overflows the
# working-day arithmetic.
DEADLINE_HORIZON = timedelta(days=366)
Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Agency(_Model):
    """One side of the disagreement. ``key`` is a stable non-identifying slug
    (e.g. 'merton-police') used in search attributes and recipients."""

    key: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=64)
    name: str
    kind: AgencyKind


class Actor(_Model):
    """Who did something. Operators acting from the Temporal UI or CLI may
    omit it; the workflow then records the action as the operator's."""

    id: str = "operator"
    name: str = "Temporal operator"
    email: str | None = None
    agency: str | None = None
    role: ActorRole = "operator"


SYSTEM = Actor(id="system", name="Escalation service", role="system")


class ChildDetails(_Model):
    """Identifying details: encrypted in history by the payload codec and
    never copied anywhere a search, log or notice could show them."""

    name: str
    date_of_birth: date | None = None
    address: str | None = None
    nhs_number: str | None = None

    # Keep identities out of tracebacks, logs and pretty-printers (pydantic's
    # repr, str and rich repr all read __repr_args__).
    def __repr_args__(self) -> list[tuple[str | None, object]]:
        return [(None, "<redacted>")]

    def __repr__(self) -> str:
        return "ChildDetails(<redacted>)"

    __str__ = __repr__


class RaiseDisagreement(_Model):
    reference: str = Field(pattern=r"^[A-Z0-9][A-Z0-9-]{3,40}$")
    policy: Policy
    area: str | None = None
    raised_by: Actor
    raising_agency: Agency
    receiving_agency: Agency
    categories: list[str] = Field(default_factory=list)
    summary: str = Field(min_length=1, description="The concern, in the raiser's words.")
    decision_disputed: str | None = Field(
        default=None, description="The decision the raising agency disputes, and why."
    )
    child: ChildDetails | None = None
    immediate_risk: bool = False
    start_stage: int = Field(default=0, ge=0)
    raised_at: datetime | None = Field(
        default=None, description="When the concern was raised; the workflow's start if absent."
    )
    case_url: str | None = None
    # Carried across continue-as-new; never set by a caller.
    resume: CaseState | None = None
    # Whom the case is about, where a board covers children and adults at
    # risk and a stage's owners differ by subject.
    subject: Subject = "children"

    @field_serializer("policy", when_used="json")
    def _pack_policy(self, policy: Policy) -> dict[str, str]:
        return pack_policy(policy)

    @field_validator("policy", mode="before")
    @classmethod
    def _unpack_policy(cls, value: Any) -> Any:
        return unpack_policy(value)


# The policy snapshot travels in the workflow's input (DESIGN section 4), but
# compressed: it is ten of the input's eleven kilobytes, and a worker keeps
# about five times an input's size for every case it holds (README's
# Performance section). The policy is public text and is compressed on its
# own, never together with case data, so the compressed length tells nothing
# about a case. Inputs recorded before carry the policy as it is; both read.
PACKED_POLICY = "zlib_base64"
_MAX_POLICY_BYTES = 1 << 20


# A worker starts many cases under the same few policies, and the API raises
# them: each policy object is packed once, and each packed text unpacked and
# validated once, not once a case (a quarter of a millisecond of CPU each).
_CACHED_POLICIES = 32
_packed: dict[int, tuple[Policy, dict[str, str]]] = {}
_unpacked: dict[str, Policy] = {}


def pack_policy(policy: Policy) -> dict[str, str]:
    """The policy as its id, version (readable in the Temporal UI) and
    compressed JSON."""
    known = _packed.get(id(policy))
    if known is not None and known[0] is policy:
        return dict(known[1])
    packed = zlib.compress(policy.model_dump_json().encode(), 9)
    value = {
        "id": policy.id,
        "version": policy.version,
        PACKED_POLICY: base64.b64encode(packed).decode("ascii"),
    }
    if len(_packed) >= _CACHED_POLICIES:
        _packed.clear()
    _packed[id(policy)] = (policy, value)
    return dict(value)


def unpack_policy(value: Any) -> Any:
    """The policy from its packed form; anything else as it is."""
    if not isinstance(value, dict) or PACKED_POLICY not in value:
        return value
    text = value[PACKED_POLICY]
    known = _unpacked.get(text) if isinstance(text, str) else None
    if known is not None:
        return known
    inflate = zlib.decompressobj()
    data = inflate.decompress(base64.b64decode(text), _MAX_POLICY_BYTES)
    if inflate.unconsumed_tail:
        raise ValueError("the packed policy is larger than a policy can be")
    fields = json.loads(data)
    try:
        policy = Policy.model_validate(fields)
    except ValidationError:
        return fields  # the field's own validation says what is wrong
    if len(_unpacked) >= _CACHED_POLICIES:
        _unpacked.clear()
    _unpacked[text] = policy
    return policy


# --- Manager actions (updates, and the same as signals) ------------------


class ManagerAction(_Model):
    """What every action shares. Whether it arrived unencrypted (an operator
    who left out the codec endpoint) is not part of the action but of how it
    came: the data converter notes it (``escalation.converter``) and the case
    refuses such an action, so it is never serialised with it."""

    _arrived_unencrypted: bool = PrivateAttr(default=False)

    @property
    def arrived_unencrypted(self) -> bool:
        return self._arrived_unencrypted

    def note_arrived_unencrypted(self) -> None:
        self._arrived_unencrypted = True


class Acknowledge(ManagerAction):
    by: Actor = Field(default_factory=Actor)
    note: str | None = Field(default=None, max_length=MAX_TEXT)


class Resolve(ManagerAction):
    by: Actor = Field(default_factory=Actor)
    outcome: Text
    form: dict[str, str] = Field(default_factory=dict)


class ConfirmOutcome(ManagerAction):
    by: Actor = Field(default_factory=Actor)
    confirmation: str = Field(
        default="Outcome confirmed in writing", min_length=1, max_length=MAX_TEXT
    )


class Escalate(ManagerAction):
    by: Actor = Field(default_factory=Actor)
    reason: Text
    form: dict[str, str] = Field(default_factory=dict)
    to_stage: int | None = Field(
        default=None, description="A later stage to jump to, where the policy allows it."
    )


class FlagImmediateRisk(ManagerAction):
    by: Actor = Field(default_factory=Actor)
    reason: Text
    jump_to_stage: int | None = None


class ShortenDeadline(ManagerAction):
    by: Actor = Field(default_factory=Actor)
    deadline: datetime
    reason: Text


class AddNote(ManagerAction):
    by: Actor = Field(default_factory=Actor)
    text: Text


class Withdraw(ManagerAction):
    by: Actor = Field(default_factory=Actor)
    reason: Text


class Reopen(ManagerAction):
    """The outcome awaiting written confirmation turned out not to be agreed:
    the case is open again at its stage, and may be escalated."""

    by: Actor = Field(default_factory=Actor)
    reason: Text


class SubmitForm(ManagerAction):
    """The form a stage needs, sent after the case entered the stage."""

    by: Actor = Field(default_factory=Actor)
    form: dict[str, str] = Field(default_factory=dict)


Action = (
    Acknowledge
    | Resolve
    | ConfirmOutcome
    | Escalate
    | FlagImmediateRisk
    | ShortenDeadline
    | AddNote
    | Withdraw
    | Reopen
    | SubmitForm
)


# --- State ------------------------------------------------------------------


class CaseEvent(_Model):
    seq: int
    at: datetime
    type: EventType
    stage: int
    deadline: datetime | None = None
    by: str | None = None
    to: list[str] = Field(default_factory=list)
    template: str | None = None
    notice_id: str | None = None
    detail: str | None = None
    # Who acted, as their token named them, and what they gave as their
    # reason (or note, outcome, confirmation): free text, so it travels only
    # encrypted and is sealed in the register. Absent on cases recorded
    # before the register.
    by_name: str | None = None
    by_role: str | None = None
    by_agency: str | None = None
    reason: str | None = None
    # The forms a notice carried.
    forms: list[str] = Field(default_factory=list)
    # The event in words (workflows.timeline), filled in where a case is
    # read, never kept in the case's own state.
    text: str | None = None


class Note(_Model):
    at: datetime
    by: Actor
    text: str
    # The number of the note's event, by which the register holds it. None
    # on notes kept before it was carried.
    seq: int | None = None


class StageEntry(_Model):
    """How and when the case first entered a stage by moving up to it."""

    how: Literal["escalated", "auto_escalated"]
    at: datetime
    by: str | None = None


class FormTask(_Model):
    """A form owed by one person at a stage the case entered without it."""

    stage: int
    due_from: Recipient
    addressed_to: str
    due_at: datetime | None = None
    # Which of the form's fields are owed: those an escalation gives, or
    # those a resolution gives.
    part: Literal["escalation", "resolution"] = "escalation"


class Clock(_Model):
    """The instants that wake the workflow for the current stage (or for the
    written confirmation it awaits), all computed by the deadline activity."""

    started_at: datetime
    deadline: datetime | None = None
    deadline_text: str | None = None
    deadline_basis: Literal["policy", "immediate-risk", "shortened", "confirmation"] = "policy"
    deadline_passed: bool = False
    deadline_day_reminder_at: datetime | None = None
    acknowledgement_due: datetime | None = None
    next_reminder_at: datetime | None = None
    # A form owed at this stage: asked for at the stage's start, then chased
    # from when it falls due (``form_due_text``).
    form_chase: list[datetime] = Field(default_factory=list)
    form_due_text: str | None = None


class CaseState(_Model):
    reference: str
    policy_id: str
    policy_version: str
    partnership: str
    area: str | None
    raising_agency: Agency
    receiving_agency: Agency
    categories: list[str]
    raised_by: Actor
    raised_at: datetime
    status: CaseStatus = "open"
    stage: int = 0
    stage_key: str = ""
    stage_name: str = ""
    highest_stage_reached: int = 0
    stages_reached: list[int] = Field(default_factory=list)
    clock: Clock
    acknowledged_by: Actor | None = None
    immediate_risk: bool = False
    risk_from_stage: int | None = None
    outcome: str | None = None
    resolved_at: datetime | None = None
    resolution_form: dict[str, str] = Field(default_factory=dict)
    escalation_forms: dict[str, dict[str, str]] = Field(default_factory=dict)
    closed_at: datetime | None = None
    notes: list[Note] = Field(default_factory=list)
    events: list[CaseEvent] = Field(default_factory=list)
    next_seq: int = 1
    # Roles the directory had nobody for when a notice was sent (labels as
    # in CaseEvent.to), and notices reported undelivered.
    unfilled_roles: list[str] = Field(default_factory=list)
    delivery_failures: list[DeliveryFailed] = Field(default_factory=list)
    # How much of the case the register holds: every event up to this
    # sequence number, and (once true) what the case is about.
    recorded_seq: int = 0
    about_recorded: bool = False
    # Forms a stage needs that have not arrived (key: the form's key), and
    # when each one that was asked for arrived.
    forms_due: dict[str, FormTask] = Field(default_factory=dict)
    forms_received: dict[str, datetime] = Field(default_factory=dict)
    # When each stage reached began (a later stage's timescale may count
    # from an earlier one's start).
    stage_starts: dict[int, datetime] = Field(default_factory=dict)
    subject: Subject = "children"
    # How many notices of each template each stage has sent ("<stage>:<template>"):
    # a notice's id counts from it (workflows.disagreement.notice_identity).
    notices_sent: dict[str, int] = Field(default_factory=dict)
    # What the case works out from its events and notes, kept as they are
    # made: once the register holds an event or a note, the case lets it go
    # (``events`` and ``notes`` hold only what the register has not yet
    # confirmed), so its state stays the size of what it runs on. ``tallied``
    # is false in a state carried over from a run that kept every event; the
    # tallies are then worked out from those (ladder.tally_kept).
    tallied: bool = False
    notes_at_stage: dict[int, int] = Field(default_factory=dict)
    note_characters: int = 0
    business_team_told_at: datetime | None = None
    stage_entries: dict[int, StageEntry] = Field(default_factory=dict)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


class CaseAbout(_Model):
    """What the disagreement is about, in the raiser's words, and whom: shown
    only to those entitled to the case, never in a list."""

    summary: str
    decision_disputed: str | None = None
    child: ChildDetails | None = None


class CaseRecord(CaseState):
    """A case whole: its state, what it is about, and where this was read
    from (the running case itself, or the register once it has closed)."""

    about: CaseAbout | None = None
    source: Literal["case", "register"] = "case"


class RecordCase(_Model):
    """The ``record_case`` activity's input: the case as it stands, with only
    the events after ``after_seq`` (the ones the register may lack) and, until
    the register has it, what the case is about."""

    case: CaseState
    after_seq: int = 0
    about: CaseAbout | None = None


class RecordReceipt(_Model):
    reference: str
    recorded_seq: int
    events_added: int = 0


class ActionResult(_Model):
    """What an update returns: enough for the API to answer without a query."""

    reference: str
    status: CaseStatus
    stage: int
    stage_name: str
    deadline: datetime | None


class CaseOutcome(_Model):
    reference: str
    status: CaseStatus
    stage: int
    closed_at: datetime | None


# --- Activity contracts -----------------------------------------------------


class Recipient(_Model):
    """A role to be told. People are looked up from the partnership's
    directory by the notice activity; only the raiser is named here."""

    role: str
    title: str
    agency: str | None = None
    agency_kind: str | None = None
    area: str | None = None
    email: str | None = None

    @property
    def label(self) -> str:
        return f"{self.agency}:{self.role}" if self.agency else self.role


class FilledField(_Model):
    """One field of a form, with its value as the case fills it ("" when the
    case cannot: the business team completes it by hand)."""

    key: str
    label: str
    value: str = ""
    filled_from: str = "case"
    identifying: bool = False


class FilledForm(_Model):
    """A policy's form filled from the case, ready to render (activities.forms).
    Identifying fields are filled only where the source form asks for them;
    an anonymised form (Hillingdon's) carries none and has the child's
    details scrubbed from its free text."""

    key: str
    name: str
    partnership: str
    reference: str
    sent_to: str
    source: str
    anonymised: bool = False
    completed_on: str = ""
    fields: list[FilledField] = Field(default_factory=list)


class Notice(_Model):
    notice_id: str = Field(description="Deterministic, so a retried send is recognised.")
    reference: str
    template: NoticeTemplate
    policy_id: str
    partnership: str
    area: str | None
    recipients: list[Recipient]
    stage: int
    stage_name: str
    stage_summary: str
    deadline: datetime | None
    deadline_text: str | None
    status: CaseStatus
    forms: list[str] = Field(default_factory=list)
    context: dict[str, str] = Field(default_factory=dict)
    case_url: str | None = None
    # The forms in ``forms``, filled from the case (attached as PDFs to the
    # business team's notice). Empty for every other notice.
    filled_forms: list[FilledForm] = Field(default_factory=list)
    # The key of the agency the concern was raised with: which recipients
    # are on its side, for the action links in their copies. None in notices
    # sent before it was carried.
    receiving_agency: str | None = None

    def with_clock(self, clock: Clock) -> Notice:
        """The notice with the deadline this clock sets."""
        return self.model_copy(
            update={"deadline": clock.deadline, "deadline_text": clock.deadline_text}
        )


class ClockRequest(_Model):
    """Plan the instants of one stage, or of a written confirmation.

    ``not_later_than`` keeps an existing deadline when a new rule (immediate
    risk) may only bring it forward: whichever is less."""

    calendar: CalendarSpec
    start: datetime
    timescale: WorkingDays | Hours | SameWorkingDay | Immediately | NoTimescale
    override: WorkingDays | Hours | SameWorkingDay | None = None
    fixed_deadline: datetime | None = None
    not_later_than: datetime | None = None
    acknowledgement: WorkingDays | Hours | SameWorkingDay | None = None
    reminder_every: WorkingDays | None = None
    basis: Literal["policy", "immediate-risk", "shortened", "confirmation"] = "policy"
    # A clock counted from an earlier instant (a confirmation due from the
    # stage's start) plans no reminder before this one.
    reminders_from: datetime | None = None
    # A form owed from this clock's start: due within this, then chased at
    # the reminder cadence while the stage lasts.
    form_within: WorkingDays | None = None
    # The stage's own timescale counted from an earlier instant (the raise,
    # an earlier stage's start), where the policy says so.
    deadline_from: datetime | None = None
    # The next stage must be entered by then: the deadline is whichever is
    # less of the stage's own and this, counted from ``entry_from``.
    entry_within: WorkingDays | Hours | None = None
    entry_from: datetime | None = None


class ReminderRequest(_Model):
    calendar: CalendarSpec
    after: datetime
    every: WorkingDays


class NoticeReceipt(_Model):
    notice_id: str
    delivered: bool
    duplicate: bool = False
    # Recipients (labels) the directory had nobody for; the business team
    # has been told. Empty when no directory is configured (capture mode).
    unfilled_roles: list[str] = Field(default_factory=list)


class StageStart(_Model):
    """The ``start_stage`` activity's input: a stage's clock to plan and the
    notice that the stage has started, sent with the deadline just planned
    (the notice's own ``deadline`` and ``deadline_text`` are replaced)."""

    clock: ClockRequest
    notice: Notice


class NoticeRefused(_Model):
    """The mail service refused a notice for good (SendGrid's 4xx): the
    refusal's kind and message, as the case records a failed activity's."""

    type: str | None
    message: str


class StageStarted(_Model):
    """The clock planned and, when the notice went in the same attempt, its
    receipt, or its refusal for good; neither when it could not go then (the
    mail service out of reach), and the case sends it on its own."""

    clock: Clock
    receipt: NoticeReceipt | None = None
    refused: NoticeRefused | None = None


class DeliveryFailed(_Model):
    """A notice the mail service could not deliver (SendGrid's bounce or
    dropped event), signalled to the case as ``delivery_failed``."""

    notice_id: str
    event: str = Field(description="bounce, dropped, blocked or rejected")
    reason: str = ""
    recipient: str | None = Field(default=None, description="The address that failed.")
    template: str | None = Field(default=None, description="The failed notice's template.")


FormTask.model_rebuild()
CaseState.model_rebuild()  # delivery_failures names DeliveryFailed, defined below it
CaseRecord.model_rebuild()
RecordCase.model_rebuild()
RaiseDisagreement.model_rebuild()
