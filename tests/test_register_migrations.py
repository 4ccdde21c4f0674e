"""The register's migrations, on SQLite and PostgreSQL: an empty database
reaches the current schema, which is exactly what the models describe, and
a database at the previous revision upgrades with its rows intact."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from register import tables as t
from register.migrate import current, downgrade, head, upgrade


def test_an_empty_database_reaches_the_current_schema(empty_database: str) -> None:
    assert current(empty_database) is None
    upgrade(empty_database)
    assert current(empty_database) == head()
    engine = create_engine(empty_database)
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), t.Base.metadata)
        assert differences == [], "the migrations and register/tables.py differ"
    finally:
        engine.dispose()
    upgrade(empty_database)  # again: nothing to do, nothing fails
    assert current(empty_database) == head()


def test_the_previous_revision_upgrades_with_its_cases(empty_database: str) -> None:
    upgrade(empty_database, "0001")
    engine = create_engine(empty_database)
    try:
        assert "sent_emails" not in inspect(engine).get_table_names()
        now = datetime(2027, 1, 4, 10, tzinfo=UTC)
        with engine.begin() as connection:
            connection.execute(
                t.Case.__table__.insert().values(  # type: ignore[attr-defined]
                    reference="MER-OLD00001",
                    policy_id="merton",
                    policy_version="2019-08",
                    partnership_name="Merton",
                    raising_agency="merton-health",
                    raising_agency_name="Merton health",
                    raising_agency_kind="health",
                    receiving_agency="merton-police",
                    receiving_agency_name="Merton police",
                    receiving_agency_kind="police",
                    categories=["thresholds"],
                    raised_by_id="p1",
                    raised_by_role="practitioner",
                    stage=0,
                    stage_key="practitioners",
                    stage_name="Practitioners",
                    highest_stage_reached=0,
                    status="open",
                    deadline_passed=False,
                    immediate_risk=False,
                    raised_at=now,
                    recorded_seq=3,
                    recorded_at=now,
                    sealed_state="v1.x.y",
                )
            )
        upgrade(empty_database)
        assert current(empty_database) == head()
        assert "sent_emails" in inspect(engine).get_table_names()
        with engine.connect() as connection:
            kept = connection.execute(text("SELECT reference, status FROM cases")).all()
        assert kept == [("MER-OLD00001", "open")]
        downgrade(empty_database, "0001")
        assert "sent_emails" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()
