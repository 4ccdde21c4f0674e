"""The case record: cases, their categories, events, notices, forms sent and
written confirmations.

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def _owned_by_case() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["reference"], ["cases.reference"], ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("reference", sa.String(48), primary_key=True),
        sa.Column("policy_id", sa.String(64), nullable=False),
        sa.Column("policy_version", sa.String(64), nullable=False),
        sa.Column("partnership_name", sa.String(255), nullable=False),
        sa.Column("area", sa.String(64)),
        sa.Column("raising_agency", sa.String(64), nullable=False),
        sa.Column("raising_agency_name", sa.String(255), nullable=False),
        sa.Column("raising_agency_kind", sa.String(64), nullable=False),
        sa.Column("receiving_agency", sa.String(64), nullable=False),
        sa.Column("receiving_agency_name", sa.String(255), nullable=False),
        sa.Column("receiving_agency_kind", sa.String(64), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("raised_by_id", sa.String(255), nullable=False),
        sa.Column("raised_by_role", sa.String(64), nullable=False),
        sa.Column("raised_by_agency", sa.String(64)),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("stage_key", sa.String(64), nullable=False),
        sa.Column("stage_name", sa.String(255), nullable=False),
        sa.Column("highest_stage_reached", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("deadline", TS),
        sa.Column("deadline_text", sa.String(64)),
        sa.Column("deadline_basis", sa.String(32)),
        sa.Column("deadline_passed", sa.Boolean(), nullable=False),
        sa.Column("acknowledgement_due", TS),
        sa.Column("acknowledged_by_id", sa.String(255)),
        sa.Column("immediate_risk", sa.Boolean(), nullable=False),
        sa.Column("risk_from_stage", sa.Integer()),
        sa.Column("raised_at", TS, nullable=False),
        sa.Column("resolved_at", TS),
        sa.Column("closed_at", TS),
        sa.Column("recorded_seq", sa.Integer(), nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
        sa.Column("sealed_state", sa.Text(), nullable=False),
        sa.Column("sealed_about", sa.Text()),
    )
    op.create_index("ix_cases_policy_id", "cases", ["policy_id"])
    op.create_index("ix_cases_policy_status", "cases", ["policy_id", "status", "raised_at"])
    op.create_index("ix_cases_policy_deadline", "cases", ["policy_id", "deadline"])
    op.create_index("ix_cases_raising_agency", "cases", ["raising_agency"])
    op.create_index("ix_cases_receiving_agency", "cases", ["receiving_agency"])

    op.create_table(
        "case_categories",
        sa.Column("reference", sa.String(48), primary_key=True),
        sa.Column("category", sa.String(64), primary_key=True),
        _owned_by_case(),
    )
    op.create_index("ix_case_categories_category", "case_categories", ["category"])

    op.create_table(
        "case_events",
        sa.Column("reference", sa.String(48), primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("deadline", TS),
        sa.Column("actor_id", sa.String(255)),
        sa.Column("actor_name", sa.String(255)),
        sa.Column("actor_role", sa.String(64)),
        sa.Column("actor_agency", sa.String(64)),
        sa.Column("recipients", sa.JSON(), nullable=False),
        sa.Column("template", sa.String(64)),
        sa.Column("notice_id", sa.String(160)),
        sa.Column("forms", sa.JSON(), nullable=False),
        sa.Column("sealed_reason", sa.Text()),
        sa.Column("sealed_detail", sa.Text()),
        _owned_by_case(),
    )
    op.create_index("ix_case_events_type", "case_events", ["type"])

    op.create_table(
        "notices",
        sa.Column("reference", sa.String(48), primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("notice_id", sa.String(160), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("template", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("recipients", sa.JSON(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        _owned_by_case(),
    )
    op.create_index("ix_notices_notice_id", "notices", ["notice_id"])

    op.create_table(
        "forms_sent",
        sa.Column("reference", sa.String(48), primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("form", sa.String(64), primary_key=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("notice_id", sa.String(160), nullable=False),
        sa.Column("sent_to", sa.JSON(), nullable=False),
        _owned_by_case(),
    )

    op.create_table(
        "confirmations",
        sa.Column("reference", sa.String(48), primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("actor_id", sa.String(255)),
        sa.Column("actor_role", sa.String(64)),
        sa.Column("sealed_text", sa.Text()),
        _owned_by_case(),
    )


def downgrade() -> None:
    for table in ("confirmations", "forms_sent", "notices", "case_events", "case_categories"):
        op.drop_table(table)
    op.drop_table("cases")
