"""What each action or passing deadline does to a case: pure functions.

The workflow owns time, history and side effects; this module owns the
policy's rules. Each transition mutates the ``CaseState`` it is given and
returns a ``Step``: the clock to plan (by the deadline activity), the events
to record once the new deadline is known, and the notices to send. Nothing
here does I/O or reads a clock, so every rule is unit-tested without a
server, and the workflow stays deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from policies.ladder import risk_override
from policies.model import NoTimescale, Policy, Stage
from workflows.forms import fill_form, reads_notes
from workflows.messages import (
    DEADLINE_HORIZON,
    NOTE_CHARACTERS_PER_CASE,
    NOTES_PER_STAGE,
    Acknowledge,
    Action,
    Actor,
    AddNote,
    Agency,
    CaseEvent,
    CaseState,
    Clock,
    ClockRequest,
    ConfirmOutcome,
    Escalate,
    EventType,
    FilledForm,
    FlagImmediateRisk,
    FormTask,
    Note,
    NoticeTemplate,
    RaiseDisagreement,
    Recipient,
    Reopen,
    Resolve,
    ShortenDeadline,
    StageEntry,
    SubmitForm,
    Withdraw,
)

PARTY_ROLES = ("practitioner", "manager")
# A case continues as new once its history is this long, whether or not the
# server has suggested it (a server suggests it by size or by its own count;
# the time-skipping test server never does). Short, because a worker that does
# not hold a case answers its query only after replaying the current run, at
# a millisecond or two a workflow task: a run of a few hundred events answers
# within 100 ms, and a case's state (the record lives in the register) is
# small to carry over.
CONTINUE_AS_NEW_AFTER_EVENTS = 150
# The bar before that one, still the bar of a run that began under it: well
# under the events at which Temporal warns.
EARLIER_CONTINUE_AS_NEW_AFTER_EVENTS = 4_000
# Temporal warns of a workflow run whose history passes this many events.
HISTORY_WARNING = 10_240


@dataclass
class PlannedEvent:
    type: EventType
    by: Actor | None = None
    detail: str | None = None
    # What the person gave as their reason (note, outcome, confirmation):
    # free text, kept on the case and sealed in the register, never in a notice.
    reason: str | None = None


@dataclass
class PlannedNotice:
    template: NoticeTemplate
    recipients: list[Recipient]
    forms: list[str] = field(default_factory=list)
    context: dict[str, str] = field(default_factory=dict)


@dataclass
class Step:
    clock: ClockRequest | None = None
    # Same stage, new deadline: keep the stage's start and acknowledgement.
    replan: bool = False
    reminder_after: datetime | None = None
    events: list[PlannedEvent] = field(default_factory=list)
    notices: list[PlannedNotice] = field(default_factory=list)


@dataclass(frozen=True)
class Features:
    """Rule changes that alter what a running case does. The workflow turns
    each on with ``workflow.patched`` so cases started before the change
    replay as they ran."""

    # Business-team records owed at the start of stages a case jumps over
    # (or starts beyond): Hillingdon stage 2.
    business_team_for_skipped_stages: bool = True
    # Immediate risk may be flagged while a resolved case awaits written
    # confirmation: the urgent contacts must hear of it whatever the case's
    # state (DESIGN.md section 4: "flag at raise or later").
    immediate_risk_while_awaiting_confirmation: bool = True
    # Only the raising side (or the business team, or an operator) may
    # withdraw the raising side's challenge; before, either agency could.
    withdraw_by_raising_side_only: bool = True
    # A case's notes are bounded (a number per stage, a total length) and a
    # shortened deadline lies within the horizon; before, a note was always
    # taken, and a far deadline could never be worked out.
    bounded_actions: bool = True


ALL_FEATURES = Features()


@dataclass(frozen=True)
class Wakeup:
    at: datetime
    kind: str  # acknowledgement | deadline-day | deadline | reminder | form

    def summary(self, state: CaseState) -> str:
        what = {
            "acknowledgement": "acknowledgement due",
            "deadline-day": "deadline-day reminder",
            "deadline": "deadline",
            "reminder": "reminder",
            "form": "form due",
        }[self.kind]
        if state.status == "awaiting-confirmation":
            what = f"written confirmation {what}"
        due = f" · due {state.clock.deadline_text}" if state.clock.deadline_text else ""
        return f"{what} · {state.stage_name}{due}"


class Refused(Exception):
    """An action the case cannot take now; the message is shown to the user."""


# --- Who is told ------------------------------------------------------------


def stage_owners(policy: Policy, state: CaseState, index: int) -> list[Recipient]:
    """The stage's owner on each side; one held for the whole partnership (an
    independent chair) is addressed once, not once per agency."""
    return unique(
        [
            owner_in(policy, state, index, agency)
            for agency in (state.raising_agency, state.receiving_agency)
        ]
    )


def owner_in(policy: Policy, state: CaseState, index: int, agency: Agency) -> Recipient:
    owner = policy.stages[index].owner_for(agency.kind, state.subject)
    if owner.held_for == "partnership":
        return Recipient(role=owner.role, title=owner.title, area=state.area)
    return Recipient(
        role=owner.role,
        title=owner.title,
        agency=agency.key,
        agency_kind=agency.kind,
        area=state.area,
    )


def receiving_owner(policy: Policy, state: CaseState) -> list[Recipient]:
    return [owner_in(policy, state, state.stage, state.receiving_agency)]


def raiser(state: CaseState) -> Recipient:
    # No agency on the recipient: the raiser is one person, not a role
    # that the directory resolves within an agency.
    actor = state.raised_by
    return Recipient(
        role="raiser",
        title=f"{actor.name} (raised the concern)",
        agency_kind=state.raising_agency.kind,
        email=actor.email,
        area=state.area,
    )


def business_team(policy: Policy, state: CaseState) -> Recipient:
    return Recipient(role="business-team", title=policy.business_team, area=state.area)


def urgent_contacts(policy: Policy, state: CaseState) -> list[Recipient]:
    return [
        Recipient(role=c.role, title=c.title, area=c.area or state.area)
        for c in policy.immediate_risk.urgent_contacts
        if c.area is None or state.area is None or c.area == state.area
    ]


def involved_so_far(policy: Policy, state: CaseState) -> list[Recipient]:
    """Everyone who has held the case: the owners of each stage it reached
    (not those it jumped over), the raiser, and the business team once the
    policy has brought it in."""
    reached = sorted(set(state.stages_reached) | {state.stage})
    out: list[Recipient] = []
    for index in reached:
        out += stage_owners(policy, state, index)
    out.append(raiser(state))
    if any(policy.stages[i].business_team for i in reached):
        out.append(business_team(policy, state))
    return unique(out)


def unique(recipients: list[Recipient]) -> list[Recipient]:
    seen: set[str] = set()
    out = []
    for r in recipients:
        if r.label not in seen:
            seen.add(r.label)
            out.append(r)
    return out


def _extra(policy: Policy, state: CaseState, stage: Stage, when: str) -> list[Recipient]:
    kinds = {state.raising_agency.kind, state.receiving_agency.kind}
    return [
        Recipient(role=n.role, title=n.title, area=state.area)
        for n in stage.extra_notices
        if n.when == when and (n.only_if_agency_kind is None or n.only_if_agency_kind in kinds)
    ]


def _business_team_records(
    policy: Policy, state: CaseState, stage: Stage, whens: tuple[str, ...], event: str
) -> list[PlannedNotice]:
    wanted = [n for n in stage.business_team if n.when in whens]
    if not wanted:
        return []
    forms = sorted({n.form for n in wanted if n.form})
    return [
        PlannedNotice(
            "business-team-record",
            [business_team(policy, state)],
            forms=forms,
            context={"event": event, "stage_key": stage.key},
        )
    ]


# --- Clock ----------------------------------------------------------------


def stage_clock(policy: Policy, state: CaseState, index: int, start: datetime) -> ClockRequest:
    stage = policy.stages[index]
    override = risk_override(policy, index, state.risk_from_stage)
    owed = stage.form_due is not None and stage.form_required in state.forms_due
    anchor = policy.timescale_anchor(index)
    deadline_from = None
    if anchor is not None:
        deadline_from = state.raised_at if anchor < 0 else state.stage_starts.get(anchor)
    entry_anchor = policy.entry_anchor(index)
    entry = policy.stages[index + 1].enter_within if entry_anchor is not None else None
    entry_from = None
    if entry_anchor is not None:
        entry_from = state.raised_at if entry_anchor < 0 else state.stage_starts.get(entry_anchor)
    return ClockRequest(
        entry_within=entry.within if entry is not None and entry_from is not None else None,
        entry_from=entry_from if entry is not None else None,
        deadline_from=deadline_from,
        form_within=stage.form_due.within if owed and stage.form_due else None,
        calendar=policy.calendar_spec(),
        start=start,
        timescale=stage.timescale,
        override=override,
        acknowledgement=policy.acknowledgement.timescale,
        reminder_every=policy.reminder_cadence(index),
        basis="immediate-risk" if override is not None else "policy",
    )


def next_wakeup(state: CaseState) -> Wakeup | None:
    """The next instant the case must act by itself, if any."""
    if not state.is_open:
        return None
    clock = state.clock
    candidates: list[Wakeup] = []
    if clock.acknowledgement_due and state.acknowledged_by is None and state.status == "open":
        candidates.append(Wakeup(clock.acknowledgement_due, "acknowledgement"))
    if clock.deadline_day_reminder_at and not clock.deadline_passed:
        candidates.append(Wakeup(clock.deadline_day_reminder_at, "deadline-day"))
    if clock.deadline and not clock.deadline_passed:
        candidates.append(Wakeup(clock.deadline, "deadline"))
    if clock.next_reminder_at:
        candidates.append(Wakeup(clock.next_reminder_at, "reminder"))
    if clock.form_chase and state.forms_due:
        candidates.append(Wakeup(clock.form_chase[0], "form"))
    order = {"acknowledgement": 0, "deadline-day": 1, "deadline": 2, "reminder": 3, "form": 4}
    return min(candidates, key=lambda w: (w.at, order[w.kind]), default=None)


# --- Starting and moving stages -------------------------------------------


def new_state(request: RaiseDisagreement, raised_at: datetime) -> CaseState:
    policy = request.policy
    stage = policy.stages[request.start_stage]
    return CaseState(
        reference=request.reference,
        policy_id=policy.id,
        policy_version=policy.version,
        partnership=policy.partnership,
        area=request.area,
        raising_agency=request.raising_agency,
        receiving_agency=request.receiving_agency,
        categories=list(request.categories),
        raised_by=request.raised_by,
        raised_at=raised_at,
        stage=request.start_stage,
        stage_key=stage.key,
        stage_name=stage.name,
        highest_stage_reached=request.start_stage,
        stages_reached=[request.start_stage],
        clock=Clock(started_at=raised_at),
        stage_starts={request.start_stage: raised_at},
        subject=request.subject,
        immediate_risk=request.immediate_risk,
        risk_from_stage=request.start_stage if request.immediate_risk else None,
        tallied=True,
    )


def raise_problems(request: RaiseDisagreement) -> list[str]:
    """What is wrong with a raise, before any workflow starts."""
    policy = request.policy
    problems = []
    if request.start_stage > policy.final_stage:
        problems.append(
            f"start_stage {request.start_stage} is past the final stage ({policy.final_stage})"
        )
    elif request.start_stage > 0 and not (
        request.immediate_risk and policy.immediate_risk.may_start_at_later_stage
    ):
        problems.append(
            f"the {policy.id} policy starts every case at {policy.stages[0].name!r}; "
            "only an immediate-risk case may start higher, and only where the policy allows it"
        )
    elif request.start_stage > 0 and not policy.may_start_at_stage(request.start_stage):
        allowed = [
            repr(policy.stages[i].name)
            for i in range(1, len(policy.stages))
            if policy.may_start_at_stage(i)
        ]
        problems.append(
            f"the {policy.id} policy lets an immediate-risk case start higher only at "
            f"{', '.join(allowed)}"
        )
    areas = {a.key for a in policy.areas}
    if request.area is not None and request.area not in areas:
        problems.append(f"unknown area {request.area!r}; the {policy.id} areas are {sorted(areas)}")
    if len(areas) > 1 and request.area is None:
        problems.append(f"the {policy.id} policy covers several areas; name one of {sorted(areas)}")
    if request.subject not in policy.subjects:
        problems.append(
            f"the {policy.id} policy covers {' and '.join(policy.subjects)}, not {request.subject}"
        )
    if request.raising_agency.key == request.receiving_agency.key:
        problems.append("a disagreement needs two different agencies")
    return problems


def raise_case(policy: Policy, state: CaseState, features: Features = ALL_FEATURES) -> Step:
    index = state.stage
    stage = policy.stages[index]
    step = Step(clock=stage_clock(policy, state, index, state.raised_at))
    step.events.append(PlannedEvent("raised", state.raised_by))
    if state.immediate_risk:
        step.events.append(PlannedEvent("immediate_risk", state.raised_by, "flagged when raised"))
    step.events.append(PlannedEvent("stage_started", state.raised_by, "raised at this stage"))
    if state.immediate_risk:
        step.notices.append(_immediate_risk_notice(policy, state))
    audience = stage_owners(policy, state, index) + [raiser(state)]
    audience += _extra(policy, state, stage, "stage_started")
    step.notices.append(
        PlannedNotice("stage-started", unique(audience), context={"reason": "raised"})
    )
    first = 0 if features.business_team_for_skipped_stages else index
    step.notices += _business_team_on_entry(policy, state, first, index)
    return step


def _business_team_on_entry(
    policy: Policy, state: CaseState, first: int, target: int
) -> list[PlannedNotice]:
    """The business-team record owed on entering ``target``, including those
    of the stages from ``first`` that the case jumped over: a jump does not
    skip what the team is owed (Hillingdon stage 2, 'who will keep a record
    of all ongoing disagreements')."""
    records: list[PlannedNotice] = []
    for index in range(first, target + 1):
        records += _business_team_records(
            policy, state, policy.stages[index], ("stage_started",), "stage started"
        )
    return _one_record(records)


def _one_record(records: list[PlannedNotice]) -> list[PlannedNotice]:
    """The business team's records owed by one event, as one notice."""
    if len(records) < 2:
        return records
    return [
        PlannedNotice(
            "business-team-record",
            records[0].recipients,
            forms=sorted({f for n in records for f in n.forms}),
            context=records[-1].context,
        )
    ]


def _enter_stage(
    policy: Policy,
    state: CaseState,
    target: int,
    start: datetime,
    how: str,
    by: Actor,
    reason: str,
    features: Features = ALL_FEATURES,
    given: str | None = None,
) -> Step:
    previous = state.stage
    left = policy.stages[previous]
    state.stage = target
    state.stage_key = policy.stages[target].key
    state.stage_name = policy.stages[target].name
    state.highest_stage_reached = max(state.highest_stage_reached, target)
    if target not in state.stages_reached:
        state.stages_reached.append(target)
    state.acknowledged_by = None
    state.status = "open"
    state.stage_starts.setdefault(target, start)
    stage = policy.stages[target]
    form_notices = _stage_form(policy, state, previous, target, start)
    step = Step(clock=stage_clock(policy, state, target, start))
    detail = f"from stage {previous} to stage {target}: {reason}"
    kind: EventType = "auto_escalated" if how == "auto" else "escalated"
    step.events.append(PlannedEvent(kind, by, detail, reason=given))
    step.events.append(PlannedEvent("stage_started", by, reason))
    if how == "auto":
        audience = involved_so_far(policy, state)
        template: NoticeTemplate = "escalated-automatically"
    else:
        audience = stage_owners(policy, state, previous) + stage_owners(policy, state, target)
        audience.append(raiser(state))
        template = "stage-started"
    audience += _extra(policy, state, left, "escalated_from")
    audience += _extra(policy, state, stage, "stage_started")
    step.notices.append(
        PlannedNotice(
            template, unique(audience), context={"reason": reason, "from_stage": str(previous)}
        )
    )
    records = _business_team_records(policy, state, left, ("escalated_from",), "escalated")
    first = previous + 1 if features.business_team_for_skipped_stages else target
    records += _business_team_on_entry(policy, state, first, target)
    step.notices += _one_record(records)
    step.notices += form_notices
    return step


def _form_addressee(policy: Policy, state: CaseState, target: int) -> list[Recipient]:
    """Who a stage's form is addressed to: the raising agency's owner of the
    stage (Staffordshire's senior manager), where the policy says so."""
    stage = policy.stages[target]
    if stage.form_due is None or stage.form_due.send_to != "raising-stage-owner":
        return []
    return [owner_in(policy, state, target, state.raising_agency)]


def _stage_form(
    policy: Policy, state: CaseState, previous: int, target: int, start: datetime
) -> list[PlannedNotice]:
    """On entering a stage that needs a form: send the form (if it came with
    the escalation) to the person it is addressed to; otherwise it is owed by
    the raising agency's owner of the stage before, asked for as soon as the
    stage's clock is known (``form_asks``)."""
    stage = policy.stages[target]
    key = stage.form_required
    if key is None or stage.form_due is None:
        return []
    if key in state.escalation_forms:
        state.forms_received.setdefault(key, start)
        addressee = _form_addressee(policy, state, target)
        if not addressee:
            return []
        return [
            PlannedNotice("form-sent", addressee, forms=[key], context={"stage_key": stage.key})
        ]
    owner = owner_in(policy, state, previous, state.raising_agency)
    state.forms_due[key] = FormTask(
        stage=target, due_from=owner, addressed_to=stage.form_due.addressed_to
    )
    return []


def form_asks(policy: Policy, state: CaseState) -> list[PlannedNotice]:
    """Once a clock is planned: ask for each form newly owed at the stage,
    with the date it is due (the clock's first form instant)."""
    chase = state.clock.form_chase
    owed = [
        (key, task)
        for key, task in state.forms_due.items()
        if task.stage == state.stage and task.due_at is None
    ]
    if not chase or not owed:
        return []
    for _, task in owed:
        task.due_at = chase[0]
    return _form_notices(policy, state, owed, overdue=False)


def form_chase_due(policy: Policy, state: CaseState) -> Step:
    """A form owed at this stage has fallen due, or is chased again, with the
    business team copied."""
    state.clock.form_chase.pop(0)
    owed = [(k, t) for k, t in state.forms_due.items() if t.stage == state.stage]
    return Step(notices=_form_notices(policy, state, owed, overdue=True))


def _form_notices(
    policy: Policy, state: CaseState, owed: list[tuple[str, FormTask]], overdue: bool
) -> list[PlannedNotice]:
    notices = []
    for key, task in owed:
        audience = [task.due_from, *_form_addressee(policy, state, state.stage)]
        if overdue:
            audience.append(business_team(policy, state))
        due = task.due_at
        notices.append(
            PlannedNotice(
                "form-due",
                unique(audience),
                forms=[key],
                context={
                    "form": policy.form(key).name,
                    "addressed_to": task.addressed_to,
                    "form_due": state.clock.form_due_text or "",
                    "overdue": "yes" if overdue else "no",
                    "due_at": due.isoformat() if due else "",
                    "part": task.part,
                },
            )
        )
    return notices


def deadline_passed(policy: Policy, state: CaseState, now: datetime) -> Step:
    """The current deadline has passed with nobody resolving the case."""
    deadline = state.clock.deadline or now
    state.clock.deadline_passed = True
    if state.status == "awaiting-confirmation":
        step = Step(reminder_after=deadline)
        step.notices.append(
            PlannedNotice(
                "written-confirmation-due",
                receiving_owner(policy, state) + [business_team(policy, state)],
                context={"overdue": "yes"},
            )
        )
        return step
    if state.stage < policy.final_stage:
        return _enter_stage(
            policy, state, state.stage + 1, deadline, "auto", _system(), "the deadline passed"
        )
    state.status = "overdue"
    step = Step(reminder_after=deadline)
    step.events.append(PlannedEvent("overdue", _system(), "the final stage's deadline passed"))
    step.notices.append(
        PlannedNotice(
            "overdue-final-stage",
            stage_owners(policy, state, state.stage) + [business_team(policy, state)],
        )
    )
    return step


def deadline_day(policy: Policy, state: CaseState) -> Step:
    state.clock.deadline_day_reminder_at = None
    if state.status == "awaiting-confirmation":
        audience = receiving_owner(policy, state)
        template: NoticeTemplate = "written-confirmation-due"
    else:
        audience = stage_owners(policy, state, state.stage)
        template = "deadline-day-reminder"
    return Step(notices=[PlannedNotice(template, audience)])


def acknowledgement_due(policy: Policy, state: CaseState) -> Step:
    state.clock.acknowledgement_due = None
    return Step(notices=[PlannedNotice("acknowledgement-due", receiving_owner(policy, state))])


def reminder_due(policy: Policy, state: CaseState, now: datetime) -> Step:
    """A periodic reminder: a stage without a timescale, an overdue final
    stage, or a written confirmation that is late."""
    step = Step(reminder_after=now)
    if state.status == "overdue":
        audience = stage_owners(policy, state, state.stage) + [business_team(policy, state)]
        step.notices.append(PlannedNotice("overdue-final-stage", audience))
    elif state.status == "awaiting-confirmation":
        audience = receiving_owner(policy, state) + [business_team(policy, state)]
        step.notices.append(
            PlannedNotice("written-confirmation-due", audience, context={"overdue": "yes"})
        )
    else:
        step.notices.append(
            PlannedNotice("stage-reminder", stage_owners(policy, state, state.stage))
        )
    return step


_ROLE_PHRASES = {
    "practitioner": "a practitioner",
    "manager": "a manager",
    "business-team": "the business team",
    "operator": "an operator",
    "system": "the escalation service",
}


def acted_by(actor: Actor) -> str:
    """Who acted, as a notice may say it: the kind of person, never a name
    or anything they wrote."""
    return _ROLE_PHRASES.get(actor.role, "a manager")


def _system() -> Actor:
    return Actor(id="system", name="Escalation service", role="system")


def _immediate_risk_notice(policy: Policy, state: CaseState) -> PlannedNotice:
    audience = urgent_contacts(policy, state) + stage_owners(policy, state, state.stage)
    audience += [business_team(policy, state), raiser(state)]
    return PlannedNotice("immediate-risk", unique(audience))


# --- Manager actions ----------------------------------------------------------


def risk_while_awaiting(state: CaseState, action: Action | None) -> bool:
    """Whether ``Features.immediate_risk_while_awaiting_confirmation`` matters."""
    return isinstance(action, FlagImmediateRisk) and state.status == "awaiting-confirmation"


def withdrawn_by_receiving_side(state: CaseState, action: Action | None) -> bool:
    """Whether ``Features.withdraw_by_raising_side_only`` matters."""
    return (
        isinstance(action, Withdraw)
        and action.by.role in PARTY_ROLES
        and action.by.agency != state.raising_agency.key
    )


def out_of_bounds(state: CaseState, action: Action | None, now: datetime) -> str | None:
    """Why this action would pass what a case keeps or can work out, if it
    would (``Features.bounded_actions``)."""
    if isinstance(action, AddNote):
        at_stage = state.notes_at_stage.get(state.stage, 0)
        if at_stage >= NOTES_PER_STAGE:
            return (
                f"this stage already has {NOTES_PER_STAGE} notes, the most a stage keeps; "
                "add to an earlier note's subject in the agencies' own records, or move "
                "the case on"
            )
        held = state.note_characters
        if held + len(action.text) > NOTE_CHARACTERS_PER_CASE:
            return (
                f"the case's notes would pass {NOTE_CHARACTERS_PER_CASE:,} characters, the "
                f"most a case keeps ({held:,} so far); keep longer records in the agencies' "
                "own systems and note where they are"
            )
    if (
        isinstance(action, ShortenDeadline)
        and action.deadline.tzinfo is not None
        and action.deadline > now + DEADLINE_HORIZON
    ):
        return (
            f"a deadline may be at most {DEADLINE_HORIZON.days} days ahead; a deadline "
            "may only be brought forward"
        )
    return None


def skips_stages(state: CaseState, action: Action | None) -> bool:
    """Whether carrying this out may pass over stages (a later start, or a
    jump), i.e. whether ``Features.business_team_for_skipped_stages`` matters."""
    if action is None:
        return state.stage > 0
    if isinstance(action, FlagImmediateRisk):
        return action.jump_to_stage is not None
    if isinstance(action, Escalate):
        return action.to_stage is not None and action.to_stage > state.stage + 1
    return False


def _require_within_bounds(
    state: CaseState, action: Action, now: datetime, features: Features
) -> None:
    if features.bounded_actions:
        reason = out_of_bounds(state, action, now)
        if reason is not None:
            raise Refused(reason)


def _require_open(state: CaseState, what: str) -> None:
    if not state.is_open:
        raise Refused(f"cannot {what}: the case is closed ({state.status})")


def _require_party(state: CaseState, by: Actor, what: str) -> None:
    if by.role in PARTY_ROLES and by.agency not in (
        state.raising_agency.key,
        state.receiving_agency.key,
    ):
        raise Refused(f"cannot {what}: only the two agencies, the business team or an operator may")


def check(
    policy: Policy,
    state: CaseState,
    action: Action,
    now: datetime,
    features: Features = ALL_FEATURES,
) -> None:
    """Raise ``Refused`` with the reason if the action cannot be taken now.
    Used by the update validators (which must not change state) and again
    when the action is applied, since the case may have moved in between."""
    if isinstance(action, AddNote):
        _require_open(state, "add a note")
        _require_party(state, action.by, "add a note")
        _require_within_bounds(state, action, now, features)
        return
    if isinstance(action, Withdraw):
        _require_open(state, "withdraw")
        _require_party(state, action.by, "withdraw")
        if (
            features.withdraw_by_raising_side_only
            and action.by.role in PARTY_ROLES
            and action.by.agency != state.raising_agency.key
        ):
            raise Refused(
                "cannot withdraw: only the agency that raised the concern (or the business "
                "team) may withdraw it; the receiving agency resolves it or escalates it"
            )
        return
    if isinstance(action, ConfirmOutcome):
        if state.status != "awaiting-confirmation":
            raise Refused(
                "cannot confirm the outcome: the case is not awaiting written confirmation "
                f"(it is {state.status})"
            )
        _require_party(state, action.by, "confirm the outcome")
        _require_confirmer(policy, state, action.by)
        return
    if isinstance(action, Reopen):
        if state.status != "awaiting-confirmation":
            raise Refused(
                "cannot reopen: only a case awaiting written confirmation of its outcome "
                f"can be reopened (it is {state.status})"
            )
        _require_party(state, action.by, "reopen the case")
        return
    if isinstance(action, SubmitForm):
        _require_open(state, "send the form")
        _require_party(state, action.by, "send the form")
        owed = [k for k, t in state.forms_due.items() if t.stage == state.stage]
        if not owed:
            raise Refused(f"no form is owed at {policy.stages[state.stage].name}")
        task = state.forms_due[owed[0]]
        if task.part == "resolution":
            missing = _missing_resolution_fields(policy, owed[0], action.form)
        else:
            missing = missing_form_fields(policy, state.stage, action.form)
        if missing:
            raise Refused(
                f"the {policy.form(owed[0]).name} is missing {', '.join(repr(m) for m in missing)}"
            )
        return
    if state.status == "awaiting-confirmation" and not (
        isinstance(action, FlagImmediateRisk)
        and action.jump_to_stage is None
        and features.immediate_risk_while_awaiting_confirmation
    ):
        raise Refused(
            "the case is resolved and awaits written confirmation of the outcome; "
            "confirm it, reopen it (no real agreement) or withdraw"
        )
    _require_open(state, _verb(action))
    _require_party(state, action.by, _verb(action))
    if isinstance(action, Acknowledge):
        if state.acknowledged_by is not None:
            raise Refused(f"already acknowledged at this stage by {state.acknowledged_by.name}")
        if action.by.role in PARTY_ROLES and action.by.agency == state.raising_agency.key:
            raise Refused("only the receiving agency acknowledges the concern")
    elif isinstance(action, Escalate):
        target = escalation_target(policy, state, action)
        missing = missing_form_fields(policy, target, action.form)
        if missing:
            form = policy.form(policy.stages[target].form_required or "")
            raise Refused(
                f"escalating to {policy.stages[target].name} needs the {form.name}: "
                f"missing {', '.join(repr(m) for m in missing)}"
            )
    elif isinstance(action, FlagImmediateRisk):
        if action.jump_to_stage is not None:
            _jump_target(policy, state, action.jump_to_stage)
        elif state.immediate_risk:
            raise Refused("immediate risk is already flagged on this case")
    elif isinstance(action, ShortenDeadline):
        if state.status == "overdue":
            raise Refused("the final stage's deadline has already passed")
        if action.deadline.tzinfo is None:
            raise Refused("the new deadline needs a time zone")
        if action.deadline <= now:
            raise Refused("the new deadline must be in the future")
        _require_within_bounds(state, action, now, features)
        current = state.clock.deadline
        if current is not None and action.deadline >= current:
            raise Refused(
                f"a deadline may only be shortened, never lengthened: the current deadline is "
                f"{state.clock.deadline_text or current.isoformat()}"
            )


def _require_confirmer(policy: Policy, state: CaseState, by: Actor) -> None:
    """The written confirmation comes from whom the policy names (an
    operator may record it on their behalf)."""
    rule = policy.stages[state.stage].written_confirmation
    if rule is None or rule.by == "either-party" or by.role == "operator":
        return
    party = by.role in PARTY_ROLES
    allowed = {
        "either-manager": party and by.role == "manager",
        "receiving-side": party and by.agency == state.receiving_agency.key,
        "receiving-manager": by.role == "manager" and by.agency == state.receiving_agency.key,
    }[rule.by]
    if not allowed:
        who = {
            "either-manager": "a manager of either agency",
            "receiving-side": "the receiving agency",
            "receiving-manager": "the receiving agency's manager",
        }[rule.by]
        raise Refused(
            f"cannot confirm the outcome: at {policy.stages[state.stage].name} the policy "
            f"says {who} confirms it in writing ({rule.source})"
        )


def _verb(action: Action) -> str:
    return {
        Acknowledge: "acknowledge",
        Resolve: "resolve",
        Escalate: "escalate",
        FlagImmediateRisk: "flag immediate risk",
        ShortenDeadline: "shorten the deadline",
    }.get(type(action), "act")


def _jump_target(policy: Policy, state: CaseState, target: int) -> int:
    if not policy.immediate_risk.may_jump_to_later_stage:
        raise Refused(f"the {policy.id} policy does not allow a jump to a later stage")
    if target <= state.stage or target > policy.final_stage:
        raise Refused(
            f"stage {target} is not a later stage of this ladder "
            f"(now at stage {state.stage}, final stage {policy.final_stage})"
        )
    return target


def escalation_target(policy: Policy, state: CaseState, action: Escalate) -> int:
    if action.to_stage is not None and action.to_stage <= state.stage:
        raise Refused(
            f"stage {action.to_stage} is not a later stage than the current one "
            f"(stage {state.stage}); escalation only moves up the ladder"
        )
    if action.to_stage is not None and action.to_stage != state.stage + 1:
        routes = {
            policy.stage_index(r.to) for r in policy.stages[state.stage].may_escalate_directly_to
        }
        if action.to_stage in routes:
            return action.to_stage
        if not state.immediate_risk:
            raise Refused("only a case at immediate risk may jump past the next stage")
        return _jump_target(policy, state, action.to_stage)
    if state.stage >= policy.final_stage:
        raise Refused(
            f"already at the final stage ({policy.stages[state.stage].name}); "
            "there is nowhere higher"
        )
    return state.stage + 1


def _missing_resolution_fields(policy: Policy, key: str, form: dict[str, str]) -> list[str]:
    return [
        f.label
        for f in policy.form(key).fields_from("resolution")
        if f.required and not form.get(f.key, "").strip()
    ]


def missing_form_fields(policy: Policy, target: int, form: dict[str, str]) -> list[str]:
    key = policy.stages[target].form_required
    if key is None:
        return []
    return [
        f.label
        for f in policy.form(key).fields_from("escalation")
        if f.required and not form.get(f.key, "").strip()
    ]


def apply(
    policy: Policy,
    state: CaseState,
    action: Action,
    now: datetime,
    features: Features = ALL_FEATURES,
) -> Step:
    """Carry out an action that ``check`` accepts (it is checked again here)."""
    check(policy, state, action, now, features)
    if isinstance(action, Acknowledge):
        state.acknowledged_by = action.by
        state.clock.acknowledgement_due = None
        return Step(events=[PlannedEvent("acknowledged", action.by, reason=action.note)])
    if isinstance(action, AddNote):
        # The note's event is the step's only one: it takes the next number.
        state.notes.append(Note(at=now, by=action.by, text=action.text, seq=state.next_seq))
        state.notes_at_stage[state.stage] = state.notes_at_stage.get(state.stage, 0) + 1
        state.note_characters += len(action.text)
        return Step(events=[PlannedEvent("note", action.by, reason=action.text)])
    if isinstance(action, Resolve):
        return _resolve(policy, state, action, now)
    if isinstance(action, ConfirmOutcome):
        state.status = "resolved"
        state.closed_at = now
        step = _closing_step(policy, state, "outcome-confirmed", action.by)
        step.events.insert(0, PlannedEvent("confirmed", action.by, reason=action.confirmation))
        return step
    if isinstance(action, Reopen):
        return _reopen(policy, state, action, now)
    if isinstance(action, SubmitForm):
        return _form_received(policy, state, action, now)
    if isinstance(action, Withdraw):
        state.status = "withdrawn"
        state.closed_at = now
        step = _closing_step(policy, state, "withdrawn", action.by)
        step.notices[0].recipients = involved_so_far(policy, state)
        step.events.insert(0, PlannedEvent("withdrawn", action.by, reason=action.reason))
        return step
    if isinstance(action, Escalate):
        target = escalation_target(policy, state, action)
        key = policy.stages[target].form_required
        if key is not None:
            state.escalation_forms[key] = dict(action.form)
        return _enter_stage(
            policy,
            state,
            target,
            now,
            "manual",
            action.by,
            f"escalated by {acted_by(action.by)}",
            features,
            given=action.reason,
        )
    if isinstance(action, FlagImmediateRisk):
        return _flag_risk(policy, state, action, now, features)
    assert isinstance(action, ShortenDeadline)
    step = Step(
        clock=ClockRequest(
            calendar=policy.calendar_spec(),
            start=now,
            timescale=NoTimescale(source="shortened by a manager"),
            fixed_deadline=action.deadline,
            basis="shortened",
        ),
        replan=True,
    )
    step.events.append(PlannedEvent("deadline_shortened", action.by, reason=action.reason))
    step.notices.append(
        PlannedNotice(
            "deadline-shortened",
            unique(stage_owners(policy, state, state.stage) + [raiser(state)]),
        )
    )
    return step


def _told_of_outcome(policy: Policy, state: CaseState, index: int) -> list[Recipient]:
    """The owners of the earlier stages the policy says hear an outcome
    reached at stage ``index`` (only those the case reached)."""
    out: list[Recipient] = []
    for feedback in policy.stages[index].outcome_to:
        for key in feedback.stages:
            earlier = policy.stage_index(key)
            if earlier in state.stages_reached:
                out += stage_owners(policy, state, earlier)
    return out


def _resolve(policy: Policy, state: CaseState, action: Resolve, now: datetime) -> Step:
    stage = policy.stages[state.stage]
    state.outcome = action.outcome
    state.resolved_at = now
    state.resolution_form = dict(action.form)
    records = _business_team_records(policy, state, stage, ("resolved", "outcome"), "resolved")
    audience = stage_owners(policy, state, state.stage) + [raiser(state)]
    audience += _told_of_outcome(policy, state, state.stage)
    confirm = stage.written_confirmation
    if confirm is not None:
        state.status = "awaiting-confirmation"
        # "within 2 working days of the matter being formally escalated":
        # some confirmations count from the stage's start, not the outcome.
        start = state.clock.started_at if confirm.counts_from == "stage-start" else now
        timed = confirm.within is not None
        asked = _ask_resolution_fields(policy, state, action)
        step = Step(
            clock=ClockRequest(
                calendar=policy.calendar_spec(),
                start=start,
                timescale=confirm.within or NoTimescale(source=confirm.source),
                reminder_every=None if timed else policy.reminder_cadence(state.stage),
                basis="confirmation",
                reminders_from=now if start != now else None,
                form_within=(confirm.within or policy.reminder_cadence(state.stage))
                if asked
                else None,
            )
        )
        detail = "written confirmation due" if timed else "written confirmation due (no timescale)"
        step.events.append(PlannedEvent("resolved", action.by, detail, reason=action.outcome))
        step.notices.append(
            PlannedNotice(
                "resolved",
                unique(audience),
                context={"confirmation": "due" if timed else "due-no-timescale"},
            )
        )
        step.notices += records
        return step
    state.status = "resolved"
    state.closed_at = now
    step = _closing_step(policy, state, "resolved", action.by)
    step.notices[0].recipients = unique(audience)
    step.events.insert(0, PlannedEvent("resolved", action.by, reason=action.outcome))
    step.notices += records
    return step


def _ask_resolution_fields(policy: Policy, state: CaseState, action: Resolve) -> bool:
    """Where the business team's form asks what the resolution agreed (Merton's
    pro-forma: "If yes, what was agreed?", the learning) and the resolution
    left it blank, ask the receiving side for it while the outcome awaits
    written confirmation."""
    asked = False
    for notice in policy.stages[state.stage].business_team:
        if notice.when != "resolved" or not notice.form or not notice.asks_resolution_fields:
            continue
        if not _missing_resolution_fields(policy, notice.form, action.form):
            continue
        owner = receiving_owner(policy, state)[0]
        state.forms_due[notice.form] = FormTask(
            stage=state.stage,
            due_from=owner,
            addressed_to=policy.form(notice.form).sent_to,
            part="resolution",
        )
        asked = True
    return asked


def _reopen(policy: Policy, state: CaseState, action: Reopen, now: datetime) -> Step:
    """No real agreement after all: the case is open again at its stage, its
    timescale counted afresh from now, and may be escalated."""
    state.status = "open"
    state.outcome = None
    state.resolved_at = None
    state.resolution_form = {}
    step = Step(clock=stage_clock(policy, state, state.stage, now))
    step.events.append(
        PlannedEvent("reopened", action.by, "no real agreement", reason=action.reason)
    )
    audience = stage_owners(policy, state, state.stage) + [raiser(state)]
    step.notices.append(
        PlannedNotice("stage-started", unique(audience), context={"reason": "reopened"})
    )
    return step


def _form_received(policy: Policy, state: CaseState, action: SubmitForm, now: datetime) -> Step:
    key = next(k for k, t in state.forms_due.items() if t.stage == state.stage)
    task = state.forms_due.pop(key)
    if task.part == "resolution":
        state.resolution_form.update(action.form)
    else:
        state.escalation_forms[key] = dict(action.form)
    state.forms_received[key] = now
    state.clock.form_chase = []
    step = Step(events=[PlannedEvent("form_received", action.by, policy.form(key).name)])
    stage = policy.stages[state.stage]
    addressee = _form_addressee(policy, state, state.stage)
    if addressee:
        step.notices.append(
            PlannedNotice("form-sent", addressee, forms=[key], context={"stage_key": stage.key})
        )
    # The business team's record of the stage, owed on entry, carries the
    # form now that it has arrived.
    wanted = [n for n in stage.business_team if n.form == key]
    if wanted:
        step.notices.append(
            PlannedNotice(
                "business-team-record",
                [business_team(policy, state)],
                forms=[key],
                context={"event": "form received", "stage_key": stage.key},
            )
        )
    return step


def _closing_step(policy: Policy, state: CaseState, template: NoticeTemplate, by: Actor) -> Step:
    state.clock = Clock(started_at=state.closed_at or state.clock.started_at)
    audience = stage_owners(policy, state, state.stage) + [raiser(state)]
    step = Step(events=[PlannedEvent("closed", by)])
    step.notices.append(PlannedNotice(template, unique(audience)))
    return step


def _flag_risk(
    policy: Policy,
    state: CaseState,
    action: FlagImmediateRisk,
    now: datetime,
    features: Features = ALL_FEATURES,
) -> Step:
    first_flag = not state.immediate_risk
    flagged_at = state.stage
    state.immediate_risk = True
    if action.jump_to_stage is not None:
        target = _jump_target(policy, state, action.jump_to_stage)
        state.risk_from_stage = target
        step = _enter_stage(
            policy,
            state,
            target,
            now,
            "jump",
            action.by,
            "jumped for immediate risk",
            features,
            given=action.reason,
        )
    else:
        state.risk_from_stage = state.stage
        override = risk_override(policy, state.stage, state.risk_from_stage)
        step = Step()
        # Once the deadline has passed (an overdue final stage) there is
        # nothing to bring forward: "whichever is less" is the passed one.
        # Awaiting written confirmation, the clock is the confirmation's:
        # the stage's timescale no longer runs, so nothing to bring forward.
        if override is not None and state.status == "open" and not state.clock.deadline_passed:
            step.clock = ClockRequest(
                calendar=policy.calendar_spec(),
                start=now,
                timescale=NoTimescale(source="immediate risk"),
                override=override,
                not_later_than=state.clock.deadline,
                basis="immediate-risk",
            )
            step.replan = True
    step.events.insert(
        0,
        PlannedEvent(
            "immediate_risk", action.by, f"flagged at stage {flagged_at}", reason=action.reason
        ),
    )
    if first_flag or action.jump_to_stage is not None:
        step.notices.insert(0, _immediate_risk_notice(policy, state))
    return step


# --- What the Temporal UI shows ----------------------------------------------


def current_details(state: CaseState) -> str:
    """Markdown for the Temporal UI's current details."""
    lines = [f"**{state.stage_name}** · {state.status}"]
    if state.is_open and state.clock.deadline_text and not state.clock.deadline_passed:
        label = "written confirmation due" if state.status == "awaiting-confirmation" else "due"
        lines.append(f"{label} {state.clock.deadline_text} ({state.clock.deadline_basis})")
    elif state.is_open and state.clock.deadline is None:
        lines.append("no written timescale: reminders instead of escalation")
    if state.immediate_risk:
        lines.append("**immediate risk of significant harm**")
    lines.append(f"{state.raising_agency.name} → {state.receiving_agency.name}")
    return "  \n".join(lines)


# --- Forms -----------------------------------------------------------


def filled_forms(
    policy: Policy,
    state: CaseState,
    request: RaiseDisagreement,
    keys: list[str],
    now: datetime,
    for_email: bool = False,
) -> list[FilledForm]:
    """The policy's forms named by a business-team notice, filled from the
    case (``workflows.forms``): pure, so the workflow may call it."""
    known = {f.key for f in policy.forms}
    return [
        fill_form(policy, state, request, key, now, for_email=for_email)
        for key in keys
        if key in known
    ]


# --- What the case keeps ------------------------------------------------------


def tally(state: CaseState, event: CaseEvent) -> None:
    """Keep what the case's forms read from an event just recorded, so the
    event itself may go once the register holds it."""
    if (
        state.business_team_told_at is None
        and event.type in ("notice", "reminder")
        and "business-team" in event.to
    ):
        state.business_team_told_at = event.at
    if event.type in ("escalated", "auto_escalated") and event.stage not in state.stage_entries:
        how = "escalated" if event.type == "escalated" else "auto_escalated"
        state.stage_entries[event.stage] = StageEntry(how=how, at=event.at, by=event.by)


def tally_kept(state: CaseState) -> None:
    """Work out the tallies of a state carried over from a run that kept
    every event and note, and number its notes by their events (one note
    event for each note, in order)."""
    if state.tallied:
        return
    note_events = [e for e in state.events if e.type == "note"]
    for event in state.events:
        tally(state, event)
    for event in note_events:
        state.notes_at_stage[event.stage] = state.notes_at_stage.get(event.stage, 0) + 1
    state.note_characters = sum(len(n.text) for n in state.notes)
    for note, event in zip(state.notes, note_events, strict=False):
        if note.seq is None:
            note.seq = event.seq
    state.tallied = True


def let_go_recorded(policy: Policy, state: CaseState) -> None:
    """Drop the events and notes the register has confirmed: it holds them,
    and the case runs on its tallies. Notes stay where one of the policy's
    forms is filled with them."""
    recorded = state.recorded_seq
    state.events = [e for e in state.events if e.seq > recorded]
    if not reads_notes(policy):
        state.notes = [n for n in state.notes if n.seq is None or n.seq > recorded]
