"""What a register write costs the worker: CPU per ``Register.record``.

``python -m bench.probe_register [CASES]`` writes CASES cases to a migrated
SQLite register (the embedded default) as the ``record_case`` activity does
over a case's life: the raise (the case's first row, what it is about, three
events), then three changes of two events each (an escalation, a notice, a
resolution). It prints the CPU milliseconds per write, first and later, of
this process: the figure to compare on a shared machine.
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.register_list import _case
from escalation.codec import KeyRing
from register import Register
from register.migrate import upgrade
from workflows.messages import CaseAbout, CaseEvent, RecordCase

CHANGES = 3
START = datetime(2026, 1, 5, 9, tzinfo=UTC)


def _changed(update: RecordCase, change: int) -> RecordCase:
    """The case's next change: two events after those already written."""
    state = update.case
    after = state.next_seq - 1
    at = state.raised_at + timedelta(days=change)
    state.stage = min(change, 2)
    events = []
    for kind in ("escalated", "notice"):
        event = CaseEvent(seq=state.next_seq, at=at, type=kind, stage=state.stage)
        events.append(event.model_copy(update={"reason": "A reason given"}))
        state.next_seq += 1
    return RecordCase(case=state.model_copy(update={"events": events}), after_seq=after)


def main() -> int:
    cases = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'register.sqlite3'}"
        upgrade(url)
        register = Register.from_url(url, KeyRing.generate())
        firsts = [_case("merton", i, START + timedelta(minutes=37 * i)) for i in range(cases)]
        for update in firsts:
            update.about = CaseAbout(summary="A benchmark case", decision_disputed="A plan")
        register.record(_case("merton", cases, START))  # warm up
        began = time.process_time()
        for update in firsts:
            register.record(update)
        first = time.process_time() - began
        later = 0.0
        for change in range(1, CHANGES + 1):
            updates = [_changed(u, change) for u in firsts]
            began = time.process_time()
            for update in updates:
                register.record(update)
            later += time.process_time() - began
        register.close()
    print(
        f"{cases} cases: first write {first / cases * 1000:.2f} CPU ms, "
        f"each later write {later / (cases * CHANGES) * 1000:.2f} CPU ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
