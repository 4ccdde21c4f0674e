"""``escalation simulate``: rehearse a policy on Temporal's time-skipping server.

The real workflow, worker and activities run; notices are captured instead of
sent; time jumps from one timer to the next, so months of a case take
seconds. Actions given with ``--act`` are sent as the real updates at their
instants. The output is the case's own timeline, as recorded in its state.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, get_args

from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import WorkflowHandle
from temporalio.converter import DataConverter
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.notices import MemorySink
from escalation import search_attributes
from escalation.clitools import (
    CliError,
    iso,
    local_text,
    parse_instant,
    print_json,
    resolve_policy,
)
from escalation.codec import KeyRing
from escalation.converter import data_converter, use_ephemeral_key_when_unconfigured
from escalation.policy_cli import closures_line, deployment_closures
from escalation.temporal_bin import test_server
from policies.directory import Directory
from policies.model import AgencyKind, Policy
from register import Register
from workers.worker import build_worker
from workflows.disagreement import DisagreementWorkflow
from workflows.ladder import raise_problems
from workflows.messages import (
    Acknowledge,
    Action,
    Actor,
    AddNote,
    Agency,
    CaseState,
    ConfirmOutcome,
    Escalate,
    FlagImmediateRisk,
    RaiseDisagreement,
    Reopen,
    Resolve,
    SubmitForm,
    Withdraw,
)
from workflows.simulation import RehearsalPlan, RehearsalWorkflow, RehearsedAction

ACTIONS = (
    "resolve",
    "confirm",
    "escalate",
    "immediate-risk",
    "withdraw",
    "acknowledge",
    "note",
    "reopen",
    "form",
)
DEFAULT_HORIZON = timedelta(days=120)
# The test server's clock reads "now" a moment after we do.
PAST_TOLERANCE = timedelta(minutes=1)


@dataclass(frozen=True)
class Act:
    at: datetime
    action: str
    # For escalate and immediate-risk: a later stage to jump to, where the
    # policy allows it (e.g. Hillingdon).
    to_stage: int | None = None


def parse_act(text: str, zone: str) -> Act:
    when, sep, action = text.rpartition("=")
    if not sep or not when:
        raise CliError(f"--act {text!r}: expected ISO8601=ACTION, e.g. 2027-01-05T10:00=resolve")
    action, _, stage = action.strip().partition(":")
    if action not in ACTIONS:
        raise CliError(f"--act {text!r}: unknown action {action!r}; one of {', '.join(ACTIONS)}")
    to_stage = None
    if stage:
        if action not in ("escalate", "immediate-risk") or not stage.isdigit():
            raise CliError(
                f"--act {text!r}: only escalate:STAGE and immediate-risk:STAGE take a stage number"
            )
        to_stage = int(stage)
    return Act(parse_instant(when, zone, what="--act"), action, to_stage)


def parties(
    policy: Policy,
    raising_kind: str = "health",
    receiving_kind: str = "childrens-social-care",
    area: str | None = None,
) -> tuple[Agency, Agency, str]:
    """A pair of agencies of these kinds in an area (by default health and
    children's social care in the policy's first area)."""
    names = {a.key: a.name for a in policy.areas}
    key = area or policy.areas[0].key
    place = names.get(key, key)
    raising = Agency(
        key=f"{key}-{raising_kind}",
        name=f"{place} {_KIND_WORDS.get(raising_kind, raising_kind)}",
        kind=raising_kind,
    )
    receiving = Agency(
        key=f"{key}-{receiving_kind}",
        name=f"{place} {_KIND_WORDS.get(receiving_kind, receiving_kind)}",
        kind=receiving_kind,
    )
    return raising, receiving, key


_KIND_WORDS = {
    "childrens-social-care": "children's social care",
    "primary-care": "primary care (GP practice)",
}


def _all_fields(policy: Policy, origin: str) -> dict[str, str]:
    return {f.key: "(simulated)" for form in policy.forms for f in form.fields_from(origin)}


def _action(act: Act, policy: Policy, manager: Actor, raising_manager: Actor) -> Action:
    name = act.action
    if name == "resolve":
        # Every field a resolution may be asked for (Merton's pro-forma).
        form = {
            f.key: "(simulated)" for form in policy.forms for f in form.fields_from("resolution")
        }
        return Resolve(by=manager, outcome="Agreed a way forward (simulated)", form=form)
    if name == "reopen":
        return Reopen(by=manager, reason="No real agreement (simulated)")
    if name == "form":
        form = {
            f.key: "(simulated)" for form in policy.forms for f in form.fields_from("escalation")
        }
        return SubmitForm(by=raising_manager, form=form)
    if name == "confirm":
        return ConfirmOutcome(by=manager)
    if name == "acknowledge":
        return Acknowledge(by=manager)
    if name == "note":
        return AddNote(by=manager, text="Discussion recorded (simulated)")
    if name == "withdraw":
        # Only the side that raised the concern may withdraw it.
        return Withdraw(by=raising_manager, reason="Withdrawn (simulated)")
    if name == "immediate-risk":
        return FlagImmediateRisk(
            by=manager, reason="Immediate risk flagged (simulated)", jump_to_stage=act.to_stage
        )
    # The driver cannot know the stage in advance: fill every form's fields.
    form = {f.key: "(simulated)" for form in policy.forms for f in form.fields_from("escalation")}
    return Escalate(
        by=manager, reason="Escalated by a manager (simulated)", form=form, to_stage=act.to_stage
    )


_SIGNAL_NAMES = {
    "resolve": "resolve",
    "confirm": "confirm",
    "escalate": "escalate",
    "immediate-risk": "immediate_risk",
    "withdraw": "withdraw",
    "acknowledge": "acknowledge",
    "note": "add_note",
    "reopen": "reopen",
    "form": "submit_form",
}


async def _register_search_attributes(env: WorkflowEnvironment) -> None:
    try:
        await env.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=env.client.namespace,
                search_attributes=search_attributes.indexed_types(),
            )
        )
    except RPCError as exc:
        if "already" not in str(exc).lower():
            raise


@dataclass
class Rehearsal:
    raised: datetime
    state: CaseState
    sink: MemorySink
    case: WorkflowHandle


async def run_simulation(
    policy: Policy,
    raised: datetime | None,
    immediate_risk: bool,
    acts: list[Act],
    until: datetime | None,
    start_stage: int = 0,
    directory: Directory | None = None,
    closures: Sequence[date] = (),
    agencies: tuple[str, str] = ("health", "childrens-social-care"),
    area: str | None = None,
    subject: str = "children",
) -> dict[str, Any]:
    """The whole `escalation simulate` run on a server of its own. With a role
    directory, each notice's event also lists the people it went to. The
    deployment's closure days count as non-working days, as in the worker."""
    env = await start_test_server()
    try:
        result = await rehearse(
            env,
            policy,
            raised,
            immediate_risk,
            acts,
            until,
            start_stage,
            directory=directory,
            closures=closures,
            agencies=agencies,
            area=area,
            subject=subject,
        )
        timeline = _timeline(policy, result.raised, immediate_risk, result.state, result.sink)
        timeline["closures"] = [d.isoformat() for d in sorted(closures)]
        return timeline
    finally:
        await env.shutdown()


def _quiet_runtime() -> Runtime:
    """The SDK core warns that the test server lacks newer features; in a
    rehearsal that is noise in the user's terminal."""
    logging = LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))
    return Runtime(telemetry=TelemetryConfig(logging=logging))


async def start_test_server(
    runtime: Runtime | None = None, converter: DataConverter | None = None
) -> WorkflowEnvironment:
    # The server and its histories die with the rehearsal: an in-memory key
    # will do unless one is configured.
    use_ephemeral_key_when_unconfigured()
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=test_server(),
        data_converter=converter or data_converter(),
        runtime=runtime or _quiet_runtime(),
    )
    await _register_search_attributes(env)
    return env


async def rehearse(
    env: WorkflowEnvironment,
    policy: Policy,
    raised: datetime | None,
    immediate_risk: bool,
    acts: list[Act],
    until: datetime | None,
    start_stage: int = 0,
    *,
    directory: Directory | None = None,
    closures: Sequence[date] = (),
    agencies: tuple[str, str] = ("health", "childrens-social-care"),
    area: str | None = None,
    subject: str = "children",
) -> Rehearsal:
    """Run one case through its ladder on a time-skipping server; the case is
    terminated if it is still open at the horizon."""
    now = await env.get_current_time()
    raised = raised or now
    if raised < now - PAST_TOLERANCE:
        raise CliError(
            f"--raised {raised.isoformat()} is in the past; the simulator's clock can only "
            f"move forward from now ({now.astimezone(UTC):%Y-%m-%d %H:%M} UTC)"
        )
    horizon = until or raised + DEFAULT_HORIZON
    for act in acts:
        if act.at < raised:
            raise CliError(f"--act at {act.at.isoformat()} is before --raised")
    sink = MemorySink()
    task_queue = f"simulate-{uuid.uuid4()}"
    if area is not None and area not in {a.key for a in policy.areas}:
        known = ", ".join(a.key for a in policy.areas)
        raise CliError(f"--area {area!r} is not one of the {policy.id} areas: {known}")
    raising, receiving, area = parties(policy, *agencies, area=area)
    reference = f"SIM-{uuid.uuid4().hex[:8].upper()}"
    request = RaiseDisagreement(
        reference=reference,
        policy=policy,
        area=area,
        raised_by=Actor(
            id="sim-raiser",
            name="Raising practitioner",
            agency=raising.key,
            role="practitioner",
        ),
        raising_agency=raising,
        receiving_agency=receiving,
        categories=["thresholds"],
        summary="Simulated disagreement",
        immediate_risk=immediate_risk,
        start_stage=start_stage,
        raised_at=raised,
        subject=subject,
    )
    problems = raise_problems(request)
    if problems:
        raise CliError("; ".join(problems))
    manager = Actor(
        id="sim-manager", name="Receiving manager", agency=receiving.key, role="manager"
    )
    raising_manager = Actor(
        id="sim-raising-manager", name="Raising manager", agency=raising.key, role="manager"
    )
    plan = RehearsalPlan(
        case_workflow_id=f"disagreement-{reference}",
        request=request,
        raise_at=raised,
        actions=[
            RehearsedAction(
                at=act.at,
                signal=_SIGNAL_NAMES[act.action],
                payload=_action(act, policy, manager, raising_manager).model_dump(mode="json"),
            )
            for act in acts
        ],
        horizon=horizon,
    )
    if directory is not None:
        # The raiser is a person, not a role: give the rehearsal's one an
        # (invented) address so the directory run has nobody unfilled.
        request.raised_by.email = f"raising.practitioner@{raising.key}.example.org"
    # The case writes itself here and lets go what it has written: the
    # timeline is read back whole from it.
    register = Register.in_memory(KeyRing.generate())
    async with build_worker(
        env.client,
        task_queue,
        sink,
        closures,
        register=register,
        directory=directory,
        workflows=[RehearsalWorkflow],
        # A rehearsal should fail loudly on a bug, not retry it for ever.
        workflow_failure_exception_types=[Exception],
    ):
        rehearsal = await env.client.start_workflow(
            RehearsalWorkflow.run,
            plan,
            id=f"rehearsal-{reference}",
            task_queue=task_queue,
        )
        # The server skips from timer to timer up to the horizon and stops
        # there. (Awaiting the rehearsal's result instead lets it skip on
        # past the horizon until the client hears the rehearsal finished.)
        await env.sleep(max(horizon - await env.get_current_time(), timedelta(0)))
        case = env.client.get_workflow_handle(plan.case_workflow_id)
        state = await case.query(DisagreementWorkflow.get_state)
        if state.is_open:
            await case.terminate("simulation horizon reached")
        await rehearsal.result()  # a rehearsal that failed says why
        state = register.whole(state)
        register.close()
    return Rehearsal(raised=raised, state=state, sink=sink, case=case)


def _timeline(
    policy: Policy,
    raised: datetime,
    immediate_risk: bool,
    state: CaseState,
    sink: MemorySink,
) -> dict[str, Any]:
    events: list[dict[str, Any]] = []
    for event in state.events:
        item: dict[str, Any] = {
            "at": iso(event.at.astimezone(UTC)),
            "type": event.type,
            "stage": event.stage,
            "deadline": iso(event.deadline.astimezone(UTC)) if event.deadline else None,
            "to": event.to,
        }
        if event.template:
            item["template"] = event.template
        if event.notice_id and event.type in ("notice", "reminder"):
            # Who the notice reached (with a role directory).
            people = [
                f"{a.name} <{a.email}>"
                for email in sink.emails_for(event.notice_id)
                if email.key == event.notice_id
                for a in email.to
            ]
            if people:
                item["people"] = people
        if event.detail:
            item["detail"] = event.detail
        events.append(item)
    return {
        "policy": policy.id,
        "raised": iso(raised.astimezone(UTC)),
        "immediate_risk": immediate_risk,
        "events": events,
        "notices_captured": len(sink.notices),
        "final": {"status": state.status, "stage": state.stage},
    }


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "simulate",
        help="rehearse a policy on the time-skipping test server",
        description="Run the real workflow on Temporal's time-skipping test server and print "
        "the case's timeline. Notices are captured, not sent.",
    )
    parser.add_argument("policy_id", nargs="?", metavar="POLICY_ID")
    parser.add_argument("--policy-file", help="rehearse a partnership's own policy file")
    parser.add_argument("--raised", help="when the concern is raised (ISO 8601; default now)")
    parser.add_argument(
        "--immediate-risk", action="store_true", help="flag immediate risk at raise"
    )
    parser.add_argument(
        "--act",
        action="append",
        default=[],
        metavar="ISO8601=ACTION",
        help=f"an action at an instant; ACTION is one of {', '.join(ACTIONS)} "
        "(escalate:STAGE and immediate-risk:STAGE jump where the policy allows)",
    )
    parser.add_argument(
        "--start-stage",
        type=int,
        default=0,
        metavar="INDEX",
        help="raise at a later stage (only with --immediate-risk, where the policy allows it)",
    )
    parser.add_argument("--until", help="stop here (default: 120 days after --raised)")
    kinds = [k for k in get_args(AgencyKind) if k != "any"]
    parser.add_argument(
        "--raising-agency",
        choices=kinds,
        default="health",
        metavar="KIND",
        help=f"the kind of agency raising the concern (default health; {', '.join(kinds)})",
    )
    parser.add_argument(
        "--receiving-agency",
        choices=kinds,
        default="childrens-social-care",
        metavar="KIND",
        help="the kind of agency the concern is raised with (default childrens-social-care)",
    )
    parser.add_argument("--area", metavar="KEY", help="the area of the case (default the first)")
    parser.add_argument(
        "--subject",
        choices=["children", "adults-at-risk"],
        default="children",
        help="whom the case is about, where the policy covers both (default children)",
    )
    parser.add_argument(
        "--directory",
        metavar="FILE",
        help="role directory to address notices with, listing each notice's people "
        "(default: ESCALATION_DIRECTORY_FILE if set; 'example' for the example directory)",
    )
    parser.add_argument("--json", action="store_true", help="print the timeline as JSON")
    parser.set_defaults(handler=_simulate)


def _simulate(args: argparse.Namespace) -> int:
    policy = resolve_policy(args.policy_id, args.policy_file)
    zone = policy.time_zone
    raised = parse_instant(args.raised, zone) if args.raised else None
    until = parse_instant(args.until, zone, what="--until") if args.until else None
    acts = [parse_act(text, zone) for text in args.act]
    directory = _directory(args.directory)
    closures = deployment_closures()
    result = asyncio.run(
        run_simulation(
            policy,
            raised,
            args.immediate_risk,
            acts,
            until,
            args.start_stage,
            directory,
            closures,
            agencies=(args.raising_agency, args.receiving_agency),
            area=args.area,
            subject=args.subject,
        )
    )
    if args.json:
        print_json(result)
    else:
        _print_readable(policy, result)
    return 0


def _directory(name: str | None) -> Directory | None:
    from escalation.settings import get_settings
    from policies.directory import DirectoryFileError, example_directory, load_directory

    path = name or get_settings().directory_file
    if path is None:
        return None
    try:
        return example_directory() if str(path) == "example" else load_directory(path)
    except DirectoryFileError as exc:
        raise CliError(str(exc)) from None


def _print_readable(policy: Policy, result: dict[str, Any]) -> None:
    zone = policy.time_zone
    print(
        f"{policy.partnership} · raised "
        f"{local_text(datetime.fromisoformat(result['raised']), zone)}"
    )
    for event in result["events"]:
        at = local_text(datetime.fromisoformat(event["at"]), zone)
        stage = "" if event["stage"] is None else f"stage {event['stage']}"
        line = f"{at:<26} {stage:<8} {event['type']:<18}"
        if event.get("template"):
            line += f" {event['template']}"
        if event["to"]:
            line += f" → {', '.join(event['to'])}"
        if event.get("detail"):
            line += f" ({event['detail']})"
        if event.get("people"):
            line += "\n" + " " * 28 + "people: " + ", ".join(event["people"])
        if event["type"] == "stage_started" and event["deadline"]:
            line += f" · due {local_text(datetime.fromisoformat(event['deadline']), zone)}"
        if event["type"] == "resolved" and event["deadline"]:
            due = local_text(datetime.fromisoformat(event["deadline"]), zone)
            line += f" · written confirmation due {due}"
        print(line)
    final = result["final"]
    print(f"final: {final['status']} at stage {final['stage']}")
    print(closures_line([date.fromisoformat(d) for d in result.get("closures", [])]))
