"""The pages in a real browser: Debian's Chromium driven by Playwright,
against the app on a real port (uvicorn in the session's event loop), the
same Temporal dev server, worker and register as the API tests.

axe-core (from node_modules) checks every page against WCAG 2.2 A and AA.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from fastapi import FastAPI
from page_helpers import assert_accessible, serve, sign_in_as, sign_out

# The README's screenshots are taken again only when asked for
# (ESCALATION_SCREENSHOTS=1): a test run leaves the checkout as it found it.
SCREENSHOTS = (
    Path(__file__).resolve().parents[2] / "docs" / "screenshots"
    if os.environ.get("ESCALATION_SCREENSHOTS") == "1"
    else Path(tempfile.mkdtemp(prefix="escalation-screenshots-"))
)


@pytest_asyncio.fixture(scope="session")
async def site(app: FastAPI, tokens: dict[str, str]) -> AsyncIterator[str]:
    async with serve(app) as url:
        yield url


async def test_raise_acknowledge_escalate_in_a_browser(browser: Any, site: str) -> None:
    context = await browser.new_context()
    page = await context.new_page()

    # Signed out: a case page asks for sign-in first, and the sign-in page is accessible.
    await page.goto(f"{site}/cases")
    assert "/sign-in" in page.url
    await assert_accessible(page)
    cookie = next(c for c in await context.cookies() if c["name"] == "escalation_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"

    await sign_in_as(page, site, "Priya Shah")
    await assert_accessible(page)

    # The raise form refuses an empty submission with the error summary and inline errors.
    await page.get_by_role("link", name="Raise a disagreement").first.click()
    await page.get_by_role("heading", name="Raise a disagreement").wait_for()
    await assert_accessible(page)
    await page.get_by_role("button", name="Raise the disagreement").click()
    summary = page.locator(".govuk-error-summary")
    await summary.wait_for()
    assert "Select the agency whose decision you disagree with" in await summary.inner_text()
    assert "Enter what the disagreement is about" in await summary.inner_text()
    assert await page.locator("#summary-error").count() == 1
    assert (await page.title()).startswith("Error:")
    await assert_accessible(page)

    # Completed with the keyboard alone.
    await page.locator("#receiving_agency").focus()
    await page.keyboard.press("Tab")  # leaving and coming back: the select is reachable by Tab
    await page.keyboard.press("Shift+Tab")
    await page.locator("#receiving_agency").select_option(label="Merton children's social care")
    await page.keyboard.press("Tab")
    await page.keyboard.type("Referral closed with no further action; health disagrees.")
    await page.keyboard.press("Tab")
    await page.keyboard.type("The decision of 1 December to close the referral.")
    await page.keyboard.press("Tab")
    await page.keyboard.type("Zebedee Quillfeather")
    await page.locator("#child_name").press("Enter")  # Enter submits the form
    await page.get_by_role("heading", name="Disagreement raised").wait_for()
    reference = (await page.locator(".govuk-panel__body strong").inner_text()).strip()
    assert re.fullmatch(r"MER-[0-9A-Z]{8}", reference)
    assert "Practitioners" in await page.locator("main").inner_text()
    assert re.search(
        r"resolved by \w+day \d{1,2} \w+ \d{4}, \d", await page.locator("main").inner_text()
    )
    await assert_accessible(page)
    await page.screenshot(path=str(SCREENSHOTS / "case-raised.png"), full_page=True)
    await sign_out(page)

    # A user of another agency: the case is "Page not found", as a missing case is.
    await sign_in_as(page, site, "Dan Reid")
    response = await page.goto(f"{site}/cases/{reference}")
    assert response is not None and response.status == 404
    refused = await page.locator("main").inner_text()
    missing = await page.goto(f"{site}/cases/MER-00000000")
    assert missing is not None and missing.status == 404
    assert await page.locator("main").inner_text() == refused
    assert "Page not found" in refused and "Zebedee" not in refused
    await assert_accessible(page)
    await sign_out(page)

    # The receiving manager sees it waiting on them, acknowledges it and escalates it.
    await sign_in_as(page, site, "Tom Okafor")
    await page.get_by_role("link", name=reference).click()
    await page.get_by_role("heading", name=f"Case {reference}").wait_for()
    await assert_accessible(page)
    assert "Zebedee Quillfeather" in await page.locator("main").inner_text()
    await page.get_by_role("button", name="Acknowledge").click()
    await page.get_by_text("You acknowledged the concern").wait_for()
    assert await page.get_by_role("button", name="Acknowledge").count() == 0

    # Escalating without a reason: the error summary, and the case unchanged.
    await page.get_by_role("button", name="Escalate").click()
    await page.locator(".govuk-error-summary").wait_for()
    assert "Enter your reason" in await page.locator(".govuk-error-summary").inner_text()
    await assert_accessible(page)
    await page.locator("#escalate-reason").fill("No agreement at practitioner level.")
    await page.get_by_role("button", name="Escalate").click()
    await page.get_by_text("You escalated the case").wait_for()
    main = await page.locator("main").inner_text()
    assert "Stage 1: line managers" in main
    assert "No agreement at practitioner level." in main  # the timeline, with the reason
    assert "Tom Okafor" in main
    await page.screenshot(path=str(SCREENSHOTS / "case-page.png"), full_page=True)
    await page.goto(f"{site}/cases")
    await page.screenshot(path=str(SCREENSHOTS / "your-cases.png"), full_page=True)
    await context.close()


async def test_a_form_without_its_csrf_token_is_refused(site: str) -> None:
    async with httpx.AsyncClient(base_url=site) as http:
        page = await http.get("/sign-in")
        assert page.status_code == 200
        response = await http.post("/sign-in", data={"demo_user": "merton-health-practitioner"})
        assert response.status_code == 403
        assert "Your form could not be sent" in response.text
        signed_in = await http.get("/cases", follow_redirects=False)
        assert signed_in.status_code == 303  # still signed out
