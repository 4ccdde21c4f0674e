"""The action links in notices: which notice offers which action to whom,
what a link may carry, and that only the POST from its page acts, once, as
its recipient; a forged, expired, used or another person's link changes
nothing and says why, and someone of another agency gets "Page not found".

The notices are the real worker's, read from its ``.eml`` outbox
(``link_stack``); the case is read back through the API.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import pytest_asyncio
from api_helpers import Api, eventually
from canary_helpers import free_port
from link_stack import PRIYA, TOM, LinkStack, Outbox
from page_helpers import serve, signing_in_through

from activities.notices import NoticeActivities, OutboxSink
from api.main import create_app
from api.users import DEMO_USERS, User
from escalation.action_links import (
    ActionLink,
    ForgedLinkError,
    LinkMaker,
    LinkSigner,
    action_for,
    recipient_digest,
)
from policies.directory import example_directory, load_directory
from policies.loader import get_policy
from workflows.messages import Notice, Recipient

CHILD = "Zebedee Quillfeather"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


# --- Which notice offers which action to whom ----------------------------------------


def notice(template: str, policy: str = "merton", stage: int = 0, **context: str) -> Notice:
    return Notice(
        notice_id=f"MER-TEST0001-00007-{template}",
        reference="MER-TEST0001",
        template=template,
        policy_id=policy,
        partnership=policy,
        area="merton",
        recipients=[],
        stage=stage,
        stage_name="Practitioners",
        stage_summary="…",
        deadline=None,
        deadline_text=None,
        status="open",
        context=context,
        receiving_agency="merton-childrens-social-care",
    )


RECEIVING = Recipient(role="practitioner", title="P", agency="merton-childrens-social-care")
RAISING = Recipient(role="practitioner", title="P", agency="merton-health")
RAISER = Recipient(role="raiser", title="Priya Shah (raised the concern)", email=PRIYA)
TEAM = Recipient(role="business-team", title="Business team")


def test_the_receiving_side_is_asked_to_acknowledge_and_nobody_else() -> None:
    for template in ("acknowledgement-due", "stage-started", "escalated-automatically"):
        n = notice(template, reason="raised")
        assert action_for(n, RECEIVING) == "acknowledge"
        assert [action_for(n, r) for r in (RAISING, RAISER, TEAM)] == [None, None, None]
    # A reopened stage keeps its acknowledgement; a deadline reminder asks nothing.
    assert action_for(notice("stage-started", reason="reopened"), RECEIVING) is None
    assert action_for(notice("deadline-day-reminder"), RECEIVING) is None
    # A notice from before the receiving agency was carried offers no link.
    before = notice("acknowledgement-due").model_copy(update={"receiving_agency": None})
    assert action_for(before, RECEIVING) is None


def test_the_confirmation_is_asked_of_whom_the_policy_names() -> None:
    # Merton's practitioners stage: either party confirms in writing.
    resolved = notice("resolved", confirmation="due-no-timescale")
    assert [action_for(resolved, r) for r in (RECEIVING, RAISING, RAISER, TEAM)] == [
        "confirm",
        "confirm",
        "confirm",
        None,
    ]
    # Staffordshire's stage 1: the receiving professional confirms.
    staffs = notice("resolved", policy="staffordshire-stoke", confirmation="due")
    assert [action_for(staffs, r) for r in (RECEIVING, RAISING, RAISER)] == ["confirm", None, None]
    due = notice("written-confirmation-due", policy="staffordshire-stoke")
    assert action_for(due, RECEIVING) == "confirm"
    # A resolution that closes the case asks nothing.
    assert action_for(notice("resolved"), RECEIVING) is None


def test_a_token_carries_no_case_detail_and_any_change_forges_it() -> None:
    secret = secrets.token_bytes(32)
    link = ActionLink(
        link_id="a" * 32,
        action="acknowledge",
        reference="MER-TEST0001",
        recipient=recipient_digest(secret, TOM),
        expires_at=datetime(2027, 1, 4, 17, tzinfo=UTC),
    )
    token = LinkSigner(secret).token(link)
    assert LinkSigner(secret).read(token) == link
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", token)
    assert "tom" not in token.lower()
    for forged in (
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        token[:20],
        "x" * 700,
        "",
    ):
        with pytest.raises(ForgedLinkError):
            LinkSigner(secret).read(forged)
    with pytest.raises(ForgedLinkError):
        LinkSigner(secrets.token_bytes(32)).read(token)  # another service's key


def test_each_recipient_gets_only_their_own_link(tmp_path: Any) -> None:
    from link_stack import DIRECTORY

    (tmp_path / "d.yaml").write_text(DIRECTORY, encoding="utf-8")
    maker = LinkMaker(secrets.token_bytes(32), "https://escalation.example", timedelta(days=7))
    activities = NoticeActivities(
        OutboxSink(tmp_path / "outbox"), directory=load_directory(tmp_path / "d.yaml"), links=maker
    )
    owners = [
        Recipient(role="practitioner", title="P", agency="merton-health"),
        Recipient(role="practitioner", title="P", agency="merton-childrens-social-care"),
        Recipient(role="business-team", title="Business team"),
    ]
    n = notice("stage-started", reason="raised").model_copy(update={"recipients": owners})
    (email,), _unfilled = activities.compose(n)
    copies = {c.to[0].email: c for c in email.copies()}
    assert set(copies) == {PRIYA, TOM, "business.team@mscp.merton.example"}
    assert "/act/" in copies[TOM].text and "/act/" in copies[TOM].html
    assert "Acknowledge the concern" in copies[TOM].text
    for other in (PRIYA, "business.team@mscp.merton.example"):
        assert "/act/" not in copies[other].text + copies[other].html
    # The same copy makes the same link (a retried send offers no second one).
    (again,), _ = activities.compose(n)
    ids = [
        LinkSigner(maker.secret).read(re.findall(r"/act/(\S+)", c.text)[0]).link_id
        for c in (copies[TOM], again.copies()[1])
    ]
    assert ids[0] == ids[1]


@pytest.mark.parametrize(
    "manager",
    [u for u in DEMO_USERS if u.role == "manager"],
    ids=lambda u: str(u.partnership),
)
def test_make_runs_directory_sends_each_demonstration_manager_links_that_act_for_them(
    tmp_path: Any, manager: User
) -> None:
    """Under `make run` (the example directory), the demonstration manager of
    each policy is among the receiving side's owners of the stage a case is
    raised at and of the next, so their own copy of the notice carries an
    acknowledgement link that acts for their demonstration user: a link sent
    only to a duty inbox would say it is "not for an account of this
    service"."""
    assert manager.partnership and manager.agency and manager.email
    policy = get_policy(manager.partnership)
    directory = example_directory()
    entry = directory.partnership(policy.id)
    assert entry is not None
    (area,) = [key for key, a in entry.areas.items() if manager.agency in a.agencies]
    kind = entry.areas[area].agencies[manager.agency].kind
    maker = LinkMaker(secrets.token_bytes(32), "https://escalation.example", timedelta(days=7))
    activities = NoticeActivities(OutboxSink(tmp_path), directory=directory, links=maker)
    for stage in (0, 1):
        owner = policy.stages[stage].owner_for(kind)
        receiving = Recipient(role=owner.role, title=owner.title, agency=manager.agency, area=area)
        n = notice("stage-started", reason="raised" if stage == 0 else "escalated").model_copy(
            update={
                "policy_id": policy.id,
                "partnership": policy.id,
                "area": area,
                "stage": stage,
                "receiving_agency": manager.agency,
                "recipients": [receiving],
            }
        )
        (email,), unfilled = activities.compose(n)
        assert unfilled == []
        copies = {c.to[0].email.lower(): c for c in email.copies()}
        assert manager.email.lower() in copies, (stage, owner.role, sorted(copies))
        (token,) = re.findall(r"/act/(\S+)", copies[manager.email.lower()].text)
        link = LinkSigner(maker.secret).read(token)
        assert link.action == "acknowledge"
        assert link.recipient == recipient_digest(maker.secret, manager.email)


# --- Following a link ------------------------------------------------------------------------


@pytest_asyncio.fixture
async def api(link_stack: LinkStack, tokens: dict[str, str]) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(base_url=link_stack.site) as http:
        yield Api(http, tokens)


async def raised(api: Api) -> str:
    return await api.raise_case(child={"name": CHILD, "date_of_birth": "2019-04-01"})


async def case(api: Api, reference: str) -> dict[str, Any]:
    response = await api.get(f"/disagreements/{reference}", "merton-health-practitioner")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def path(link: str) -> str:
    return "/act/" + link.split("/act/", 1)[1]


async def open_link(http: httpx.AsyncClient, link: str) -> tuple[httpx.Response, str | None]:
    page = await http.get(path(link))
    found = CSRF.search(page.text)
    return page, found.group(1) if found else None


async def sign_in(http: httpx.AsyncClient, user: str) -> None:
    page = await http.get("/sign-in")
    token = CSRF.search(page.text)
    assert token is not None
    done = await http.post("/sign-in", data={"csrf_token": token.group(1), "demo_user": user})
    assert done.status_code == 303


async def test_the_receiving_manager_acknowledges_from_the_emailed_link(
    link_stack: LinkStack, api: Api
) -> None:
    reference = await raised(api)
    link = await link_stack.emailed_link(reference, TOM, "stage-started")
    (email,) = Outbox(link_stack.outbox).emails(reference, TOM, "stage-started")
    assert CHILD not in email.as_string() and CHILD not in link
    # Priya's copy of the same notice asks nothing of her.
    (hers,) = Outbox(link_stack.outbox).emails(reference, PRIYA, "stage-started")
    assert "/act/" not in hers.as_string()

    async with httpx.AsyncClient(base_url=link_stack.site) as http:
        # Opened, twice, as a mail scanner would: nothing changes.
        for _ in range(2):
            page, csrf = await open_link(http, link)
            assert page.status_code == 200
            assert "Acknowledge the concern" in page.text and reference in page.text
            assert CHILD not in page.text
        assert (await case(api, reference))["acknowledged_by"] is None
        # A POST without the page's CSRF token: refused, and nothing changes.
        refused = await http.post(path(link), data={})
        assert refused.status_code == 403
        assert (await case(api, reference))["acknowledged_by"] is None

        done = await http.post(path(link), data={"csrf_token": csrf})
        assert done.status_code == 303 and done.headers["location"].endswith("/done")
        shown = await http.get(done.headers["location"])
        assert "Concern acknowledged" in shown.text

        record = await case(api, reference)
        assert record["acknowledged_by"]["id"] == "merton-csc-manager"
        acknowledged = [e for e in record["events"] if e["type"] == "acknowledged"]
        assert [(e["by"], e["by_name"]) for e in acknowledged] == [
            ("merton-csc-manager", "Tom Okafor")
        ]

        # Used: said so, with sign-in offered, and pressing again changes nothing.
        page, _ = await open_link(http, link)
        assert page.status_code == 410 and "already been used" in page.text
        assert "/sign-in?next=%2Fcases%2F" + reference in page.text
        again = await http.post(path(link), data={"csrf_token": csrf})
        assert again.status_code == 410
    record = await case(api, reference)
    assert len([e for e in record["events"] if e["type"] == "acknowledged"]) == 1


async def test_a_link_that_may_not_act_changes_nothing_and_says_why(
    link_stack: LinkStack, api: Api
) -> None:
    reference = await raised(api)
    link = await link_stack.emailed_link(reference, TOM, "stage-started")
    expired = link_stack.mint(reference, TOM, expires_at=datetime.now(UTC) - timedelta(minutes=1))
    token = path(link).removeprefix("/act/")
    forged = f"{link_stack.site}/act/{token[:-3]}{'xyz' if not token.endswith('xyz') else 'abc'}"
    nobody = link_stack.mint(reference, "someone.else@merton-childrens-social-care.example.org")

    async with httpx.AsyncClient(base_url=link_stack.site) as http:
        cases: list[tuple[str, int, str]] = [
            (expired, 410, "This link has expired"),
            (forged, 400, "This link does not work"),
            (nobody, 403, "This link is not for an account of this service"),
        ]
        for url, status, words in cases:
            page, csrf = await open_link(http, url)
            assert page.status_code == status and words in page.text
            assert "Sign in" in page.text
            if csrf is None:  # a refusal has no form: the session's token from one that has
                csrf = (await open_link(http, link))[1]
            pressed = await http.post(path(url), data={"csrf_token": csrf})
            assert pressed.status_code == status

        # Another person's link: Priya is a party, but the link is Tom's.
        await sign_in(http, "merton-health-practitioner")
        page, csrf = await open_link(http, link)
        assert page.status_code == 403 and "This link was sent to someone else" in page.text
        pressed = await http.post(path(link), data={"csrf_token": csrf})
        assert pressed.status_code == 403

    # Someone of another agency: the same "Page not found" as a case that does not exist.
    async with httpx.AsyncClient(base_url=link_stack.site) as http:
        await sign_in(http, "merton-police-practitioner")
        page, _ = await open_link(http, link)
        missing, _ = await open_link(http, link_stack.mint("MER-00000000", TOM))
        assert page.status_code == missing.status_code == 404
        assert "Page not found" in page.text
        assert _main(page.text) == _main(missing.text)

    assert (await case(api, reference))["acknowledged_by"] is None
    # The link itself still works for Tom: none of the above used it.
    async with httpx.AsyncClient(base_url=link_stack.site) as http:
        page, _ = await open_link(http, link)
        assert page.status_code == 200


def _main(html: str) -> str:
    return html.split("<main", 1)[1].split("</main>", 1)[0]


async def test_a_practitioner_confirms_in_writing_where_the_policy_names_them(
    link_stack: LinkStack, api: Api
) -> None:
    reference = await raised(api)
    link = await link_stack.resolved_link(api, reference)
    async with httpx.AsyncClient(base_url=link_stack.site) as http:
        page, csrf = await open_link(http, link)
        assert page.status_code == 200 and "Confirm the outcome in writing" in page.text
        done = await http.post(path(link), data={"csrf_token": csrf})
        assert done.status_code == 303

    async def closed() -> bool:
        return (await case(api, reference))["status"] == "resolved"

    await eventually(closed, what="the case closed by the confirmation")
    confirmed = [e for e in (await case(api, reference))["events"] if e["type"] == "confirmed"]
    assert [e["by"] for e in confirmed] == ["merton-health-practitioner"]


# --- Where people sign in through the identity provider -------------------------------


@pytest_asyncio.fixture
async def provider_site(link_stack: LinkStack) -> AsyncIterator[str]:
    """The link stack's service as production runs it: nobody in a users file,
    people known only once signed in through a real OIDC provider."""
    from oidc_provider_mock import User, run_server_in_thread

    # Tom as the identity provider knows him, with a subject of its own.
    tom = User(
        sub="okafor-t-0042",
        claims={
            "name": "Tom Okafor",
            "email": TOM,
            "agency": "merton-childrens-social-care",
            "partnership": "merton",
            "role": "manager",
        },
    )
    port = free_port()
    site = f"http://127.0.0.1:{port}"
    with run_server_in_thread(
        require_client_registration=True, require_nonce=True, user_claims=[tom]
    ) as server:
        provider = f"http://localhost:{server.server_port}"
        settings = await signing_in_through(provider, link_stack.settings, site)
        app = create_app(settings, client=link_stack.client, register=link_stack.register)
        async with app.router.lifespan_context(app), serve(app, port):
            yield site


async def test_a_link_asks_whoever_signs_in_through_the_provider_to_sign_in_first(
    link_stack: LinkStack, provider_site: str, api: Api
) -> None:
    reference = await raised(api)
    link = path(await link_stack.emailed_link(reference, TOM, "stage-started"))
    async with httpx.AsyncClient(base_url=provider_site) as http:
        page, _ = await open_link(http, link)
        assert page.status_code == 403 and "Sign in to use this link" in page.text
        # Signing in comes back to the link, not to the case.
        assert "/sign-in?next=" + quote(link, safe="") in page.text
        assert (await case(api, reference))["acknowledged_by"] is None

        start = await http.get("/sign-in/provider", params={"next": link})
        answer = await http.post(start.headers["location"], data={"sub": "okafor-t-0042"})
        assert answer.status_code == 302, answer.text
        back = await http.get(answer.headers["location"])
        assert back.status_code == 303 and back.headers["location"] == link

        page, csrf = await open_link(http, link)
        assert page.status_code == 200 and "Acknowledge the concern" in page.text
        done = await http.post(link, data={"csrf_token": csrf})
        assert done.status_code == 303

    acknowledged = [
        e for e in (await case(api, reference))["events"] if e["type"] == "acknowledged"
    ]
    assert [(e["by"], e["by_name"]) for e in acknowledged] == [("okafor-t-0042", "Tom Okafor")]
