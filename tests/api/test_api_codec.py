"""The codec endpoint (``api.routes.codec``): Temporal's remote codec protocol,
for operators and the business team only, with the CORS headers the
Temporal UI needs. Runs on an app of its own (no Temporal server needed)."""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from api import problems
from api.auth import UsersFileAuthenticator
from api.routes import codec
from api.users import ensure_demo_users
from escalation.codec import ENCODING
from escalation.settings import Settings

UI = "http://localhost:8233"
CANARY = "Zebedee Quillfeather-Codec"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


PLAIN = {
    "payloads": [
        {"metadata": {"encoding": b64(b"json/plain")}, "data": b64(json.dumps(CANARY).encode())}
    ]
}


@pytest.fixture(scope="module")
def codec_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("codec-api")


@pytest.fixture(scope="module")
def codec_tokens(codec_data_dir: Path) -> dict[str, str]:
    return {user.id: token for user, token in ensure_demo_users(codec_data_dir)}


@pytest_asyncio.fixture(scope="module")
async def http(
    codec_data_dir: Path, codec_tokens: dict[str, str]
) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.state.settings = Settings(
        _env_file=None,
        ESCALATION_DATA_DIR=str(codec_data_dir),
        ESCALATION_TASK_QUEUE=f"codec-{uuid.uuid4()}",
    )
    app.state.authenticator = UsersFileAuthenticator(codec_data_dir / "users.yaml")
    problems.install(app)
    app.include_router(codec.router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        yield client


def auth(tokens: dict[str, str], user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[user]}", "X-Namespace": "default", "Origin": UI}


@pytest.mark.parametrize("user", ["operator", "cheshire-business-team"])
async def test_operators_and_the_business_team_encode_and_decode(
    http: httpx.AsyncClient,
    codec_tokens: dict[str, str],
    user: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    encoded = await http.post("/codec/encode", json=PLAIN, headers=auth(codec_tokens, user))
    assert encoded.status_code == 200, encoded.text
    assert encoded.headers["access-control-allow-origin"] == UI
    body = encoded.json()
    assert body["payloads"][0]["metadata"]["encoding"] == b64(ENCODING)
    assert CANARY not in encoded.text

    with caplog.at_level(logging.INFO, logger="escalation.api.codec"):
        decoded = await http.post("/codec/decode", json=body, headers=auth(codec_tokens, user))
    assert decoded.status_code == 200, decoded.text
    assert decoded.json() == PLAIN
    assert decoded.headers["access-control-allow-origin"] == UI
    logged = [r.getMessage() for r in caplog.records if r.name == "escalation.api.codec"]
    assert logged == [f"codec decode by user {user}: 1 payloads"]
    assert CANARY not in caplog.text


async def test_unauthenticated_and_practitioner_callers_are_refused(
    http: httpx.AsyncClient, codec_tokens: dict[str, str]
) -> None:
    nobody = await http.post("/codec/decode", json=PLAIN, headers={"Origin": UI})
    assert nobody.status_code == 401
    assert nobody.headers["access-control-allow-origin"] == UI  # the UI can read why
    for user in ("merton-health-practitioner", "merton-csc-manager"):
        refused = await http.post("/codec/decode", json=PLAIN, headers=auth(codec_tokens, user))
        assert refused.status_code == 403
        assert CANARY not in refused.text
    wrong = await http.post(
        "/codec/decode", json=PLAIN, headers={"Authorization": "Bearer not-a-token"}
    )
    assert wrong.status_code == 401


async def test_preflight_answers_the_temporal_ui_only(http: httpx.AsyncClient) -> None:
    preflight = {
        "Origin": UI,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
    }
    response = await http.options("/codec/decode", headers=preflight)
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == UI
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "content-type", "x-namespace"):
        assert header in allowed
    elsewhere = await http.options(
        "/codec/encode", headers={**preflight, "Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in elsewhere.headers


async def test_bad_bodies_and_unknown_keys_are_400(
    http: httpx.AsyncClient, codec_tokens: dict[str, str]
) -> None:
    headers = auth(codec_tokens, "operator")
    assert (await http.post("/codec/decode", content=b"{", headers=headers)).status_code == 400
    assert (await http.post("/codec/decode", json=[1], headers=headers)).status_code == 400
    foreign = {
        "payloads": [
            {
                "metadata": {
                    "encoding": b64(ENCODING),
                    "encryption-key-id": b64(b"retired-2019"),
                },
                "data": b64(b"\0" * 40),
            }
        ]
    }
    response = await http.post("/codec/decode", json=foreign, headers=headers)
    assert response.status_code == 400
    assert "retired-2019" in response.json()["detail"]
