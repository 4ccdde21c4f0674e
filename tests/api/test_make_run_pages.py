"""`make run` as someone with only a browser meets it, for each of the five
policies: the whole system as `escalation run` starts it (its own data
folder, free ports, the example role directory, the demonstration users),
the practitioner raises a case from the pages, the receiving manager finds
the notice in the ``.eml`` outbox, acknowledges from its link, follows the
case link to sign in, escalates and resolves, the written confirmation is
given from the next notice's link, and the timeline shows it all. No token is
copied by hand: what ``test_pages`` and ``test_action_link_pages`` prove of
the app, this proves of `make run`'s wiring (the public address in the
links, the key the worker and the API share, who the example directory
sends each notice to).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from canary_helpers import Stack
from link_stack import LINK, Outbox
from page_helpers import (
    PARTNERSHIPS,
    Partnership,
    assert_accessible,
    escalate,
    main_text,
    raise_case,
    sign_in_as,
    sign_out,
)

from api.users import DEMO_USERS, User


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp("make-run") / "data")
    stack.start()
    try:
        yield stack
    finally:
        stack.kill()


def demo_user(name: str) -> User:
    (user,) = [u for u in DEMO_USERS if u.name == name]
    assert user.email is not None
    return user


async def act_from_link(browser: Any, link: str, action: str, done: str, person: str) -> None:
    """Open the link as from a mail client (nobody signed in) and press its button."""
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(link)
    await page.get_by_role("heading", name=action).wait_for()
    assert f"This link was emailed to {person} alone" in await main_text(page)
    await assert_accessible(page)
    await page.get_by_role("button", name=action).click()
    await page.get_by_role("heading", name=done).wait_for()
    await context.close()


@pytest.mark.parametrize("who", PARTNERSHIPS, ids=[p.policy for p in PARTNERSHIPS])
async def test_make_run_in_a_browser_alone(browser: Any, stack: Stack, who: Partnership) -> None:
    site = stack.api_url
    outbox = Outbox(stack.data_dir / "outbox")
    raiser, manager = demo_user(who.raiser), demo_user(who.receiver)
    assert raiser.email and manager.email
    context = await browser.new_context()
    page = await context.new_page()

    # The address make run prints leads to sign-in.
    assert f"Pages           http://localhost:{stack.ports['api']}/" in stack.output.decode()
    await page.goto(f"{site}/")
    await page.get_by_role("heading", name="Sign in").wait_for()
    await sign_in_as(page, site, who.raiser)
    reference = await raise_case(page, site, who, "Ottoline Brackenbury")
    await sign_out(page)

    # The manager's own copy of the notice: the case's page and a link to acknowledge.
    email = await outbox.email(reference, manager.email, "stage-started")
    case_link = f"{site}/cases/{reference}"
    assert case_link in email
    (acknowledge,) = LINK.findall(email)
    await act_from_link(
        browser, acknowledge, "Acknowledge the concern", "Concern acknowledged", who.receiver
    )

    # The case link asks them to sign in, then opens the case.
    await page.goto(case_link)
    await page.get_by_role("button", name=re.compile(f"Sign in as {who.receiver}")).click()
    await page.get_by_role("heading", name=f"Case {reference}").wait_for()
    summary = await page.locator(".govuk-summary-list").first.inner_text()
    assert "Acknowledged by" in summary and who.receiver in summary
    await escalate(page, "No agreement between the practitioners.")
    await page.locator("#resolve-outcome").fill("Agreed at the strategy meeting.")
    await page.get_by_role("button", name="Resolve").click()
    await page.get_by_text("You recorded the outcome").wait_for()

    # Where the policy asks for the outcome in writing, the resolved notice
    # asks it of the manager or of the person who raised it.
    confirmed = "Awaiting written confirmation" in await main_text(page)
    if confirmed:
        for person in (manager, raiser):
            assert person.email
            links = LINK.findall(await outbox.email(reference, person.email, "resolved"))
            if links:
                await act_from_link(
                    browser,
                    links[0],
                    "Confirm the outcome in writing",
                    "Outcome confirmed in writing",
                    person.name,
                )
                break
        else:
            raise AssertionError("nobody was sent a link to confirm the outcome in writing")

    await page.goto(case_link)
    timeline = await page.locator("ol.app-timeline").inner_text()
    for event in ("Raised", "Acknowledged", "Escalated", "Resolved", "Closed"):
        assert event in timeline, (event, timeline)
    assert f"{who.receiver} (manager)" in timeline and f"{who.raiser} (practitioner)" in timeline
    assert ("Outcome confirmed in writing" in timeline) == confirmed
    await assert_accessible(page)
    await context.close()
