"""Policies, health checks and the OpenAPI document."""

from __future__ import annotations

import uuid

import httpx
from api_helpers import Api
from fastapi import FastAPI
from temporalio.testing import WorkflowEnvironment

from api.auth import UsersFileAuthenticator
from api.main import create_app
from escalation.settings import Settings
from policies.loader import builtin_policies

USER = "cheshire-police-practitioner"  # policies are public: any signed-in user


async def test_list_and_show_policies(api: Api) -> None:
    response = await api.get("/policies", USER)
    assert response.status_code == 200, response.text
    ids = [p["id"] for p in response.json()]
    assert sorted(ids) == sorted(builtin_policies())
    merton = next(p for p in response.json() if p["id"] == "merton")
    assert merton["stages"][0] == {
        "index": 0,
        "key": "practitioners",
        "name": "Practitioners",
        "timescale": "5 working days",
    }

    response = await api.get("/policies/merton", USER)
    assert response.status_code == 200, response.text
    assert response.json() == builtin_policies()["merton"].model_dump(mode="json")

    response = await api.get("/policies/atlantis", USER)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "known policies" in response.json()["detail"]


async def test_explain_matches_the_design_example(api: Api) -> None:
    # DESIGN.md section 3: Wed 23 Dec 2026 11:00 London + 5 working days = Mon 4 Jan 17:00 GMT.
    response = await api.get(
        "/policies/merton/explain", USER, params={"raised": "2026-12-23T11:00"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["policy"] == "merton"
    assert body["immediate_risk"] is False
    first = body["stages"][0]
    assert first["starts"].startswith("2026-12-23T11:00:00")
    assert first["deadline"] == "2027-01-04T17:00:00Z"
    assert body["stages"][1]["starts"] == first["deadline"]

    risky = await api.get(
        "/policies/merton/explain",
        USER,
        params={"raised": "2026-12-23T11:00:00+00:00", "immediate_risk": "true"},
    )
    assert risky.json()["stages"][0]["deadline"] < first["deadline"]

    wirral = (
        await api.get("/policies/wirral/explain", USER, params={"raised": "2027-03-01T10:00"})
    ).json()
    assert wirral["stages"][1]["deadline"] is None
    assert wirral["stages"][2]["starts"] is None

    response = await api.get("/policies/merton/explain", USER, params={"raised": "yesterday"})
    assert response.status_code == 422
    assert "ISO 8601" in response.json()["detail"]
    response = await api.get("/policies/merton/explain", USER)
    assert response.status_code == 422
    assert response.json()["errors"][0]["location"] == "query"


async def test_readyz_is_503_without_a_worker(
    dev_env: WorkflowEnvironment, settings: Settings
) -> None:
    lonely = settings.model_copy(update={"task_queue": f"nobody-{uuid.uuid4()}"})
    app = create_app(
        lonely,
        client=dev_env.client,
        authenticator=UsersFileAuthenticator(settings.users_path),
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            response = await http.get("/readyz")
            assert response.status_code == 503
            body = response.json()
            assert body["type"] == "/problems/not-ready"
            assert body["workflow_pollers"] == 0
            assert (await http.get("/healthz")).status_code == 200


async def test_readyz_is_503_when_temporal_is_unreachable(settings: Settings, tmp_path) -> None:
    nowhere = settings.model_copy(update={"temporal_address": "127.0.0.1:9", "data_dir": tmp_path})
    app = create_app(nowhere)
    async with app.router.lifespan_context(app):  # a lazy client: starts without Temporal
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            assert (await http.get("/healthz")).status_code == 200
            response = await http.get("/readyz")
            assert response.status_code == 503, response.text
            assert "cannot be reached" in response.json()["detail"]


def test_openapi_has_examples_security_and_problem_details(app: FastAPI) -> None:
    spec = app.openapi()
    operations = [
        (method, path, op) for path, ops in spec["paths"].items() for method, op in ops.items()
    ]
    assert len(operations) >= 16
    for method, path, op in operations:
        where = f"{method.upper()} {path}"
        for status, response in op["responses"].items():
            for media_type, content in response.get("content", {}).items():
                assert "example" in content or "examples" in content, (where, status, media_type)
                if status.startswith(("4", "5")):
                    assert media_type == "application/problem+json", (where, status)
        body = op.get("requestBody")
        if body:
            for media_type, content in body["content"].items():
                assert "examples" in content or "example" in content, (where, media_type)
        for parameter in op.get("parameters", []):
            if parameter["in"] == "path":
                assert "examples" in parameter or "example" in parameter, (where, parameter)
        if method == "options":  # a CORS preflight carries no credentials
            continue
        secured = bool(op.get("security"))
        # The health checks are open; SendGrid's webhook is authenticated by
        # its signature, not a bearer token.
        assert secured == (path not in ("/healthz", "/readyz", "/webhooks/sendgrid")), where
        if secured:
            assert "401" in op["responses"], where
