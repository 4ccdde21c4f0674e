"""``Register``: the one door to the case record.

- ``record(update)``: what the ``record_case`` activity calls, for every
  change a case makes. Idempotent: the case's row is replaced by the state
  the update carries, its events are written by (reference, sequence
  number), and any event past the update's last one is removed (one left by
  a workflow task that a crash threw away, whose events were then numbered
  again). Replaying, retrying or continuing as new never duplicates or
  loses an event.
- ``case(reference)``, ``scope_of(reference)``, ``list_cases(query)``: what
  the API reads.
- ``export(...)``: the rows ``escalation register export`` prints.
- ``save_report`` / ``reports`` / ``report``: the partnerships' theme
  reports as built and sent (``reports``, ``activities.report``).
- ``emails_sent`` / ``record_emails``: the notice ledger, shared by every
  worker host that uses the same database.

Free text and the child's details are sealed (``register.sealing``) before
they reach the database; nothing here logs them.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    and_,
    create_engine,
    delete,
    event,
    exists,
    func,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, defer, sessionmaker
from sqlalchemy.pool import StaticPool

from escalation.codec import KeyRing
from register import tables as t
from register.listing import CaseQuery
from register.sealing import Sealer
from register.writers import Writers
from workflows.messages import (
    Actor,
    CaseAbout,
    CaseEvent,
    CaseRecord,
    CaseState,
    Note,
    RecordCase,
    RecordReceipt,
)
from workflows.timeline import with_text

if TYPE_CHECKING:
    from escalation.settings import Settings

# A running case's state or its record (CaseRecord is a CaseState).
S = TypeVar("S", bound=CaseState)

NOTICE_TYPES = {"notice": "sent", "reminder": "sent", "notice_failed": "failed"}
# Deadlines sort soonest first; a case with none (closed, or a stage with no
# timescale) after every case with one.
_NO_DEADLINE = datetime(9999, 12, 31, tzinfo=UTC)


class RegisterUnavailableError(RuntimeError):
    """The register's database cannot be reached (or refused the work)."""


@dataclass(frozen=True)
class SentEmail:
    """One email SendGrid accepted, as the notice ledger keeps it."""

    key: str
    notice_id: str
    reference: str
    message_id: str | None = None


@dataclass(frozen=True)
class CasePage:
    rows: list[t.Case]
    last: tuple[str, str] | None


@dataclass(frozen=True)
class FormSentRow:
    reference: str
    form: str
    at: datetime
    stage: int
    policy_id: str


def engine_for(url: str) -> Engine:
    if url.startswith("sqlite"):
        if url in ("sqlite://", "sqlite:///:memory:"):
            engine = create_engine(
                url, connect_args={"check_same_thread": False}, poolclass=StaticPool
            )
        else:
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            # Several worker threads write at once: a write-ahead journal lets
            # readers (the API) go on while one writes.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


class Register:
    def __init__(self, engine: Engine, ring: KeyRing) -> None:
        self.engine = engine
        self.sealer = Sealer(ring)
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._upserts: dict[tuple[type[t.Base], frozenset[str]], Any] = {}
        # A database in memory is one connection, which the worker's threads
        # must take in turn; a file or a server gives each its own.
        self._one_at_a_time = (
            threading.Lock() if isinstance(engine.pool, StaticPool) else contextlib.nullcontext()
        )
        # SQLite takes one writer at a time: writers of every process queue
        # for the file (register.writers) rather than in its busy handler.
        database = engine.url.database
        self._writers: Writers | None = (
            Writers(Path(database))
            if engine.dialect.name == "sqlite"
            and database
            and not isinstance(engine.pool, StaticPool)
            else None
        )
        self._writing: contextlib.AbstractContextManager[object] = (
            self._writers or contextlib.nullcontext()
        )

    @classmethod
    def from_url(cls, url: str, ring: KeyRing) -> Register:
        return cls(engine_for(url), ring)

    @classmethod
    def from_settings(cls, settings: Settings) -> Register:
        from escalation.converter import payload_codec

        return cls.from_url(settings.register_url, payload_codec(settings).ring)

    @classmethod
    def in_memory(cls, ring: KeyRing) -> Register:
        """A throwaway register (``escalation simulate``, unit tests), its
        tables made directly rather than by the migrations."""
        register = cls.from_url("sqlite://", ring)
        t.Base.metadata.create_all(register.engine)
        return register

    def close(self) -> None:
        self.engine.dispose()
        if self._writers is not None:
            self._writers.close()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with _reachable(), self._one_at_a_time, self._sessions() as session:
            yield session

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        with _reachable(), self._one_at_a_time, self.engine.connect() as connection:
            yield connection

    def ping(self) -> None:
        with self._session() as session:
            session.execute(text("SELECT 1"))

    # --- Writing: the workflow's record -----------------------------------------

    def record(self, update: RecordCase) -> RecordReceipt:
        # Plain statements on a connection, no ORM session: a write for every
        # change a case makes, and the session's unit of work cost more than
        # the statements themselves.
        state = update.case
        ref = state.reference
        upto = state.next_seq - 1
        c, e = _table(t.Case), _table(t.Event)
        row = self._case_row(state)
        if update.about is not None:
            row["sealed_about"] = self.sealer.seal(
                update.about.model_dump_json(), f"cases.about:{ref}"
            )
        with self._writing, self._connection() as connection, connection.begin():
            before = connection.execute(
                select(c.c.categories).where(c.c.reference == ref)
            ).one_or_none()
            # What the case is about is written once; later writes keep it.
            keep = frozenset() if "sealed_about" in row else frozenset({"sealed_about"})
            connection.execute(self._upsert_statement(t.Case, keep), row)
            if before is None or list(before[0] or []) != list(state.categories):
                cc = _table(t.CaseCategory)
                connection.execute(delete(cc).where(cc.c.reference == ref))
                if state.categories:
                    connection.execute(
                        cc.insert(), [{"reference": ref, "category": x} for x in state.categories]
                    )
            known = set(
                connection.scalars(
                    select(e.c.seq).where(e.c.reference == ref, e.c.seq > update.after_seq)
                )
            )
            if any(seq > upto for seq in known):
                for table in (t.Event, t.Notice, t.FormSent, t.Confirmation):
                    tc = _table(table).c
                    connection.execute(
                        delete(_table(table)).where(tc.reference == ref, tc.seq > upto)
                    )
            self._write_events(connection, ref, state.events)
            added = sum(ev.seq not in known for ev in state.events)
        return RecordReceipt(reference=ref, recorded_seq=upto, events_added=added)

    def _case_row(self, state: CaseState) -> dict[str, Any]:
        clock = state.clock
        passed = clock.deadline_passed
        rest = state.model_dump_json(exclude={"events", "notes"})
        return {
            "reference": state.reference,
            "policy_id": state.policy_id,
            "policy_version": state.policy_version,
            "partnership_name": state.partnership,
            "area": state.area,
            "raising_agency": state.raising_agency.key,
            "raising_agency_name": state.raising_agency.name,
            "raising_agency_kind": state.raising_agency.kind,
            "receiving_agency": state.receiving_agency.key,
            "receiving_agency_name": state.receiving_agency.name,
            "receiving_agency_kind": state.receiving_agency.kind,
            "categories": list(state.categories),
            "raised_by_id": state.raised_by.id,
            "raised_by_role": state.raised_by.role,
            "raised_by_agency": state.raised_by.agency,
            "stage": state.stage,
            "stage_key": state.stage_key,
            "stage_name": state.stage_name,
            "highest_stage_reached": state.highest_stage_reached,
            "status": state.status,
            "deadline": clock.deadline if state.is_open and not passed else None,
            "deadline_text": clock.deadline_text if state.is_open else None,
            "deadline_basis": clock.deadline_basis if state.is_open else None,
            "deadline_passed": passed,
            "acknowledgement_due": clock.acknowledgement_due,
            "acknowledged_by_id": state.acknowledged_by.id if state.acknowledged_by else None,
            "immediate_risk": state.immediate_risk,
            "risk_from_stage": state.risk_from_stage,
            "raised_at": state.raised_at,
            "resolved_at": state.resolved_at,
            "closed_at": state.closed_at,
            "recorded_seq": state.next_seq - 1,
            "recorded_at": datetime.now(UTC),
            "sealed_state": self.sealer.seal(rest, f"cases.state:{state.reference}") or "",
        }

    def _write_events(self, connection: Connection, ref: str, events: list[CaseEvent]) -> None:
        """The events and what they tell of notices, forms and confirmations,
        each written by (reference, sequence number): one statement a table."""
        seal = self.sealer.seal
        rows: dict[type[t.Base], list[dict[str, Any]]] = {
            t.Event: [],
            t.Notice: [],
            t.FormSent: [],
            t.Confirmation: [],
        }
        undelivered = []
        for ev in events:
            place = f"{ref}:{ev.seq}"
            rows[t.Event].append(
                {
                    "reference": ref,
                    "seq": ev.seq,
                    "at": ev.at,
                    "type": ev.type,
                    "stage": ev.stage,
                    "deadline": ev.deadline,
                    "actor_id": ev.by,
                    "actor_name": ev.by_name,
                    "actor_role": ev.by_role,
                    "actor_agency": ev.by_agency,
                    "recipients": list(ev.to),
                    "template": ev.template,
                    "notice_id": ev.notice_id,
                    "forms": list(ev.forms),
                    "sealed_reason": seal(ev.reason, f"case_events.reason:{place}"),
                    "sealed_detail": seal(ev.detail, f"case_events.detail:{place}"),
                }
            )
            outcome = NOTICE_TYPES.get(ev.type)
            if outcome is not None and ev.notice_id and ev.template:
                rows[t.Notice].append(
                    {
                        "reference": ref,
                        "seq": ev.seq,
                        "notice_id": ev.notice_id,
                        "at": ev.at,
                        "stage": ev.stage,
                        "template": ev.template,
                        "kind": "notice" if ev.type == "notice_failed" else ev.type,
                        "recipients": list(ev.to),
                        "outcome": outcome,
                    }
                )
                if outcome == "sent":
                    rows[t.FormSent] += [
                        {
                            "reference": ref,
                            "seq": ev.seq,
                            "form": form,
                            "at": ev.at,
                            "stage": ev.stage,
                            "notice_id": ev.notice_id,
                            "sent_to": list(ev.to),
                        }
                        for form in ev.forms
                    ]
            elif ev.type == "delivery_failed" and ev.notice_id:
                undelivered.append(ev.notice_id)
            elif ev.type == "confirmed":
                rows[t.Confirmation].append(
                    {
                        "reference": ref,
                        "seq": ev.seq,
                        "at": ev.at,
                        "stage": ev.stage,
                        "actor_id": ev.by,
                        "actor_role": ev.by_role,
                        "sealed_text": seal(ev.reason, f"confirmations.text:{place}"),
                    }
                )
        for model, values in rows.items():
            if values:
                connection.execute(self._upsert_statement(model), values)
        if undelivered:
            n = _table(t.Notice)
            connection.execute(
                update(n)
                .where(n.c.reference == ref, n.c.notice_id.in_(undelivered))
                .values(outcome="undelivered")
            )

    def _upsert_statement(self, model: type[t.Base], keep: frozenset[str] = frozenset()) -> Any:
        """INSERT ... ON CONFLICT (primary key) DO UPDATE of every column but
        ``keep``, made once per table so that SQLAlchemy compiles it once and
        runs it as executemany."""
        statement = self._upserts.get((model, keep))
        if statement is None:
            table = _table(model)
            insert = (
                postgresql_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
            )
            statement = insert(table)
            keys = [c.name for c in table.primary_key]
            statement = statement.on_conflict_do_update(
                index_elements=keys,
                set_={
                    c.name: statement.excluded[c.name]
                    for c in table.c
                    if c.name not in keys and c.name not in keep
                },
            )
            self._upserts[(model, keep)] = statement
        return statement

    # --- Reading ------------------------------------------------------------------

    def scope_of(self, reference: str) -> tuple[str, list[str], bool] | None:
        """The case's partnership (policy id), its two agencies (to decide who
        may see it) and whether it has closed; None if the register has no
        such case."""
        c = t.Case
        with self._session() as session:
            found = session.execute(
                select(c.policy_id, c.raising_agency, c.receiving_agency, c.closed_at).where(
                    c.reference == reference
                )
            ).first()
        if found is None:
            return None
        return found[0], [found[1], found[2]], found[3] is not None

    def case(self, reference: str) -> CaseRecord | None:
        """The case whole, its sealed columns opened."""
        open_ = self.sealer.open
        with self._session() as session:
            row = session.get(t.Case, reference)
            if row is None:
                return None
            events = self._events(session, reference)
        state = json.loads(open_(row.sealed_state, f"cases.state:{reference}") or "{}")
        about_json = open_(row.sealed_about, f"cases.about:{reference}")
        about = CaseAbout.model_validate_json(about_json) if about_json else None
        record = CaseRecord(
            **{**state, "events": events, "notes": notes_of(events)},
            about=about,
            source="register",
        )
        record.events = with_text(record)
        return record

    def whole(self, live: S) -> S:
        """A running case as its own state or record holds it (the events
        and notes the register has not yet confirmed) with the register's
        events and notes before them: the case whole, each event once by
        its number. RegisterUnavailableError if the register cannot be read."""
        with self._session() as session:
            recorded = self._events(session, live.reference)
        events = {e.seq: e for e in recorded}
        events.update((e.seq, e) for e in live.events)
        notes: dict[int, Note] = {}
        kept: list[Note] = []  # notes kept before they carried their number
        for note in [*notes_of(recorded), *live.notes]:
            if note.seq is None:
                kept.append(note)
            else:
                notes[note.seq] = note
        whole = live.model_copy(
            update={
                "events": [events[seq] for seq in sorted(events)],
                "notes": kept + [notes[seq] for seq in sorted(notes)],
            }
        )
        if isinstance(whole, CaseRecord):
            whole.events = with_text(whole)
        return whole

    def _events(self, session: Session, reference: str) -> list[CaseEvent]:
        open_ = self.sealer.open
        rows = session.scalars(
            select(t.Event).where(t.Event.reference == reference).order_by(t.Event.seq)
        )
        events = []
        for ev in rows:
            place = f"{reference}:{ev.seq}"
            events.append(
                CaseEvent(
                    seq=ev.seq,
                    at=ev.at,
                    type=ev.type,
                    stage=ev.stage,
                    deadline=ev.deadline,
                    by=ev.actor_id,
                    by_name=ev.actor_name,
                    by_role=ev.actor_role,
                    by_agency=ev.actor_agency,
                    to=list(ev.recipients or []),
                    template=ev.template,
                    notice_id=ev.notice_id,
                    forms=list(ev.forms or []),
                    reason=open_(ev.sealed_reason, f"case_events.reason:{place}"),
                    detail=open_(ev.sealed_detail, f"case_events.detail:{place}"),
                )
            )
        return events

    def list_cases(self, query: CaseQuery) -> CasePage:
        c = t.Case
        clauses: list[Any] = []
        scope = query.scope
        if scope.partnership is not None:
            clauses.append(c.policy_id == scope.partnership)
        if scope.agency is not None:
            clauses.append(
                or_(c.raising_agency == scope.agency, c.receiving_agency == scope.agency)
            )
        if query.partnership is not None:
            clauses.append(c.policy_id == query.partnership)
        if query.area is not None:
            clauses.append(c.area == query.area)
        if query.stage is not None:
            clauses.append(c.stage == query.stage)
        if query.statuses:
            clauses.append(c.status.in_(list(query.statuses)))
        if query.overdue is True:
            clauses.append(or_(c.status == "overdue", c.deadline < query.now))
        elif query.overdue is False:
            clauses.append(
                and_(c.status != "overdue", or_(c.deadline.is_(None), c.deadline >= query.now))
            )
        if query.immediate_risk is not None:
            clauses.append(c.immediate_risk.is_(query.immediate_risk))
        if query.agency is not None:
            clauses.append(
                or_(c.raising_agency == query.agency, c.receiving_agency == query.agency)
            )
        if query.category is not None:
            clauses.append(
                exists().where(
                    t.CaseCategory.reference == c.reference,
                    t.CaseCategory.category == query.category,
                )
            )
        if query.raised_from is not None:
            clauses.append(c.raised_at >= query.raised_from)
        if query.raised_to is not None:
            clauses.append(c.raised_at < query.raised_to)
        if query.closed_from is not None:
            clauses.append(c.closed_at >= query.closed_from)
        if query.closed_to is not None:
            clauses.append(c.closed_at < query.closed_to)

        order: list[Any]
        if query.sort == "deadline":
            key = func.coalesce(c.deadline, literal(_NO_DEADLINE, t.UTCDateTime()))
            order = [key.asc(), c.reference.asc()]
            if query.after is not None:
                at, ref = _position(query.after)
                clauses.append(or_(key > at, and_(key == at, c.reference > ref)))
        else:
            order = [c.raised_at.desc(), c.reference.desc()]
            if query.after is not None:
                at, ref = _position(query.after)
                clauses.append(or_(c.raised_at < at, and_(c.raised_at == at, c.reference < ref)))
        statement = select(c).where(*clauses).order_by(*order).limit(query.page_size + 1)
        with self._session() as session:
            rows = list(session.scalars(statement))
        more = len(rows) > query.page_size
        rows = rows[: query.page_size]
        last = None
        if more and rows:
            tail = rows[-1]
            value = (tail.deadline or _NO_DEADLINE) if query.sort == "deadline" else tail.raised_at
            last = (value.isoformat(), tail.reference)
        return CasePage(rows=rows, last=last)

    def export(
        self,
        partnership: str,
        raised_from: datetime | None = None,
        raised_to: datetime | None = None,
        with_details: bool = False,
    ) -> list[dict[str, Any]]:
        """Every case of a partnership raised in the period, oldest first:
        non-identifying columns only, unless ``with_details``."""
        c = t.Case
        clauses = [c.policy_id == partnership]
        if raised_from is not None:
            clauses.append(c.raised_at >= raised_from)
        if raised_to is not None:
            clauses.append(c.raised_at < raised_to)
        with self._session() as session:
            rows = list(
                session.scalars(select(c).where(*clauses).order_by(c.raised_at, c.reference))
            )
            counts = (
                dict(
                    session.execute(
                        select(t.Event.reference, func.count())
                        .where(t.Event.reference.in_([r.reference for r in rows]))
                        .group_by(t.Event.reference)
                    ).all()
                )
                if rows
                else {}
            )
        out = []
        for row in rows:
            item: dict[str, Any] = {
                "reference": row.reference,
                "policy": row.policy_id,
                "policy_version": row.policy_version,
                "area": row.area,
                "raising_agency": row.raising_agency,
                "raising_agency_kind": row.raising_agency_kind,
                "receiving_agency": row.receiving_agency,
                "receiving_agency_kind": row.receiving_agency_kind,
                "categories": " ".join(row.categories or []),
                "status": row.status,
                "stage": row.stage,
                "stage_key": row.stage_key,
                "highest_stage_reached": row.highest_stage_reached,
                "immediate_risk": row.immediate_risk,
                "raised_at": _iso(row.raised_at),
                "resolved_at": _iso(row.resolved_at),
                "closed_at": _iso(row.closed_at),
                "deadline": _iso(row.deadline),
                "events": counts.get(row.reference, 0),
            }
            if with_details:
                record = self.case(row.reference)
                about = record.about if record else None
                child = about.child if about else None
                item.update(
                    summary=about.summary if about else None,
                    decision_disputed=about.decision_disputed if about else None,
                    outcome=record.outcome if record else None,
                    child_name=child.name if child else None,
                    child_date_of_birth=(
                        child.date_of_birth.isoformat() if child and child.date_of_birth else None
                    ),
                    child_address=child.address if child else None,
                    child_nhs_number=child.nhs_number if child else None,
                )
            out.append(item)
        return out

    def recorded_seq(self, reference: str) -> int | None:
        with self._session() as session:
            return session.scalar(select(t.Case.recorded_seq).where(t.Case.reference == reference))

    # --- Theme reports ------------------------------------------------------------

    def save_report(self, row: t.Report) -> None:
        """Keep a report; building the same one again replaces it."""
        with self._writing, self._session() as session, session.begin():
            session.merge(row)

    def reports(self, partnership: str | None = None) -> list[t.Report]:
        """Reports newest period first, without their PDF."""
        r = t.Report
        statement = select(r).options(defer(r.pdf), defer(r.csv), defer(r.figures))
        if partnership is not None:
            statement = statement.where(r.policy_id == partnership)
        with self._session() as session:
            return list(
                session.scalars(statement.order_by(r.period_from.desc(), r.policy_id, r.id))
            )

    def report(self, report_id: str) -> t.Report | None:
        with self._session() as session:
            return session.get(t.Report, report_id)

    # --- Forms sent -----------------------------------------------------------------

    def forms_sent(self, partnership: str | None = None, limit: int = 200) -> list[FormSentRow]:
        """The forms the cases sent (newest first) with the case's policy: what
        a partnership's business team has received (all, for an operator)."""
        f, c = t.FormSent, t.Case
        statement = (
            select(f.reference, f.form, f.at, f.stage, c.policy_id)
            .join(c, c.reference == f.reference)
            .order_by(f.at.desc(), f.reference, f.form)
            .limit(limit)
        )
        if partnership is not None:
            statement = statement.where(c.policy_id == partnership)
        with self._connection() as connection:
            return [FormSentRow(*row) for row in connection.execute(statement)]

    # --- The notice ledger --------------------------------------------------------

    # Checked and written for every copy of every email: plain statements on
    # a connection, no ORM session (which cost more than the email itself),
    # and one statement for all of a notice's keys rather than one a key.

    def _exists(self, column: Any, value: str) -> bool:
        with self._connection() as connection:
            return connection.execute(select(column).where(column == value)).first() is not None

    def _insert(self, model: type[t.Base]) -> Any:
        """An insert in the database's own dialect (for its ON CONFLICT)."""
        insert = postgresql_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        return insert(model)

    def _insert_ignoring_known(self, model: type[t.Base], key: str) -> Any:
        """An insert that leaves a row whose key is there already as it was."""
        return self._insert(model).on_conflict_do_nothing(index_elements=[key])

    def _insert_once(self, model: type[t.Base], key: str, row: dict[str, Any]) -> bool:
        """Insert the row unless its key is there already; True if it was new."""
        statement = self._insert_ignoring_known(model, key)
        with self._writing, self._connection() as connection, connection.begin():
            return bool(connection.execute(statement, row).rowcount)

    def emails_sent(self, keys: Collection[str]) -> set[str]:
        """Which of these ledger keys SendGrid has accepted."""
        if not keys:
            return set()
        statement = select(t.SentEmail.key).where(t.SentEmail.key.in_(list(keys)))
        with self._connection() as connection:
            return set(connection.scalars(statement))

    def record_emails(self, sent: Collection[SentEmail]) -> None:
        """Record accepted emails; a key recorded before keeps its first row."""
        if not sent:
            return
        statement = self._insert_ignoring_known(t.SentEmail, "key")
        now = datetime.now(UTC)
        rows = [
            {
                "key": s.key,
                "notice_id": s.notice_id,
                "reference": s.reference,
                "sent_at": now,
                "message_id": s.message_id,
            }
            for s in sent
        ]
        with self._writing, self._connection() as connection, connection.begin():
            connection.execute(statement, rows)

    def email_attempts(self, keys: Collection[str]) -> dict[str, datetime]:
        """When each of these ledger keys was last posted to SendGrid, for
        the keys that were."""
        if not keys:
            return {}
        a = t.EmailAttempt
        statement = select(a.key, a.attempted_at).where(a.key.in_(list(keys)))
        with self._connection() as connection:
            return {key: at for key, at in connection.execute(statement)}

    def record_email_attempts(
        self, attempts: Collection[SentEmail], may_be_duplicate: Collection[str] = ()
    ) -> None:
        """Record that these copies are about to be posted, now; a key
        attempted before takes the new instant, and keeps being marked as
        possibly a duplicate once it was."""
        if not attempts:
            return
        a = t.EmailAttempt
        statement = self._insert(a)
        statement = statement.on_conflict_do_update(
            index_elements=[a.key],
            set_={
                "attempted_at": statement.excluded.attempted_at,
                "may_be_duplicate": a.may_be_duplicate | statement.excluded.may_be_duplicate,
            },
        )
        now = datetime.now(UTC)
        rows = [
            {
                "key": s.key,
                "notice_id": s.notice_id,
                "reference": s.reference,
                "attempted_at": now,
                "may_be_duplicate": s.key in may_be_duplicate,
            }
            for s in attempts
        ]
        with self._writing, self._connection() as connection, connection.begin():
            connection.execute(statement, rows)

    def forget_email_attempts(self, keys: Collection[str]) -> None:
        """Drop the attempts of copies SendGrid refused (it took none of them)."""
        if not keys:
            return
        a = t.EmailAttempt
        statement = delete(a).where(a.key.in_(list(keys))).where(~a.may_be_duplicate)
        with self._writing, self._connection() as connection, connection.begin():
            connection.execute(statement)

    def emails_maybe_duplicated(self) -> list[str]:
        """The keys of copies posted again without SendGrid able to say
        whether it had the first."""
        a = t.EmailAttempt
        statement = select(a.key).where(a.may_be_duplicate).order_by(a.attempted_at)
        with self._connection() as connection:
            return list(connection.scalars(statement))

    def emails(self) -> list[dict[str, Any]]:
        with self._session() as session:
            rows = session.scalars(select(t.SentEmail).order_by(t.SentEmail.sent_at))
            return [
                {
                    "key": r.key,
                    "notice_id": r.notice_id,
                    "reference": r.reference,
                    "sent_at": r.sent_at.isoformat(),
                    "message_id": r.message_id,
                }
                for r in rows
            ]

    # --- Used action links -------------------------------------------------------

    def action_link_used(self, link_id: str) -> bool:
        return self._exists(t.UsedActionLink.link_id, link_id)

    def use_action_link(self, link_id: str, reference: str, action: str, used_by: str) -> bool:
        """Mark an emailed action link used; False if it already was."""
        row = {
            "link_id": link_id,
            "reference": reference,
            "action": action,
            "used_by": used_by,
            "used_at": datetime.now(UTC),
        }
        return self._insert_once(t.UsedActionLink, "link_id", row)


def notes_of(events: list[CaseEvent]) -> list[Note]:
    """The notes among the events (a note's text is its event's reason)."""
    return [
        Note(
            at=e.at,
            by=Actor(
                id=e.by or "operator",
                name=e.by_name or "",
                role=e.by_role or "operator",
                agency=e.by_agency,
            ),
            text=e.reason,
            seq=e.seq,
        )
        for e in events
        if e.type == "note" and e.reason is not None
    ]


@contextmanager
def _reachable() -> Iterator[None]:
    """A database that cannot be reached, as the register's own error (its
    message names the kind of failure, never the URL or its password)."""
    try:
        yield
    except OperationalError as exc:
        raise RegisterUnavailableError(
            f"the register cannot be reached ({type(exc.orig).__name__})"
        ) from None


def _table(model: type[t.Base]) -> Table:
    return cast(Table, model.__table__)


def _position(after: tuple[str, str]) -> tuple[datetime, str]:
    at = datetime.fromisoformat(after[0])
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at, after[1]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
