"""Signing the Temporal UI in to the codec endpoint: the embedded default's
UI has no login of its own, so an operator signs in once on the API and the
UI's codec calls carry an HttpOnly cookie instead of a bearer token."""

from __future__ import annotations

import base64
import json
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
from escalation.settings import Settings

UI = "http://localhost:8233"
PLAIN = {
    "payloads": [
        {
            "metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
            "data": base64.b64encode(json.dumps("a case").encode()).decode(),
        }
    ]
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("codec-login")


@pytest.fixture(scope="module")
def tokens(data_dir: Path) -> dict[str, str]:
    return {user.id: token for user, token in ensure_demo_users(data_dir)}


@pytest_asyncio.fixture
async def browser(data_dir: Path, tokens: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.state.settings = Settings(
        _env_file=None,
        ESCALATION_DATA_DIR=str(data_dir),
        ESCALATION_TASK_QUEUE=f"codec-{uuid.uuid4()}",
    )
    app.state.authenticator = UsersFileAuthenticator(data_dir / "users.yaml")
    problems.install(app)
    app.include_router(codec.router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8000") as client:
        yield client


async def test_the_sign_in_page_asks_for_a_token(browser: httpx.AsyncClient) -> None:
    page = await browser.get("/codec/login")
    assert page.status_code == 200
    assert 'name="token"' in page.text and "Include cross-origin credentials" not in page.text


async def test_an_operator_signs_in_and_the_cookie_then_decodes(
    browser: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    page = await browser.post("/codec/login", data={"token": tokens["operator"]})
    assert page.status_code == 200
    assert "Include cross-origin credentials" in page.text
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/codec" in cookie

    # What the UI sends with credentials included: the cookie, no bearer token.
    decoded = await browser.post("/codec/decode", json=PLAIN, headers={"Origin": UI})
    assert decoded.status_code == 200
    assert decoded.headers["access-control-allow-origin"] == UI
    assert decoded.headers["access-control-allow-credentials"] == "true"

    await browser.post("/codec/logout")
    refused = await browser.post("/codec/decode", json=PLAIN, headers={"Origin": UI})
    assert refused.status_code == 401


async def test_a_practitioner_cannot_sign_in(
    browser: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    page = await browser.post("/codec/login", data={"token": tokens["merton-health-practitioner"]})
    assert page.status_code == 403
    assert "set-cookie" not in page.headers
    assert "only operators and business-team users" in page.text


async def test_a_wrong_token_cannot_sign_in(browser: httpx.AsyncClient) -> None:
    page = await browser.post("/codec/login", data={"token": "not-a-token"})
    assert page.status_code == 401
    assert "set-cookie" not in page.headers
    assert 'name="token"' in page.text
