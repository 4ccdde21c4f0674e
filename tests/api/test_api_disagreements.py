"""Raise, list, read and act on cases through the API, against a real
Temporal dev server and worker."""

from __future__ import annotations

import logging
import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from api_helpers import MERTON_CSC, MERTON_HEALTH, Api, eventually, raise_body
from temporalio.testing import WorkflowEnvironment

from activities.notices import MemorySink
from api.cases import FINGERPRINT_MEMO, workflow_id
from api.main import create_app
from escalation import search_attributes as sa
from escalation.settings import Settings
from workers.worker import build_worker
from workflows.disagreement import DisagreementWorkflow
from workflows.messages import NOTES_PER_STAGE

PRACTITIONER = "merton-health-practitioner"
MANAGER = "merton-csc-manager"
BUSINESS_TEAM = "merton-business-team"
OPERATOR = "operator"
CHILD_SECRETS = ("Zebedee", "Quillfeather", "9434765919", "2019-04-01")

PROBLEM = "application/problem+json"


def assert_problem(response, status: int, slug: str | None = None, detail: str | None = None):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status
    assert body["title"]
    if slug:
        assert body["type"] == f"/problems/{slug}"
    if detail:
        assert detail in body["detail"], body
    return body


async def state(api: Api, ref: str, user: str = PRACTITIONER) -> dict:
    response = await api.get(f"/disagreements/{ref}", user)
    assert response.status_code == 200, response.text
    return response.json()


# --- Raise ------------------------------------------------------------------------------


async def test_raise_returns_reference_stage_and_deadline(api: Api) -> None:
    response = await api.post("/disagreements", PRACTITIONER, raise_body())
    assert response.status_code == 201, response.text
    body = response.json()
    assert re.fullmatch(r"MER-[0-9A-HJKMNP-TV-Z]{8}", body["reference"])
    assert body["stage"] == 0
    assert body["stage_key"] == "practitioners"
    assert body["status"] == "open"
    assert body["pending"] is False
    deadline = datetime.fromisoformat(body["deadline"])
    assert deadline > datetime.now(UTC)
    assert body["deadline_text"]
    assert response.headers["location"] == f"/disagreements/{body['reference']}"

    case = await state(api, body["reference"])
    assert case["reference"] == body["reference"]
    assert case["raised_by"]["id"] == PRACTITIONER
    assert case["raised_by"]["agency"] == "merton-health"
    assert case["raised_by"]["role"] == "practitioner"
    assert case["clock"]["deadline"] == body["deadline"]
    assert [e["type"] for e in case["events"]][:2] == ["raised", "stage_started"]
    assert case["events"][0]["by"] == PRACTITIONER


async def test_raise_sets_search_attributes_and_summary_without_child_data(
    api: Api, dev_env: WorkflowEnvironment, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ref = await api.raise_case(immediate_risk=True)
    description = await dev_env.client.get_workflow_handle(workflow_id(ref)).describe()
    attrs = description.typed_search_attributes
    assert attrs.get(sa.PARTNERSHIP) == "merton"
    assert attrs.get(sa.AREA) == "merton"
    assert attrs.get(sa.IMMEDIATE_RISK) is True
    assert sorted(attrs.get(sa.AGENCIES) or []) == sorted([MERTON_HEALTH["key"], MERTON_CSC["key"]])
    summary = await description.static_summary()
    assert summary == "merton · Merton health → Merton children's social care · immediate risk"
    memo = await description.memo()
    visible = repr(attrs) + repr(summary) + repr(memo) + caplog.text
    listed = await api.get("/disagreements", OPERATOR)
    visible += listed.text
    for secret in CHILD_SECRETS:
        assert secret not in visible


async def test_raise_refuses_invalid_cases_with_the_reason(api: Api) -> None:
    same = raise_body(receiving_agency=MERTON_HEALTH)
    assert_problem(
        await api.post("/disagreements", PRACTITIONER, same),
        422,
        "invalid-raise",
        "two different agencies",
    )
    later = raise_body(start_stage=2)
    assert_problem(
        await api.post("/disagreements", PRACTITIONER, later), 422, "invalid-raise", "starts every"
    )
    unknown = raise_body(policy="atlantis")
    assert_problem(
        await api.post("/disagreements", PRACTITIONER, unknown),
        422,
        "invalid-raise",
        "unknown policy",
    )
    # A validation error names the field, never echoes the child's details.
    bad_child = raise_body(child={"name": "Zebedee Quillfeather", "date_of_birth": "soon"})
    response = await api.post("/disagreements", PRACTITIONER, bad_child)
    body = assert_problem(response, 422, "validation-error")
    assert any(e["pointer"] == "/child/date_of_birth" for e in body["errors"])
    for secret in CHILD_SECRETS:
        assert secret not in response.text
    # The actor comes from the token, never from the body.
    forged = raise_body(raised_by={"id": "someone-else"})
    assert_problem(await api.post("/disagreements", PRACTITIONER, forged), 422, "validation-error")


# --- Idempotency ---------------------------------------------------------------------------


async def test_idempotent_raise_returns_the_same_case_and_starts_one_workflow(
    api: Api, dev_env: WorkflowEnvironment
) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = await api.post("/disagreements", PRACTITIONER, raise_body(), headers=key)
    assert first.status_code == 201, first.text
    again = await api.post("/disagreements", PRACTITIONER, raise_body(), headers=key)
    assert again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true"
    ref = first.json()["reference"]
    assert again.json()["reference"] == ref
    assert again.json()["deadline"] == first.json()["deadline"]

    count = await dev_env.client.count_workflows(f"WorkflowId = '{workflow_id(ref)}'")
    assert count.count == 1
    # The memo holds only a keyed fingerprint of the request.
    description = await dev_env.client.get_workflow_handle(workflow_id(ref)).describe()
    memo = await description.memo()
    assert set(memo) == {FINGERPRINT_MEMO}
    assert re.fullmatch(r"[0-9a-f]{64}", memo[FINGERPRINT_MEMO])

    # The same key for a different request is refused, and starts nothing.
    other = raise_body(summary="A different concern altogether.")
    assert_problem(
        await api.post("/disagreements", PRACTITIONER, other, headers=key),
        422,
        "idempotency-key-reused",
    )
    # Keys are per user: another user's same key is another case.
    mine = await api.post(
        "/disagreements",
        "merton-business-team",
        raise_body(),
        headers=key,
    )
    assert mine.status_code == 201, mine.text
    assert mine.json()["reference"] != ref

    # A retry after the case closed still finds it, and never starts a second one.
    withdrawn = await api.post(f"/disagreements/{ref}/withdraw", PRACTITIONER, {"reason": "test"})
    assert withdrawn.status_code == 200, withdrawn.text
    handle = dev_env.client.get_workflow_handle(workflow_id(ref))
    await handle.result()
    late = await api.post("/disagreements", PRACTITIONER, raise_body(), headers=key)
    assert late.status_code == 200, late.text
    assert late.json()["reference"] == ref
    assert late.json()["status"] == "withdrawn"
    count = await dev_env.client.count_workflows(f"WorkflowId = '{workflow_id(ref)}'")
    assert count.count == 1


async def test_a_stage_s_fifty_first_note_is_refused_with_the_limit(api: Api) -> None:
    """A case's state must fit in one Temporal payload: a stage keeps at most
    fifty notes, and the next is a 409 that says so."""
    ref = await api.raise_case()
    for number in range(NOTES_PER_STAGE):
        response = await api.post(
            f"/disagreements/{ref}/notes", PRACTITIONER, {"text": f"Call {number}"}
        )
        assert response.status_code == 200, response.text
    assert_problem(
        await api.post(f"/disagreements/{ref}/notes", PRACTITIONER, {"text": "One more"}),
        409,
        "action-refused",
        "this stage already has 50 notes, the most a stage keeps",
    )
    assert len((await state(api, ref))["notes"]) == NOTES_PER_STAGE


# --- Every action -------------------------------------------------------------------------


async def test_every_action_with_the_actor_recorded(api: Api) -> None:
    ref = await api.raise_case()
    path = f"/disagreements/{ref}"

    # Acknowledge: only the receiving agency.
    assert_problem(
        await api.post(f"{path}/acknowledge", PRACTITIONER, {}),
        409,
        "action-refused",
        "only the receiving agency acknowledges",
    )
    response = await api.post(f"{path}/acknowledge", MANAGER, {"note": "Seen."})
    assert response.status_code == 200, response.text
    assert response.json()["stage"] == 0
    assert_problem(
        await api.post(f"{path}/acknowledge", MANAGER, None), 409, "action-refused", "already"
    )

    response = await api.post(f"{path}/notes", PRACTITIONER, {"text": "Phoned the duty team."})
    assert response.status_code == 200, response.text

    # Shorten the deadline: never lengthen it.
    current = datetime.fromisoformat((await state(api, ref))["clock"]["deadline"])
    later = {"deadline": (current + timedelta(days=1)).isoformat(), "reason": "more time"}
    assert_problem(
        await api.post(f"{path}/deadline", MANAGER, later), 409, "action-refused", "never"
    )
    naive = {"deadline": "2030-01-01T10:00:00", "reason": "no zone"}
    assert_problem(await api.post(f"{path}/deadline", MANAGER, naive), 422, "validation-error")
    sooner = (datetime.now(UTC) + timedelta(hours=3)).replace(microsecond=0)
    response = await api.post(
        f"{path}/deadline", MANAGER, {"deadline": sooner.isoformat(), "reason": "protect"}
    )
    assert response.status_code == 200, response.text
    assert datetime.fromisoformat(response.json()["deadline"]) == sooner

    # Immediate risk: once.
    response = await api.post(f"{path}/immediate-risk", MANAGER, {"reason": "new information"})
    assert response.status_code == 200, response.text
    assert_problem(
        await api.post(f"{path}/immediate-risk", MANAGER, {"reason": "again"}),
        409,
        "action-refused",
        "already flagged",
    )

    # Confirm is refused until a resolution awaits written confirmation.
    assert_problem(
        await api.post(f"{path}/confirm", PRACTITIONER, {}), 409, "action-refused", "not awaiting"
    )

    for expected in (1, 2):
        response = await api.post(f"{path}/escalate", PRACTITIONER, {"reason": "no agreement"})
        assert response.status_code == 200, response.text
        assert response.json()["stage"] == expected

    # Stage 2 needs the outcome confirmed in writing.
    assert_problem(await api.post(f"{path}/resolve", MANAGER, {"outcome": ""}), 422)
    response = await api.post(f"{path}/resolve", MANAGER, {"outcome": "Plan agreed."})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "awaiting-confirmation"
    # Only the receiving senior manager confirms it (§4.4.2).
    assert_problem(
        await api.post(f"{path}/confirm", PRACTITIONER, None),
        409,
        "action-refused",
        "the receiving agency's manager confirms it in writing",
    )
    response = await api.post(f"{path}/confirm", MANAGER, None)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "resolved"

    # The case is closed: reads still work (the query replays), actions are refused.
    await eventually(lambda: _closed(api, ref), what="the workflow to complete after confirmation")
    assert_problem(
        await api.post(f"{path}/notes", PRACTITIONER, {"text": "late"}),
        409,
        "case-closed",
        "resolved",
    )

    case = await state(api, ref)
    assert case["status"] == "resolved"
    assert case["acknowledged_by"] is None  # reset by the stage changes
    assert case["notes"][0]["by"]["id"] == PRACTITIONER
    by_type = {}
    for event in case["events"]:
        by_type.setdefault(event["type"], []).append(event["by"])
    assert by_type["acknowledged"] == [MANAGER]
    assert by_type["note"] == [PRACTITIONER]
    assert by_type["deadline_shortened"] == [MANAGER]
    assert by_type["immediate_risk"] == [MANAGER]
    assert by_type["escalated"] == [PRACTITIONER, PRACTITIONER]
    assert by_type["resolved"] == [MANAGER]
    assert by_type["confirmed"] == [MANAGER]
    # The validators refused before anything was queued: no trace on the case.
    assert "refused" not in by_type


async def _closed(api: Api, ref: str) -> bool:
    response = await api.get("/disagreements", OPERATOR, params={"status": "resolved"})
    return any(item["reference"] == ref and item["closed_at"] for item in response.json()["items"])


async def test_withdraw_and_escalating_past_the_final_stage(api: Api) -> None:
    ref = await api.raise_case()
    path = f"/disagreements/{ref}"
    for _ in range(4):
        response = await api.post(f"{path}/escalate", MANAGER, {"reason": "no agreement"})
        assert response.status_code == 200, response.text
    assert response.json()["stage"] == 4
    assert_problem(
        await api.post(f"{path}/escalate", MANAGER, {"reason": "higher"}),
        409,
        "action-refused",
        "final stage",
    )
    response = await api.post(f"{path}/withdraw", BUSINESS_TEAM, {"reason": "Raised in error."})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "withdrawn"
    case = await state(api, ref, OPERATOR)
    withdrawn = [e for e in case["events"] if e["type"] == "withdrawn"]
    assert withdrawn[0]["by"] == BUSINESS_TEAM
    response = await api.post(f"{path}/withdraw", PRACTITIONER, {"reason": "again"})
    assert response.status_code == 409


async def test_unknown_reference_is_404(api: Api) -> None:
    for ref in ("MER-00000000", "not a reference", "x"):
        assert_problem(await api.get(f"/disagreements/{ref}", OPERATOR), 404, "not-found")
        response = await api.post(f"/disagreements/{ref}/resolve", OPERATOR, {"outcome": "x"})
        assert response.status_code == 404


# --- Listing -----------------------------------------------------------------------------


async def _listed(api: Api, user: str, ref: str, **params) -> bool:
    response = await api.get("/disagreements", user, params=params)
    assert response.status_code == 200, response.text
    return any(item["reference"] == ref for item in response.json()["items"])


async def test_list_filters(api: Api) -> None:
    risky = await api.raise_case(immediate_risk=True, categories=["thresholds", "housing"])
    plain = await api.raise_case()

    async def both_listed() -> bool:
        return await _listed(api, PRACTITIONER, risky) and await _listed(api, PRACTITIONER, plain)

    await eventually(both_listed, what="the new cases in the list")

    response = await api.get("/disagreements", PRACTITIONER, params={"page_size": 100})
    item = next(i for i in response.json()["items"] if i["reference"] == risky)
    assert item["policy"] == "merton"
    assert item["status"] == "open"
    assert item["stage"] == 0
    assert item["immediate_risk"] is True
    assert item["deadline"] is not None
    assert item["stage_name"] == "Practitioners"
    assert item["agencies"] == ["merton-health", "merton-childrens-social-care"]
    assert item["links"]["self"] == f"/disagreements/{risky}"

    checks = [
        ({"immediate_risk": "true"}, True, False),
        ({"immediate_risk": "false"}, False, True),
        ({"category": "housing"}, True, False),
        ({"partnership": "merton", "stage": 0}, True, True),
        ({"stage": 3}, False, False),
        ({"status": ["open", "overdue"]}, True, True),
        ({"status": "resolved"}, False, False),
        ({"agency": "merton-health"}, True, True),
        ({"agency": "merton-police"}, False, False),
        ({"area": "merton"}, True, True),
        ({"overdue": "false"}, True, True),
        ({"overdue": "true"}, False, False),
        ({"partnership": "cheshire"}, False, False),
    ]
    for params, risky_in, plain_in in checks:
        params = {**params, "page_size": 100}
        assert await _listed(api, PRACTITIONER, risky, **params) is risky_in, params
        assert await _listed(api, PRACTITIONER, plain, **params) is plain_in, params

    # Bad filters are problems, not visibility-query errors.
    assert_problem(
        await api.get("/disagreements", PRACTITIONER, params={"agency": "x' OR 1=1"}),
        422,
        "validation-error",
    )
    assert_problem(await api.get("/disagreements", PRACTITIONER, params={"status": "lost"}), 422)
    assert_problem(await api.get("/disagreements", PRACTITIONER, params={"page_token": "!!!"}), 422)


async def test_list_pages(api: Api) -> None:
    refs = {await api.raise_case() for _ in range(3)}

    async def all_listed() -> bool:
        response = await api.get("/disagreements", PRACTITIONER, params={"page_size": 100})
        return refs <= {i["reference"] for i in response.json()["items"]}

    await eventually(all_listed, what="three new cases in the list")
    seen: list[str] = []
    token = None
    for _ in range(100):
        params = {"page_size": 2, **({"page_token": token} if token else {})}
        response = await api.get("/disagreements", PRACTITIONER, params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= 2
        seen += [i["reference"] for i in page["items"]]
        token = page["next_page_token"]
        if not token:
            break
    assert refs <= set(seen)
    assert len(seen) == len(set(seen))


async def test_raise_answers_the_deadline_the_worker_then_plans(
    dev_env: WorkflowEnvironment, settings: Settings, tokens: dict[str, str]
) -> None:
    """The raise is answered before any worker has touched the case, with the
    deadline the worker's activity then records, closure days included."""
    today = datetime.now(UTC).date()
    closures = [today + timedelta(days=d) for d in range(1, 8)]  # a council's closure week
    lonely = settings.model_copy(
        update={"task_queue": f"nobody-yet-{uuid.uuid4()}", "extra_closures": closures}
    )
    app = create_app(lonely, client=dev_env.client)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            response = await http.post(
                "/disagreements",
                json=raise_body(),
                headers={"Authorization": f"Bearer {tokens[PRACTITIONER]}"},
            )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["pending"] is False
    answered = datetime.fromisoformat(body["deadline"])
    assert answered.date() > closures[-1]  # five working days, none in the closure week
    handle = dev_env.client.get_workflow_handle(workflow_id(body["reference"]))
    async with build_worker(dev_env.client, lonely.task_queue, MemorySink(), closures):

        async def planned_by_worker() -> bool:
            state = await handle.query(DisagreementWorkflow.get_state)
            # Raising records the first event (which the case may already
            # have let go to the register).
            return state.next_seq > 1

        await eventually(planned_by_worker, what="the worker to plan the case")
        planned = await handle.query(DisagreementWorkflow.get_state)
    assert planned.clock.deadline == answered
    assert planned.clock.deadline_text == body["deadline_text"]
    assert planned.raised_at == datetime.fromisoformat(body["raised_at"])
    await handle.terminate("test")


async def test_unknown_routes_are_problems(api: Api) -> None:
    response = await api.get("/nowhere", OPERATOR)
    assert_problem(response, 404)
    response = await api.http.put("/disagreements", json={})
    assert_problem(response, 405)
