"""``Register``: the workflow's writes and the API's reads, on SQLite and
PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text, update

from escalation.codec import CodecDecodeError, KeyRing
from register import Register, SentEmail
from register import tables as t
from register.listing import CaseQuery, Scope
from tests.conftest import make_request
from workflows import ladder
from workflows.messages import (
    Actor,
    CaseAbout,
    CaseEvent,
    CaseState,
    ChildDetails,
    Note,
    RecordCase,
)

T0 = datetime(2027, 1, 4, 10, tzinfo=UTC)
CHILD = ChildDetails(
    name="Zebedee Quillfeather",
    date_of_birth=date(2019, 4, 1),
    address="12 Canary Row, Merton",
    nhs_number="9434765919",
)
SUMMARY = "Referral closed; the canary summary of the concern"
REASON = "The canary reason: no agreement at practitioner level"
MANAGER = Actor(id="mgr-1", name="Ama Owusu", role="manager", agency="merton-health")


def new_case(policy: str = "merton", at: datetime = T0, **changes: object) -> CaseState:
    state = ladder.new_state(make_request(policy, at), at)
    state.clock.deadline = at + timedelta(days=7)
    for name, value in changes.items():
        setattr(state, name, value)
    return state


def event(state: CaseState, type_: str, *, reason: str | None = None, **fields: object) -> None:
    state.events.append(
        CaseEvent(
            seq=state.next_seq,
            at=T0 + timedelta(minutes=state.next_seq),
            type=type_,  # type: ignore[arg-type]
            stage=state.stage,
            reason=reason,
            **fields,  # type: ignore[arg-type]
        )
    )
    state.next_seq += 1


def raised(state: CaseState) -> CaseState:
    event(state, "raised", by="raiser-1", by_role="practitioner")
    event(state, "stage_started", by="raiser-1", detail="raised at this stage")
    event(
        state,
        "notice",
        template="stage-started",
        notice_id=f"{state.reference}-00003-stage-started",
        to=["merton-health:line-manager", "raiser"],
    )
    return state


def about() -> CaseAbout:
    return CaseAbout(summary=SUMMARY, decision_disputed="Closed the referral", child=CHILD)


def write(register: Register, state: CaseState, after: int = 0, with_about: bool = True) -> int:
    snapshot = state.model_copy(update={"events": [e for e in state.events if e.seq > after]})
    receipt = register.record(
        RecordCase(case=snapshot, after_seq=after, about=about() if with_about else None)
    )
    assert receipt.recorded_seq == state.next_seq - 1
    return receipt.events_added


def test_a_retried_write_adds_no_event_twice(register: Register) -> None:
    state = raised(new_case())
    assert write(register, state) == 3
    assert write(register, state) == 0  # the activity retried, or the workflow replayed
    event(state, "escalated", by=MANAGER.id, by_name=MANAGER.name, reason=REASON)
    assert write(register, state, after=3, with_about=False) == 1
    record = register.case(state.reference)
    assert record is not None
    assert [e.seq for e in record.events] == [1, 2, 3, 4]
    assert record.events[3].reason == REASON and record.events[3].by_name == "Ama Owusu"
    assert record.about == about()  # kept from the first write
    assert record.source == "register"
    with register.engine.connect() as connection:
        notices = connection.execute(select(t.Notice.notice_id, t.Notice.outcome)).all()
    assert notices == [(f"{state.reference}-00003-stage-started", "sent")]


def test_a_running_case_is_read_whole_each_event_once(register: Register) -> None:
    """The register holds events 1-4; the case still holds 4 (its write's
    receipt not yet back) and 5: read whole, each once, in order, with the
    notes' texts from both."""
    state = raised(new_case())
    event(state, "note", by=MANAGER.id, by_name=MANAGER.name, reason="Called the school")
    write(register, state)
    event(state, "note", by=MANAGER.id, by_name=MANAGER.name, reason="Met the family")
    live = state.model_copy(update={"events": state.events[3:], "recorded_seq": 3})
    live.notes = [Note(at=e.at, by=MANAGER, text=e.reason or "", seq=e.seq) for e in live.events]
    whole = register.whole(live)
    assert [e.seq for e in whole.events] == [1, 2, 3, 4, 5]
    assert [n.text for n in whole.notes] == ["Called the school", "Met the family"]
    assert whole.recorded_seq == 3 and whole.next_seq == 6
    # A case the register has never seen is as the case holds it.
    other = raised(new_case())
    assert register.whole(other).events == other.events


def test_events_a_lost_task_numbered_are_replaced(register: Register) -> None:
    """A workflow task that wrote to the register and was then thrown away
    (the worker died) numbered events the retried task numbers again: the
    later write is the truth, and what lay beyond it goes."""
    state = raised(new_case())
    lost = state.model_copy(deep=True)
    event(lost, "auto_escalated", detail="from stage 0 to stage 1: the deadline passed")
    event(lost, "notice", template="escalated-automatically", notice_id="X-00005-e", to=["a"])
    write(register, lost)
    event(state, "note", by=MANAGER.id, reason="A note that arrived first")
    write(register, state, after=3, with_about=False)
    record = register.case(state.reference)
    assert record is not None
    assert [(e.seq, e.type) for e in record.events] == [
        (1, "raised"),
        (2, "stage_started"),
        (3, "notice"),
        (4, "note"),
    ]
    assert [n.text for n in record.notes] == ["A note that arrived first"]
    with register.engine.connect() as connection:
        assert connection.execute(select(t.Notice.seq)).scalars().all() == [3]


def test_the_database_alone_reveals_no_child_and_no_free_text(
    register: Register, empty_database: str
) -> None:
    state = raised(new_case())
    event(state, "withdrawn", by=MANAGER.id, reason=REASON)
    state.outcome = "The canary outcome"
    write(register, state)
    needles = [CHILD.name, "Quillfeather", "9434765919", "Canary Row", SUMMARY, REASON, "canary"]
    with register.engine.connect() as connection:
        for table in t.Base.metadata.sorted_tables:
            for row in connection.execute(select(table)):
                cells = " ".join(str(v) for v in row)
                for needle in needles:
                    assert needle.lower() not in cells.lower(), (table.name, needle)
    record = register.case(state.reference)
    assert record is not None and record.about is not None
    assert record.about.child == CHILD and record.outcome == "The canary outcome"
    if empty_database.startswith("sqlite"):
        path = Path(empty_database.removeprefix("sqlite:///"))
        files = [p for p in (path, path.with_name(path.name + "-wal")) if p.exists()]
        raw = b"".join(p.read_bytes() for p in files)
        assert path in files and b"Quillfeather" not in raw and b"9434765919" not in raw


def test_a_sealed_value_moved_to_another_case_does_not_open(register: Register) -> None:
    first, second = raised(new_case()), raised(new_case())
    write(register, first)
    write(register, second, with_about=False)
    with register.engine.begin() as connection:
        sealed = connection.execute(
            select(t.Case.sealed_about).where(t.Case.reference == first.reference)
        ).scalar_one()
        connection.execute(
            update(t.Case).where(t.Case.reference == second.reference).values(sealed_about=sealed)
        )
    with pytest.raises(CodecDecodeError):
        register.case(second.reference)


def test_another_key_ring_cannot_open_the_register(register: Register, empty_database: str) -> None:
    state = raised(new_case())
    write(register, state)
    other = Register.from_url(empty_database, KeyRing.generate())
    try:
        with pytest.raises(CodecDecodeError, match="not in the codec key ring"):
            other.case(state.reference)
    finally:
        other.close()


def _refs(register: Register, **query: object) -> list[str]:
    defaults: dict[str, object] = {"scope": Scope(), "now": T0 + timedelta(days=3)}
    page = register.list_cases(CaseQuery(**{**defaults, **query}))  # type: ignore[arg-type]
    return [row.reference for row in page.rows]


def test_lists_filter_scope_and_sort(register: Register) -> None:
    a = raised(new_case(at=T0))
    b = raised(new_case(at=T0 + timedelta(hours=1), immediate_risk=True))
    b.categories = ["housing"]
    c = raised(new_case("cheshire", at=T0 + timedelta(hours=2)))
    d = raised(new_case(at=T0 + timedelta(hours=3)))
    d.status, d.closed_at = "resolved", T0 + timedelta(days=1)
    a.clock.deadline = T0 + timedelta(days=2)  # passed at "now"
    for state in (a, b, c, d):
        write(register, state)
    assert _refs(register) == [d.reference, c.reference, b.reference, a.reference]
    assert _refs(register, scope=Scope(partnership="merton")) == [
        d.reference,
        b.reference,
        a.reference,
    ]
    party = Scope(partnership="merton", agency=a.receiving_agency.key)
    assert set(_refs(register, scope=party)) == {a.reference, b.reference, d.reference}
    assert _refs(register, scope=Scope(partnership="merton", agency="merton-police")) == []
    assert _refs(register, immediate_risk=True) == [b.reference]
    assert _refs(register, category="housing") == [b.reference]
    assert _refs(register, category="thresholds", partnership="cheshire") == [c.reference]
    assert _refs(register, statuses=["resolved"]) == [d.reference]
    assert _refs(register, overdue=True) == [a.reference]
    assert a.reference not in _refs(register, overdue=False)
    assert _refs(register, closed_from=T0, closed_to=T0 + timedelta(days=2)) == [d.reference]
    assert _refs(
        register, raised_from=T0 + timedelta(hours=1), raised_to=T0 + timedelta(hours=3)
    ) == [
        c.reference,
        b.reference,
    ]
    # Soonest deadline first; a closed case (no deadline) last.
    assert _refs(register, sort="deadline") == [a.reference, b.reference, c.reference, d.reference]


@pytest.mark.parametrize("sort", ["raised", "deadline"])
def test_paging_shows_every_case_exactly_once(register: Register, sort: str) -> None:
    made = []
    for i in range(23):
        # Pairs of cases raised at the same instant: the reference breaks ties.
        state = raised(new_case(at=T0 + timedelta(minutes=i // 2)))
        state.clock.deadline = T0 + timedelta(days=1 + i % 4) if i % 5 else None
        write(register, state)
        made.append(state.reference)
    seen: list[str] = []
    after = None
    while True:
        page = register.list_cases(
            CaseQuery(scope=Scope(), now=T0, sort=sort, page_size=5, after=after)  # type: ignore[arg-type]
        )
        seen += [row.reference for row in page.rows]
        if page.last is None:
            break
        after = page.last
    assert sorted(seen) == sorted(made) and len(seen) == len(set(seen))


def test_export_is_anonymised_unless_details_are_asked_for(register: Register) -> None:
    state = raised(new_case())
    write(register, state)
    (row,) = register.export("merton")
    assert row["reference"] == state.reference and row["events"] == 3
    assert not any("Quillfeather" in str(v) or SUMMARY in str(v) for v in row.values())
    assert "summary" not in row and "child_name" not in row
    (detailed,) = register.export("merton", with_details=True)
    assert detailed["child_name"] == CHILD.name and detailed["summary"] == SUMMARY
    assert register.export("cheshire") == []
    assert register.export("merton", raised_from=T0 + timedelta(days=1)) == []


def test_the_notice_ledger_is_shared_by_every_worker_on_the_database(
    register: Register, empty_database: str, ring: KeyRing
) -> None:
    other_host = Register.from_url(empty_database, ring)
    try:
        key = "MER-1-00003-stage-started"
        assert other_host.emails_sent([key, "other"]) == set()
        register.record_emails([SentEmail(key, key, "MER-1", "m1")])
        assert other_host.emails_sent([key, "other"]) == {key}
        register.record_emails([SentEmail(key, key, "MER-1", "m2")])
        assert [e["message_id"] for e in other_host.emails()] == ["m1"]
    finally:
        other_host.close()


def test_an_unreachable_database_says_so(ring: KeyRing) -> None:
    from register import RegisterUnavailableError

    down = Register.from_url("postgresql+psycopg://register@127.0.0.1:9/none", ring)
    with pytest.raises(RegisterUnavailableError, match="cannot be reached"):
        down.ping()
    with pytest.raises(RegisterUnavailableError):
        down.list_cases(CaseQuery(scope=Scope(), now=T0))


def test_instants_come_back_in_utc(register: Register) -> None:
    state = raised(new_case())
    write(register, state)
    with register.engine.connect() as connection:
        raised_at = connection.execute(select(t.Case.raised_at)).scalar_one()
        connection.execute(text("SELECT 1"))
    assert raised_at == T0 and raised_at.tzinfo is not None
