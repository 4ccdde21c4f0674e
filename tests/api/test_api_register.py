"""The API reads the register: lists of cases open or closed, a closed case
whole after Temporal has let it go, what a case is about for those entitled
to it, and clear answers for bad filters or a register that is down."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
import pytest
from api_helpers import Api, eventually
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from test_api_disagreements import BUSINESS_TEAM, MANAGER, OPERATOR, PRACTITIONER, assert_problem

from activities.notices import MemorySink
from api.auth import UsersFileAuthenticator
from api.cases import workflow_id
from api.main import create_app
from api.users import ensure_demo_users
from escalation import search_attributes
from escalation.codec import KeyRing
from escalation.converter import data_converter
from escalation.settings import Settings
from escalation.temporal_bin import temporal_cli
from register import Register
from workers.worker import build_worker
from workflows.disagreement import DisagreementWorkflow

ABOUT = {
    "summary": "The referral was closed; health believes the threshold is met.",
    "decision_disputed": "Children's social care closed the referral of 1 December.",
}


async def wait_closed(dev_env: WorkflowEnvironment, ref: str) -> None:
    handle = dev_env.client.get_workflow_handle(workflow_id(ref))
    await asyncio.wait_for(handle.result(), 30)


@asynccontextmanager
async def api_on_a_new_temporal(settings: Settings, register: Register) -> AsyncIterator[Api]:
    """The same register, with a Temporal that has never held the case: what
    the API sees once the namespace's retention has deleted it, or after the
    dev server's database file is removed."""
    empty = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        dev_server_startup_timeout=timedelta(seconds=60),
        search_attributes=search_attributes.ALL,
        data_converter=data_converter(settings),
        dev_server_log_level="error",
    )
    try:
        async with api_with(settings, empty.client, register) as api:
            yield api
    finally:
        await empty.shutdown()


@asynccontextmanager
async def api_with(settings: Settings, client: Client, register: Register) -> AsyncIterator[Api]:
    """The API in-process, on this Temporal client and this register."""
    app = create_app(
        settings,
        client=client,
        authenticator=UsersFileAuthenticator(settings.users_path),
        register=register,
    )
    tokens = {u.id: t for u, t in ensure_demo_users(settings.data_dir)}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            yield Api(http, tokens)


async def test_a_closed_case_stays_readable_after_temporal_forgets_it(
    api: Api, dev_env: WorkflowEnvironment, settings: Settings, register: Register
) -> None:
    ref = await api.raise_case(**ABOUT)
    path = f"/disagreements/{ref}"
    response = await api.post(f"{path}/escalate", PRACTITIONER, {"reason": "We cannot agree"})
    assert response.status_code == 200, response.text
    response = await api.post(f"{path}/notes", MANAGER, {"text": "Discussed with the team manager"})
    assert response.status_code == 200, response.text
    response = await api.post(f"{path}/withdraw", PRACTITIONER, {"reason": "Resolved by phone"})
    assert response.status_code == 200, response.text
    await wait_closed(dev_env, ref)
    before = (await api.get(path, PRACTITIONER)).json()
    assert before["source"] == "register"  # closed: the register is the record
    async with api_on_a_new_temporal(settings, register) as later:
        await _read_back(later, ref, before)


async def _read_back(api: Api, ref: str, before: dict[str, object]) -> None:
    path = f"/disagreements/{ref}"
    response = await api.get(path, PRACTITIONER)
    assert response.status_code == 200, response.text
    after = response.json()
    assert after == before
    assert after["source"] == "register"
    assert after["status"] == "withdrawn"
    assert after["about"]["summary"] == ABOUT["summary"]
    assert after["about"]["decision_disputed"] == ABOUT["decision_disputed"]
    assert after["about"]["child"]["name"] == "Zebedee Quillfeather"
    assert [e["seq"] for e in after["events"]] == list(range(1, len(after["events"]) + 1))
    escalated = next(e for e in after["events"] if e["type"] == "escalated")
    assert escalated["reason"] == "We cannot agree"
    assert escalated["by_role"] == "practitioner"
    assert (
        escalated["text"].startswith("escalated by ")
        and "practitioner at Merton health" in (escalated["text"])
    )
    assert next(e for e in after["events"] if e["type"] == "withdrawn")["reason"] == (
        "Resolved by phone"
    )
    assert [n["text"] for n in after["notes"]] == ["Discussed with the team manager"]
    # Listed, closed, for the business team too; never with what it is about.
    listed = await api.get("/disagreements", BUSINESS_TEAM, params={"status": "withdrawn"})
    items = {i["reference"]: i for i in listed.json()["items"]}
    assert ref in items and "about" not in items[ref] and "summary" not in items[ref]
    # An outsider learns nothing, exactly as for a case that never existed.
    outsider = await api.get(path, "cheshire-business-team")
    missing = await api.get("/disagreements/MER-ZZZZZZZZ", "cheshire-business-team")
    assert outsider.status_code == missing.status_code == 404
    assert outsider.json()["detail"] == missing.json()["detail"]


async def test_a_running_case_is_read_live_with_what_it_is_about(api: Api) -> None:
    ref = await api.raise_case(**ABOUT)
    response = await api.post(
        f"/disagreements/{ref}/immediate-risk", MANAGER, {"reason": "New information today"}
    )
    assert response.status_code == 200, response.text
    body = (await api.get(f"/disagreements/{ref}", BUSINESS_TEAM)).json()
    assert body["source"] == "case"
    assert body["about"]["summary"] == ABOUT["summary"]
    flagged = next(e for e in body["events"] if e["type"] == "immediate_risk")
    assert flagged["reason"] == "New information today"
    assert flagged["text"].endswith(": New information today")


async def test_lists_sort_by_deadline_and_page(api: Api) -> None:
    refs = [await api.raise_case(categories=[f"page-{uuid.uuid4().hex[:6]}"]) for _ in range(3)]

    async def all_listed() -> bool:
        body = (await api.get("/disagreements", OPERATOR, params={"page_size": 100})).json()
        return set(refs) <= {i["reference"] for i in body["items"]}

    await eventually(all_listed, what="the cases in the register")
    seen: list[str] = []
    token = None
    for _ in range(100):
        params = {"page_size": 2, "sort": "deadline", "partnership": "merton"}
        if token:
            params["page_token"] = token
        body = (await api.get("/disagreements", OPERATOR, params=params)).json()
        deadlines = [i["deadline"] or "9999" for i in body["items"]]
        assert deadlines == sorted(deadlines)
        seen += [i["reference"] for i in body["items"]]
        token = body["next_page_token"]
        if token is None:
            break
    assert set(refs) <= set(seen) and len(seen) == len(set(seen))


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"colour": "red"}, "colour"),
        ({"partnership": "atlantis"}, "partnership"),
        ({"status": "lost"}, "status"),
        ({"page_size": 0}, "page_size"),
        ({"page_size": 101}, "page_size"),
        (
            {"raised_from": "2027-02-01T00:00:00Z", "raised_to": "2027-01-01T00:00:00Z"},
            "raised_from",
        ),
        (
            {"closed_from": "2027-02-01T00:00:00Z", "closed_to": "2027-02-01T00:00:00Z"},
            "closed_from",
        ),
        ({"raised_from": "2027-02-01"}, "raised_from"),
        ({"page_token": "garbage"}, "page_token"),
        ({"page_token": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, "page_token"),
        ({"sort": "name"}, "sort"),
    ],
)
async def test_a_bad_filter_is_422_naming_the_field(
    api: Api, params: dict[str, object], field: str
) -> None:
    started = time.monotonic()
    response = await api.get("/disagreements", OPERATOR, params=params)
    body = assert_problem(response, 422, "validation-error")
    assert any(field in e["pointer"].split("/") for e in body["errors"]), body
    assert time.monotonic() - started < 2


async def test_a_register_that_is_down_answers_503_and_readyz_says_so(
    dev_env: WorkflowEnvironment, settings: Settings, worker: None
) -> None:
    down = Register.from_url("postgresql+psycopg://register@127.0.0.1:9/none", KeyRing.generate())
    app = create_app(
        settings,
        client=dev_env.client,
        authenticator=UsersFileAuthenticator(settings.users_path),
        register=down,
    )
    token = dict((u.id, t) for u, t in ensure_demo_users(settings.data_dir))[OPERATOR]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            headers = {"Authorization": f"Bearer {token}"}
            response = await http.get("/disagreements", headers=headers)
            body = assert_problem(response, 503, "service-unavailable", "register")
            assert "Traceback" not in response.text and body["detail"]
            ready = await http.get("/readyz")
            assert_problem(ready, 503, "not-ready", "register")
            assert ready.json()["register_database"] == "unreachable"


# --- A running case read whole --------------------------------------------------


async def test_a_running_case_is_read_whole_though_it_keeps_only_what_it_runs_on(
    api: Api, dev_env: WorkflowEnvironment
) -> None:
    """Once the register holds a case's events the case lets them go; the
    page and the API still show every one, each once, with its reason."""
    ref = await api.raise_case(**ABOUT)
    path = f"/disagreements/{ref}"
    notes = [f"Call {n} with the duty manager" for n in range(12)]
    for text in notes:
        response = await api.post(f"{path}/notes", MANAGER, {"text": text})
        assert response.status_code == 200, response.text
    response = await api.post(f"{path}/escalate", PRACTITIONER, {"reason": "We cannot agree"})
    assert response.status_code == 200, response.text
    handle = dev_env.client.get_workflow_handle(workflow_id(ref))

    async def let_go() -> bool:
        live = await handle.query(DisagreementWorkflow.get_state)
        return live.recorded_seq == live.next_seq - 1 and not live.events

    await eventually(let_go, what="the case to let go what the register holds")
    live = await handle.query(DisagreementWorkflow.get_state)
    assert live.notes == []

    response = await api.get(path, MANAGER)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [e["seq"] for e in body["events"]] == list(range(1, live.next_seq))
    assert [e["reason"] for e in body["events"] if e["type"] == "note"] == notes
    assert [n["text"] for n in body["notes"]] == notes
    escalated = next(e for e in body["events"] if e["type"] == "escalated")
    assert escalated["text"].endswith(": We cannot agree")


async def test_while_the_register_is_down_a_case_keeps_its_events_and_shows_them(
    dev_env: WorkflowEnvironment, settings: Settings, sink: MemorySink
) -> None:
    down = Register.from_url("postgresql+psycopg://register@127.0.0.1:9/none", KeyRing.generate())
    own = settings.model_copy(update={"task_queue": f"down-{uuid.uuid4().hex[:8]}"})
    async with (
        build_worker(dev_env.client, own.task_queue, sink, register=down),
        api_with(own, dev_env.client, down) as api,
    ):
        ref = await api.raise_case(**ABOUT)
        path = f"/disagreements/{ref}"
        for text in ("Called the duty manager", "Sent the chronology"):
            response = await api.post(f"{path}/notes", MANAGER, {"text": text})
            assert response.status_code == 200, response.text
        live = await dev_env.client.get_workflow_handle(workflow_id(ref)).query(
            DisagreementWorkflow.get_state
        )
        assert live.recorded_seq == 0
        assert [e.seq for e in live.events] == list(range(1, live.next_seq))
        response = await api.get(path, MANAGER)
        assert response.status_code == 200, response.text
        body = response.json()
        assert [e["seq"] for e in body["events"]] == list(range(1, live.next_seq))
        assert [e["reason"] for e in body["events"] if e["type"] == "note"] == [
            "Called the duty manager",
            "Sent the chronology",
        ]
        await dev_env.client.get_workflow_handle(workflow_id(ref)).terminate("test over")
