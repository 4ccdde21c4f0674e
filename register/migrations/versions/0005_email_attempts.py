"""The notice ledger's attempts: each copy's key written before it is posted
to SendGrid, so a retry after a crash knows to ask SendGrid whether it took
the copy rather than send it blind.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "email_attempts",
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("notice_id", sa.String(160), nullable=False),
        sa.Column("reference", sa.String(48), nullable=False),
        sa.Column("attempted_at", TS, nullable=False),
        sa.Column("may_be_duplicate", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_email_attempts_reference", "email_attempts", ["reference"])


def downgrade() -> None:
    op.drop_table("email_attempts")
