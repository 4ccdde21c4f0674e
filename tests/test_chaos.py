"""`make chaos`, short: cases through worker SIGKILLs and a dev-server restart.

The drill's own verdict is the assertion: every email the register requires
arrived at the SendGrid stand-in, none twice (a kill between SendGrid
taking a copy and the ledger recording it included), every deadline moved
into the run fired, every history replays. No lag is asserted
(a loaded machine is slow, not wrong); the drill's bounds are generous
waits, not limits.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from chaos import verdict as v
from chaos.drill import Config, run_drill


def test_cases_survive_worker_kills_and_a_server_restart_with_every_email_sent_once(
    tmp_path: Path,
) -> None:
    cfg = Config(
        cases=20,
        worker_kills=5,
        server_restarts=1,
        seconds=100.0,
        seed=7,
        recovery_limit=0,
        drain_limit=300.0,
    )
    # Its own thread: the drill runs its own event loop.
    with ThreadPoolExecutor(1) as pool:
        result = pool.submit(run_drill, cfg, tmp_path / "chaos").result()
    report = result.table() + "\n" + result.details()
    assert result.failures() == [], report
    # A drill that disrupted nothing, fired no deadline or sent nothing
    # would pass while proving nothing.
    assert [r.kind for r in result.recoveries].count("worker SIGKILL") == 5, report
    assert len(result.recoveries) == 6, report
    assert result.fired, report
    assert result.emails.required > 0, report
    assert result.emails.arrived == result.emails.required, report


def test_a_second_kill_before_the_cases_answered_restarts_the_recovery_clock() -> None:
    """A deadline due at 100 s answered at 114 s, with worker SIGKILLs at 99 s
    and 106 s: 14 s from the deadline, 8 s from the second kill (which killed
    the worker taking the case over). An action asked at 101 s and answered
    at 104 s, before the second kill, waited 3 s either way."""
    fired = [v.Deadline("MER-1", 1, 100.0, "fired", 114.0, "n", arrived=114.0)]
    answers = [(101.0, 3.0)]
    disruptions = [(99.0, 100.0, "worker SIGKILL"), (106.0, 107.0, "worker SIGKILL")]
    first, second = v.recoveries(fired, answers, disruptions, end=200.0)
    assert (first.max_lag, first.max_lag_since_last) == (14.0, 8.0)
    assert (first.max_answer, first.max_answer_since_last) == (3.0, 3.0)
    assert (first.worst_from_first, first.worst) == (14.0, 8.0)
    assert second.deadlines == 0 and second.worst is None
