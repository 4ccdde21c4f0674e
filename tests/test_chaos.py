"""`make chaos`, short: cases through worker SIGKILLs and a dev-server restart.

The drill's own verdict is the assertion: every email the register requires
arrived at the SendGrid stand-in, none twice (but for a copy resent after a
kill in the window SendGrid cannot close, which only chance decides), every
deadline moved into the run fired, every history replays. No lag is asserted
(a loaded machine is slow, not wrong); the drill's bounds are generous
waits, not limits.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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
        # A SIGKILL between SendGrid accepting a copy and its ledger row
        # resends that copy (activities.email names the window): whether a
        # kill lands there is chance, so here it is reported, not judged.
        # Every other duplicate, and every loss, fails.
        allow_crash_resends=True,
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
    resent = len(result.emails.resent_after_crash)
    assert result.emails.arrived == result.emails.required + resent, report
