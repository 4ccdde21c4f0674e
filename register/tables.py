"""The register's tables (SQLAlchemy 2 declarative).

Columns named ``sealed_*`` hold ciphertext (``register.sealing``): the
child's details, the summary, the decision disputed, every reason, note,
outcome and confirmation text. Everything else is non-identifying and in the
clear, so lists and reports filter and count without decrypting anything.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

KEY = 64
REF = 48


class UTCDateTime(TypeDecorator[datetime]):
    """An instant, stored in UTC and read back time-zone aware. SQLite keeps
    no offset, so every instant is turned to UTC before it is written: then
    comparisons (deadlines against now, keyset pages) are right in both
    databases."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("the register stores only time-zone-aware instants")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON}


class Case(Base):
    """One disagreement as it stands after its latest recorded event."""

    __tablename__ = "cases"

    reference: Mapped[str] = mapped_column(String(REF), primary_key=True)
    policy_id: Mapped[str] = mapped_column(String(KEY), index=True)
    policy_version: Mapped[str] = mapped_column(String(KEY))
    partnership_name: Mapped[str] = mapped_column(String(255))
    area: Mapped[str | None] = mapped_column(String(KEY))
    raising_agency: Mapped[str] = mapped_column(String(KEY), index=True)
    raising_agency_name: Mapped[str] = mapped_column(String(255))
    raising_agency_kind: Mapped[str] = mapped_column(String(KEY))
    receiving_agency: Mapped[str] = mapped_column(String(KEY), index=True)
    receiving_agency_name: Mapped[str] = mapped_column(String(255))
    receiving_agency_kind: Mapped[str] = mapped_column(String(KEY))
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    raised_by_id: Mapped[str] = mapped_column(String(255))
    raised_by_role: Mapped[str] = mapped_column(String(KEY))
    raised_by_agency: Mapped[str | None] = mapped_column(String(KEY))
    stage: Mapped[int] = mapped_column(Integer)
    stage_key: Mapped[str] = mapped_column(String(KEY))
    stage_name: Mapped[str] = mapped_column(String(255))
    highest_stage_reached: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32))
    deadline: Mapped[datetime | None]
    deadline_text: Mapped[str | None] = mapped_column(String(64))
    deadline_basis: Mapped[str | None] = mapped_column(String(32))
    deadline_passed: Mapped[bool] = mapped_column(Boolean, default=False)
    acknowledgement_due: Mapped[datetime | None]
    acknowledged_by_id: Mapped[str | None] = mapped_column(String(255))
    immediate_risk: Mapped[bool] = mapped_column(Boolean, default=False)
    risk_from_stage: Mapped[int | None] = mapped_column(Integer)
    raised_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    # The sequence number of the last event this row reflects.
    recorded_seq: Mapped[int] = mapped_column(Integer, default=0)
    recorded_at: Mapped[datetime]
    # The case's whole state (but its timeline, which is in case_events) as
    # JSON, sealed: the outcome, the forms' fields, who acknowledged.
    sealed_state: Mapped[str] = mapped_column(Text)
    # JSON of {summary, decision_disputed, child}, sealed.
    sealed_about: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_cases_policy_status", "policy_id", "status", "raised_at"),
        Index("ix_cases_policy_deadline", "policy_id", "deadline"),
    )


class CaseCategory(Base):
    """A case's categories, one row each, so a list can filter by one."""

    __tablename__ = "case_categories"

    reference: Mapped[str] = mapped_column(
        String(REF), ForeignKey("cases.reference", ondelete="CASCADE"), primary_key=True
    )
    category: Mapped[str] = mapped_column(String(KEY), primary_key=True, index=True)


class Event(Base):
    """One entry of a case's timeline, keyed by its sequence number."""

    __tablename__ = "case_events"

    reference: Mapped[str] = mapped_column(
        String(REF), ForeignKey("cases.reference", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime]
    type: Mapped[str] = mapped_column(String(32), index=True)
    stage: Mapped[int] = mapped_column(Integer)
    deadline: Mapped[datetime | None]
    actor_id: Mapped[str | None] = mapped_column(String(255))
    actor_name: Mapped[str | None] = mapped_column(String(255))
    actor_role: Mapped[str | None] = mapped_column(String(KEY))
    actor_agency: Mapped[str | None] = mapped_column(String(KEY))
    recipients: Mapped[list[str]] = mapped_column(JSON, default=list)
    template: Mapped[str | None] = mapped_column(String(KEY))
    notice_id: Mapped[str | None] = mapped_column(String(160))
    forms: Mapped[list[str]] = mapped_column(JSON, default=list)
    sealed_reason: Mapped[str | None] = mapped_column(Text)
    sealed_detail: Mapped[str | None] = mapped_column(Text)


class Notice(Base):
    """A notice the case sent (or failed to send), by the event that sent it."""

    __tablename__ = "notices"

    reference: Mapped[str] = mapped_column(
        String(REF), ForeignKey("cases.reference", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    notice_id: Mapped[str] = mapped_column(String(160), index=True)
    at: Mapped[datetime]
    stage: Mapped[int] = mapped_column(Integer)
    template: Mapped[str] = mapped_column(String(KEY))
    kind: Mapped[str] = mapped_column(String(16))  # notice | reminder
    recipients: Mapped[list[str]] = mapped_column(JSON, default=list)
    # sent | failed | undelivered (reported by the mail service's webhook)
    outcome: Mapped[str] = mapped_column(String(16))


class FormSent(Base):
    """A form the case sent to the business team (or whoever the policy names)."""

    __tablename__ = "forms_sent"

    reference: Mapped[str] = mapped_column(
        String(REF), ForeignKey("cases.reference", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    form: Mapped[str] = mapped_column(String(KEY), primary_key=True)
    at: Mapped[datetime]
    stage: Mapped[int] = mapped_column(Integer)
    notice_id: Mapped[str] = mapped_column(String(160))
    sent_to: Mapped[list[str]] = mapped_column(JSON, default=list)


class Confirmation(Base):
    """A written confirmation of an agreed outcome."""

    __tablename__ = "confirmations"

    reference: Mapped[str] = mapped_column(
        String(REF), ForeignKey("cases.reference", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime]
    stage: Mapped[int] = mapped_column(Integer)
    actor_id: Mapped[str | None] = mapped_column(String(255))
    actor_role: Mapped[str | None] = mapped_column(String(KEY))
    sealed_text: Mapped[str | None] = mapped_column(Text)


class SentEmail(Base):
    """The notice ledger: every email the mail service accepted, by its key,
    so that no worker on any host sends the same email twice."""

    __tablename__ = "sent_emails"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    notice_id: Mapped[str] = mapped_column(String(160), index=True)
    reference: Mapped[str] = mapped_column(String(REF), index=True)
    sent_at: Mapped[datetime]
    message_id: Mapped[str | None] = mapped_column(String(255))


class EmailAttempt(Base):
    """A copy about to be posted to SendGrid, written before the post: a
    retry that finds one here and not in ``sent_emails`` asks SendGrid's
    Email Activity whether the copy arrived. ``may_be_duplicate``: it was
    posted again without SendGrid being able to say."""

    __tablename__ = "email_attempts"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    notice_id: Mapped[str] = mapped_column(String(160))
    reference: Mapped[str] = mapped_column(String(REF), index=True)
    attempted_at: Mapped[datetime]
    may_be_duplicate: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class UsedActionLink(Base):
    """An emailed action link that has done its one action (``web.links``):
    its id, never the token, so a link followed again changes nothing."""

    __tablename__ = "used_action_links"

    link_id: Mapped[str] = mapped_column(String(KEY), primary_key=True)
    reference: Mapped[str] = mapped_column(String(REF), index=True)
    action: Mapped[str] = mapped_column(String(32))
    used_by: Mapped[str] = mapped_column(String(200))
    used_at: Mapped[datetime]


class Report(Base):
    """A partnership's theme report as it was built and sent: anonymised by
    construction (``reports.figures``), so nothing in it is sealed."""

    __tablename__ = "reports"

    id: Mapped[str] = mapped_column(String(REF), primary_key=True)
    policy_id: Mapped[str] = mapped_column(String(KEY), index=True)
    period: Mapped[str] = mapped_column(String(32))
    period_from: Mapped[str] = mapped_column(String(10))
    period_to: Mapped[str] = mapped_column(String(10))
    generated_at: Mapped[datetime]
    # How many of the business team it was mailed to (0: nobody to send to).
    emailed_to: Mapped[int] = mapped_column(Integer, default=0)
    figures: Mapped[dict[str, Any]] = mapped_column(JSON)
    csv: Mapped[str] = mapped_column(Text)
    pdf: Mapped[bytes] = mapped_column(LargeBinary)
