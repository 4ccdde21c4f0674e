"""The pages in a real browser: Debian's Chromium driven by Playwright,
against the app on a real port (uvicorn in the session's event loop), the
same Temporal dev server, worker and register as the API tests.

axe-core (from node_modules) checks every page against WCAG 2.2 A and AA,
in its empty and its error states. Sign-in through the identity provider is
tested against a real OIDC provider (``oidc-provider-mock``) on a loopback
port, with a second app configured for it that shares the same stack.
"""

from __future__ import annotations

import asyncio
import html
import io
import os
import re
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import httpx
import pytest
import pytest_asyncio
from canary_helpers import free_port
from fastapi import FastAPI
from page_helpers import (
    PARTNERSHIPS,
    Partnership,
    assert_accessible,
    escalate,
    main_text,
    raise_case,
    serve,
    sign_in_as,
    sign_out,
    signing_in_through,
)
from pypdf import PdfReader
from temporalio.testing import WorkflowEnvironment

from activities.notices import MemorySink
from api.main import create_app
from api.users import DEMO_USERS
from escalation.settings import Settings
from register import Register

# The README's screenshots are taken again only when asked for
# (ESCALATION_SCREENSHOTS=1): a test run leaves the checkout as it found it.
SCREENSHOTS = (
    Path(__file__).resolve().parents[2] / "docs" / "screenshots"
    if os.environ.get("ESCALATION_SCREENSHOTS") == "1"
    else Path(tempfile.mkdtemp(prefix="escalation-screenshots-"))
)
LONDON = ZoneInfo("Europe/London")
# A notice is sent by the worker's activity after the case starts: waited
# for, however slow the machine, up to this long.
NOTICE_WAIT = 60.0


@pytest_asyncio.fixture(scope="session")
async def site(app: FastAPI, tokens: dict[str, str]) -> AsyncIterator[str]:
    async with serve(app) as url:
        yield url


async def notice_for(sink: MemorySink, reference: str) -> None:
    """Wait until the case's first notice has reached the outbox."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + NOTICE_WAIT
    while not any(n.reference == reference for n in sink.notices):
        assert loop.time() < give_up, f"no notice of {reference} reached the outbox"
        await asyncio.sleep(0.1)


async def open_case(page: Any, site: str, reference: str) -> None:
    await page.goto(f"{site}/cases")
    await page.get_by_role("link", name=reference).click()
    await page.get_by_role("heading", name=f"Case {reference}").wait_for()


async def raised_for_the_receiver(page: Any, site: str, who: Partnership, child: str) -> str:
    """A case raised by the partnership's practitioner, open on the receiving
    manager's screen."""
    await sign_in_as(page, site, who.raiser)
    reference = await raise_case(page, site, who, child)
    await sign_out(page)
    await sign_in_as(page, site, who.receiver)
    await open_case(page, site, reference)
    return reference


# --- Local sign-in, the raise form, refusals -------------------------------------------


async def test_raise_acknowledge_escalate_in_a_browser(
    browser: Any, site: str, sink: MemorySink
) -> None:
    context = await browser.new_context()
    page = await context.new_page()

    # Signed out: a case page asks for sign-in first, and the sign-in page is accessible.
    await page.goto(f"{site}/cases")
    assert "/sign-in" in page.url
    await assert_accessible(page)
    cookie = next(c for c in await context.cookies() if c["name"] == "escalation_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    # A wrong access token: the error summary and the message by the field.
    await page.get_by_label("Access token").fill("not-a-token")
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await page.locator("#token-error").wait_for()
    assert (
        "The access token is not recognised"
        in await page.locator(".govuk-error-summary").inner_text()
    )
    await assert_accessible(page)

    await sign_in_as(page, site, "Priya Shah")
    await assert_accessible(page)

    # The raise form refuses an empty submission with the error summary and inline errors.
    await page.get_by_role("link", name="Raise a disagreement").first.click()
    await page.get_by_role("heading", name="Raise a disagreement").wait_for()
    await assert_accessible(page)
    # A date of birth half given, and a category that is not one (a tampered
    # form): each refused by the rules the API applies, by its field.
    await page.locator("#child_date_of_birth").fill("31")
    categories = page.get_by_label("Levels of need or thresholds")
    await categories.evaluate("box => { box.value = 'Not a category!'; }")
    await categories.check()
    await page.get_by_role("button", name="Raise the disagreement").click()
    summary = page.locator(".govuk-error-summary")
    await summary.wait_for()
    assert "Select the agency whose decision you disagree with" in await summary.inner_text()
    assert "Enter what the disagreement is about" in await summary.inner_text()
    assert "Date of birth must include a day, month and year" in await summary.inner_text()
    assert "Choose the categories from the list" in await summary.inner_text()
    assert await page.locator("#summary-error").count() == 1
    assert await page.locator("#categories-error").count() == 1
    assert await page.locator("#child_date_of_birth-error").count() == 1
    await page.locator("#child_date_of_birth").fill("")
    assert (await page.title()).startswith("Error:")
    await assert_accessible(page)

    # Completed with the keyboard alone: Tab from field to field, Space ticks a
    # category, Enter sends it.
    await page.locator("#receiving_agency").focus()
    await page.keyboard.press("Tab")  # leaving and coming back: the select is reachable by Tab
    await page.keyboard.press("Shift+Tab")
    await page.locator("#receiving_agency").select_option(label="Merton children's social care")
    await page.keyboard.press("Tab")
    await page.keyboard.press("Space")  # the first category: levels of need or thresholds
    for _ in range(7):  # past the other six categories to the summary
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
    main = await main_text(page)
    assert "Practitioners" in main
    assert re.search(r"resolved by \w+day \d{1,2} \w+ \d{4}, \d", main)
    await assert_accessible(page)
    await page.screenshot(path=str(SCREENSHOTS / "case-raised.png"), full_page=True)
    # Said once: the page's own address carries nothing, and a reload shows
    # the case without the confirmation.
    assert page.url == f"{site}/cases/{reference}"
    await page.reload()
    await page.get_by_role("heading", name=f"Case {reference}").wait_for()
    assert await page.get_by_role("heading", name="Disagreement raised").count() == 0
    await notice_for(sink, reference)
    await sign_out(page)

    # A user of another agency: the case is "Page not found", as a missing case is.
    await sign_in_as(page, site, "Dan Reid")
    response = await page.goto(f"{site}/cases/{reference}")
    assert response is not None and response.status == 404
    refused = await main_text(page)
    missing = await page.goto(f"{site}/cases/MER-00000000")
    assert missing is not None and missing.status == 404
    assert await main_text(page) == refused
    assert "Page not found" in refused and "Zebedee" not in refused
    await assert_accessible(page)
    form = await page.goto(f"{site}/cases/{reference}/forms/escalation-pro-forma.pdf")
    assert form is not None and form.status == 404  # nor its forms
    await sign_out(page)

    # The receiving manager sees it waiting on them, acknowledges it and escalates it.
    await sign_in_as(page, site, "Tom Okafor")
    await open_case(page, site, reference)
    await assert_accessible(page)
    assert "Zebedee Quillfeather" in await main_text(page)
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
    main = await main_text(page)
    assert "Stage 1: line managers" in main
    assert "No agreement at practitioner level." in main  # the timeline, with the reason
    assert "Tom Okafor" in main
    await page.screenshot(path=str(SCREENSHOTS / "case-page.png"), full_page=True)
    await page.reload()
    await page.get_by_role("heading", name=f"Case {reference}").wait_for()
    main = await main_text(page)
    assert "You escalated the case" not in main and "Success" not in main
    assert "No agreement at practitioner level." in main
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


async def test_the_demonstration_users_are_offered_in_words(site: str) -> None:
    """Each sign-in button says who the person is as a user would: their role
    and their agency's name, never the agency's key."""
    async with httpx.AsyncClient(base_url=site) as http:
        page = await http.get("/sign-in")
    buttons = [
        html.unescape(re.sub(r"<[^>]+>", "", b)).strip()
        for b in re.findall(r"<button[^>]*>(Sign in as .*?)</button>", page.text)
    ]
    assert "Sign in as Tom Okafor, (manager, Merton children's social care)" in buttons
    assert "Sign in as Sam Lee, (practitioner, Cheshire West and Chester police)" in buttons
    assert "Sign in as Olu Adeyemi, (operator)" in buttons
    assert len(buttons) == 16
    keys = {user.agency for user in DEMO_USERS if user.agency}
    assert not [b for b in buttons if any(key in b for key in keys)], buttons


async def test_empty_pages_are_accessible(browser: Any, site: str) -> None:
    """Lists with nothing in them: the business team's filters matching no
    case, and a practitioner's own cases before any."""
    context = await browser.new_context()
    page = await context.new_page()
    await sign_in_as(page, site, "Pan-Cheshire Safeguarding Partnership Business Team")
    await page.goto(f"{site}/business-team?overdue=yes&awaiting=yes&immediate_risk=yes&stage=0")
    assert "No cases match" in await main_text(page)
    await assert_accessible(page)
    await sign_out(page)
    await sign_in_as(page, site, "Sam Lee")
    await assert_accessible(page)
    await context.close()


# --- Each of the five policies, by a browser alone --------------------------------------


@pytest.mark.parametrize("who", PARTNERSHIPS, ids=[p.policy for p in PARTNERSHIPS])
async def test_each_policy_raised_and_answered_in_a_browser(
    browser: Any, site: str, sink: MemorySink, who: Partnership
) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    reference = await raised_for_the_receiver(page, site, who, "Ottoline Brackenbury")
    await notice_for(sink, reference)  # the notice to the receiving side, in the outbox
    if await page.get_by_role("button", name="Acknowledge").count():
        await page.get_by_role("button", name="Acknowledge").click()
        await page.get_by_text("You acknowledged the concern").wait_for()
    await page.get_by_label("What was discussed?").fill(
        f"Spoke with {who.raiser} by phone; agreed to review the referral."
    )
    await page.get_by_role("button", name="Record the discussion").click()
    await page.get_by_text("You recorded the discussion").wait_for()
    timeline = await page.locator("ol.app-timeline").inner_text()
    assert f"Spoke with {who.raiser} by phone" in timeline
    assert who.receiver in timeline
    assert "Raised" in timeline and who.raiser in timeline
    forms = await page.locator("#forms").inner_text()
    assert "(PDF)" in forms  # the policy's forms, each to download
    await assert_accessible(page)
    await context.close()


def london(moment: datetime) -> dict[str, str]:
    local = moment.astimezone(LONDON)
    return {
        "day": str(local.day),
        "month": str(local.month),
        "year": str(local.year),
        "time": f"{local:%H:%M}",
    }


async def fill_deadline(page: Any, moment: dict[str, str]) -> None:
    await page.locator("#deadline-deadline").fill(moment["day"])
    await page.locator("#deadline-deadline-month").fill(moment["month"])
    await page.locator("#deadline-deadline-year").fill(moment["year"])
    await page.locator("#deadline-deadline-time").fill(moment["time"])


async def test_a_staffordshire_case_through_formal_escalation_to_the_business_team(
    browser: Any, site: str
) -> None:
    staffordshire = PARTNERSHIPS[1]
    context = await browser.new_context(accept_downloads=True)
    page = await context.new_page()
    reference = await raised_for_the_receiver(page, site, staffordshire, "Cressida Wolstenholme")
    await escalate(page, "No agreement between the practitioners.")
    assert "Stage 2: line managers" in await main_text(page)

    # Into stage 3 without the Formal Escalation Form: refused, field by field.
    assert "This stage needs the Formal Escalation Form" in await main_text(page)
    await page.locator("#escalate-reason").fill("The line managers could not agree.")
    await page.get_by_role("button", name="Escalate").click()
    summary = page.locator(".govuk-error-summary")
    await summary.wait_for()
    assert "Enter requested action" in await summary.inner_text()
    assert await page.locator("#escalate-form-requested-action-error").count() == 1
    assert "Stage 2: line managers" in await main_text(page)  # still there
    await assert_accessible(page)
    await page.locator("#escalate-form-summary-of-concerns").fill(
        "Health believes the threshold for a strategy discussion is met; two meetings failed."
    )
    await page.locator("#escalate-form-requested-action").fill(
        "Hold a strategy discussion this week."
    )
    await escalate(page, "The line managers could not agree.")
    assert "Stage 3: senior managers (formal escalation)" in await main_text(page)

    # Bringing the deadline forward: a time already past is refused by the
    # field; an earlier time that is still ahead is taken.
    await fill_deadline(page, london(datetime.now(UTC) - timedelta(hours=1)))
    await page.locator("#deadline-reason").fill("The child's placement ends tomorrow.")
    await page.get_by_role("button", name="Bring the deadline forward").click()
    await page.locator("#deadline-deadline-error").wait_for()
    assert "must be in the future" in await page.locator(".govuk-error-summary").inner_text()
    await assert_accessible(page)
    await fill_deadline(page, london(datetime.now(UTC) + timedelta(hours=3)))
    await page.get_by_role("button", name="Bring the deadline forward").click()
    await page.get_by_text("You brought the deadline forward").wait_for()
    assert "Deadline brought forward" in await page.locator("ol.app-timeline").inner_text()

    await page.locator("#resolve-outcome").fill("A strategy discussion is booked for Thursday.")
    await page.get_by_role("button", name="Resolve").click()
    await page.get_by_text("You recorded the outcome").wait_for()
    assert "Awaiting written confirmation" in await main_text(page)
    await page.get_by_role("button", name="Confirm the outcome").click()
    await page.get_by_text("You confirmed the outcome in writing").wait_for()
    assert "Outcome confirmed in writing" in await page.locator("ol.app-timeline").inner_text()
    await sign_out(page)

    # The business team: the case in its list, and its form to download.
    await sign_in_as(
        page, site, "Staffordshire and Stoke-on-Trent Safeguarding Children Board manager"
    )
    await page.goto(f"{site}/business-team")
    assert reference in await page.locator("table").last.inner_text()
    await assert_accessible(page)
    await page.get_by_role("link", name=reference).first.click()
    await page.get_by_role("heading", name=f"Case {reference}").wait_for()
    async with page.expect_download() as waiting:
        await page.get_by_role("link", name="Formal Escalation Form (PDF)").click()
    download = await waiting.value
    assert download.suggested_filename == f"{reference}-formal-escalation-form.pdf"
    text = "".join(
        p.extract_text()
        for p in PdfReader(io.BytesIO(Path(await download.path()).read_bytes())).pages
    )
    assert reference in text and "Hold a strategy discussion this week." in text
    await sign_out(page)

    # Someone of another partnership: not found, the form too.
    await sign_in_as(page, site, "Priya Shah")
    response = await page.goto(f"{site}/cases/{reference}")
    assert response is not None and response.status == 404
    await context.close()


async def test_the_business_team_downloads_the_forms_it_received(browser: Any, site: str) -> None:
    """Merton's pro-forma goes to the business team when a stage 1 case is
    escalated: it is listed under the forms received, and downloads."""
    merton = PARTNERSHIPS[0]
    context = await browser.new_context(accept_downloads=True)
    page = await context.new_page()
    reference = await raised_for_the_receiver(page, site, merton, "Peregrine Athelstan")
    for reason in ("Practitioners could not agree.", "Line managers could not agree."):
        await escalate(page, reason)
    assert "Stage 2: senior leaders" in await main_text(page)
    await sign_out(page)

    await sign_in_as(page, site, "Merton Safeguarding Partnership Business Team")
    loop = asyncio.get_running_loop()
    give_up = loop.time() + NOTICE_WAIT
    link = page.get_by_role(
        "link", name=f"Escalation Stage One/Two Pro-forma (PDF) of case {reference}"
    )
    while True:
        await page.goto(f"{site}/business-team")
        if await link.count():
            break
        assert loop.time() < give_up, "the pro-forma never reached the business team's list"
        await asyncio.sleep(0.5)
    async with page.expect_download() as waiting:
        await link.click()
    download = await waiting.value
    assert download.suggested_filename == f"{reference}-escalation-pro-forma.pdf"
    assert Path(await download.path()).read_bytes().startswith(b"%PDF")
    await context.close()


# --- Sign-in through a real OIDC provider ----------------------------------------------

PROVIDER_USER = "tom.okafor@csc.merton.example"


@pytest.fixture(scope="session")
def provider() -> Iterator[str]:
    from oidc_provider_mock import User, run_server_in_thread

    claims = {
        "name": "Tom Okafor",
        "email": PROVIDER_USER,
        "agency": "merton-childrens-social-care",
        "partnership": "merton",
        "role": "manager",
    }
    with run_server_in_thread(
        require_client_registration=True,
        require_nonce=True,
        user_claims=[User(sub=PROVIDER_USER, claims=claims)],
    ) as server:
        yield f"http://localhost:{server.server_port}"


@pytest_asyncio.fixture(scope="session")
async def oidc_site(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    worker: None,
    register: Register,
    provider: str,
) -> AsyncIterator[str]:
    """A second app over the same stack, signing in through the provider."""
    port = free_port()
    site = f"http://127.0.0.1:{port}"
    oidc = await signing_in_through(provider, settings, site)
    app = create_app(oidc, client=dev_env.client, register=register)
    async with app.router.lifespan_context(app), serve(app, port) as url:
        assert url == site
        yield site


async def test_sign_in_and_out_through_the_identity_provider(
    browser: Any, oidc_site: str, provider: str
) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{oidc_site}/cases")
    assert "/sign-in" in page.url
    await assert_accessible(page)
    assert await page.get_by_role("button", name="Sign in as").count() == 0  # no demo users
    await page.get_by_role("button", name="Sign in with your organisation's account").click()
    # The provider's own page: the person chooses who they are there.
    await page.get_by_role("button", name=PROVIDER_USER).click()
    await page.get_by_role("heading", name="Your cases").wait_for()
    assert page.url == f"{oidc_site}/cases"
    assert "Tom Okafor" in await page.locator("body").inner_text()
    session = next(c for c in await context.cookies() if c["name"] == "escalation_session")
    assert session["httpOnly"] and session["sameSite"] == "Lax"
    # Signing out ends the provider's session too: the browser goes to the
    # provider's end-session page with this client's id, and comes back.
    await page.get_by_role("button", name="Sign out").click()
    await page.get_by_role("heading", name="End Session").wait_for()
    assert page.url.startswith(provider + "/oauth2/end_session?")
    asked = dict(parse_qsl(urlsplit(page.url).query))
    assert asked == {
        "client_id": asked["client_id"],
        "post_logout_redirect_uri": f"{oidc_site}/sign-in?signed_out=1",
    }
    assert asked["client_id"]
    await page.get_by_role("button", name="End session").click()
    await page.get_by_text("You have signed out").wait_for()
    assert page.url == f"{oidc_site}/sign-in?signed_out=1"
    await page.goto(f"{oidc_site}/cases")
    assert "/sign-in" in page.url  # signed out for real
    await context.close()


async def test_a_provider_out_of_reach_at_sign_out_still_signs_the_person_out_here(
    settings: Settings, provider: str
) -> None:
    from starlette.requests import Request

    from web.oidc import OidcSignIn

    site = f"http://127.0.0.1:{free_port()}"
    request = Request({"type": "http", "headers": [], "query_string": b"", "path": "/"})
    reachable = OidcSignIn(await signing_in_through(provider, settings, site))
    ending = await reachable.end_session_url(request)
    assert ending is not None and ending.startswith(f"{provider}/oauth2/end_session?")
    gone = OidcSignIn(
        settings.model_copy(
            update={
                "oidc_issuer": f"http://127.0.0.1:{free_port()}",
                "oidc_client_id": "escalation",
                "public_url": site,
            }
        )
    )
    # No provider to end a session at: the pages sign the person out
    # themselves (the route falls back to the sign-in page).
    assert await gone.end_session_url(request) is None


def _with(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


async def _provider_answer(http: httpx.AsyncClient, oidc_site: str, **tamper: str) -> str:
    """Start sign-in, have the provider sign the person in, and return where
    the provider sends the browser back to (the authorization request
    changed by ``tamper`` on its way, as an attacker would)."""
    start = await http.get(f"{oidc_site}/sign-in/provider", params={"next": "/cases"})
    assert start.status_code == 303
    authorize = _with(start.headers["location"], **tamper) if tamper else start.headers["location"]
    answer = await http.post(authorize, data={"sub": PROVIDER_USER})
    assert answer.status_code == 302, answer.text
    return str(answer.headers["location"])


async def test_a_forged_state_or_nonce_signs_nobody_in(oidc_site: str) -> None:
    async with httpx.AsyncClient() as http:
        # As it should be: signed in, back where they were going.
        back = await _provider_answer(http, oidc_site)
        signed_in = await http.get(back)
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/cases"
        assert (await http.get(f"{oidc_site}/cases")).status_code == 200

    async with httpx.AsyncClient() as http:
        # The provider's answer with another state: not the sign-in this browser started.
        back = await _provider_answer(http, oidc_site)
        refused = await http.get(_with(back, state="forged-state"))
        assert refused.status_code == 400
        assert "You could not be signed in" in refused.text
        assert (await http.get(f"{oidc_site}/cases")).status_code == 303

    async with httpx.AsyncClient() as http:
        # A code issued for another nonce (the state intact): refused too.
        back = await _provider_answer(http, oidc_site, nonce="forged-nonce")
        refused = await http.get(back)
        assert refused.status_code == 400
        assert "You could not be signed in" in refused.text
        assert (await http.get(f"{oidc_site}/cases")).status_code == 303
