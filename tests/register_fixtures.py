"""Fixtures for the register's tests (a plugin of tests/conftest.py): they
run against both databases the register supports, a SQLite file (the
embedded default) and a real PostgreSQL server (production)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from escalation.codec import KeyRing
from register import Register
from register.migrate import upgrade
from tests.postgres import postgres_server


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def fresh_postgres_database(server_url: str) -> str:
    """A new, empty database on the session's server, so tests never see
    each other's rows."""
    name = f"register_{uuid.uuid4().hex[:12]}"
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return server_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'register.sqlite3'}"
    return fresh_postgres_database(request.getfixturevalue("postgres_url"))


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing.generate()


@pytest.fixture
def register(empty_database: str, ring: KeyRing) -> Iterator[Register]:
    """A migrated register of each kind."""
    upgrade(empty_database)
    register = Register.from_url(empty_database, ring)
    yield register
    register.close()
