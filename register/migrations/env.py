"""Alembic's environment for the register: online migrations only, against
the URL that ``register.migrate.config`` sets."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

from register.tables import Base

target_metadata = Base.metadata


def run() -> None:
    cfg = context.config
    engine = engine_from_config(
        cfg.get_section(cfg.config_ini_section) or {},
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            # SQLite alters tables by copying them.
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run()
