"""The emailed action links that have been used: each works once.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "used_action_links",
        sa.Column("link_id", sa.String(64), primary_key=True),
        sa.Column("reference", sa.String(48), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("used_by", sa.String(200), nullable=False),
        sa.Column("used_at", TS, nullable=False),
    )
    op.create_index("ix_used_action_links_reference", "used_action_links", ["reference"])


def downgrade() -> None:
    op.drop_table("used_action_links")
