"""GET /reports and /reports/{id}: the business team of the report's own
partnership and operators only; the PDF and CSV are the ones that were
mailed."""

from __future__ import annotations

import asyncio
import io
import re
from datetime import UTC, datetime

import httpx
from api_helpers import Api
from pypdf import PdfReader

from activities.report import MemoryReportMailer, ReportActivities
from policies.directory import example_directory
from register import Register
from reports.period import Period
from workflows.report import SendReport


async def _send(register: Register, policy_id: str) -> tuple[str, MemoryReportMailer]:
    mailer = MemoryReportMailer()
    activities = ReportActivities(register, mailer, example_directory(), None)
    sent = await asyncio.to_thread(
        activities._send, SendReport(policy_id=policy_id, at=datetime.now(UTC))
    )
    return sent.report_id, mailer


async def test_reports_for_their_own_business_team_and_operators(
    api: Api, register: Register
) -> None:
    merton_id, mailer = await _send(register, "merton")
    cheshire_id, _ = await _send(register, "cheshire")
    period = Period.containing(datetime.now(UTC).date()).previous()
    assert merton_id == f"merton-{period.label}"

    listed = await api.get("/reports", "merton-business-team")
    assert listed.status_code == 200
    assert [r["id"] for r in listed.json()] == [merton_id]
    assert listed.json()[0]["emailed_to"] == len(mailer.sent[0].to)

    everything = await api.get("/reports", "operator")
    assert {merton_id, cheshire_id} <= {r["id"] for r in everything.json()}

    # Another partnership's business team: as if there were no such report.
    assert (await api.get(f"/reports/{merton_id}", "cheshire-business-team")).status_code == 404
    for user in ("merton-health-practitioner", "merton-csc-manager"):
        assert (await api.get("/reports", user)).status_code == 403
        assert (await api.get(f"/reports/{merton_id}", user)).status_code == 403
    assert (await api.get("/reports", None)).status_code == 401

    detail = await api.get(f"/reports/{merton_id}", "merton-business-team")
    assert detail.status_code == 200
    assert detail.json()["figures"]["period"]["label"] == period.label

    pdf = await api.get(f"/reports/{merton_id}", "operator", params={"format": "pdf"})
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content == mailer.sent[0].attachments[0].content

    text = " ".join(PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text().split())
    assert "Merton" in text and period.label in text
    csv = await api.get(f"/reports/{merton_id}", "merton-business-team", params={"format": "csv"})
    assert csv.text.startswith("partnership,period,section")
    assert (await api.get("/reports/nowhere-2020-Q1", "operator")).status_code == 404


async def _page_session(app: object, user: str) -> httpx.AsyncClient:
    """A browser-like client signed in to the pages as a demo user."""
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
        base_url="http://localhost",
    )
    page = await http.get("/sign-in")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf, "the sign-in page has no CSRF token"
    signed = await http.post("/sign-in", data={"csrf_token": csrf[1], "demo_user": user})
    assert signed.status_code == 303, signed.text
    return http


async def test_the_business_team_page_lists_its_reports_to_download(
    app: object, register: Register, api: Api
) -> None:
    ref = await api.raise_case()
    merton_id, mailer = await _send(register, "merton")
    cheshire_id, _ = await _send(register, "cheshire")
    http = await _page_session(app, "merton-business-team")
    try:
        page = await http.get("/business-team")
        assert page.status_code == 200
        assert f"/business-team/reports/{merton_id}.pdf" in page.text
        assert cheshire_id not in page.text
        # Its cases too, each linking to its page (once the register has it).
        for _ in range(50):
            if f'href="/cases/{ref}"' in page.text:
                break
            await asyncio.sleep(0.1)
            page = await http.get("/business-team")
        assert f'href="/cases/{ref}"' in page.text
        pdf = await http.get(f"/business-team/reports/{merton_id}.pdf")
        assert pdf.headers["content-type"] == "application/pdf"
        assert pdf.content == mailer.sent[0].attachments[0].content
        csv_file = await http.get(f"/business-team/reports/{merton_id}.csv")
        assert csv_file.status_code == 200 and csv_file.text.strip()
        # Another partnership's report: as if there were none.
        assert (await http.get(f"/business-team/reports/{cheshire_id}.pdf")).status_code == 404
        assert (await http.get(f"/business-team/reports/{merton_id}.exe")).status_code == 404
    finally:
        await http.aclose()
    http = await _page_session(app, "merton-csc-manager")
    try:
        assert (await http.get(f"/business-team/reports/{merton_id}.pdf")).status_code == 404
    finally:
        await http.aclose()
