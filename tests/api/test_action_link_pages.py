"""Acting from an email in a real browser (Debian's Chromium through
Playwright): the receiving manager follows the link in their copy of the
notice, from the worker's real ``.eml`` outbox, and acknowledges; the
practitioner who raised a Merton case confirms its outcome in writing from
theirs; a used, expired, forged and another person's link each change
nothing and say why; someone of another agency gets "Page not found".
axe-core finds no WCAG 2.2 A or AA violation on the confirmation page, the
done page or any refusal.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from api_helpers import Api
from link_stack import TOM, LinkStack
from page_helpers import assert_accessible, sign_in_as, sign_out


async def refused(page: Any, url: str, status: int, heading: str) -> None:
    response = await page.goto(url)
    assert response is not None and response.status == status
    await page.get_by_role("heading", name=heading).wait_for()
    assert "Nothing" in await page.locator("main").inner_text()
    await assert_accessible(page)


async def test_acting_from_the_emailed_links_in_a_browser(
    browser: Any, link_stack: LinkStack, tokens: dict[str, str]
) -> None:
    site = link_stack.site
    async with httpx.AsyncClient(base_url=site) as http:
        api = Api(http, tokens)
        reference = await api.raise_case()
        other = await api.raise_case()
        link = await link_stack.emailed_link(reference, TOM, "stage-started")
        others_link = await link_stack.emailed_link(other, TOM, "stage-started")

        context = await browser.new_context()
        page = await context.new_page()
        # The manager opens the link, not signed in: what the case is, what
        # the action does, and a button.
        await page.goto(link)
        await page.get_by_role("heading", name="Acknowledge the concern").wait_for()
        main = await page.locator("main").inner_text()
        assert reference in main and "Merton children's social care" in main
        assert "Tom Okafor" in main
        await assert_accessible(page)
        await page.get_by_role("button", name="Acknowledge the concern").click()
        await page.get_by_role("heading", name="Concern acknowledged").wait_for()
        await assert_accessible(page)

        # The case says who acknowledged it: the link's recipient.
        await page.get_by_role("link", name="Sign in to see the case").click()
        await page.get_by_role("button", name="Sign in as Tom Okafor").click()
        await page.get_by_role("heading", name=f"Case {reference}").wait_for()
        summary = await page.locator(".govuk-summary-list").first.inner_text()
        assert "Acknowledged by" in summary and "Tom Okafor" in summary
        await sign_out(page)

        # The same link again, an expired one and a forged one: nothing changes.
        await refused(page, link, 410, "This link has already been used")
        expired = link_stack.mint(other, TOM, expires_at=datetime.now(UTC) - timedelta(hours=1))
        await refused(page, expired, 410, "This link has expired")
        await refused(page, others_link[:-4] + "AAAA", 400, "This link does not work")
        await page.get_by_role("button", name="Sign in").click()
        await page.get_by_role("heading", name="Sign in").wait_for()

        # Another person's link: Priya, signed in, opens the one sent to Tom.
        await sign_in_as(page, site, "Priya Shah")
        await refused(page, others_link, 403, "This link was sent to someone else")
        await sign_out(page)

        # Someone of another agency: "Page not found", as for any case they may not see.
        await sign_in_as(page, site, "Dan Reid")
        response = await page.goto(others_link)
        assert response is not None and response.status == 404
        await page.get_by_role("heading", name="Page not found").wait_for()
        await assert_accessible(page)
        await sign_out(page)
        record = (await api.get(f"/disagreements/{other}", "merton-csc-manager")).json()
        assert record["acknowledged_by"] is None

        # Resolved at Merton's practitioners stage, either party confirms the
        # outcome in writing: Priya, who raised it, from her own copy.
        confirm = await link_stack.resolved_link(api, reference)
        await page.goto(confirm)
        await page.get_by_role("heading", name="Confirm the outcome in writing").wait_for()
        await assert_accessible(page)
        await page.get_by_role("button", name="Confirm the outcome in writing").click()
        await page.get_by_role("heading", name="Outcome confirmed in writing").wait_for()
        record = (await api.get(f"/disagreements/{reference}", "merton-health-practitioner")).json()
        confirmed = [e for e in record["events"] if e["type"] == "confirmed"]
        assert [e["by_name"] for e in confirmed] == ["Priya Shah"]
        await context.close()
