"""The notice ledger: every email the mail service accepted, shared by every
worker host.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sent_emails",
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("notice_id", sa.String(160), nullable=False),
        sa.Column("reference", sa.String(48), nullable=False),
        sa.Column("sent_at", TS, nullable=False),
        sa.Column("message_id", sa.String(255)),
    )
    op.create_index("ix_sent_emails_notice_id", "sent_emails", ["notice_id"])
    op.create_index("ix_sent_emails_reference", "sent_emails", ["reference"])


def downgrade() -> None:
    op.drop_table("sent_emails")
