"""Authentication and authorisation across agencies and partnerships: a
cross-party test on every object route."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from api_helpers import Api, eventually, raise_body

PRACTITIONER = "merton-health-practitioner"
MANAGER = "merton-csc-manager"
BUSINESS_TEAM = "merton-business-team"
OPERATOR = "operator"

# Users who must not see a Merton health ↔ children's social care case:
OUTSIDERS = (
    "merton-police-practitioner",  # same partnership, agency not a party
    "cheshire-police-practitioner",  # another partnership
    "cheshire-business-team",  # another partnership's business team
)


def _soon() -> str:
    return (datetime.now(UTC) + timedelta(hours=1)).isoformat()


# Every route that names a case, with a body the case would accept from a party.
OBJECT_ROUTES: list[tuple[str, str, object]] = [
    ("GET", "", None),
    ("POST", "/acknowledge", {}),
    ("POST", "/resolve", {"outcome": "Agreed."}),
    ("POST", "/confirm", {}),
    ("POST", "/escalate", {"reason": "No agreement."}),
    ("POST", "/immediate-risk", {"reason": "Risk."}),
    ("POST", "/deadline", {"deadline": "SOON", "reason": "Protect the child."}),
    ("POST", "/notes", {"text": "A note."}),
    ("POST", "/withdraw", {"reason": "Withdrawn."}),
]


@pytest_asyncio.fixture(scope="module")
async def case_ref(api: Api) -> str:
    """A case the worker has finished raising. The API answers a raise before
    the worker has carried it out (recorded it, sent its first notice), so
    the tests' before-and-after comparisons start once the case is still."""
    ref = await api.raise_case()

    async def settled() -> bool:
        state = (await api.get(f"/disagreements/{ref}", OPERATOR)).json()
        return any(e.get("template") == "stage-started" for e in state.get("events", []))

    await eventually(settled, what="the raise's first notice recorded")
    return ref


async def _call(api: Api, method: str, path: str, user: str | None, body: object):
    if isinstance(body, dict) and body.get("deadline") == "SOON":
        body = {**body, "deadline": _soon()}
    if method == "GET":
        return await api.get(path, user)
    return await api.post(path, user, body)


@pytest.mark.parametrize("outsider", OUTSIDERS)
@pytest.mark.parametrize(("method", "suffix", "body"), OBJECT_ROUTES)
async def test_outsiders_get_404_on_every_case_route_and_are_logged(
    api: Api,
    case_ref: str,
    outsider: str,
    method: str,
    suffix: str,
    body: object,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="escalation.api.access")
    before = (await api.get(f"/disagreements/{case_ref}", OPERATOR)).json()

    refused = await _call(api, method, f"/disagreements/{case_ref}{suffix}", outsider, body)
    missing = await _call(api, method, f"/disagreements/MER-00000000{suffix}", outsider, body)

    assert refused.status_code == 404, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    # Indistinguishable from a case that does not exist.
    assert {k: v for k, v in refused.json().items() if k != "instance"} == {
        k: v for k, v in missing.json().items() if k != "instance"
    }
    records = [r for r in caplog.records if r.name == "escalation.api.access"]
    assert len(records) == 1
    message = records[0].getMessage()
    assert "access refused" in message
    assert outsider in message and case_ref in message
    # Nothing happened to the case.
    after = (await api.get(f"/disagreements/{case_ref}", OPERATOR)).json()
    assert after["events"] == before["events"]


async def test_outsiders_do_not_see_the_case_in_lists(api: Api, case_ref: str) -> None:
    async def listed(user: str) -> bool:
        response = await api.get("/disagreements", user, params={"page_size": 100})
        assert response.status_code == 200, response.text
        return any(i["reference"] == case_ref for i in response.json()["items"])

    async def insiders_see_it() -> bool:
        return all([await listed(u) for u in (PRACTITIONER, MANAGER, BUSINESS_TEAM, OPERATOR)])

    await eventually(insiders_see_it, what="the case in the insiders' lists")
    for outsider in OUTSIDERS:
        assert not await listed(outsider), outsider
    # A filter cannot widen the scope.
    response = await api.get(
        "/disagreements",
        "cheshire-police-practitioner",
        params={"partnership": "merton", "agency": "merton-health"},
    )
    assert response.json()["items"] == []


async def test_parties_business_team_and_operator_may_read_and_act(api: Api) -> None:
    ref = await api.raise_case()
    for user in (PRACTITIONER, MANAGER, BUSINESS_TEAM, OPERATOR):
        response = await api.get(f"/disagreements/{ref}", user)
        assert response.status_code == 200, (user, response.text)
        response = await api.post(f"/disagreements/{ref}/notes", user, {"text": f"from {user}"})
        assert response.status_code == 200, (user, response.text)
    state = (await api.get(f"/disagreements/{ref}", OPERATOR)).json()
    assert [n["by"]["id"] for n in state["notes"]] == [
        PRACTITIONER,
        MANAGER,
        BUSINESS_TEAM,
        OPERATOR,
    ]
    assert [n["by"]["role"] for n in state["notes"]] == [
        "practitioner",
        "manager",
        "business-team",
        "operator",
    ]
    response = await api.post(
        f"/disagreements/{ref}/resolve", BUSINESS_TEAM, {"outcome": "Agreed."}
    )
    assert response.status_code == 200, response.text
    # Merton §5.1: confirmed in writing "between the parties", at every stage.
    assert response.json()["status"] == "awaiting-confirmation"
    response = await api.post(f"/disagreements/{ref}/confirm", BUSINESS_TEAM, {})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "resolved"


async def test_who_may_raise(api: Api) -> None:
    # Not on behalf of another agency.
    other_agency = raise_body(
        raising_agency={"key": "merton-police", "name": "Merton police", "kind": "police"}
    )
    response = await api.post("/disagreements", PRACTITIONER, other_agency)
    assert response.status_code == 403, response.text
    assert "your own agency" in response.json()["detail"]
    # Not under another partnership's policy.
    response = await api.post("/disagreements", "cheshire-police-practitioner", raise_body())
    assert response.status_code == 403, response.text
    # The business team raises for any agency of its partnership; the operator anywhere.
    response = await api.post("/disagreements", BUSINESS_TEAM, other_agency)
    assert response.status_code == 201, response.text
    response = await api.post("/disagreements", OPERATOR, other_agency)
    assert response.status_code == 201, response.text
    response = await api.post("/disagreements", "cheshire-business-team", raise_body())
    assert response.status_code == 403, response.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/disagreements"),
        ("POST", "/disagreements"),
        ("GET", "/disagreements/MER-00000000"),
        ("POST", "/disagreements/MER-00000000/resolve"),
        ("GET", "/policies"),
        ("GET", "/policies/merton"),
        ("GET", "/policies/merton/explain?raised=2026-12-23T11:00"),
    ],
)
async def test_every_route_needs_a_token(api: Api, method: str, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-real-token"}, {"Authorization": "Basic x"}):
        response = await api.http.request(method, path, headers=headers, json={})
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["type"] == "/problems/unauthenticated"


async def test_health_checks_need_no_token(api: Api) -> None:
    assert (await api.get("/healthz", None)).json() == {"status": "ok"}
    response = await api.get("/readyz", None)
    assert response.status_code == 200, response.text
    assert response.json()["workflow_pollers"] >= 1
    assert response.json()["activity_pollers"] >= 1
