"""The duties the five policies set, on the real workflow, worker and
activities (Temporal's time-skipping test server), each on the dates its
source sentence implies.

Every scenario runs through ``escalation.simulate`` on a server of its own
(its clock can start at any future instant), with the dates of
``tests.test_workflow_ladders`` (moved on by whole 52-week blocks once they
have passed). Expectations are computed with the policy's calendar; the
instants worked out by hand are checked while the scenarios keep their own
dates.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from escalation.cli import main
from escalation.simulate import Act, rehearse, run_simulation, start_test_server
from policies.calendar import WorkingDayCalendar
from policies.loader import get_policy
from tests.conftest import Harness, make_request, raising_manager, receiving_manager, state_of
from tests.test_workflow_actions import open_case, outcome, wait_for
from tests.test_workflow_ladders import (
    CHRISTMAS,
    ON_DESIGN_DATES,
    Run,
    assert_at,
    calendar_of,
    every,
    london,
    near,
    simulate,
    utc,
)
from workflows.disagreement import DisagreementWorkflow
from workflows.messages import (
    Actor,
    ConfirmOutcome,
    Escalate,
    FilledForm,
    Notice,
    Resolve,
    SubmitForm,
    Withdraw,
)


def label(run: Run, index: int, side: str) -> str:
    return run.labels(index)[0 if side == "raising" else 1]


# --- Written confirmation anchored where the source anchors it --------------------


async def test_staffordshire_stage_3_decision_due_2_working_days_after_formal_escalation() -> None:
    """Stage 3 ¶8: "in writing within 2 working days of the matter being
    formally escalated". Escalated Mon 1 Feb 15:05, resolved Wed 3 Feb: due
    Wed 3 Feb 17:00, not two working days after the resolution (Fri 5 Feb)."""
    cal = calendar_of("staffordshire-stoke")
    raised = london(2027, 2, 1, 9)
    formally = london(2027, 2, 1, 15, 5)
    resolved_at = london(2027, 2, 3, 10)
    run = await simulate(
        "staffordshire-stoke",
        raised,
        london(2027, 2, 12, 12),
        [
            Act(raised + timedelta(minutes=30), "escalate"),
            Act(formally, "escalate"),
            Act(resolved_at, "resolve"),
        ],
    )
    escalated = run.of("escalated")
    assert [e.stage for e in escalated] == [1, 2]
    assert near(escalated[1].at, formally)
    due = cal.add_working_days(formally, 2)
    resolved = run.of("resolved")
    assert [(e.stage, e.detail, e.deadline) for e in resolved] == [
        (2, "written confirmation due", due)
    ]
    # Due the same afternoon: chased at the deadline, then every 5 working days.
    chased = run.of("reminder", "written-confirmation-due")
    assert_at(chased, [due, *every(run.calendar, due, run.until)])
    if ON_DESIGN_DATES:
        assert due == utc("2027-02-03T17:00:00+00:00")


# --- Written confirmation where the sources require it, without a timescale -------


async def test_merton_outcome_at_the_practitioner_stage_awaits_written_confirmation() -> None:
    """§5.1: "at all stages ... written confirmation between the parties". With
    no timescale the case waits for it with reminders; the confirmation shows
    there was no real agreement, so it is reopened and then escalated."""
    cal = calendar_of("merton")
    raised = london(2027, 3, 1, 10)
    resolved_at = raised + timedelta(hours=1)
    first_reminder = cal.add_working_days(resolved_at, 5)
    reopened_at = first_reminder + timedelta(hours=17)  # next morning
    escalated_at = reopened_at + timedelta(hours=1)
    run = await simulate(
        "merton",
        raised,
        escalated_at + timedelta(hours=2),
        [
            Act(resolved_at, "resolve"),
            Act(reopened_at, "reopen"),
            Act(escalated_at, "escalate"),
        ],
    )
    resolved = run.of("resolved")
    assert [(e.stage, e.detail, e.deadline) for e in resolved] == [
        (0, "written confirmation due (no timescale)", None)
    ]
    assert run.of("closed") == []
    chased = run.of("reminder", "written-confirmation-due")
    assert_at(chased, [first_reminder])
    assert chased[0].to == [label(run, 0, "receiving"), "business-team"]
    assert_at(run.of("reopened"), [reopened_at])
    assert_at(run.of("escalated"), [escalated_at])
    assert run.final == {"status": "open", "stage": 1}
    # Reopened, the stage's own timescale runs again from the reopening.
    started = [e for e in run.of("stage_started") if e.stage == 0]
    assert started[0].deadline == cal.add_working_days(raised, 5)


@pytest.mark.parametrize(
    ("policy_id", "stage"),
    [("cheshire", 1), ("staffordshire-stoke", 3), ("hillingdon", 1), ("merton", 4)],
)
async def test_written_confirmation_without_a_timescale_keeps_the_case_open(
    policy_id: str, stage: int
) -> None:
    """Cheshire Step 1 ¶2 ("documented, in writing to their counterpart"),
    Staffordshire Stage 5 ¶3 and Hillingdon's Additional Notes ("written
    confirmation between the parties about an agreed outcome"), Merton §5.1."""
    raised = london(2027, 3, 1, 10)
    acts = [Act(raised + timedelta(minutes=10 * (i + 1)), "escalate") for i in range(stage)]
    resolved_at = raised + timedelta(hours=2)
    confirm_at = resolved_at + timedelta(days=1)
    run = await simulate(
        policy_id,
        raised,
        confirm_at + timedelta(hours=1),
        [*acts, Act(resolved_at, "resolve"), Act(confirm_at, "confirm")],
    )
    assert [(e.stage, e.deadline) for e in run.of("resolved")] == [(stage, None)]
    assert_at(run.of("confirmed"), [confirm_at])
    assert run.final == {"status": "resolved", "stage": stage}


# --- Forms on every route into their stage ------------------------------------------


async def test_staffordshire_stage_3_entered_by_its_deadline_asks_for_the_form() -> None:
    """Nobody escalates by hand: at stage 3 the line manager owes the formal
    escalation form (Stage 3 ¶6, "within 1 working day") to their senior
    manager; it is chased with the LSCB manager copied, and the stage records
    when it arrived and sends it on to the senior manager."""
    policy = get_policy("staffordshire-stoke")
    cal = WorkingDayCalendar(policy.calendar_spec())
    raised = london(2027, 3, 1, 10)
    entered = cal.add_working_days(cal.add_working_days(raised, 1), 1)
    due = cal.add_working_days(entered, 1)
    arrives = due + timedelta(hours=17)  # the next morning, a day late
    run = await simulate(
        "staffordshire-stoke", raised, arrives + timedelta(hours=1), [Act(arrives, "form")]
    )
    started = [e for e in run.of("stage_started") if e.stage == 2]
    assert_at(started, [entered])
    asks = run.of("reminder", "form-due")
    assert_at(asks, [entered, due])
    line_manager, senior_manager = label(run, 1, "raising"), label(run, 2, "raising")
    assert asks[0].to == [line_manager, senior_manager]
    assert asks[1].to == [line_manager, senior_manager, "business-team"]
    assert_at(run.of("form_received"), [arrives])
    sent = run.of("notice", "form-sent")
    assert [e.to for e in sent] == [[senior_manager]]
    assert_at(sent, [arrives])


async def test_cheshire_step_3_entered_by_its_deadline_asks_for_appendix_a() -> None:
    policy = get_policy("cheshire")
    cal = WorkingDayCalendar(policy.calendar_spec())
    raised = london(2027, 3, 1, 10)
    entered = raised
    for stage in policy.stages[:3]:
        deadline = cal.deadline(entered, stage.timescale)
        assert deadline is not None
        entered = deadline
    due = cal.add_working_days(entered, 1)
    arrives = due - timedelta(hours=2)
    run = await simulate("cheshire", raised, arrives + timedelta(hours=1), [Act(arrives, "form")])
    asks = run.of("reminder", "form-due")
    assert_at(asks, [entered])
    assert asks[0].to == [label(run, 2, "raising")]
    assert_at(run.of("form_received"), [arrives])
    records = [e for e in run.of("notice", "business-team-record") if e.stage == 3]
    assert_at(records, [entered, arrives])


async def test_merton_pro_forma_on_leaving_stages_1_and_2_and_on_a_stage_1_resolution() -> None:
    """Appendix 1 asks "Has the disagreement been resolved at Stage 1 or 2"
    and, if not, "who has the escalation been raised to as Stage 2 or 3"."""
    raised = london(2027, 3, 1, 10)
    times = [raised + timedelta(minutes=m) for m in (10, 20, 30)]
    run = await simulate(
        "merton",
        raised,
        raised + timedelta(hours=2),
        [Act(times[0], "escalate"), Act(times[1], "escalate"), Act(times[2], "escalate")],
    )
    records = run.of("notice", "business-team-record")
    # Leaving stage 1, leaving stage 2, and stage 3's own record (copied to MSCP).
    assert [e.stage for e in records] == [2, 3]
    assert_at(records, [times[1], times[2]])

    resolved = await simulate(
        "merton",
        raised,
        raised + timedelta(hours=2),
        [Act(times[0], "escalate"), Act(times[1], "resolve")],
    )
    records = resolved.of("notice", "business-team-record")
    assert [e.stage for e in records] == [1]
    assert_at(records, [times[1]])


# --- Outcomes fed back to everyone the source names --------------------------------


@pytest.mark.parametrize(
    ("policy_id", "stage", "told"),
    [
        # Step 2 ¶1: "communicated to the line managers who were involved".
        ("cheshire", 2, [1]),
        # Step 3 ¶3: "to those involved at earlier points".
        ("cheshire", 3, [0, 1, 2]),
        # Stage 2 NB: "fed back immediately to the operational staff involved".
        ("staffordshire-stoke", 1, [0]),
        # Additional Notes: "shared with relevant personnel".
        ("hillingdon", 2, [0, 1]),
    ],
)
async def test_an_outcome_is_fed_back_to_the_earlier_stages_the_source_names(
    policy_id: str, stage: int, told: list[int]
) -> None:
    raised = london(2027, 3, 1, 10)
    acts = [Act(raised + timedelta(minutes=10 * (i + 1)), "escalate") for i in range(stage)]
    resolved_at = raised + timedelta(hours=2)
    run = await simulate(
        policy_id, raised, resolved_at + timedelta(hours=1), [*acts, Act(resolved_at, "resolve")]
    )
    notices = run.of("notice", "resolved")
    assert len(notices) == 1
    expected = [*run.labels(stage), "raiser"]
    for index in told:
        expected += [x for x in run.labels(index) if x not in expected]
    assert notices[0].to == expected


# --- Hillingdon's business team ------------------------------------------------------


async def _rehearse(
    policy_id: str, raised: datetime, until: datetime, acts: list[Act], **kwargs: Any
) -> tuple[list[Notice], Any]:
    env = await start_test_server()
    try:
        result = await rehearse(env, get_policy(policy_id), raised, False, acts, until, **kwargs)
        return list(result.sink.notices), result.state
    finally:
        await env.shutdown()


async def test_hillingdon_business_team_hears_of_every_stage_from_2_and_the_outcome() -> None:
    """Stage Two: "who will keep a record of all ongoing disagreements";
    Stage Three: "should be advised of any outcome". The form's "Date
    referred to LSCB/SAB" is the day the team was first told."""
    raised = london(2027, 3, 1, 10)  # Monday
    stage_2, stage_3, stage_4 = (london(2027, 3, d, 10) for d in (2, 3, 4))
    resolved_at = london(2027, 3, 5, 10)
    notices, state = await _rehearse(
        "hillingdon",
        raised,
        resolved_at + timedelta(hours=1),
        [
            Act(stage_2, "escalate"),
            Act(stage_3, "escalate"),
            Act(stage_4, "escalate"),
            Act(resolved_at, "resolve"),
        ],
    )
    records = [n for n in notices if n.template == "business-team-record"]
    assert [(n.stage, n.context.get("event")) for n in records] == [
        (1, "stage started"),
        (2, "stage started"),
        (3, "stage started"),
        (3, "resolved"),
    ]
    form: FilledForm = records[-1].filled_forms[0]
    values = {f.key: f.value for f in form.fields}
    if ON_DESIGN_DATES:
        assert values["date-referred"] == "Tuesday 2 March 2027"
    day = stage_2.date()
    assert values["date-referred"] == f"{day:%A} {day.day} {day:%B %Y}"
    assert values["date"] != values["date-referred"]
    assert state.status == "awaiting-confirmation"


async def test_hillingdon_business_team_is_advised_of_an_outcome_at_stage_1() -> None:
    raised = london(2027, 3, 1, 10)
    notices, _ = await _rehearse(
        "hillingdon",
        raised,
        raised + timedelta(hours=2),
        [Act(raised + timedelta(hours=1), "resolve")],
    )
    records = [n for n in notices if n.template == "business-team-record"]
    assert [(n.stage, n.context.get("event"), n.forms) for n in records] == [(0, "resolved", [])]


# --- Ladder routes the sources allow ---------------------------------------------------


async def test_staffordshire_may_go_from_stage_2_straight_to_the_board_representative() -> None:
    """Stage 2 NB: "some stages may not be relevant ... as a minimum would have
    followed stage 1 and 2 before escalating to their Board representative"."""
    raised = london(2027, 3, 1, 10)
    jump = raised + timedelta(hours=1)
    run = await simulate(
        "staffordshire-stoke",
        raised,
        jump + timedelta(hours=1),
        [Act(raised + timedelta(minutes=30), "escalate"), Act(jump, "escalate", to_stage=4)],
    )
    assert [(e.stage, e.detail) for e in run.of("escalated")] == [
        (1, "from stage 0 to stage 1: escalated by a manager"),
        (4, "from stage 1 to stage 4: escalated by a manager"),
    ]
    assert run.of("refused") == []
    assert run.final == {"status": "open", "stage": 4}


async def test_staffordshire_still_unresolved_after_stage_5_goes_to_an_independent_adviser() -> (
    None
):
    """Stage 5 ¶5: "it shall be referred to an independent professional
    adviser", instead of overdue reminders for ever."""
    policy = get_policy("staffordshire-stoke")
    cal = WorkingDayCalendar(policy.calendar_spec())
    raised = london(2027, 3, 1, 10)
    start = raised
    for stage in policy.stages[:5]:
        deadline = cal.deadline(start, stage.timescale)
        assert deadline is not None
        start = deadline
    until = cal.add_working_days(start, 11)
    run = await simulate("staffordshire-stoke", raised, until)
    assert run.of("overdue") == []
    moved = [e for e in run.of("auto_escalated") if e.stage == 5]
    assert_at(moved, [start])
    reminders = run.of("reminder", "stage-reminder")
    assert_at(reminders, every(cal, start, until))
    assert reminders[0].to == run.labels(5)
    assert run.final == {"status": "open", "stage": 5}


async def test_merton_immediate_risk_case_may_start_with_the_line_managers() -> None:
    """§4.2.1: between the people who disagree "unless the child is at
    immediate risk (2 Working days)"."""
    policy = get_policy("merton")
    cal = WorkingDayCalendar(policy.calendar_spec())
    raised = london(2027, 3, 1, 10)
    timeline = await run_simulation(
        policy, raised, True, [], raised + timedelta(hours=1), start_stage=1
    )
    started = [e for e in timeline["events"] if e["type"] == "stage_started"]
    assert [(e["stage"], utc(e["deadline"])) for e in started] == [
        (1, cal.add_working_days(raised, 2))
    ]


# --- The contested readings ---------------------------------------------------------------


async def test_cheshire_day_1_2_raised_on_a_friday_escalates_on_tuesday_not_sunday() -> None:
    """ "Day 1-2" read as two working days (the policy file's reading): the
    line managers are not sent a case on a Sunday morning."""
    cal = calendar_of("cheshire")
    friday = london(2027, 3, 5, 10)
    assert friday.weekday() == 4
    due = cal.add_working_days(friday, 2)
    run = await simulate("cheshire", friday, due + timedelta(hours=1))
    moved = run.of("auto_escalated")
    assert_at(moved, [due])
    assert moved[0].at.astimezone(friday.tzinfo).weekday() == 1  # Tuesday
    if ON_DESIGN_DATES:
        assert due == utc("2027-03-09T17:00:00+00:00")


# --- Closures honoured in simulate ------------------------------------------------------------


def _closures() -> list[date]:
    first = CHRISTMAS.date() + timedelta(days=6)  # Tue 29 Dec 2026, moved on with the dates
    return [first + timedelta(days=i) for i in range(3)]


async def test_simulate_applies_the_deployments_closure_days() -> None:
    policy = get_policy("merton")
    closures = _closures()
    closed = WorkingDayCalendar(policy.calendar_spec(), closures)
    due = closed.add_working_days(CHRISTMAS, 5)
    timeline = await run_simulation(
        policy, CHRISTMAS, False, [], due + timedelta(hours=1), closures=closures
    )
    assert timeline["closures"] == [d.isoformat() for d in closures]
    moved = [e for e in timeline["events"] if e["type"] == "auto_escalated"]
    assert [utc(e["at"]) - due < timedelta(seconds=2) for e in moved] == [True]
    if ON_DESIGN_DATES:
        assert due == utc("2027-01-07T17:00:00+00:00")


def test_the_simulate_command_reads_escalation_extra_closures(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    closures = _closures()
    monkeypatch.setenv("ESCALATION_EXTRA_CLOSURES", json.dumps([d.isoformat() for d in closures]))
    monkeypatch.delenv("ESCALATION_DIRECTORY_FILE", raising=False)
    until = CHRISTMAS + timedelta(days=16)
    status = main(
        ["simulate", "merton", "--raised", CHRISTMAS.isoformat(), "--until", until.isoformat()]
    )
    out = capsys.readouterr().out
    assert status == 0
    assert "Closure days applied (ESCALATION_EXTRA_CLOSURES): " in out
    due = WorkingDayCalendar(get_policy("merton").calendar_spec(), closures).add_working_days(
        CHRISTMAS, 5
    )
    local = due.astimezone(CHRISTMAS.tzinfo)
    assert f"{local:%a} {local.day} {local:%b}" in out


# --- Who may withdraw and confirm ---------------------------------------------------------


async def _refused(call: Callable[[], Any]) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await call()
    assert isinstance(caught.value.cause, ApplicationError)
    return caught.value.cause.message


async def test_only_the_raising_side_withdraws(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness]
) -> None:
    harness = new_worker()
    request = make_request("merton", await ts_env.get_current_time())
    async with harness.worker(), open_case(harness, request) as handle:
        message = await _refused(
            lambda: handle.execute_update(
                DisagreementWorkflow.withdraw,
                Withdraw(by=receiving_manager(request), reason="Not ours to act on"),
            )
        )
        assert "only the agency that raised the concern" in message
        # The same from the Temporal UI as a signal is recorded as refused.
        await handle.signal(
            "withdraw",
            Withdraw(by=receiving_manager(request), reason="Again"),
        )
        state = await wait_for(handle, lambda s: any(e.type == "refused" for e in s.events))
        assert state.status == "open"
        result = await handle.execute_update(
            DisagreementWorkflow.withdraw, Withdraw(by=raising_manager(request), reason="Sorted")
        )
        assert result.status == "withdrawn"
        assert (await outcome(ts_env, handle)).status == "withdrawn"


async def test_only_the_receiving_line_manager_confirms_at_staffordshire_stage_2(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness]
) -> None:
    """Stage 2 ¶4: "the responsible line manager will advise the agency of the
    outcome ... and confirm by letter"."""
    harness = new_worker()
    request = make_request("staffordshire-stoke", await ts_env.get_current_time())
    manager = receiving_manager(request)
    practitioner = Actor(
        id="prac", name="Receiving practitioner", agency=manager.agency, role="practitioner"
    )
    async with harness.worker(), open_case(harness, request) as handle:
        await handle.execute_update(
            DisagreementWorkflow.escalate, Escalate(by=manager, reason="Not agreed")
        )
        await handle.execute_update(
            DisagreementWorkflow.resolve, Resolve(by=manager, outcome="Agreed")
        )
        for by in (practitioner, raising_manager(request)):
            message = await _refused(
                lambda by=by: handle.execute_update(
                    DisagreementWorkflow.confirm, ConfirmOutcome(by=by)
                )
            )
            assert "the receiving agency's manager confirms it in writing" in message
        result = await handle.execute_update(
            DisagreementWorkflow.confirm, ConfirmOutcome(by=manager)
        )
        assert result.status == "resolved"
        assert (await state_of(handle)).status == "resolved"


def test_simulate_chooses_the_two_agencies_and_the_area(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ESCALATION_DIRECTORY_FILE", raising=False)
    raised = london(2027, 3, 1, 10)
    status = main(
        [
            "simulate",
            "cheshire",
            "--raised",
            raised.isoformat(),
            "--until",
            (raised + timedelta(hours=1)).isoformat(),
            "--raising-agency",
            "police",
            "--receiving-agency",
            "education",
            "--area",
            "halton",
            "--json",
            "--immediate-risk",
        ]
    )
    result = json.loads(capsys.readouterr().out)
    assert status == 0
    told = {label for e in result["events"] for label in e["to"]}
    assert {"halton-police:practitioner", "halton-education:practitioner"} <= told
    # The area's own front door, not another area's.
    assert "halton-icart" in told and "warrington-mars" not in told


async def test_a_lincolnshire_like_step_2_falls_due_five_working_days_after_step_1_began() -> None:
    """ "within five working days of step 1": escalated by hand on day 1, and
    by itself when step 1's two working days pass, step 2 is due 5 working
    days after step 1 began, on the running case as in `policy explain`."""
    from policies.model import Policy
    from tests.test_cli_policy import lincolnshire_like

    policy = Policy.model_validate(lincolnshire_like())
    cal = WorkingDayCalendar(policy.calendar_spec())
    raised = london(2027, 3, 1, 10)
    due = cal.add_working_days(raised, 5)
    for acts in ([], [Act(raised + timedelta(hours=2), "escalate")]):
        timeline = await run_simulation(policy, raised, False, acts, due + timedelta(hours=1))
        started = [e for e in timeline["events"] if e["type"] == "stage_started"]
        assert [(e["stage"], utc(e["deadline"])) for e in started][:2] == [
            (0, cal.add_working_days(raised, 2)),
            (1, due),
        ]
        moved = [e for e in timeline["events"] if e["type"] == "auto_escalated"]
        assert near(utc(moved[-1]["at"]), due) and moved[-1]["stage"] == 2
    if ON_DESIGN_DATES:
        assert due == utc("2027-03-08T17:00:00+00:00")


def test_simulate_prints_when_the_written_decision_is_due(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's own check: Staffordshire, escalated into stage 3 on Mon 1
    Feb 15:05 and resolved two days later: the decision is due Wed 3 Feb."""
    monkeypatch.delenv("ESCALATION_EXTRA_CLOSURES", raising=False)
    monkeypatch.delenv("ESCALATION_DIRECTORY_FILE", raising=False)
    raised = london(2027, 2, 1, 9)
    acts = [
        f"{(raised + timedelta(minutes=30)).isoformat()}=escalate",
        f"{london(2027, 2, 1, 15, 5).isoformat()}=escalate",
        f"{london(2027, 2, 3, 10).isoformat()}=resolve",
    ]
    argv = ["simulate", "staffordshire-stoke", "--raised", raised.isoformat()]
    for act in acts:
        argv += ["--act", act]
    argv += ["--until", london(2027, 2, 5, 12).isoformat()]
    assert main(argv) == 0
    out = capsys.readouterr().out
    resolved = next(line for line in out.splitlines() if " resolved " in line)
    due = calendar_of("staffordshire-stoke").add_working_days(london(2027, 2, 1, 15, 5), 2)
    local = due.astimezone(raised.tzinfo)
    assert f"written confirmation due {local:%a} {local.day} {local:%b %Y} 17:00" in resolved
    if ON_DESIGN_DATES:
        assert "written confirmation due Wed 3 Feb 2027 17:00 GMT" in resolved


async def test_a_joint_boards_stage_goes_to_the_owner_for_the_cases_subject() -> None:
    """Owners that differ by subject where a board covers children and adults
    at risk: the same escalation reaches the adult safeguarding lead for an
    adult's case and the line managers for a child's."""
    from policies.model import Policy
    from tests.test_cli_policy import lincolnshire_like

    policy = Policy.model_validate(lincolnshire_like())
    raised = london(2027, 3, 1, 10)
    acts = [Act(raised + timedelta(hours=1), "escalate")]
    told = {}
    for subject in ("children", "adults-at-risk"):
        timeline = await run_simulation(
            policy, raised, False, acts, raised + timedelta(hours=2), subject=subject
        )
        started = [
            e
            for e in timeline["events"]
            if e.get("template") == "stage-started" and e["stage"] == 1
        ]
        told[subject] = set(started[0]["to"])
    assert "merton-health:adult-safeguarding-lead" in told["adults-at-risk"]
    assert "merton-health:adult-safeguarding-lead" not in told["children"]
    assert "merton-health:health-line-manager" in told["children"]


async def test_merton_pro_forma_asks_for_what_the_resolution_left_blank(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness]
) -> None:
    """Appendix 1 asks "If yes, what was agreed?" and for the learning: a
    manager who resolves without answering is asked for them, and the
    completed pro-forma goes to the business team when they arrive."""
    harness = new_worker()
    request = make_request("merton", await ts_env.get_current_time())
    manager = receiving_manager(request)
    async with harness.worker(), open_case(harness, request) as handle:
        for _ in range(2):
            await handle.execute_update(
                DisagreementWorkflow.escalate, Escalate(by=manager, reason="Not agreed")
            )
        result = await handle.execute_update(
            DisagreementWorkflow.resolve, Resolve(by=manager, outcome="Plan agreed")
        )
        assert result.status == "awaiting-confirmation"
        state = await wait_for(handle, lambda s: any(e.template == "form-due" for e in s.events))
        asked = [e for e in state.events if e.template == "form-due"]
        owner = f"{request.receiving_agency.key}:head-of-service"
        assert [e.to for e in asked] == [[owner]]
        assert state.forms_due["escalation-pro-forma"].part == "resolution"
        answers = {
            "completed-by": "Head of Service, children's social care",
            "what-was-agreed": "A strategy discussion this week",
            "agency-learning": "Thresholds training",
            "partnership-learning": "None",
        }
        missing = await _refused(
            lambda: handle.execute_update(
                DisagreementWorkflow.submit_form,
                SubmitForm(by=manager, form={"completed-by": "me"}),
            )
        )
        assert "'If yes, what was agreed?'" in missing
        await handle.execute_update(
            DisagreementWorkflow.submit_form, SubmitForm(by=manager, form=answers)
        )
        state = await state_of(handle)
        assert "escalation-pro-forma" not in state.forms_due
        assert "escalation-pro-forma" in state.forms_received
        assert state.resolution_form["what-was-agreed"] == answers["what-was-agreed"]
    records = [
        n
        for n in harness.sink.notices
        if n.reference == request.reference
        and n.template == "business-team-record"
        and n.context.get("event") == "form received"
    ]
    assert len(records) == 1 and records[0].forms == ["escalation-pro-forma"]
    fields = {f.key: f.value for f in records[0].filled_forms[0].fields}
    assert fields["agency-learning"] == "Thresholds training"


async def test_a_deadline_for_entering_the_next_stage_escalates_the_case_by_then() -> None:
    """On the running case, as in `policy explain`: a stage with no timescale
    of its own escalates when the next stage must have been entered."""
    from policies.model import Policy
    from tests.test_cli_policy import lincolnshire_like

    data = lincolnshire_like()
    data["stages"][1]["timescale"] = {"kind": "none", "source": "Step 2 sets none"}
    del data["stages"][1]["timescale_counts_from"]
    del data["stages"][1]["timescale_counts_from_source"]
    data["stages"][2]["enter_within"] = {
        "within": {"kind": "working_days", "days": 4, "source": "Step 3 'within 4 working days'"},
        "counts_from": "raise",
        "source": "Step 3 'referred within four working days of the concern being raised'",
    }
    policy = Policy.model_validate(data)
    cal = WorkingDayCalendar(policy.calendar_spec())
    raised = london(2027, 3, 1, 10)
    entry = cal.add_working_days(raised, 4)
    timeline = await run_simulation(policy, raised, False, [], entry + timedelta(hours=1))
    moved = [e for e in timeline["events"] if e["type"] == "auto_escalated"]
    assert [e["stage"] for e in moved] == [1, 2]
    assert near(utc(moved[1]["at"]), entry)
