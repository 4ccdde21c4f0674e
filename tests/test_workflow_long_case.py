"""A case that runs for a year stays small and keeps answering: reminders
every 5 working days on stages without a timescale, hundreds of notes (those
past a stage's limit refused), escalations, and it continues as new before
its history grows long, on the time-skipping server."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

import workflows.ladder as ladder
from tests.conftest import (
    Harness,
    barrier,
    escalation_form,
    make_request,
    raising_manager,
    state_of,
)
from workflows.disagreement import DisagreementWorkflow
from workflows.messages import NOTES_PER_STAGE, AddNote, Escalate

WEEKS = 52
NOTES_A_WEEK = 4
ESCALATE_AT_WEEKS = (13, 26, 39)


async def test_a_year_of_reminders_and_hundreds_of_notes(
    ts_env: WorkflowEnvironment,
    new_worker: Callable[[], Harness],
) -> None:
    harness = new_worker()
    request = make_request("hillingdon", await ts_env.get_current_time())
    assert all(stage.timescale.kind == "none" for stage in request.policy.stages)
    manager = raising_manager(request)
    accepted = refused = 0
    async with harness.worker():
        handle = await harness.raise_case(request)
        await barrier(handle)
        first_run = handle.first_execution_run_id
        for week in range(WEEKS):
            if week in ESCALATE_AT_WEEKS:
                target = (await state_of(handle)).stage + 1
                await handle.execute_update(
                    DisagreementWorkflow.escalate,
                    Escalate(
                        by=manager,
                        reason="No agreement yet",
                        form=escalation_form(request.policy, target),
                    ),
                )
            for number in range(NOTES_A_WEEK):
                note = AddNote(by=manager, text=f"Week {week}, call {number}: no agreement")
                try:
                    await handle.execute_update(DisagreementWorkflow.add_note, note)
                    accepted += 1
                except WorkflowUpdateFailedError:
                    refused += 1
            await ts_env.sleep(timedelta(days=7))
        state = await state_of(handle)
        record = await handle.query(DisagreementWorkflow.get_record)
        await handle.terminate("test over")

    # Every stage kept its fifty notes (the first stage's first was the
    # barrier's) and refused the rest.
    assert accepted == 4 * NOTES_PER_STAGE - 1
    assert refused == WEEKS * NOTES_A_WEEK - accepted
    assert state.stage == 3 and state.status == "open"
    assert len(record.notes) == 4 * NOTES_PER_STAGE
    # About one reminder a week, each stage's own, for the whole year.
    reminders = [e for e in state.events if e.template == "stage-reminder"]
    assert 45 <= len(reminders) <= WEEKS
    assert {e.stage for e in reminders} == {0, 1, 2, 3}
    assert reminders[-1].at > state.raised_at + timedelta(days=350)
    # The whole year is in the state, and it is small.
    assert len(state.model_dump_json()) < 1_000_000

    # The case continued as new several times, no run's history near the warning.
    lengths = []
    run_id: str | None = first_run
    while run_id:
        history = await harness.client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        lengths.append(len(history.events))
        last = history.events[-1]
        continued = last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
        run_id = (
            last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
            if continued
            else None
        )
    # Each run ends within a step of the case's own bar, far below the
    # warning: what a worker that does not hold the case replays to answer.
    assert len(lengths) >= 5, lengths
    assert max(lengths) < ladder.CONTINUE_AS_NEW_AFTER_EVENTS + 50 < ladder.HISTORY_WARNING, lengths
