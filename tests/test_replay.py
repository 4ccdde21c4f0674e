"""Replay the checked-in histories against today's workflow code.

Each history stands for a case already running in production. If a change
to the workflow alters the commands it issues for any of them, replay fails
here: put the change behind ``workflow.patched`` instead (see
``tests/record_histories.py``).
"""

from __future__ import annotations

import base64
import json
import re
from collections import Counter
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from escalation.converter import data_converter
from workflows.disagreement import DisagreementWorkflow
from workflows.simulation import RehearsalWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_there_are_histories_for_every_path() -> None:
    names = {path.stem for path in HISTORIES}
    for policy in ("merton", "staffordshire", "cheshire", "wirral", "hillingdon"):
        assert any(name.startswith(policy) for name in names), policy
    for path in (
        "confirmation",
        "immediate-risk",
        "jump",
        "same-working-day",
        "withdrawn",
        "updates",
        "counted-from-stage-start",
        "reopened",
        "form-due",
        "direct-to",
        "withdraw-by-receiving-side-refused",
    ):
        assert any(path in name for name in names), path


def test_cases_since_the_local_activities_patch_have_histories() -> None:
    """The newer histories really took the patched path (local activities
    recorded as markers, no activity tasks), so replay covers both paths."""
    newer = [p for p in HISTORIES if p.stem.endswith("-local-activities")]
    assert len(newer) >= 3
    for path in newer:
        text = path.read_text()
        assert '"core_local_activity"' in text, path.stem
        assert "ACTIVITY_TASK_SCHEDULED" not in text, path.stem
    older = next(p for p in HISTORIES if p.stem == "merton-updates")
    assert "ACTIVITY_TASK_SCHEDULED" in older.read_text()


def test_cases_since_the_register_patch_have_histories() -> None:
    """The newer histories took the register's path: the patch marker, and
    the case written to the register as a local activity."""
    newer = [p for p in HISTORIES if p.stem.endswith("-register")]
    assert len(newer) >= 2
    for path in newer:
        payloads = _marker_payloads(path)
        assert b'"id":"case-register"' in payloads, path.stem
        assert b'"activity_type":"record_case"' in payloads, path.stem
    older = next(p for p in HISTORIES if p.stem == "merton-resolve-with-confirmation")
    assert b"record_case" not in _marker_payloads(older)


def _case_upserts(path: Path) -> int:
    """Upserts of the case's own search attributes (a patch's marker is one
    of the SDK's, naming only the patches)."""
    history = json.loads(path.read_text())
    return sum(
        1
        for event in history["events"]
        if "EscalationStatus"
        in json.dumps(event.get("upsertWorkflowSearchAttributesEventAttributes", {}))
    )


def test_the_publish_only_changes_path_has_a_history() -> None:
    """Since search attributes are upserted only when they change, the same
    case upserts fewer times than before, and its history shows the patch."""
    named = {p.stem: p for p in HISTORIES}
    before = named["merton-resolve-with-confirmation-register"]
    after = named["merton-resolve-with-confirmation-publish-changes"]
    patches = [
        base64.b64decode(field["TemporalChangeVersion"]["data"])
        for event in json.loads(after.read_text())["events"]
        for field in [
            event.get("upsertWorkflowSearchAttributesEventAttributes", {})
            .get("searchAttributes", {})
            .get("indexedFields", {})
        ]
        if "TemporalChangeVersion" in field
    ]
    assert any(b'"publish-only-changes"' in patch for patch in patches)
    assert 0 < _case_upserts(after) < _case_upserts(before)


def test_the_crash_and_interleave_path_has_a_history() -> None:
    """Since the notice-id-by-identity patch: a worker died after the
    escalation's notice went out, a note arrived before the retried task,
    which applied it first and found the notice already sent."""
    path = next(p for p in HISTORIES if p.stem == "merton-crash-after-notice-then-note")
    types = [e["eventType"] for e in json.loads(path.read_text())["events"]]
    timed_out = types.index("EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT")
    assert types[timed_out + 1] == "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED"
    payloads = _marker_payloads(path)
    assert b'"id":"notice-id-by-identity"' in payloads
    assert (
        b'"notice_id":"REPLAY-CRASH-s1n1-escalated-automatically","delivered":true,'
        b'"duplicate":true' in payloads
    )


def test_the_malformed_signals_path_has_a_history() -> None:
    """Since the malformed-signals-refused patch: signals the case could not
    read, each recorded as refused, and the case went on to its end."""
    path = next(p for p in HISTORIES if p.stem == "merton-malformed-signals-refused")
    types = [e["eventType"] for e in json.loads(path.read_text())["events"]]
    assert types.count("EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED") == 5
    assert "EVENT_TYPE_WORKFLOW_TASK_FAILED" not in types
    assert types[-1] == "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED"
    assert b'"id":"malformed-signals-refused"' in _marker_payloads(path)


def test_the_bounded_notes_path_has_a_history() -> None:
    """Since the bounded-notes-and-deadlines patch: a fifty-first note and a
    deadline beyond the horizon, sent as signals, refused on the case."""
    path = next(p for p in HISTORIES if p.stem == "merton-bounded-notes-refused")
    assert b'"id":"bounded-notes-and-deadlines"' in _marker_payloads(path)


def test_the_clock_failure_path_has_a_history() -> None:
    """Since the clock-failure-recorded patch: a deadline the calendar could
    not work out, recorded on the case, which went on to be withdrawn."""
    path = next(p for p in HISTORIES if p.stem == "merton-clock-failure-recorded")
    types = [e["eventType"] for e in json.loads(path.read_text())["events"]]
    assert "EVENT_TYPE_WORKFLOW_TASK_FAILED" not in types
    assert types[-1] == "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED"
    assert b'"id":"clock-failure-recorded"' in _marker_payloads(path)


def test_the_continue_by_length_path_has_a_history() -> None:
    """Since the continue-as-new-by-length patch: a run whose history passed
    the case's own bar continued as new."""
    path = next(p for p in HISTORIES if p.stem == "merton-continued-as-new-by-length")
    types = [e["eventType"] for e in json.loads(path.read_text())["events"]]
    assert types[-1] == "EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW"
    assert b'"id":"continue-as-new-by-length"' in _marker_payloads(path)


def test_the_continue_sooner_path_has_a_history() -> None:
    """Since the continue-as-new-sooner patch: a run continued as new at the
    lower bar, a few hundred events, not thousands."""
    path = next(p for p in HISTORIES if p.stem == "merton-continued-as-new-sooner")
    events = json.loads(path.read_text())["events"]
    assert events[-1]["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW"
    assert len(events) < 1_000
    assert b'"id":"continue-as-new-sooner"' in _marker_payloads(path)


def test_the_unencrypted_actions_path_has_a_history() -> None:
    """Since the unencrypted-actions-refused patch: a withdrawal signalled
    without the codec, recorded as refused (the case was not withdrawn), an
    update so sent refused before it entered the history, and the deadline
    escalating the case after them."""
    path = next(p for p in HISTORIES if p.stem == "merton-unencrypted-actions-refused")
    types = [e["eventType"] for e in json.loads(path.read_text())["events"]]
    assert types.count("EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED") == 1
    assert "EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED" not in types
    assert "EVENT_TYPE_WORKFLOW_TASK_FAILED" not in types
    payloads = _marker_payloads(path)
    assert b'"id":"unencrypted-actions-refused"' in payloads
    assert b"-s1n1-escalated-automatically" in payloads
    assert b"-withdrawn" not in payloads


def test_the_all_changes_path_has_histories() -> None:
    """Since a new case asks one patch for every change before it: the
    unattended case and the updates' case recorded again, each with that one
    patch marker (and one ``TemporalChangeVersion`` upsert), on the paths
    the other patches opened (the register's writes, local activities,
    notices named by what they are for)."""
    named = {p.stem: p for p in HISTORIES}
    recorded = {
        "staffordshire-unattended-all-changes": b"all-changes-to-2026-12-06",
        "merton-updates-all-changes": b"all-changes-to-2026-12-06",
        "staffordshire-unattended-stage-start": b"all-changes-to-2026-12-07",
        "merton-updates-stage-start": b"all-changes-to-2026-12-07",
    }
    for stem, marker in recorded.items():
        payloads = _marker_payloads(named[stem])
        patches = re.findall(rb'"id":"([a-z0-9-]+)"', payloads)
        assert patches == [marker], stem
        assert b'"activity_type":"record_case"' in payloads, stem
        assert b"-s0n1-stage-started" in payloads, stem
        assert b"-escalated-automatically" in payloads or b"-resolved" in payloads, stem
        versions = [
            event
            for event in json.loads(named[stem].read_text())["events"]
            if "TemporalChangeVersion"
            in json.dumps(event.get("upsertWorkflowSearchAttributesEventAttributes", {}))
        ]
        assert len(versions) == 1, stem


def test_a_stage_is_entered_in_one_activity() -> None:
    """Since a stage's clock and its first notice go together: the unattended
    case enters six stages with six ``start_stage`` activities and plans no
    clock on its own; the updates' case plans one alone, the deadline a
    manager moved, and sends the notice of it on its own."""
    named = {p.stem: p for p in HISTORIES}
    before = _activity_types(named["staffordshire-unattended-all-changes"])
    after = _activity_types(named["staffordshire-unattended-stage-start"])
    assert before["plan_stage_clock"] == after["start_stage"] == 6
    assert "plan_stage_clock" not in after
    assert after["send_notice"] == before["send_notice"] - 6
    assert after["record_case"] == before["record_case"]
    updates = _activity_types(named["merton-updates-stage-start"])
    assert updates["start_stage"] == 2 and updates["plan_stage_clock"] == 1


def _activity_types(path: Path) -> Counter[str]:
    found = re.findall(rb'"activity_type":"([a-z_]+)"', _marker_payloads(path))
    return Counter(name.decode() for name in found)


def _marker_payloads(path: Path) -> bytes:
    history = json.loads(path.read_text())
    found = []
    for event in history["events"]:
        marker = event.get("markerRecordedEventAttributes")
        for details in (marker or {}).get("details", {}).values():
            found += [base64.b64decode(p["data"]) for p in details.get("payloads", [])]
    return b"\n".join(found)


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, json.loads(path.read_text()))
    replayer = Replayer(
        workflows=[DisagreementWorkflow, RehearsalWorkflow], data_converter=data_converter()
    )
    await replayer.replay_workflow(history)


async def test_replay_detects_a_changed_workflow(tmp_path: Path) -> None:
    """The guard works: a history whose recorded commands differ from what the
    code would do (here, a deadline activity renamed) fails replay."""
    source = next(p for p in HISTORIES if p.stem == "merton-unattended")
    text = source.read_text().replace('"plan_stage_clock"', '"plan_stage_clock_v0"')
    history = WorkflowHistory.from_json("changed", json.loads(text))
    replayer = Replayer(workflows=[DisagreementWorkflow], data_converter=data_converter())
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is not None
