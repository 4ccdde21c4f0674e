"""`make run` creates every partnership's report schedule, again without
complaint after a restart, and the schedule, triggered, mails the report to
the business team's outbox and keeps it in the register."""

from __future__ import annotations

import asyncio
import email
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path

import pytest
from pypdf import PdfReader
from temporalio.client import Client

from escalation.codec import KeyRing
from escalation.converter import data_converter
from policies.directory import example_directory
from policies.loader import builtin_policies, get_policy
from register import Register
from reports.period import Period
from reports.schedule import schedule_id
from tests.canary_helpers import Stack


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    # Wirral's own cadence, so a triggered run reports at once rather than
    # waiting for 09:00 on the first working day.
    monkeypatch.setenv("ESCALATION_REPORT_SCHEDULES", json.dumps({"wirral": "0 9 1 1 *"}))
    stack = Stack(tmp_path / "data")
    monkeypatch.setenv("ESCALATION_DATA_DIR", str(stack.data_dir))
    yield stack
    stack.kill()


async def _report_email(outbox: Path, name: str) -> Message:
    for _ in range(120):
        path = outbox / name
        if path.exists():
            return email.message_from_bytes(path.read_bytes())
        await asyncio.sleep(0.5)
    raise AssertionError(f"no {name} in {sorted(p.name for p in outbox.glob('*'))}")


async def test_the_schedule_exists_after_make_run_and_mails_the_report(stack: Stack) -> None:
    stack.start()
    assert b"Quarterly report schedules: 5 partnerships" in stack.output
    client = await Client.connect(stack.address, data_converter=data_converter())
    for policy_id in builtin_policies():
        described = await client.get_schedule_handle(schedule_id(policy_id)).describe()
        assert described.schedule.spec.time_zone_name == "Europe/London"

    merton = await client.get_schedule_handle(schedule_id("merton")).describe()
    calendar = merton.schedule.spec.calendars[0]
    assert [r.start for r in calendar.month] == [1, 4, 7, 10]

    # A restart finds them all there and starts as before.
    assert stack.stop() == 0
    stack.start()
    assert b"Quarterly report schedules: 5 partnerships" in stack.output
    client = await Client.connect(stack.address, data_converter=data_converter())

    await client.get_schedule_handle(schedule_id("wirral")).trigger()
    period = Period.containing(datetime.now(UTC).date()).previous()
    msg = await _report_email(stack.data_dir / "outbox", f"report-wirral-{period.label}.eml")
    team = {p.email for p in example_directory().business_team("wirral", None)}
    assert team and all(address in msg["To"] for address in team)
    assert period.label in msg["Subject"]
    files = {part.get_filename(): part for part in msg.walk() if part.get_filename()}
    pdf_name = f"escalation-report-wirral-{period.label}.pdf"
    csv_name = f"escalation-report-wirral-{period.label}.csv"
    assert set(files) == {pdf_name, csv_name}
    pdf = files[pdf_name].get_payload(decode=True)
    assert isinstance(pdf, bytes)
    text = " ".join(PdfReader(io.BytesIO(pdf)).pages[0].extract_text().split())
    assert get_policy("wirral").partnership in text and period.label in text
    csv_part = files[csv_name].get_payload(decode=True)
    assert isinstance(csv_part, bytes) and b"wirral," + period.label.encode() in csv_part

    register = Register.from_url(
        f"sqlite:///{stack.data_dir / 'register.sqlite3'}", KeyRing.generate()
    )
    try:
        kept = register.report(f"wirral-{period.label}")
        assert kept is not None and kept.pdf == pdf and kept.emailed_to == len(team)
    finally:
        register.close()
    assert stack.stop() == 0
