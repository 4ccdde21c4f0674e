"""The shape of a partnership's escalation policy, as data.

A policy is frozen once loaded: a case carries the snapshot it was raised
under, so nothing here may change under a running workflow. Every stage,
timescale, role and form carries ``source``: the section or paragraph of the
partnership's own document that it encodes, so a reviewer can check each
line of a policy file against the document it came from.
"""

from __future__ import annotations

import re
from datetime import time
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Citation = Annotated[
    str,
    Field(
        min_length=3,
        description="Section, paragraph or appendix of the source document, e.g. '§4.4.2'.",
    ),
]
Key = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=64)]

# Nations of the UK as the `holidays` package names their subdivisions.
Nation = Literal["ENG", "WLS", "SCT", "NIR"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- Timescales -----------------------------------------------------------


class WorkingDays(_Frozen):
    """Close of business on the N-th working day after the clock starts."""

    kind: Literal["working_days"] = "working_days"
    days: int = Field(ge=1, le=60)
    source: Citation
    as_written: str | None = Field(
        default=None,
        description="The source's own words where it gives two units, e.g. '48 hours (two "
        "working days)': `kind` declares the one that governs.",
    )

    def describe(self) -> str:
        return f"{self.days} working day" + ("" if self.days == 1 else "s")


class Hours(_Frozen):
    """Elapsed hours, e.g. 'within 48 hours'."""

    kind: Literal["hours"] = "hours"
    hours: int = Field(ge=1, le=24 * 30)
    source: Citation
    as_written: str | None = Field(
        default=None,
        description="The source's own words where it gives two units, e.g. '48 hours (two "
        "working days)': `kind` declares the one that governs.",
    )

    def describe(self) -> str:
        return f"{self.hours} hours"


class SameWorkingDay(_Frozen):
    """Close of business today if today is a working day and it is not yet
    close of business, otherwise close of business on the next working day."""

    kind: Literal["same_working_day"] = "same_working_day"
    source: Citation

    def describe(self) -> str:
        return "same working day"


class Immediately(_Frozen):
    """Due the moment the clock starts ("immediately", "at once"): the stage
    passes on as soon as it begins unless someone acts in the same instant."""

    kind: Literal["immediately"] = "immediately"
    source: Citation

    def describe(self) -> str:
        return "immediately"


class NoTimescale(_Frozen):
    """The document sets no timescale: reminders instead of escalation."""

    kind: Literal["none"] = "none"
    source: Citation

    def describe(self) -> str:
        return "no written timescale"


Timescale = Annotated[
    WorkingDays | Hours | SameWorkingDay | Immediately | NoTimescale, Field(discriminator="kind")
]
# A timescale that always runs out (no "none"): an acknowledgement, an
# immediate-risk override. Discriminated by `kind`, so a wrong kind is one
# clear line, as for a stage's timescale.
RunningTimescale = Annotated[WorkingDays | Hours | SameWorkingDay, Field(discriminator="kind")]


# --- Who does what ----------------------------------------------------------

AgencyKind = Literal[
    "any",
    "police",
    "health",
    # GP practices and other primary care, where a policy names them apart
    # from hospital and community health trusts ("health").
    "primary-care",
    "education",
    "early-years",
    "childrens-social-care",
    "adult-social-care",
    "local-authority",
    "probation",
    "housing",
    "voluntary",
    "other",
]


Subject = Literal["children", "adults-at-risk"]


class StageOwner(_Frozen):
    """Who holds a stage in one kind of agency ('any' covers all the rest),
    for cases about one subject where a board covers children and adults at
    risk and the owners differ (absent: whatever the case is about)."""

    agency_kind: AgencyKind = "any"
    role: Key
    title: str = Field(min_length=2)
    source: Citation
    subject: Subject | None = None
    held_for: Literal["agency", "partnership"] = Field(
        default="agency",
        description="'partnership': one person for the whole partnership (an independent "
        "chair, a board business unit), addressed once and named once in the role "
        "directory's contacts, not in each agency.",
    )


class BusinessTeamNotice(_Frozen):
    """Something the partnership's business team must be sent at this stage."""

    when: Literal["stage_started", "resolved", "escalated_from", "outcome"]
    form: Key | None = None
    source: Citation
    asks_resolution_fields: bool = Field(
        default=False,
        description="On 'resolved' with a form whose questions the resolving manager answers: "
        "where a resolution leaves them blank, the form is asked for from the receiving side "
        "while the outcome awaits written confirmation.",
    )


class ExtraNotice(_Frozen):
    """A named role outside the two agencies that must be told at an event,
    optionally only where one of the agencies is of a given kind
    (e.g. Merton's CSC Assistant Director before stage 3)."""

    when: Literal["stage_started", "escalated_from", "resolved"]
    role: Key
    title: str
    only_if_agency_kind: AgencyKind | None = None
    source: Citation


WrittenBy = Literal["either-party", "either-manager", "receiving-side", "receiving-manager"]


class WrittenConfirmation(_Frozen):
    """The outcome confirmed in writing between the parties: who confirms,
    within how long (where the source says), and counted from what."""

    within: WorkingDays | None = Field(
        default=None, description="Absent where the source requires it without a timescale."
    )
    counts_from: Literal["resolution", "stage-start"] = Field(
        default="resolution",
        description="'stage-start': from the escalation into the stage (Staffordshire stage 3 "
        "'within 2 working days of the matter being formally escalated').",
    )
    by: WrittenBy = Field(
        default="either-party",
        description="Who may confirm: any party to the case, a manager of either agency, only "
        "the receiving agency, or only the receiving agency's manager.",
    )
    source: Citation

    def describe(self) -> str:
        if self.within is None:
            when = "no timescale"
        else:
            start = (
                "the escalation into this stage"
                if self.counts_from == "stage-start"
                else "the resolution"
            )
            when = f"within {self.within.describe()} of {start}"
        who = {
            "either-party": "either party",
            "either-manager": "a manager of either agency",
            "receiving-side": "the receiving agency",
            "receiving-manager": "the receiving agency's manager",
        }[self.by]
        return f"{when}; confirmed by {who}"


class OutcomeFeedback(_Frozen):
    """Earlier stages whose owners hear the outcome when a case is resolved
    here (only the stages the case reached)."""

    stages: tuple[Key, ...] = Field(min_length=1)
    source: Citation


class DirectRoute(_Frozen):
    """A later stage a manager may escalate to directly, past the next one."""

    to: Key
    source: Citation


class EntryDeadline(_Frozen):
    """When a case must have reached this stage at the latest ("refer to step 3
    within ten working days of the concern being raised"): the stage before
    escalates by then, whichever is less of its own deadline and this."""

    within: WorkingDays | Hours
    counts_from: str = Field(
        default="raise", description="'raise', or an earlier stage's key (whose start counts)."
    )
    source: Citation


class FormDue(_Frozen):
    """A stage entered without its form (the deadline passed, nobody
    escalated by hand): the form is asked for from the raising agency's
    owner of the stage before, within this timescale, with reminders."""

    within: WorkingDays
    addressed_to: str = Field(
        min_length=2, description="Who the form goes to, in the policy's words."
    )
    send_to: Literal["raising-stage-owner", "business-team"] = Field(
        default="business-team",
        description="'raising-stage-owner': the raising agency's owner of this stage "
        "(Staffordshire's senior manager), as well as any business-team record.",
    )
    source: Citation


class Stage(_Frozen):
    key: Key
    name: str = Field(min_length=2)
    summary: str = Field(min_length=2, description="The policy's own words for the stage.")
    owners: tuple[StageOwner, ...] = Field(min_length=1)
    timescale: Timescale
    written_confirmation: WrittenConfirmation | None = Field(
        default=None,
        description="Where the outcome must be confirmed in writing (with or without a timescale).",
    )
    form_required: Key | None = Field(
        default=None,
        description="Form whose fields an escalation into this stage must carry.",
    )
    business_team: tuple[BusinessTeamNotice, ...] = ()
    extra_notices: tuple[ExtraNotice, ...] = ()
    reminder_every: WorkingDays | None = Field(
        default=None,
        description="Cadence of reminders while the stage has no timescale or is overdue; "
        "the policy's default applies when absent.",
    )
    source: Citation
    timescale_counts_from: str = Field(
        default="stage-start",
        description="What the stage's timescale counts from: 'stage-start', 'raise', or an "
        "earlier stage's key ('within five working days of step 1').",
    )
    timescale_counts_from_source: Citation | None = None
    outcome_to: tuple[OutcomeFeedback, ...] = ()
    may_escalate_directly_to: tuple[DirectRoute, ...] = ()
    form_due: FormDue | None = None
    enter_within: EntryDeadline | None = None

    @field_validator("written_confirmation", mode="before")
    @classmethod
    def _legacy_confirmation(cls, value: object) -> object:
        # Snapshots recorded before confirmations said what they count from
        # held a bare working-days timescale: read it as it ran then.
        if isinstance(value, dict) and value.get("kind") == "working_days":
            return {"within": value, "source": value.get("source", "")}
        if isinstance(value, WorkingDays):
            return {"within": value, "source": value.source}
        return value

    def owner_for(self, agency_kind: str, subject: str | None = None) -> StageOwner:
        """The stage's owner in an agency of this kind, else the 'any' owner.
        An owner named for the case's subject (an adult's case at a joint
        board) comes before those for every subject."""
        order: list[tuple[str, str | None]] = [(agency_kind, None), ("any", None)]
        if subject is not None:
            order = [(agency_kind, subject), ("any", subject), *order]
        for kind, wanted in order:
            for owner in self.owners:
                if owner.agency_kind == kind and owner.subject == wanted:
                    return owner
        return self.owners[0]


class Contact(_Frozen):
    """A role to be told (people are in the directory, not in the policy)."""

    role: Key
    title: str
    area: Key | None = Field(default=None, description="Only for cases in this area.")
    source: Citation


class ImmediateRisk(_Frozen):
    """What changes when a child is at immediate risk of significant harm."""

    timescale_override: RunningTimescale | None = None
    override_applies_to: Literal["current-and-later", "current-stage"] = "current-and-later"
    urgent_contacts: tuple[Contact, ...] = Field(min_length=1)
    may_start_at_later_stage: bool = False
    may_jump_to_later_stage: bool = False
    source: Citation
    may_start_at: tuple[Key, ...] = Field(
        default=(),
        description="Where a case may start higher: only these stages (every stage when empty).",
    )
    may_start_at_source: Citation | None = None


class FormField(_Frozen):
    key: Key
    label: str
    filled_from: Literal["case", "escalation", "resolution", "business-team"]
    required: bool = True
    identifying: bool = Field(
        default=False,
        description="Holds a child's identity (name, date of birth, address, NHS number).",
    )


class Form(_Frozen):
    key: Key
    name: str
    fields: tuple[FormField, ...] = Field(min_length=1)
    anonymised: bool = Field(
        default=False, description="The policy requires the form to identify nobody."
    )
    sent_to: str = Field(description="Who receives it, in the policy's words.")
    source: Citation

    def fields_from(self, origin: str) -> tuple[FormField, ...]:
        return tuple(f for f in self.fields if f.filled_from == origin)


class Area(_Frozen):
    key: Key
    name: str
    source: Citation


class Reading(_Frozen):
    """A sentence of the source that can be read two ways: the reading the
    policy file encodes, the one it does not, and why."""

    about: str = Field(min_length=2, description="What the reading decides, e.g. 'Stage 5'.")
    chosen: str = Field(min_length=2)
    alternative: str = Field(min_length=2)
    why: str = Field(min_length=2)
    source: Citation


class Acknowledgement(_Frozen):
    """When the receiving side is reminded that it has not yet acknowledged."""

    timescale: RunningTimescale
    source: Citation


class Policy(_Frozen):
    id: Key
    version: str = Field(min_length=1)
    name: str
    partnership: str
    document: str = Field(description="Title and date of the source document.")
    areas: tuple[Area, ...] = Field(min_length=1)
    nation: Nation = "ENG"
    time_zone: str = "Europe/London"
    close_of_business: time = time(17, 0)
    start_of_business: time = time(9, 0)
    subjects: tuple[Subject, ...] = Field(min_length=1)
    business_team: str = Field(description="The business team, in the policy's words.")
    business_team_source: Citation
    stages: tuple[Stage, ...] = Field(min_length=1)
    immediate_risk: ImmediateRisk
    acknowledgement: Acknowledgement
    reminder_every: WorkingDays
    forms: tuple[Form, ...] = ()
    readings: tuple[Reading, ...] = ()

    @field_validator("close_of_business", "start_of_business", mode="before")
    @classmethod
    def _clock_time(cls, value: object) -> object:
        # Unquoted 17:00 is the integer 1020 to YAML (base-60); refuse it
        # rather than read it as seconds past midnight.
        if isinstance(value, time):
            return value
        if not isinstance(value, str) or not re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", value.strip()):
            raise ValueError('expected a time of day as quoted text "HH:MM", e.g. "17:00"')
        return value.strip()

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        keys = [s.key for s in self.stages]
        if len(set(keys)) != len(keys):
            raise ValueError(f"stage keys must be unique, got {keys}")
        form_keys = {f.key for f in self.forms}
        for i, stage in enumerate(self.stages):
            wanted = [stage.form_required] + [n.form for n in stage.business_team]
            for form in wanted:
                if form is not None and form not in form_keys:
                    raise ValueError(
                        f"stages[{i}] ({stage.key}) names form {form!r}, "
                        f"which is not among the policy's forms {sorted(form_keys)}"
                    )
        for i, stage in enumerate(self.stages):
            anchor = stage.timescale_counts_from
            if anchor not in ("stage-start", "raise", *keys[:i]):
                raise ValueError(
                    f"stages[{i}] ({stage.key}).timescale_counts_from is {anchor!r}: one of "
                    f"'stage-start', 'raise' or an earlier stage's key {keys[:i]}"
                )
            if anchor != "stage-start" and stage.timescale_counts_from_source is None:
                raise ValueError(
                    f"stages[{i}] ({stage.key}) counts its timescale from {anchor!r}: cite the "
                    "sentence that says so in timescale_counts_from_source"
                )
            for feedback in stage.outcome_to:
                for key in feedback.stages:
                    if key not in keys[:i]:
                        raise ValueError(
                            f"stages[{i}] ({stage.key}).outcome_to names {key!r}, which is not "
                            f"an earlier stage; earlier stages are {keys[:i]}"
                        )
            for route in stage.may_escalate_directly_to:
                if route.to not in keys[i + 2 :]:
                    raise ValueError(
                        f"stages[{i}] ({stage.key}).may_escalate_directly_to names "
                        f"{route.to!r}, which is not a stage after the next; "
                        f"those are {keys[i + 2 :]}"
                    )
            entry = stage.enter_within
            if entry is not None and i == 0:
                raise ValueError(
                    f"stages[0] ({stage.key}) cannot have enter_within: cases start there"
                )
            if entry is not None and entry.counts_from not in ("raise", *keys[:i]):
                raise ValueError(
                    f"stages[{i}] ({stage.key}).enter_within counts from {entry.counts_from!r}: "
                    f"one of 'raise' or an earlier stage's key {keys[:i]}"
                )
            if stage.form_due is not None and stage.form_required is None:
                raise ValueError(
                    f"stages[{i}] ({stage.key}) has form_due but no form_required: "
                    "name the form the stage needs"
                )
        for i, stage in enumerate(self.stages):
            for owner in stage.owners:
                if owner.subject is not None and owner.subject not in self.subjects:
                    raise ValueError(
                        f"stages[{i}] ({stage.key}) has an owner for {owner.subject!r} cases, "
                        f"but the policy covers only {list(self.subjects)}"
                    )
        for key in self.immediate_risk.may_start_at:
            if key not in keys[1:]:
                raise ValueError(
                    f"immediate_risk.may_start_at names {key!r}, not a stage after the first; "
                    f"those are {keys[1:]}"
                )
        if self.start_of_business >= self.close_of_business:
            raise ValueError("start_of_business must be before close_of_business")
        area_keys = {a.key for a in self.areas}
        for contact in self.immediate_risk.urgent_contacts:
            if contact.area is not None and contact.area not in area_keys:
                raise ValueError(
                    f"urgent contact {contact.role!r} names area {contact.area!r}, "
                    f"not one of {sorted(area_keys)}"
                )
        return self

    # --- Lookups the workflow and CLI share --------------------------------

    @property
    def final_stage(self) -> int:
        return len(self.stages) - 1

    def form(self, key: str) -> Form:
        for form in self.forms:
            if form.key == key:
                return form
        raise KeyError(key)

    def stage_index(self, key: str) -> int:
        for i, stage in enumerate(self.stages):
            if stage.key == key:
                return i
        raise KeyError(key)

    def may_start_at_stage(self, index: int) -> bool:
        """Whether an immediate-risk case may be raised at stage ``index``."""
        rule = self.immediate_risk
        if index == 0:
            return True
        if not rule.may_start_at_later_stage:
            return False
        return not rule.may_start_at or self.stages[index].key in rule.may_start_at

    def timescale_anchor(self, index: int) -> int | None:
        """The stage whose start the timescale of stage ``index`` counts from
        (-1: the raise; None: its own start)."""
        anchor = self.stages[index].timescale_counts_from
        if anchor == "stage-start":
            return None
        if anchor == "raise":
            return -1
        return self.stage_index(anchor)

    def entry_anchor(self, index: int) -> int | None:
        """For the stage after ``index``: the stage whose start its entry
        deadline counts from (-1: the raise; None: it has none)."""
        if index + 1 >= len(self.stages):
            return None
        entry = self.stages[index + 1].enter_within
        if entry is None:
            return None
        return -1 if entry.counts_from == "raise" else self.stage_index(entry.counts_from)

    def reminder_cadence(self, index: int) -> WorkingDays:
        return self.stages[index].reminder_every or self.reminder_every

    def calendar_spec(self) -> CalendarSpec:
        return CalendarSpec(
            nation=self.nation,
            time_zone=self.time_zone,
            close_of_business=self.close_of_business,
            start_of_business=self.start_of_business,
        )


class CalendarSpec(_Frozen):
    """Everything the working-day arithmetic needs, small enough to travel in
    an activity's input. Extra closure dates are the deployment's, not the
    policy's, and are added by the activity that computes deadlines."""

    nation: Nation = "ENG"
    time_zone: str = "Europe/London"
    close_of_business: time = time(17, 0)
    start_of_business: time = time(9, 0)
