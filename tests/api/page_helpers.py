"""What the browser tests share (imported as ``page_helpers``): the app on a
real loopback port, Debian's Chromium driven by Playwright, axe-core's WCAG
2.2 A and AA checks, signing in as a demonstration user, and each of the five
policies' practitioner raising a case with its manager to answer."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
import uvicorn
from canary_helpers import free_port
from fastapi import FastAPI
from pydantic import SecretStr

from escalation.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"]


@asynccontextmanager
async def serve(app: FastAPI, port: int | None = None) -> AsyncIterator[str]:
    """The app on a loopback port (uvicorn in the session's event loop); its
    lifespan is the caller's to run."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    loop = asyncio.get_running_loop()
    give_up = loop.time() + 20
    while not server.started:
        if task.done() or loop.time() > give_up:
            raise RuntimeError("the app did not start on its port")
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest_asyncio.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    # Never a skip: `make test` installs Chromium where it is missing, and
    # `make install` brings axe-core.
    assert CHROMIUM.exists(), "the browser tests need /usr/bin/chromium (apt-get install chromium)"
    assert AXE.exists(), "the accessibility checks need axe-core: run `make install`"
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


async def axe_violations(page: Any) -> list[str]:
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG_TAGS
    )
    return [
        f"{v['id']}: {v['help']} ({len(v['nodes'])} x, e.g. {v['nodes'][0]['html'][:120]})"
        for v in result["violations"]
    ]


async def assert_accessible(page: Any) -> None:
    found = await axe_violations(page)
    assert not found, f"{page.url}: " + "; ".join(found)


async def sign_in_as(page: Any, site: str, name: str) -> None:
    await page.goto(f"{site}/sign-in")
    await page.get_by_role("button", name=re.compile(f"Sign in as {name}")).click()
    await page.get_by_role("heading", name="Your cases").wait_for()


async def sign_out(page: Any) -> None:
    await page.get_by_role("button", name="Sign out").click()
    await page.get_by_text("You have signed out").wait_for()


async def main_text(page: Any) -> str:
    return str(await page.locator("main").inner_text())


async def escalate(page: Any, reason: str) -> None:
    await page.locator("#escalate-reason").fill(reason)
    await page.get_by_role("button", name="Escalate").click()
    await page.get_by_text("You escalated the case").wait_for()


@dataclass(frozen=True)
class Partnership:
    policy: str
    prefix: str
    raiser: str
    receiver: str
    area: str | None
    receiving_agency: str


PARTNERSHIPS = [
    Partnership("merton", "MER", "Priya Shah", "Tom Okafor", None, "Merton children's social care"),
    Partnership(
        "staffordshire-stoke",
        "STA",
        "Amira Hussain",
        "Gareth Price",
        "Staffordshire",
        "Staffordshire children's social care",
    ),
    Partnership(
        "cheshire",
        "CHE",
        "Ruth Ellison",
        "Kwame Mensah",
        "Cheshire West and Chester",
        "Cheshire West and Chester children's social care",
    ),
    Partnership(
        "wirral", "WIR", "Siobhan Kelly", "Ian Roberts", None, "Wirral children's social care"
    ),
    Partnership(
        "hillingdon",
        "HIL",
        "Meera Patel",
        "Lewis Grant",
        None,
        "Hillingdon children's social care",
    ),
]


async def raise_case(page: Any, site: str, who: Partnership, child: str) -> str:
    """Raise a case from the raise form, as the partnership's practitioner
    (signed in), with the mouse; the reference it answers with."""
    await page.goto(f"{site}/cases/new")
    await page.get_by_role("heading", name="Raise a disagreement").wait_for()
    if who.area:
        await page.get_by_label(who.area, exact=True).check()
    await page.get_by_label("The agency whose decision you disagree with").select_option(
        label=who.receiving_agency
    )
    await page.get_by_label("Levels of need or thresholds").check()
    await page.get_by_label("What is the disagreement about?").fill(
        "The referral was closed with no further action; health believes the threshold is met."
    )
    await page.get_by_label(re.compile("Child's full name")).fill(child)
    await page.get_by_role("button", name="Raise the disagreement").click()
    await page.get_by_role("heading", name="Disagreement raised").wait_for()
    reference = (await page.locator(".govuk-panel__body strong").inner_text()).strip()
    assert re.fullmatch(rf"{who.prefix}-[0-9A-Z]{{8}}", reference)
    # What happens next says by when, or that the stage has no timescale.
    main = await main_text(page)
    assert re.search(r"It must be resolved by \w+day", main) or (
        "This stage has no written timescale" in main and "Deadline\tNo written timescale" in main
    ), main
    return reference


async def signing_in_through(provider: str, settings: Settings, site: str) -> Settings:
    """``settings`` for an app at ``site`` whose pages sign people in through
    the OIDC provider at ``provider``, registered there as a client of its own."""
    async with httpx.AsyncClient() as http:
        registered = await http.post(
            f"{provider}/oauth2/clients", json={"redirect_uris": [f"{site}/sign-in/callback"]}
        )
        registered.raise_for_status()
    client = registered.json()
    return settings.model_copy(
        update={
            "oidc_issuer": provider,
            "oidc_audience": client["client_id"],
            "oidc_client_id": client["client_id"],
            "oidc_client_secret": SecretStr(client["client_secret"]),
            "demo_users": False,
            "public_url": site,
        }
    )
