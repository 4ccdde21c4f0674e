"""The theme report, counted from a register that the real workflow filled.

Fourteen Wirral cases run on a time-skipping server of their own, across the
two quarters after today's, each driven by a rehearsal (the case raised and
acted on at exact instants), recording themselves in a migrated SQLite
register. The expected figures are worked out by hand below; Wirral's stage 1
has a timescale of 5 working days and its later stages none.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from escalation.cli import main
from escalation.codec import KeyRing
from escalation.simulate import start_test_server
from policies.calendar import WorkingDayCalendar
from policies.loader import get_policy
from register import Register
from register.migrate import upgrade
from reports.build import build
from reports.figures import FEWER_THAN_5, WITHHELD, protect_partition
from reports.period import Period
from reports.render import render
from workers.worker import build_worker
from workflows.messages import Actor, Agency, RaiseDisagreement, Resolve, Withdraw
from workflows.simulation import RehearsalPlan, RehearsalWorkflow, RehearsedAction

WIRRAL = get_policy("wirral")
CAL = WorkingDayCalendar(WIRRAL.calendar_spec())
HEALTH = Agency(key="wirral-health", name="Wirral health", kind="health")
POLICE = Agency(key="wirral-police", name="Wirral police", kind="police")
SCHOOLS = Agency(key="wirral-education", name="Wirral education", kind="education")
CSC = Agency(
    key="wirral-childrens-social-care",
    name="Wirral children's social care",
    kind="childrens-social-care",
)


def working_day(first: date, n: int) -> date:
    """The n-th working day on or after ``first`` (n = 0: the first one)."""
    day = first if CAL.is_working_day(first) else CAL.next_working_day(first)
    for _ in range(n):
        day = CAL.next_working_day(day)
    return day


def at_ten(day: date) -> datetime:
    return CAL.at_local_time(day, time(10))


@dataclass
class Seed:
    raising: Agency
    receiving: Agency
    categories: list[str]
    raised_on: date
    # (working days after the last step, action); "auto" is the stage 1
    # deadline passing, which needs no signal.
    steps: list[tuple[int, str]]


def quarter_after(period: Period) -> Period:
    return Period.containing(period.last + timedelta(days=1))


TODAY = datetime.now(UTC).date()
FIRST = quarter_after(Period.containing(TODAY))
SECOND = quarter_after(FIRST)


def seeds() -> list[Seed]:
    a, b = FIRST.first, SECOND.first
    out = []
    # First quarter: six from health, resolved at stage 1 in 1, 2, 2, 3, 3 and
    # 4 working days.
    for i, days in enumerate([1, 2, 2, 3, 3, 4]):
        out.append(Seed(HEALTH, CSC, ["thresholds"], working_day(a, i), [(days, "resolve")]))
    # Two from the police nobody answers: escalated automatically after the
    # 5 working days, then resolved at stage 2 two working days later.
    for i in range(2):
        out.append(
            Seed(
                POLICE,
                CSC,
                ["thresholds", "information-sharing"],
                working_day(a, 6 + i),
                [(5, "auto"), (2, "resolve")],
            )
        )
    # One from a school, raised with health and withdrawn the next day.
    out.append(Seed(SCHOOLS, HEALTH, ["case-closure"], working_day(a, 8), [(1, "withdraw")]))
    # Second quarter: five from health, resolved in 1, 1, 2, 2 and 4 days.
    for i, days in enumerate([1, 1, 2, 2, 4]):
        out.append(Seed(HEALTH, CSC, ["thresholds"], working_day(b, i), [(days, "resolve")]))
    return out


def plan_for(seed: Seed) -> RehearsalPlan:
    reference = f"RPT-{uuid.uuid4().hex[:8].upper()}"
    raised = at_ten(seed.raised_on)
    manager = Actor(id="mgr", name="Manager", agency=seed.receiving.key, role="manager")
    actions = []
    day = seed.raised_on
    for days, what in seed.steps:
        day = working_day(day, days)
        if what == "auto":
            continue
        # Only the raising side withdraws its own challenge.
        raiser_side = Actor(id="mgr-r", name="Manager", agency=seed.raising.key, role="manager")
        action = (
            Resolve(by=manager, outcome="Agreed")
            if what == "resolve"
            else Withdraw(by=raiser_side, reason="Withdrawn")
        )
        actions.append(
            RehearsedAction(at=at_ten(day), signal=what, payload=action.model_dump(mode="json"))
        )
    request = RaiseDisagreement(
        reference=reference,
        policy=WIRRAL,
        area="wirral",
        raised_by=Actor(id="raiser", name="Raiser", agency=seed.raising.key, role="practitioner"),
        raising_agency=seed.raising,
        receiving_agency=seed.receiving,
        categories=seed.categories,
        summary="Report test disagreement",
        raised_at=raised,
    )
    return RehearsalPlan(
        case_workflow_id=f"disagreement-{reference}",
        request=request,
        raise_at=raised,
        actions=actions,
        horizon=at_ten(working_day(day, 1)),
    )


@pytest.fixture(scope="module")
async def seeded(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("report-register")
    url = f"sqlite:///{folder / 'register.sqlite3'}"
    upgrade(url)
    register = Register.from_url(url, KeyRing.generate())
    env = await start_test_server()
    try:
        from activities.notices import MemorySink

        queue = f"reports-{uuid.uuid4()}"
        plans = [plan_for(seed) for seed in seeds()]
        async with build_worker(
            env.client,
            queue,
            MemorySink(),
            register=register,
            workflows=[RehearsalWorkflow],
            workflow_failure_exception_types=[Exception],
        ):
            handles = [
                await env.client.start_workflow(
                    RehearsalWorkflow.run,
                    plan,
                    id=f"rehearsal-{plan.case_workflow_id}",
                    task_queue=queue,
                )
                for plan in plans
            ]
            horizon = max(plan.horizon for plan in plans) + timedelta(days=1)
            await env.sleep(horizon - await env.get_current_time())
            for handle in handles:
                await handle.result()
            now = await env.get_current_time()
        yield register, now
    finally:
        await env.shutdown()
        register.close()


async def test_first_quarter_figures_worked_out_by_hand(seeded: Any) -> None:
    register, now = seeded
    data = build(register.engine, WIRRAL, FIRST, now=now).data
    headline = {r["key"]: r for r in data["headline"]}
    # 9 raised; 8 resolved (6 at stage 1, 2 at stage 2); 1 withdrawn.
    assert headline["raised"]["this_period"] == 9
    assert headline["resolved"]["this_period"] == 8
    assert headline["withdrawn"]["this_period"] == FEWER_THAN_5
    assert headline["open"]["this_period"] == 0
    assert headline["raised"]["previous_period"] == 0
    assert headline["raised"]["year_before"] == 0
    # Raising: health 6, police 2, school 1: two small rows, nothing to subtract.
    assert [(r["name"], r["cases"]) for r in data["by_raising_agency"]] == [
        ("Wirral health", 6),
        ("Wirral education", FEWER_THAN_5),
        ("Wirral police", FEWER_THAN_5),
    ]
    # Receiving: social care 8, health 1. With 9 raised published, 8 would
    # give the 1 away: it is withheld. Hidden rows go by name, not by size.
    assert [(r["name"], r["cases"]) for r in data["by_receiving_agency"]] == [
        ("Wirral children's social care", WITHHELD),
        ("Wirral health", FEWER_THAN_5),
    ]
    # Highest stage: 7 at stage 1 (6 resolved, 1 withdrawn), 2 at stage 2.
    assert [r["cases"] for r in data["by_highest_stage"]] == [WITHHELD, FEWER_THAN_5, 0, 0]
    assert [(r["key"], r["cases"]) for r in data["by_category"]] == [
        ("thresholds", 8),
        ("case-closure", FEWER_THAN_5),
        ("information-sharing", FEWER_THAN_5),
    ]
    # Health and social care disagreed 6 times; no other pair reached 5.
    assert data["pairs"] == [
        {"raising": "Wirral health", "receiving": "Wirral children's social care", "cases": 6}
    ]
    stage1, stage2 = data["timeliness"][:2]
    # Stage 1 ended 8 times (the withdrawal is not counted): 6 within, 2 by
    # the deadline passing, which a share of 75% would give away.
    assert stage1["ended"] == 8
    assert stage1["within_timescale"] == WITHHELD
    assert stage1["automatic_escalations"] == FEWER_THAN_5
    # Days 1 2 2 3 3 4 5 5: median (3 + 3) / 2, 90th percentile the 8th value.
    assert stage1["median_working_days"] == 3
    assert stage1["p90_working_days"] == 5
    assert stage2["ended"] == FEWER_THAN_5
    assert stage2["within_timescale"] == "no timescale"
    assert stage2["median_working_days"] is None
    # Stage 2's resolutions each send the business team Appendix 1.
    assert data["forms"] == {"due": FEWER_THAN_5, "received": FEWER_THAN_5}
    assert data["agencies_raising_nothing"] == ["Wirral children's social care"]
    assert not data["empty"]


async def test_second_quarter_against_the_first(seeded: Any) -> None:
    register, now = seeded
    data = build(register.engine, WIRRAL, SECOND, now=now).data
    headline = {r["key"]: r for r in data["headline"]}
    assert headline["raised"]["this_period"] == 5
    assert headline["raised"]["previous_period"] == 9
    assert headline["resolved"]["previous_period"] == 8
    assert headline["withdrawn"]["this_period"] == 0
    stage1 = data["timeliness"][0]
    # All 5 within 5 working days: 1 1 2 2 4, median 2, 90th percentile the 5th.
    assert stage1["within_timescale"] == "100%"
    assert (stage1["median_working_days"], stage1["p90_working_days"]) == (2, 4)
    assert stage1["automatic_escalations"] == 0
    quarters = {p["quarter"]: p["raised"] for p in data["per_quarter"]}
    assert len(quarters) == 8
    assert (quarters[FIRST.label], quarters[SECOND.label]) == (9, 5)
    assert sum(v for v in quarters.values() if isinstance(v, int)) == 14
    assert data["agencies_raising_nothing"] == [
        "Wirral children's social care",
        "Wirral education",
        "Wirral police",
    ]


async def test_the_pdf_and_csv_carry_the_same_report(seeded: Any) -> None:
    register, now = seeded
    figures = build(register.engine, WIRRAL, FIRST, now=now)
    pdf = render(figures, "pdf")
    # Words as a reader selects them (the title wraps across lines).
    text = " ".join(
        " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages).split()
    )
    assert WIRRAL.partnership in text
    assert FIRST.label in text
    # The first page says how the report is anonymised.
    first_page = " ".join(PdfReader(io.BytesIO(pdf)).pages[0].extract_text().split())
    assert "anonymised by construction" in first_page and "fewer than 5" in first_page
    csv_text = render(figures, "csv").decode()
    assert f"wirral,{FIRST.label},by_raising_agency,Wirral police,Cases,fewer than 5" in csv_text
    html = render(figures, "html").decode()
    # The line of quarters, raising agency, theme and time in stage; receiving
    # has nothing shown to scale (withheld and fewer than 5) and no chart.
    assert html.count("<svg") == 4
    # No reference of any case reaches any format.
    for case in register.export("wirral"):
        for content in (text, csv_text, html, render(figures, "json").decode()):
            assert case["reference"] not in content


def test_one_small_row_is_never_left_to_subtraction() -> None:
    # 1 beside 5: withholding the 5 alone would leave 6 = 1 + 5 (the 1 known
    # from 5 at least), so the next row goes too.
    assert protect_partition([1, 5, 7]) == [FEWER_THAN_5, WITHHELD, WITHHELD]
    assert protect_partition([1, 8]) == [FEWER_THAN_5, WITHHELD]
    assert protect_partition([2, 3, 9]) == [FEWER_THAN_5, FEWER_THAN_5, 9]
    assert protect_partition([0, 6]) == [0, 6]


def test_a_quarter_with_no_cases_says_so(tmp_path: Path) -> None:
    upgrade(f"sqlite:///{tmp_path / 'register.sqlite3'}")
    past = Period.containing(TODAY).previous()
    out, pdf = tmp_path / "r.html", tmp_path / "r.pdf"
    args = ["--partnership", "wirral", "--quarter", past.label]
    assert _escalation(tmp_path, "report", *args, "--out", str(out)).returncode == 0
    assert "No concerns were raised in" in out.read_text()
    assert (
        _escalation(tmp_path, "report", *args, "--format", "pdf", "--out", str(pdf)).returncode == 0
    )
    text = " ".join(PdfReader(pdf).pages[0].extract_text().split())
    assert WIRRAL.partnership in text and past.label in text
    assert "No concerns were raised in" in text


def _escalation(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it, on a register of its own."""
    return subprocess.run(
        [sys.executable, "-m", "escalation.cli", *args],
        env={**os.environ, "ESCALATION_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--partnership", "nowhere", "--quarter", "2026-Q1"], "unknown policy 'nowhere'"),
        (["--partnership", "wirral", "--quarter", "2026-Q5"], "expected YYYY-Qn"),
        (["--partnership", "wirral", "--quarter", "2999-Q1"], "2999-Q1 has not begun yet"),
        (
            ["--partnership", "wirral", "--from", "2026-05-01", "--to", "2026-04-01"],
            "--from is after --to",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_1(
    args: list[str], message: str, tmp_path: Path, monkeypatch: Any, capsys: Any
) -> None:
    monkeypatch.setenv("ESCALATION_DATA_DIR", str(tmp_path))
    upgrade(f"sqlite:///{tmp_path / 'register.sqlite3'}")
    assert main(["report", *args]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
