"""Bringing a register's database to the current schema (Alembic).

``upgrade(url)`` is what ``make run`` does before it starts the worker and
the API, and what production's migration step (``escalation register
migrate``) does before either starts. The revisions live in
``register/migrations/versions``; the configuration is built here, so no
``alembic.ini`` needs to sit beside a deployment.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

MIGRATIONS = Path(__file__).with_name("migrations")


def config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation: a password with % in it must survive.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    _make_folder(url)
    command.upgrade(config(url), revision)


def _make_folder(url: str) -> None:
    """The embedded default's folder, on first use."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(config(url), revision)


def head() -> str:
    script = ScriptDirectory.from_config(config("sqlite://"))
    current = script.get_current_head()
    assert current is not None
    return current


class OutOfDateError(RuntimeError):
    """The register's database is not at the schema this code needs."""


def require_current(url: str) -> None:
    """Refuse to work on a database the migrations have not brought up to
    date: writes would fail on every case."""
    found, wanted = current(url), head()
    if found != wanted:
        raise OutOfDateError(
            f"the register's database is at schema {found or 'none (empty)'}, this code needs "
            f"{wanted}: run `escalation register migrate` (make run does it itself)"
        )


def current(url: str) -> str | None:
    """The database's schema revision; None for an empty (or new) database."""
    _make_folder(url)
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
