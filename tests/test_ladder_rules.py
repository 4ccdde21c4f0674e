"""The ladder's rules (``workflows.ladder``) as pure functions, no Temporal.

Each test builds a case with ``ladder.new_state`` + ``ladder.raise_case`` and
drives it with the transitions the workflow calls. The transitions never
compute deadlines (the workflow asks the deadline activity for that), so
where a rule depends on the current deadline the test sets ``state.clock``
itself, as the activity would have.

DESIGN.md §4 (behaviour) and §6 (the five ladders) are the specification.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from policies.loader import get_policy
from policies.model import Policy, SameWorkingDay, WorkingDays
from tests.conftest import owner_labels
from workflows import ladder
from workflows.ladder import PlannedNotice, Refused, Step
from workflows.messages import (
    Acknowledge,
    Action,
    Actor,
    AddNote,
    Agency,
    CaseState,
    ChildDetails,
    Clock,
    ConfirmOutcome,
    Escalate,
    FlagImmediateRisk,
    RaiseDisagreement,
    Reopen,
    Resolve,
    ShortenDeadline,
    SubmitForm,
    Withdraw,
)

# Monday 1 March 2027, 10:00 UTC (GMT in London): a plain working week.
RAISED = datetime(2027, 3, 1, 10, 0, tzinfo=UTC)


def at(days: float = 0, hours: float = 0) -> datetime:
    return RAISED + timedelta(days=days, hours=hours)


# --- Building cases -----------------------------------------------------------

_FIRST_AREA = object()


def agency(area: str, kind: str) -> Agency:
    return Agency(key=f"{area}-{kind}", name=f"{area} {kind}", kind=kind)


def make_request(
    policy_id: str,
    *,
    immediate_risk: bool = False,
    start_stage: int = 0,
    area: str | None | object = _FIRST_AREA,
    raising_kind: str = "health",
    receiving_kind: str = "childrens-social-care",
    child: ChildDetails | None = None,
    summary: str = "Test disagreement",
) -> RaiseDisagreement:
    """Health (raising) disagrees with children's social care by default,
    in the policy's first area."""
    policy = get_policy(policy_id)
    first = policy.areas[0].key
    case_area = first if area is _FIRST_AREA else area
    prefix = case_area if isinstance(case_area, str) else first
    raising = agency(prefix, raising_kind)
    return RaiseDisagreement(
        reference=f"T-{uuid.uuid4().hex[:10].upper()}",
        policy=policy,
        area=case_area,
        raised_by=Actor(
            id="raiser-1",
            name="Raising practitioner",
            email="raiser@example.org",
            agency=raising.key,
            role="practitioner",
        ),
        raising_agency=raising,
        receiving_agency=agency(prefix, receiving_kind),
        categories=["thresholds"],
        summary=summary,
        child=child,
        immediate_risk=immediate_risk,
        start_stage=start_stage,
        raised_at=RAISED,
    )


def start(policy_id: str, **kwargs: object) -> tuple[Policy, CaseState, Step]:
    request = make_request(policy_id, **kwargs)  # type: ignore[arg-type]
    assert ladder.raise_problems(request) == []
    state = ladder.new_state(request, RAISED)
    return request.policy, state, ladder.raise_case(request.policy, state)


def with_deadline(
    state: CaseState,
    deadline: datetime | None,
    *,
    started: datetime | None = None,
    acknowledgement_due: datetime | None = None,
    next_reminder_at: datetime | None = None,
) -> None:
    """What the deadline activity would have planned for the current stage."""
    state.clock = Clock(
        started_at=started or RAISED,
        deadline=deadline,
        deadline_text=None if deadline is None else f"{deadline:%a %d %b %Y %H:%M}",
        acknowledgement_due=acknowledgement_due,
        next_reminder_at=next_reminder_at,
    )


def receiving_practitioner(state: CaseState) -> Actor:
    return Actor(
        id="prac-receiving",
        name="Receiving practitioner",
        agency=state.receiving_agency.key,
        role="practitioner",
    )


def manager(state: CaseState, side: str = "receiving") -> Actor:
    agency_key = (state.receiving_agency if side == "receiving" else state.raising_agency).key
    return Actor(
        id=f"mgr-{side}", name=f"{side.title()} manager", agency=agency_key, role="manager"
    )


def raiser_actor(state: CaseState) -> Actor:
    return state.raised_by


OUTSIDER = Actor(
    id="outsider", name="Police officer", agency="elsewhere-police", role="practitioner"
)
BUSINESS = Actor(id="bt-1", name="Business team officer", role="business-team")
OPERATOR = Actor()  # a Temporal operator, as a signal from the UI sends it


def full_escalation_form(policy: Policy) -> dict[str, str]:
    return {f.key: "filled in" for form in policy.forms for f in form.fields_from("escalation")}


def escalate(policy: Policy, state: CaseState, now: datetime, **kwargs: object) -> Step:
    kwargs.setdefault("form", full_escalation_form(policy))
    return ladder.apply(
        policy,
        state,
        Escalate(by=manager(state), reason="Not resolved", **kwargs),
        now,
    )


def case_at_stage(policy_id: str, index: int, **kwargs: object) -> tuple[Policy, CaseState]:
    """A case escalated by managers (one stage a day) up to ``index``, with a
    fresh 5-day deadline planned at that stage."""
    policy, state, _ = start(policy_id, **kwargs)
    day = 0
    while state.stage < index:
        day += 1
        escalate(policy, state, at(day))
    has_deadline = policy.stages[state.stage].timescale.kind != "none"
    with_deadline(state, at(day + 7) if has_deadline else None, started=at(day))
    return policy, state


def resolve(policy: Policy, state: CaseState, now: datetime, by: Actor | None = None) -> Step:
    return ladder.apply(
        policy, state, Resolve(by=by or manager(state), outcome="Agreed a plan"), now
    )


# --- Reading steps --------------------------------------------------------------


def templates(step: Step) -> list[str]:
    return [n.template for n in step.notices]


def notice(step: Step, template: str) -> PlannedNotice:
    found = [n for n in step.notices if n.template == template]
    assert len(found) == 1, f"expected one {template!r} notice, got {templates(step)}"
    return found[0]


def labels(planned: PlannedNotice) -> set[str]:
    return {r.label for r in planned.recipients}


def event_types(step: Step) -> list[str]:
    return [e.type for e in step.events]


def owners(policy: Policy, state: CaseState, index: int) -> set[str]:
    return set(owner_labels(policy, (state.raising_agency, state.receiving_agency), index))


def refusal(policy: Policy, state: CaseState, action: Action, now: datetime) -> str:
    before = state.model_dump()
    with pytest.raises(Refused) as caught:
        ladder.check(policy, state, action, now)
    with pytest.raises(Refused):
        ladder.apply(policy, state, action, now)
    assert state.model_dump() == before, "a refused action must not change the case"
    return str(caught.value)


# --- Raise ----------------------------------------------------------------------


def test_raise_records_raised_then_stage_started_and_plans_the_first_stage() -> None:
    policy, state, step = start("merton")
    assert event_types(step) == ["raised", "stage_started"]
    assert all(e.by == state.raised_by for e in step.events)
    assert state.stage == 0 and state.stage_key == "practitioners"
    assert state.status == "open" and state.immediate_risk is False
    clock = step.clock
    assert clock is not None
    assert clock.start == RAISED
    assert clock.timescale == policy.stages[0].timescale
    assert clock.override is None and clock.basis == "policy"
    assert clock.acknowledgement == policy.acknowledgement.timescale
    assert clock.reminder_every == policy.reminder_every
    assert step.replan is False


def test_raise_notifies_both_agencies_stage_owners_and_the_raiser() -> None:
    policy, state, step = start("merton")
    assert templates(step) == ["stage-started"]
    started = notice(step, "stage-started")
    assert labels(started) == owners(policy, state, 0) | {"raiser"}
    raiser = next(r for r in started.recipients if r.role == "raiser")
    assert raiser.email == "raiser@example.org" and raiser.agency is None


def test_raise_with_immediate_risk_records_the_flag_and_uses_the_override() -> None:
    policy, state, step = start("merton", immediate_risk=True)
    assert event_types(step) == ["raised", "immediate_risk", "stage_started"]
    assert state.immediate_risk and state.risk_from_stage == 0
    assert step.clock is not None
    assert isinstance(step.clock.override, WorkingDays) and step.clock.override.days == 2
    assert step.clock.basis == "immediate-risk"


def test_merton_immediate_risk_at_raise_tells_the_mscp_executives_at_once() -> None:
    policy, state, step = start("merton", immediate_risk=True)
    assert templates(step)[0] == "immediate-risk"
    urgent = notice(step, "immediate-risk")
    assert "mscp-executive" in labels(urgent)
    assert owners(policy, state, 0) | {"raiser", "business-team"} <= labels(urgent)


def test_cheshire_urgent_contact_is_only_the_cases_area_front_door() -> None:
    _, _, step = start("cheshire", immediate_risk=True, area="halton")
    urgent = labels(notice(step, "immediate-risk"))
    assert "halton-icart" in urgent
    assert not urgent & {
        "cheshire-west-iart",
        "cheshire-east-consultation-service",
        "warrington-mars",
    }
    front_door = next(
        r for r in notice(step, "immediate-risk").recipients if r.role == "halton-icart"
    )
    assert front_door.area == "halton"


def test_raise_at_a_stage_without_business_team_duties_sends_no_record() -> None:
    _, _, step = start("merton")
    assert "business-team-record" not in templates(step)


def test_hillingdon_stage_2_start_sends_a_business_team_record() -> None:
    # Raised at stage 2 (index 1) for immediate risk ...
    _, _, step = start("hillingdon", immediate_risk=True, start_stage=1)
    record = notice(step, "business-team-record")
    assert labels(record) == {"business-team"}
    assert record.forms == []
    assert record.context["stage_key"] == "supervisors"
    # ... or escalated there from stage 1.
    policy, state, _ = start("hillingdon")
    step = escalate(policy, state, at(1))
    assert notice(step, "business-team-record").context["stage_key"] == "supervisors"


def test_cheshire_step_3_start_sends_the_appendix_a_record() -> None:
    policy, state = case_at_stage("cheshire", 2)
    step = escalate(policy, state, at(5))
    record = notice(step, "business-team-record")
    assert record.forms == ["appendix-a"]
    assert labels(record) == {"business-team"}


# --- raise_problems -------------------------------------------------------------


def test_a_valid_raise_has_no_problems() -> None:
    for policy_id in ("merton", "staffordshire-stoke", "cheshire", "wirral", "hillingdon"):
        assert ladder.raise_problems(make_request(policy_id)) == []


def test_hillingdon_may_start_higher_for_immediate_risk_only() -> None:
    assert (
        ladder.raise_problems(make_request("hillingdon", immediate_risk=True, start_stage=2)) == []
    )
    problems = ladder.raise_problems(make_request("hillingdon", start_stage=2))
    assert len(problems) == 1 and "immediate-risk" in problems[0]


def test_merton_immediate_risk_may_start_at_the_line_managers_only() -> None:
    # §4.2.1: initial attempts are between the people who disagree, "unless
    # the child is at immediate risk".
    assert ladder.raise_problems(make_request("merton", immediate_risk=True, start_stage=1)) == []
    for stage in (2, 3):
        problems = ladder.raise_problems(
            make_request("merton", immediate_risk=True, start_stage=stage)
        )
        assert len(problems) == 1 and "'Stage 1: line managers'" in problems[0]
    problems = ladder.raise_problems(make_request("merton", start_stage=1))
    assert len(problems) == 1 and "only an immediate-risk case" in problems[0]


def test_a_start_past_the_final_stage_is_refused() -> None:
    problems = ladder.raise_problems(make_request("hillingdon", immediate_risk=True, start_stage=4))
    assert any("past the final stage" in p for p in problems)


def test_unknown_area_is_refused() -> None:
    problems = ladder.raise_problems(make_request("cheshire", area="manchester"))
    assert len(problems) == 1 and "unknown area 'manchester'" in problems[0]


def test_a_multi_area_policy_needs_an_area() -> None:
    for policy_id in ("cheshire", "staffordshire-stoke"):
        problems = ladder.raise_problems(make_request(policy_id, area=None))
        assert len(problems) == 1 and "several areas" in problems[0]
    # A single-area policy does not.
    assert ladder.raise_problems(make_request("merton", area=None)) == []


def test_the_same_agency_on_both_sides_is_refused() -> None:
    request = make_request("merton", raising_kind="health", receiving_kind="health")
    assert ladder.raise_problems(request) == ["a disagreement needs two different agencies"]


# --- Deadline passes -------------------------------------------------------------


def test_deadline_at_a_non_final_stage_escalates_automatically_from_the_old_deadline() -> None:
    policy, state, _ = start("merton")
    deadline = at(7, 7)
    with_deadline(state, deadline)
    state.acknowledged_by = manager(state)
    step = ladder.deadline_passed(policy, state, deadline + timedelta(seconds=3))
    assert (state.stage, state.stage_key, state.highest_stage_reached) == (1, "line-managers", 1)
    assert state.status == "open" and state.acknowledged_by is None
    assert step.clock is not None and step.clock.start == deadline
    assert step.clock.timescale == policy.stages[1].timescale
    assert step.replan is False
    assert event_types(step) == ["auto_escalated", "stage_started"]
    assert all(e.by is not None and e.by.role == "system" for e in step.events)
    assert "from stage 0 to stage 1" in (step.events[0].detail or "")


def test_auto_escalation_tells_everyone_involved_so_far() -> None:
    policy, state, _ = start("merton")
    with_deadline(state, at(7))
    step = ladder.deadline_passed(policy, state, at(7))
    told = labels(notice(step, "escalated-automatically"))
    # Owners of stages 0 and 1 in both agencies and the raiser, and the
    # business team, which Merton's stage 1 sends its pro-forma (Appendix 1).
    assert told == owners(policy, state, 0) | owners(policy, state, 1) | {"raiser", "business-team"}


def test_auto_escalation_into_merton_stage_3_adds_business_team_and_csc_assistant_director() -> (
    None
):
    policy, state = case_at_stage("merton", 2)
    step = ladder.deadline_passed(policy, state, at(9))
    assert state.stage == 3
    told = labels(notice(step, "escalated-automatically"))
    for index in range(4):
        assert owners(policy, state, index) <= told
    assert {"raiser", "business-team", "csc-assistant-director"} <= told
    # Stage 3 starts with a record for the business team (copied to MSCP).
    assert notice(step, "business-team-record").context["stage_key"] == "mscp-executive"
    # Each recipient is listed once.
    assert len(told) == len(notice(step, "escalated-automatically").recipients)


def test_auto_escalation_into_cheshire_step_3_sends_the_appendix_a_record() -> None:
    policy, state = case_at_stage("cheshire", 2)
    step = ladder.deadline_passed(policy, state, at(9))
    assert state.stage == 3
    assert notice(step, "business-team-record").forms == ["appendix-a"]
    assert "business-team" in labels(notice(step, "escalated-automatically"))


def test_deadline_at_the_final_stage_makes_the_case_overdue() -> None:
    policy, state = case_at_stage("merton", 4)
    deadline = state.clock.deadline
    assert deadline is not None
    step = ladder.deadline_passed(policy, state, deadline + timedelta(minutes=1))
    assert state.status == "overdue" and state.stage == 4
    assert state.clock.deadline_passed is True
    assert step.clock is None
    assert step.reminder_after == deadline
    assert event_types(step) == ["overdue"]
    overdue = notice(step, "overdue-final-stage")
    assert labels(overdue) == owners(policy, state, 4) | {"business-team"}


def test_an_overdue_final_stage_is_reminded_to_its_owners_and_the_business_team() -> None:
    policy, state = case_at_stage("cheshire", 3)
    ladder.deadline_passed(policy, state, at(20))
    step = ladder.reminder_due(policy, state, at(27))
    assert step.reminder_after == at(27)
    assert labels(notice(step, "overdue-final-stage")) == owners(policy, state, 3) | {
        "business-team"
    }


def test_staffordshire_stage_5_unresolved_goes_to_the_independent_professional_adviser() -> None:
    # Stage 5 ¶5: "Where a dispute remains unresolved despite the above
    # arrangements, it shall be referred to an independent professional adviser."
    policy, state = case_at_stage("staffordshire-stoke", 4)
    step = ladder.deadline_passed(policy, state, at(20))
    assert state.status == "open"
    assert state.stage_key == "independent-professional-adviser"
    assert event_types(step) == ["auto_escalated", "stage_started"]
    assert step.clock is not None and step.clock.timescale.kind == "none"
    assert "business-team" in labels(notice(step, "business-team-record"))


def test_written_confirmation_deadline_passing_chases_the_receiving_side() -> None:
    policy, state = case_at_stage("merton", 2)
    resolve(policy, state, at(3))
    with_deadline(state, at(10), started=at(3))
    step = ladder.deadline_passed(policy, state, at(10))
    assert state.status == "awaiting-confirmation" and state.stage == 2
    assert step.clock is None and step.reminder_after == at(10)
    due = notice(step, "written-confirmation-due")
    receiving = f"{state.receiving_agency.key}:head-of-service"
    assert labels(due) == {receiving, "business-team"}
    assert due.context == {"overdue": "yes"}
    # ... and keeps chasing at the reminder cadence.
    again = ladder.reminder_due(policy, state, at(17))
    assert labels(notice(again, "written-confirmation-due")) == {receiving, "business-team"}


def test_deadline_day_reminder_goes_to_the_stage_owners() -> None:
    policy, state = case_at_stage("merton", 1)
    state.clock.deadline_day_reminder_at = at(8)
    step = ladder.deadline_day(policy, state)
    assert state.clock.deadline_day_reminder_at is None
    assert labels(notice(step, "deadline-day-reminder")) == owners(policy, state, 1)


def test_acknowledgement_due_chases_the_receiving_owner_only() -> None:
    policy, state, _ = start("merton")
    with_deadline(state, at(7), acknowledgement_due=at(1))
    step = ladder.acknowledgement_due(policy, state)
    assert state.clock.acknowledgement_due is None
    assert labels(notice(step, "acknowledgement-due")) == {
        f"{state.receiving_agency.key}:practitioner"
    }


# --- Stages without a written timescale ----------------------------------------------


def test_wirral_stage_2_has_no_timescale_and_reminds_its_owners() -> None:
    policy, state, _ = start("wirral")
    with_deadline(state, at(7))
    step = ladder.deadline_passed(policy, state, at(7))
    assert state.stage == 1
    assert step.clock is not None and step.clock.timescale.kind == "none"
    assert step.clock.reminder_every == policy.reminder_cadence(1)
    with_deadline(state, None, started=at(7), next_reminder_at=at(14))
    assert ladder.next_wakeup(state) == ladder.Wakeup(at(14), "reminder")
    reminder = ladder.reminder_due(policy, state, at(14))
    assert reminder.reminder_after == at(14)
    assert reminder.clock is None and state.stage == 1
    assert templates(reminder) == ["stage-reminder"]
    assert labels(notice(reminder, "stage-reminder")) == owners(policy, state, 1)


def test_hillingdon_stage_reminds_instead_of_escalating() -> None:
    policy, state, step = start("hillingdon")
    assert step.clock is not None and step.clock.timescale.kind == "none"
    with_deadline(state, None, next_reminder_at=at(7))
    reminder = ladder.reminder_due(policy, state, at(7))
    assert state.stage == 0 and state.status == "open"
    assert labels(notice(reminder, "stage-reminder")) == owners(policy, state, 0)


# --- Resolve ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy_id", "index", "days"),
    [
        ("merton", 2, 5),
        ("merton", 3, 5),
        ("staffordshire-stoke", 0, 1),
        ("staffordshire-stoke", 1, 1),
        ("staffordshire-stoke", 2, 2),
    ],
)
def test_resolve_where_written_confirmation_is_due_awaits_it(
    policy_id: str, index: int, days: int
) -> None:
    policy, state = case_at_stage(policy_id, index)
    stage_start = state.clock.started_at
    step = resolve(policy, state, at(6))
    assert state.status == "awaiting-confirmation" and state.is_open
    assert state.closed_at is None
    assert state.outcome == "Agreed a plan" and state.resolved_at == at(6)
    clock = step.clock
    assert clock is not None
    # Staffordshire stage 3 counts "of the matter being formally escalated".
    from_stage_start = (policy_id, index) == ("staffordshire-stoke", 2)
    assert clock.basis == "confirmation"
    assert clock.start == (stage_start if from_stage_start else at(6))
    assert clock.reminders_from == (at(6) if from_stage_start else None)
    assert isinstance(clock.timescale, WorkingDays) and clock.timescale.days == days
    assert step.replan is False
    assert event_types(step) == ["resolved"]
    assert step.events[0].detail == "written confirmation due"
    resolved = notice(step, "resolved")
    # Staffordshire feeds an outcome at stage 2 or 3 back to the earlier stages.
    earlier: set[str] = set()
    if policy_id == "staffordshire-stoke":
        for i in range(index):
            earlier |= owners(policy, state, i)
    assert labels(resolved) == owners(policy, state, index) | {"raiser"} | earlier
    assert resolved.context == {"confirmation": "due"}


@pytest.mark.parametrize(
    ("policy_id", "index"),
    [("merton", 0), ("merton", 1), ("merton", 4), ("cheshire", 1)]
    + [("staffordshire-stoke", i) for i in (3, 4, 5)]
    + [("hillingdon", i) for i in range(4)],
)
def test_written_confirmation_without_a_timescale_is_awaited_with_reminders(
    policy_id: str, index: int
) -> None:
    policy, state = case_at_stage(policy_id, index)
    step = resolve(policy, state, at(6))
    assert state.status == "awaiting-confirmation"
    clock = step.clock
    assert clock is not None and clock.basis == "confirmation"
    assert clock.timescale.kind == "none" and clock.start == at(6)
    assert clock.reminder_every == policy.reminder_cadence(index)
    assert step.events[0].detail == "written confirmation due (no timescale)"
    assert notice(step, "resolved").context == {"confirmation": "due-no-timescale"}


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_wirral_resolve_without_written_confirmation_closes(index: int) -> None:
    policy, state = case_at_stage("wirral", index)
    step = resolve(policy, state, at(6))
    assert state.status == "resolved" and not state.is_open
    assert state.closed_at == at(6)
    assert event_types(step) == ["resolved", "closed"]
    assert step.clock is None
    assert state.clock.deadline is None
    assert labels(notice(step, "resolved")) == owners(policy, state, index) | {"raiser"}
    assert ladder.next_wakeup(state) is None


@pytest.mark.parametrize("index", [1, 2, 3])
def test_merton_resolution_at_stages_1_to_3_sends_the_pro_forma(index: int) -> None:
    policy, state = case_at_stage("merton", index)
    step = resolve(policy, state, at(6))
    record = notice(step, "business-team-record")
    assert record.forms == ["escalation-pro-forma"]
    assert labels(record) == {"business-team"}
    assert record.context["event"] == "resolved"


@pytest.mark.parametrize(
    ("index", "form"), [(0, None), (1, "appendix-1"), (2, "appendix-2"), (3, None)]
)
def test_wirral_pro_forma_only_for_resolutions_at_stage_2_or_3(
    index: int, form: str | None
) -> None:
    policy, state = case_at_stage("wirral", index)
    step = resolve(policy, state, at(6))
    assert state.status == "resolved"
    records = [n for n in step.notices if n.template == "business-team-record"]
    if form is None:
        assert records == []
    else:
        assert len(records) == 1 and records[0].forms == [form]


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_hillingdon_notification_form_when_resolved_at_stages_2_to_4(index: int) -> None:
    policy, state = case_at_stage("hillingdon", index)
    step = resolve(policy, state, at(6))
    records = [n for n in step.notices if n.template == "business-team-record"]
    if index == 0:
        # "should be advised of any outcome": told, with no form.
        assert len(records) == 1 and records[0].forms == []
    else:
        # Stage 3 lists both 'outcome' and 'resolved': still one notice.
        assert len(records) == 1
        assert records[0].forms == ["escalation-notification"]


def test_cheshire_step_3_outcome_is_recorded_once() -> None:
    policy, state = case_at_stage("cheshire", 3)
    step = resolve(policy, state, at(6))
    assert len([n for n in step.notices if n.template == "business-team-record"]) == 1


def test_resolve_stores_the_resolution_form() -> None:
    policy, state = case_at_stage("merton", 2)
    form = {"what-was-agreed": "A strategy meeting"}
    ladder.apply(policy, state, Resolve(by=BUSINESS, outcome="Agreed", form=form), at(6))
    assert state.resolution_form == form


# --- Confirm outcome -------------------------------------------------------------


def test_confirm_closes_a_case_awaiting_written_confirmation() -> None:
    policy, state = case_at_stage("merton", 2)
    resolve(policy, state, at(6))
    step = ladder.apply(policy, state, ConfirmOutcome(by=manager(state)), at(8))
    assert state.status == "resolved" and state.closed_at == at(8)
    assert event_types(step) == ["confirmed", "closed"]
    assert labels(notice(step, "outcome-confirmed")) == owners(policy, state, 2) | {"raiser"}
    assert ladder.next_wakeup(state) is None


def test_confirm_is_refused_unless_awaiting_confirmation() -> None:
    policy, state = case_at_stage("merton", 2)
    message = refusal(policy, state, ConfirmOutcome(by=manager(state)), at(6))
    assert "not awaiting written confirmation" in message
    resolve(policy, state, at(6))
    ladder.apply(policy, state, ConfirmOutcome(by=manager(state)), at(7))
    assert "not awaiting" in refusal(policy, state, ConfirmOutcome(by=manager(state)), at(8))


def test_while_awaiting_confirmation_only_confirm_note_or_withdraw() -> None:
    policy, state = case_at_stage("merton", 2)
    resolve(policy, state, at(6))
    for action in (
        Resolve(by=manager(state), outcome="Again"),
        Escalate(by=manager(state), reason="Changed our mind"),
        Acknowledge(by=manager(state)),
    ):
        assert "awaits written confirmation" in refusal(policy, state, action, at(7))
    ladder.check(policy, state, AddNote(by=manager(state), text="Letter drafted"), at(7))
    ladder.check(
        policy, state, Withdraw(by=manager(state, "raising"), reason="No longer needed"), at(7)
    )
    ladder.check(policy, state, Reopen(by=manager(state), reason="No real agreement"), at(7))


# --- Escalate --------------------------------------------------------------------


def test_escalate_moves_to_the_next_stage_now() -> None:
    policy, state = case_at_stage("merton", 0)
    step = escalate(policy, state, at(2))
    assert (state.stage, state.stage_key, state.highest_stage_reached) == (1, "line-managers", 1)
    assert step.clock is not None and step.clock.start == at(2)
    assert step.clock.timescale == policy.stages[1].timescale
    assert event_types(step) == ["escalated", "stage_started"]
    assert step.events[0].by == manager(state)
    started = notice(step, "stage-started")
    assert labels(started) == owners(policy, state, 0) | owners(policy, state, 1) | {"raiser"}


def test_escalate_is_refused_at_the_final_stage_naming_it() -> None:
    policy, state = case_at_stage("merton", 4)
    message = refusal(policy, state, Escalate(by=manager(state), reason="More"), at(9))
    assert "final stage" in message and "Stage 4: independent person" in message


def test_escalating_into_staffordshire_stage_3_needs_the_formal_escalation_form() -> None:
    policy, state = case_at_stage("staffordshire-stoke", 1)
    form = policy.form("formal-escalation-form")
    labels_needed = [f.label for f in form.fields_from("escalation")]
    assert len(labels_needed) == 2
    message = refusal(policy, state, Escalate(by=manager(state), reason="Formal"), at(3))
    assert form.name in message
    for label in labels_needed:
        assert repr(label) in message
    # Blank text is not an answer; only the missing field is named.
    partial = {"summary-of-concerns": "Thresholds", "requested-action": "   "}
    message = refusal(policy, state, Escalate(by=manager(state), reason="F", form=partial), at(3))
    assert "'Requested Action'" in message and "Summary of Concerns" not in message
    filled = {"summary-of-concerns": "Thresholds", "requested-action": "Strategy meeting"}
    step = escalate(policy, state, at(3), form=filled)
    assert state.stage == 2
    assert state.escalation_forms == {"formal-escalation-form": filled}
    assert event_types(step) == ["escalated", "stage_started"]


def test_escalating_into_cheshire_step_3_needs_appendix_a() -> None:
    policy, state = case_at_stage("cheshire", 2)
    message = refusal(policy, state, Escalate(by=manager(state), reason="Step 3"), at(5))
    assert "'Brief details about the inter-agency disagreement'" in message
    # Fields the case or the business team fills are not asked of the manager.
    assert "Name of Child" not in message and "Board Members" not in message
    step = escalate(policy, state, at(5), form={"brief-details": "Thresholds"})
    assert state.stage == 3
    assert state.escalation_forms["appendix-a"] == {"brief-details": "Thresholds"}
    assert notice(step, "business-team-record").forms == ["appendix-a"]


def test_escalating_into_a_stage_without_a_form_needs_none() -> None:
    policy, state = case_at_stage("merton", 0)
    ladder.apply(policy, state, Escalate(by=manager(state), reason="Up"), at(2))
    assert state.stage == 1 and state.escalation_forms == {}


@pytest.mark.parametrize("by", ["receiving", "raising"])
def test_merton_escalation_out_of_stage_2_tells_the_csc_assistant_director(by: str) -> None:
    policy, state = case_at_stage("merton", 2)
    step = ladder.apply(policy, state, Escalate(by=manager(state, by), reason="Unresolved"), at(9))
    assert state.stage == 3
    ad = [r for r in notice(step, "stage-started").recipients if r.role == "csc-assistant-director"]
    assert len(ad) == 1
    assert ad[0].title.startswith("CSC Assistant Director")


def test_merton_csc_assistant_director_only_when_childrens_social_care_is_a_party() -> None:
    policy, state = case_at_stage("merton", 2, raising_kind="health", receiving_kind="police")
    step = escalate(policy, state, at(9))
    assert "csc-assistant-director" not in labels(notice(step, "stage-started"))


def test_staffordshire_stage_4_alerts_board_representatives_and_stage_5_the_chair() -> None:
    policy, state = case_at_stage("staffordshire-stoke", 2)
    step = escalate(policy, state, at(5))
    assert state.stage == 3
    assert "lscb-agency-representatives" in labels(notice(step, "stage-started"))
    step = escalate(policy, state, at(6))
    assert state.stage == 4
    assert "independent-chair" in labels(notice(step, "stage-started"))
    assert notice(step, "business-team-record").forms == ["formal-escalation-form"]


def test_jump_past_the_next_stage_needs_immediate_risk() -> None:
    policy, state = case_at_stage("hillingdon", 0)
    message = refusal(policy, state, Escalate(by=manager(state), reason="J", to_stage=2), at(1))
    assert "immediate risk" in message
    # Naming the next stage is an ordinary escalation.
    escalate(policy, state, at(1), to_stage=1)
    assert state.stage == 1


def test_jump_is_refused_on_a_policy_without_that_discretion() -> None:
    policy, state = case_at_stage("merton", 0, immediate_risk=True)
    message = refusal(policy, state, Escalate(by=manager(state), reason="J", to_stage=3), at(1))
    assert "does not allow a jump" in message


def test_hillingdon_jump_with_immediate_risk() -> None:
    policy, state = case_at_stage("hillingdon", 0, immediate_risk=True)
    step = escalate(policy, state, at(1), to_stage=3)
    assert (state.stage, state.highest_stage_reached) == (3, 3)
    assert event_types(step) == ["escalated", "stage_started"]
    assert owners(policy, state, 3) <= labels(notice(step, "stage-started"))
    # Backwards, sideways or off the ladder: refused.
    policy, state = case_at_stage("hillingdon", 2, immediate_risk=True)
    for target in (0, 2, 4):
        message = refusal(
            policy, state, Escalate(by=manager(state), reason="J", to_stage=target), at(3)
        )
        assert "not a later stage" in message or "final stage" in message


# --- Immediate risk flagged later ---------------------------------------------------


def test_merton_flag_replans_the_current_stage_to_two_working_days_not_later_than_now() -> None:
    policy, state = case_at_stage("merton", 1)
    current = state.clock.deadline
    step = ladder.apply(policy, state, FlagImmediateRisk(by=manager(state), reason="R"), at(2))
    assert state.immediate_risk and state.risk_from_stage == 1
    clock = step.clock
    assert clock is not None and step.replan is True
    assert clock.start == at(2)
    assert isinstance(clock.override, WorkingDays) and clock.override.days == 2
    assert clock.not_later_than == current
    assert clock.basis == "immediate-risk"
    assert event_types(step) == ["immediate_risk"]
    assert step.events[0].detail == "flagged at stage 1"
    urgent = notice(step, "immediate-risk")
    assert "mscp-executive" in labels(urgent)
    assert owners(policy, state, 1) | {"raiser", "business-team"} <= labels(urgent)
    # Later stages use the override too.
    later = escalate(policy, state, at(3))
    assert later.clock is not None
    assert isinstance(later.clock.override, WorkingDays) and later.clock.override.days == 2
    assert later.clock.basis == "immediate-risk"


def test_wirral_same_working_day_applies_to_the_current_stage_only() -> None:
    policy, state = case_at_stage("wirral", 0)
    step = ladder.apply(policy, state, FlagImmediateRisk(by=manager(state), reason="R"), at(0, 1))
    assert step.clock is not None and step.replan is True
    assert isinstance(step.clock.override, SameWorkingDay)
    assert step.clock.not_later_than == state.clock.deadline
    assert "central-advice-and-duty-service" in labels(notice(step, "immediate-risk"))
    later = escalate(policy, state, at(1))
    assert later.clock is not None and later.clock.override is None
    assert later.clock.basis == "policy"


def test_wirral_flag_at_a_stage_without_timescale_gives_it_a_same_day_deadline() -> None:
    policy, state = case_at_stage("wirral", 1)
    assert state.clock.deadline is None
    step = ladder.apply(policy, state, FlagImmediateRisk(by=manager(state), reason="R"), at(2))
    assert step.clock is not None
    assert isinstance(step.clock.override, SameWorkingDay)
    assert step.clock.not_later_than is None


@pytest.mark.parametrize(
    ("policy_id", "area", "contact"),
    [
        ("staffordshire-stoke", "stoke-on-trent", "stoke-scb-manager"),
        ("cheshire", "warrington", "warrington-mars"),
    ],
)
def test_flag_without_a_timescale_override_only_sends_the_urgent_notice(
    policy_id: str, area: str, contact: str
) -> None:
    policy, state = case_at_stage(policy_id, 1, area=area)
    step = ladder.apply(policy, state, FlagImmediateRisk(by=manager(state), reason="R"), at(2))
    assert state.immediate_risk
    assert step.clock is None and step.replan is False
    assert event_types(step) == ["immediate_risk"]
    urgent = labels(notice(step, "immediate-risk"))
    assert contact in urgent
    others = {c.role for c in policy.immediate_risk.urgent_contacts} - {contact}
    assert not urgent & others


def test_flag_on_an_overdue_final_stage_does_not_rearm_the_passed_deadline() -> None:
    policy, state = case_at_stage("merton", 4)
    deadline = state.clock.deadline
    assert deadline is not None
    ladder.deadline_passed(policy, state, deadline)
    assert state.status == "overdue"
    step = ladder.apply(
        policy, state, FlagImmediateRisk(by=manager(state), reason="R"), deadline + timedelta(1)
    )
    # The flag is recorded and the urgent contacts told ...
    assert state.immediate_risk and event_types(step) == ["immediate_risk"]
    assert "mscp-executive" in labels(notice(step, "immediate-risk"))
    # ... but "the earlier of its deadline and the override" is the deadline that
    # has already passed: there is nothing to bring forward.
    assert step.clock is None
    assert state.status == "overdue" and state.clock.deadline_passed


def test_a_second_flag_without_a_jump_is_refused() -> None:
    policy, state = case_at_stage("merton", 1, immediate_risk=True)
    message = refusal(policy, state, FlagImmediateRisk(by=manager(state), reason="R"), at(2))
    assert "already flagged" in message


def test_hillingdon_flag_may_jump_to_a_later_stage() -> None:
    policy, state = case_at_stage("hillingdon", 0)
    step = ladder.apply(
        policy, state, FlagImmediateRisk(by=manager(state), reason="R", jump_to_stage=2), at(1)
    )
    assert (state.stage, state.stage_key) == (2, "operations-managers")
    assert state.immediate_risk and state.risk_from_stage == 2
    assert event_types(step) == ["immediate_risk", "escalated", "stage_started"]
    assert templates(step)[0] == "immediate-risk"
    assert owners(policy, state, 2) <= labels(notice(step, "stage-started"))
    assert step.clock is not None and step.clock.start == at(1)
    # Already flagged: a further jump is still allowed, and told again.
    again = ladder.apply(
        policy, state, FlagImmediateRisk(by=manager(state), reason="R", jump_to_stage=3), at(2)
    )
    assert state.stage == 3
    assert "immediate-risk" in templates(again)


def test_flag_with_a_jump_is_refused_where_the_policy_gives_no_discretion() -> None:
    policy, state = case_at_stage("merton", 0)
    action = FlagImmediateRisk(by=manager(state), reason="R", jump_to_stage=2)
    assert "does not allow a jump" in refusal(policy, state, action, at(1))


# --- Shorten deadline ---------------------------------------------------------------


def test_shorten_is_refused_unless_earlier_than_the_current_deadline() -> None:
    policy, state = case_at_stage("merton", 1)
    current = state.clock.deadline
    assert current is not None
    for later in (current, current + timedelta(hours=1)):
        action = ShortenDeadline(by=manager(state), deadline=later, reason="More time")
        assert "never lengthened" in refusal(policy, state, action, at(2))


def test_shorten_is_refused_in_the_past_or_without_a_time_zone() -> None:
    policy, state = case_at_stage("merton", 1)
    past = ShortenDeadline(by=manager(state), deadline=at(1), reason="R")
    assert "future" in refusal(policy, state, past, at(2))
    now = ShortenDeadline(by=manager(state), deadline=at(2), reason="R")
    assert "future" in refusal(policy, state, now, at(2))
    naive = ShortenDeadline(by=manager(state), deadline=datetime(2027, 3, 4, 12), reason="R")
    assert "time zone" in refusal(policy, state, naive, at(2))


def test_shorten_plans_a_fixed_earlier_deadline() -> None:
    policy, state = case_at_stage("merton", 1)
    step = ladder.apply(
        policy, state, ShortenDeadline(by=manager(state), deadline=at(3), reason="Risk"), at(2)
    )
    assert step.clock is not None and step.replan is True
    assert step.clock.fixed_deadline == at(3)
    assert step.clock.basis == "shortened" and step.clock.start == at(2)
    assert event_types(step) == ["deadline_shortened"]
    assert labels(notice(step, "deadline-shortened")) == owners(policy, state, 1) | {"raiser"}
    assert state.stage == 1


def test_shorten_is_allowed_on_a_stage_without_a_timescale() -> None:
    policy, state = case_at_stage("hillingdon", 1)
    assert state.clock.deadline is None
    step = ladder.apply(
        policy, state, ShortenDeadline(by=manager(state), deadline=at(30), reason="R"), at(2)
    )
    assert step.clock is not None and step.clock.fixed_deadline == at(30)


def test_shorten_is_refused_when_the_final_stage_is_overdue() -> None:
    policy, state = case_at_stage("merton", 4)
    ladder.deadline_passed(policy, state, at(12))
    action = ShortenDeadline(by=manager(state), deadline=at(13), reason="R")
    assert "already passed" in refusal(policy, state, action, at(12, 1))


# --- Acknowledge ---------------------------------------------------------------------


def test_acknowledge_records_who_and_stops_the_acknowledgement_reminder() -> None:
    policy, state, _ = start("merton")
    with_deadline(state, at(7), acknowledgement_due=at(1))
    assert ladder.next_wakeup(state) == ladder.Wakeup(at(1), "acknowledgement")
    step = ladder.apply(policy, state, Acknowledge(by=manager(state), note="Seen"), at(0, 2))
    assert state.acknowledged_by == manager(state)
    assert state.clock.acknowledgement_due is None
    assert event_types(step) == ["acknowledged"] and step.events[0].reason == "Seen"
    assert ladder.next_wakeup(state) == ladder.Wakeup(at(7), "deadline")


def test_next_wakeup_ignores_a_stale_acknowledgement_once_acknowledged() -> None:
    policy, state, _ = start("merton")
    with_deadline(state, at(7), acknowledgement_due=at(1))
    state.acknowledged_by = manager(state)
    assert ladder.next_wakeup(state) == ladder.Wakeup(at(7), "deadline")


def test_acknowledge_twice_is_refused() -> None:
    policy, state, _ = start("merton")
    ladder.apply(policy, state, Acknowledge(by=manager(state)), at(0, 1))
    message = refusal(policy, state, Acknowledge(by=manager(state)), at(0, 2))
    assert "already acknowledged" in message and "Receiving manager" in message


def test_the_raising_agency_does_not_acknowledge() -> None:
    policy, state, _ = start("merton")
    message = refusal(policy, state, Acknowledge(by=raiser_actor(state)), at(0, 1))
    assert "receiving agency" in message
    message = refusal(policy, state, Acknowledge(by=manager(state, "raising")), at(0, 1))
    assert "receiving agency" in message


def test_acknowledgement_is_owed_again_at_each_new_stage() -> None:
    policy, state, _ = start("merton")
    ladder.apply(policy, state, Acknowledge(by=manager(state)), at(0, 1))
    escalate(policy, state, at(1))
    assert state.acknowledged_by is None
    ladder.check(policy, state, Acknowledge(by=manager(state)), at(1, 1))


# --- Withdraw and closed cases ---------------------------------------------------------


def test_withdraw_closes_and_tells_everyone_involved_so_far() -> None:
    policy, state = case_at_stage("merton", 3)
    step = ladder.apply(policy, state, Withdraw(by=raiser_actor(state), reason="Sorted"), at(5))
    assert state.status == "withdrawn" and state.closed_at == at(5)
    assert not state.is_open
    assert event_types(step) == ["withdrawn", "closed"]
    told = labels(notice(step, "withdrawn"))
    for index in range(4):
        assert owners(policy, state, index) <= told
    assert {"raiser", "business-team"} <= told
    assert ladder.next_wakeup(state) is None


def test_withdraw_at_the_first_stage_does_not_involve_the_business_team() -> None:
    policy, state, _ = start("merton")
    by = manager(state, "raising")
    step = ladder.apply(policy, state, Withdraw(by=by, reason="Sorted"), at(1))
    assert labels(notice(step, "withdrawn")) == owners(policy, state, 0) | {"raiser"}


def test_withdraw_while_awaiting_confirmation_closes() -> None:
    policy, state = case_at_stage("merton", 2)
    resolve(policy, state, at(6))
    ladder.apply(policy, state, Withdraw(by=manager(state, "raising"), reason="Moved away"), at(7))
    assert state.status == "withdrawn"


@pytest.mark.parametrize("how", ["resolved", "withdrawn"])
def test_every_action_on_a_closed_case_is_refused(how: str) -> None:
    policy, state = case_at_stage("wirral", 1)
    if how == "resolved":
        resolve(policy, state, at(3))
    else:
        ladder.apply(policy, state, Withdraw(by=manager(state, "raising"), reason="Gone"), at(3))
    by = manager(state)
    for action in (
        Resolve(by=by, outcome="Again"),
        Escalate(by=by, reason="Up"),
        Withdraw(by=by, reason="Again"),
        Acknowledge(by=by),
        AddNote(by=by, text="A note"),
        FlagImmediateRisk(by=by, reason="R"),
        ShortenDeadline(by=by, deadline=at(5), reason="R"),
        SubmitForm(by=by),
    ):
        message = refusal(policy, state, action, at(4))
        assert "closed" in message, (type(action).__name__, message)
    assert "cannot reopen" in refusal(policy, state, Reopen(by=by, reason="R"), at(4))
    assert "not awaiting" in refusal(policy, state, ConfirmOutcome(by=by), at(4))


def test_a_practitioner_from_another_agency_may_not_add_a_note() -> None:
    policy, state = case_at_stage("merton", 1)
    message = refusal(policy, state, AddNote(by=OUTSIDER, text="I was not there"), at(2))
    assert "only the two agencies" in message


def test_parties_business_team_and_operators_may_add_notes() -> None:
    policy, state = case_at_stage("merton", 1)
    for by in (manager(state), raiser_actor(state), BUSINESS, OPERATOR):
        ladder.check(policy, state, AddNote(by=by, text="Spoke"), at(2))


def test_add_note_records_the_discussion() -> None:
    policy, state, _ = start("merton")
    step = ladder.apply(policy, state, AddNote(by=manager(state), text="We spoke"), at(1))
    assert event_types(step) == ["note"] and step.notices == []
    assert [(n.at, n.text) for n in state.notes] == [(at(1), "We spoke")]


# --- Who may act --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda by: Resolve(by=by, outcome="Agreed"),
        lambda by: Escalate(by=by, reason="Up"),
        lambda by: Withdraw(by=by, reason="Gone"),
        lambda by: Acknowledge(by=by),
        lambda by: FlagImmediateRisk(by=by, reason="R"),
    ],
    ids=["resolve", "escalate", "withdraw", "acknowledge", "flag"],
)
def test_a_practitioner_from_another_agency_is_refused(make: Callable[[Actor], Action]) -> None:
    policy, state = case_at_stage("merton", 1)
    message = refusal(policy, state, make(OUTSIDER), at(2))
    assert "only the two agencies" in message
    outside_manager = OUTSIDER.model_copy(update={"role": "manager"})
    assert "only the two agencies" in refusal(policy, state, make(outside_manager), at(2))


@pytest.mark.parametrize("by", [BUSINESS, OPERATOR], ids=["business-team", "operator"])
@pytest.mark.parametrize("what", ["resolve", "escalate", "withdraw"])
def test_business_team_and_operators_may_act(by: Actor, what: str) -> None:
    policy, state = case_at_stage("merton", 1)
    actions: dict[str, Action] = {
        "resolve": Resolve(by=by, outcome="Agreed"),
        "escalate": Escalate(by=by, reason="Up"),
        "withdraw": Withdraw(by=by, reason="Gone"),
    }
    action = actions[what]
    step = ladder.apply(policy, state, action, at(2))
    assert step.events[0].by == by


def test_a_party_manager_may_resolve() -> None:
    policy, state = case_at_stage("wirral", 1)
    resolve(policy, state, at(2), by=manager(state, "raising"))
    assert state.status == "resolved"


def test_check_never_changes_the_case() -> None:
    policy, state = case_at_stage("merton", 1)
    before = state.model_dump()
    by = manager(state)
    for action in (
        Acknowledge(by=by),
        Resolve(by=by, outcome="Agreed"),
        Escalate(by=by, reason="Up"),
        FlagImmediateRisk(by=by, reason="R"),
        ShortenDeadline(by=by, deadline=at(3), reason="R"),
        AddNote(by=by, text="Note"),
        Withdraw(by=manager(state, "raising"), reason="Gone"),
    ):
        ladder.check(policy, state, action, at(2))
    assert state.model_dump() == before


# --- Who may withdraw and confirm, from the policy ---------------------------------------


def test_only_the_raising_side_or_the_business_team_may_withdraw() -> None:
    policy, state = case_at_stage("merton", 1)
    for by in (manager(state), receiving_practitioner(state)):
        message = refusal(policy, state, Withdraw(by=by, reason="Not ours"), at(2))
        assert "only the agency that raised the concern" in message
    for by in (manager(state, "raising"), raiser_actor(state), BUSINESS, OPERATOR):
        ladder.check(policy, state, Withdraw(by=by, reason="Sorted"), at(2))


def test_before_the_change_the_receiving_side_could_withdraw() -> None:
    policy, state = case_at_stage("merton", 1)
    old = ladder.Features(withdraw_by_raising_side_only=False)
    ladder.apply(policy, state, Withdraw(by=manager(state), reason="Gone"), at(2), old)
    assert state.status == "withdrawn"


@pytest.mark.parametrize(
    ("policy_id", "index", "who"),
    [
        # Merton §4.4.2 / §4.5.2: "the receiving senior (executive) manager will confirm".
        ("merton", 2, "receiving-manager"),
        ("merton", 3, "receiving-manager"),
        # Staffordshire Stage 1 ¶2: "the receiving professional will ... confirm in writing".
        ("staffordshire-stoke", 0, "receiving-side"),
        # Stage 2 ¶4: "the responsible line manager will ... confirm by letter".
        ("staffordshire-stoke", 1, "receiving-manager"),
        # Stage 3 ¶8: the senior managers' decision, communicated in writing.
        ("staffordshire-stoke", 2, "either-manager"),
        # Cheshire Step 1 ¶2: "the line manager receiving the escalation will confirm".
        ("cheshire", 1, "receiving-manager"),
        # "written confirmation between the parties".
        ("merton", 0, "either-party"),
        ("hillingdon", 2, "either-party"),
    ],
)
def test_written_confirmation_only_by_the_role_the_policy_names(
    policy_id: str, index: int, who: str
) -> None:
    policy, state = case_at_stage(policy_id, index)
    resolve(policy, state, at(6))
    actors = {
        "receiving manager": manager(state),
        "receiving practitioner": receiving_practitioner(state),
        "raising manager": manager(state, "raising"),
        "raising practitioner": raiser_actor(state),
        "business team": BUSINESS,
    }
    allowed = {
        "receiving-manager": {"receiving manager"},
        "receiving-side": {"receiving manager", "receiving practitioner"},
        "either-manager": {"receiving manager", "raising manager"},
        "either-party": set(actors),
    }[who]
    for name, by in actors.items():
        action = ConfirmOutcome(by=by)
        if name in allowed:
            ladder.check(policy, state, action, at(7))
        else:
            assert "cannot confirm the outcome" in refusal(policy, state, action, at(7)), name
    # An operator records a confirmation on someone's behalf.
    ladder.check(policy, state, ConfirmOutcome(by=OPERATOR), at(7))


def test_a_case_awaiting_confirmation_can_be_reopened_and_then_escalated() -> None:
    policy, state = case_at_stage("merton", 1)
    resolve(policy, state, at(6))
    step = ladder.apply(policy, state, Reopen(by=manager(state), reason="No"), at(7))
    assert state.status == "open" and state.stage == 1 and state.outcome is None
    assert event_types(step) == ["reopened"]
    assert step.clock is not None and step.clock.start == at(7)
    assert step.clock.timescale == policy.stages[1].timescale
    assert notice(step, "stage-started").context == {"reason": "reopened"}
    escalate(policy, state, at(8))
    assert state.stage == 2


# --- next_wakeup -----------------------------------------------------------------------


def test_next_wakeup_breaks_ties_acknowledgement_deadline_day_deadline_reminder() -> None:
    _, state, _ = start("merton")
    same = at(5)
    state.clock = Clock(
        started_at=RAISED,
        deadline=same,
        deadline_day_reminder_at=same,
        acknowledgement_due=same,
        next_reminder_at=same,
    )
    kinds = []
    while (wakeup := ladder.next_wakeup(state)) is not None:
        assert wakeup.at == same
        kinds.append(wakeup.kind)
        if wakeup.kind == "acknowledgement":
            state.clock.acknowledgement_due = None
        elif wakeup.kind == "deadline-day":
            state.clock.deadline_day_reminder_at = None
        elif wakeup.kind == "deadline":
            state.clock.deadline = None
        else:
            state.clock.next_reminder_at = None
    assert kinds == ["acknowledgement", "deadline-day", "deadline", "reminder"]


def test_next_wakeup_is_the_earliest_instant() -> None:
    _, state, _ = start("merton")
    state.clock = Clock(
        started_at=RAISED,
        acknowledgement_due=at(3),
        deadline_day_reminder_at=at(2),
        deadline=at(4),
        next_reminder_at=at(1),
    )
    assert ladder.next_wakeup(state) == ladder.Wakeup(at(1), "reminder")


def test_next_wakeup_ignores_the_deadline_once_passed() -> None:
    _, state, _ = start("merton")
    state.clock = Clock(
        started_at=RAISED,
        deadline=at(4),
        deadline_day_reminder_at=at(4, -8),
        deadline_passed=True,
        next_reminder_at=at(11),
    )
    assert ladder.next_wakeup(state) == ladder.Wakeup(at(11), "reminder")
    state.clock.next_reminder_at = None
    assert ladder.next_wakeup(state) is None


def test_next_wakeup_ignores_acknowledgement_unless_the_case_is_open() -> None:
    policy, state = case_at_stage("merton", 2)
    resolve(policy, state, at(6))
    state.clock = Clock(started_at=at(6), deadline=at(13), acknowledgement_due=at(7))
    assert ladder.next_wakeup(state) == ladder.Wakeup(at(13), "deadline")


def test_next_wakeup_is_none_when_closed() -> None:
    policy, state, _ = start("merton")
    with_deadline(state, at(7), acknowledgement_due=at(1), next_reminder_at=at(8))
    state.status = "resolved"
    assert ladder.next_wakeup(state) is None


def test_wakeup_summary_names_the_stage_and_due_date() -> None:
    _, state, _ = start("merton")
    with_deadline(state, at(7))
    summary = ladder.Wakeup(at(7), "deadline").summary(state)
    assert summary.startswith("deadline · Practitioners · due")
    assert state.clock.deadline_text is not None and state.clock.deadline_text in summary


# --- current_details --------------------------------------------------------------------


def test_current_details_names_stage_due_date_and_immediate_risk() -> None:
    policy, state = case_at_stage("merton", 1, immediate_risk=True)
    details = ladder.current_details(state)
    assert "Stage 1" in details and "Stage 1: line managers" in details
    assert state.clock.deadline_text is not None
    assert f"due {state.clock.deadline_text}" in details
    assert "immediate risk" in details
    assert state.raising_agency.name in details and state.receiving_agency.name in details


def test_current_details_without_timescale_or_risk() -> None:
    _, state = case_at_stage("hillingdon", 1)
    details = ladder.current_details(state)
    assert details.startswith("**Stage 2: supervisors/managers**")
    assert "no written timescale" in details
    assert "immediate risk" not in details


def test_current_details_while_awaiting_written_confirmation() -> None:
    policy, state = case_at_stage("merton", 2)
    resolve(policy, state, at(6))
    with_deadline(state, at(13), started=at(6))
    assert "written confirmation due" in ladder.current_details(state)


# --- Privacy ----------------------------------------------------------------------------

CHILD_NAME = "Zebedee Quixote-Canary"
NHS_NUMBER = "999 999 9999"


def test_no_transition_copies_the_childs_identity_anywhere() -> None:
    child = ChildDetails(name=CHILD_NAME, nhs_number=NHS_NUMBER, address="1 Secret Lane")
    seen: list[str] = []

    def record(step: Step) -> None:
        for planned in step.notices:
            seen.extend(r.model_dump_json() for r in planned.recipients)
            seen.extend(planned.forms)
            seen.extend(f"{k}={v}" for k, v in planned.context.items())
        for event in step.events:
            seen.append(f"{event.type} {event.detail} {event.by!r}")
        if step.clock is not None:
            seen.append(step.clock.model_dump_json())
        seen.append(ladder.current_details(state))

    for policy_id in ("merton", "staffordshire-stoke", "cheshire", "wirral", "hillingdon"):
        request = make_request(policy_id, child=child, immediate_risk=True)
        assert ladder.raise_problems(request) == []
        policy = request.policy
        state = ladder.new_state(request, RAISED)
        record(ladder.raise_case(policy, state))
        with_deadline(state, at(5), acknowledgement_due=at(1))
        by = manager(state)
        record(ladder.acknowledgement_due(policy, state))
        record(ladder.apply(policy, state, Acknowledge(by=by), at(1)))
        record(ladder.apply(policy, state, AddNote(by=by, text="Spoke"), at(1)))
        record(
            ladder.apply(policy, state, ShortenDeadline(by=by, deadline=at(4), reason="R"), at(2))
        )
        record(ladder.deadline_day(policy, state))
        record(ladder.deadline_passed(policy, state, at(4)))
        with_deadline(state, None, next_reminder_at=at(9))
        record(ladder.reminder_due(policy, state, at(9)))
        record(escalate(policy, state, at(10)))
        with_deadline(state, at(14))
        record(resolve(policy, state, at(11)))
        if state.status == "awaiting-confirmation":
            record(ladder.deadline_passed(policy, state, at(14)))
            record(ladder.apply(policy, state, ConfirmOutcome(by=by), at(15)))
        seen.append(state.model_dump_json())
        seen.append(repr(state))
        seen.append(repr(request))
        seen.append(str(request))

    everything = "\n".join(seen)
    assert "Zebedee" not in everything and "Quixote" not in everything
    assert NHS_NUMBER not in everything and "Secret Lane" not in everything


def test_child_details_repr_is_redacted() -> None:
    child = ChildDetails(name=CHILD_NAME, nhs_number=NHS_NUMBER)
    for text in (repr(child), str(child), f"{child}", repr([child])):
        assert CHILD_NAME not in text and NHS_NUMBER not in text
        assert "redacted" in text


def test_a_case_about_a_subject_the_policy_does_not_cover_is_refused() -> None:
    request = make_request("merton").model_copy(update={"subject": "adults-at-risk"})
    assert ladder.raise_problems(request) == [
        "the merton policy covers children, not adults-at-risk"
    ]
    hillingdon = make_request("hillingdon").model_copy(update={"subject": "adults-at-risk"})
    assert ladder.raise_problems(hillingdon) == []


@pytest.mark.parametrize(
    ("policy_id", "index", "role"),
    [
        ("merton", 4, "independent-person"),
        ("staffordshire-stoke", 5, "independent-professional-adviser"),
        ("wirral", 3, "wscb-chair"),
        ("hillingdon", 3, "board-chair"),
    ],
)
def test_a_role_held_for_the_whole_partnership_is_addressed_once(
    policy_id: str, index: int, role: str
) -> None:
    policy, state = case_at_stage(policy_id, index)
    told = ladder.stage_owners(policy, state, index)
    assert [(r.role, r.agency) for r in told] == [(role, None)]
    assert [r.label for r in ladder.receiving_owner(policy, state)] == [role]
