"""Acting from an email: the action links a notice carries (``escalation.action_links``).

``GET /act/<token>`` changes nothing: it shows what the case is, what the
action will do and a button, so a mail scanner that follows every link in an
email does no harm. Only the POST from that page (with the session's CSRF
token, like every form) acts, as the link's recipient: the user of this
service with the address the link was sent to, whom the case's timeline
then names. Where people sign in through the identity provider the service
knows them only once signed in: the link asks them to sign in and brings them
back to its page. A link acts once (its id is kept in the register), until it
expires; a forged or altered link, a used or expired one, or one followed by
someone signed in as another person changes nothing and says why, offering
sign-in. Someone signed in whose agency is not a party to the case gets the
same "Page not found" as for any case they may not see.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api import cases
from api.auth import UsersFileAuthenticator
from api.problems import ProblemError
from api.users import User
from escalation.action_links import (
    ACTIONS,
    PATH,
    ActionLink,
    ForgedLinkError,
    LinkSigner,
    recipient_digest,
)
from policies.model import Policy
from register import RegisterUnavailableError
from web.dates import long_date
from web.oidc import sign_in_client
from web.routes import NOT_FOUND, PageError, _policy_of, _record, _secret, _user, posted, render
from workflows import ladder
from workflows.disagreement import DisagreementWorkflow
from workflows.messages import Acknowledge, Action, CaseRecord, ConfirmOutcome

log = logging.getLogger("escalation.pages.links")

router = APIRouter(include_in_schema=False)

# What each action does, said on the page before the button.
EXPLAINED = {
    "acknowledge": (
        "Acknowledging records on the case, in your name, that {agency} has received the "
        "concern. It does not resolve the disagreement: that is still due by the deadline."
    ),
    "confirm": (
        "Confirming records on the case, in your name, that the agreed outcome has been "
        "confirmed in writing to your counterpart. The case then closes."
    ),
}
NOTHING_TO_DO = "There is nothing to do"
DONE = {
    "acknowledge": "Concern acknowledged",
    "confirm": "Outcome confirmed in writing",
}


class LinkRefused(Exception):
    """The link does nothing: why, in the person's words, and its case if known."""

    def __init__(
        self,
        status: int,
        title: str,
        message: str,
        reference: str | None,
        come_back: str | None = None,
    ) -> None:
        super().__init__(title)
        self.status = status
        self.title = title
        self.message = message
        self.reference = reference
        # Where sign-in returns to: the case, unless signing in lets the link act.
        self.come_back = come_back


@dataclass
class Checked:
    link: ActionLink
    recipient: User
    record: CaseRecord
    policy: Policy
    action: Action


def _read(request: Request, token: str) -> ActionLink:
    try:
        return LinkSigner(_secret(request)).read(token)
    except ForgedLinkError:
        raise LinkRefused(
            400,
            "This link does not work",
            "The link is not one this service sent, or it was changed or cut short on the "
            "way. Nothing has been changed. Copy the whole link from the email, or sign in "
            "and open the case.",
            None,
        ) from None


def _recipient(request: Request, link: ActionLink, viewer: User | None) -> User | None:
    """The user of this service the link was sent to, by their address: the
    person signed in, if it is them, or whoever the users file holds with
    that address. People who sign in through the identity provider are
    known only once signed in, so for them signing in is what lets the link act."""
    secret = _secret(request)

    def is_recipient(user: User) -> bool:
        return user.email is not None and recipient_digest(secret, user.email) == link.recipient

    if viewer is not None and is_recipient(viewer):
        return viewer
    authenticator = request.app.state.authenticator
    if isinstance(authenticator, UsersFileAuthenticator):
        return next((user for user in authenticator.users() if is_recipient(user)), None)
    return None


def _action(verb: str, user: User) -> Action:
    if verb == "acknowledge":
        return Acknowledge(by=user.actor())
    return ConfirmOutcome(by=user.actor())


async def _check(request: Request, token: str) -> Checked:
    """Everything that must hold for the link to act, in the order that says
    least to whoever should not learn more."""
    link = _read(request, token)
    viewer = _user(request)
    seen: CaseRecord | None = None
    if viewer is not None:
        # Not a party: the same "Page not found" as any case they may not see.
        seen = await _record(request, viewer, link.reference)
    if link.expired(datetime.now(UTC)):
        raise LinkRefused(
            410,
            "This link has expired",
            f"The link worked until {long_date(link.expires_at)}. Nothing has been changed. "
            "Sign in to act on the case.",
            link.reference,
        )
    if await _used(request, link):
        raise LinkRefused(
            410,
            "This link has already been used",
            "Each link in an email works once, and this one has done what it was for. "
            "Nothing more has been changed. Sign in to see the case.",
            link.reference,
        )
    recipient = _recipient(request, link, viewer)
    if recipient is None and viewer is None and sign_in_client(request) is not None:
        raise LinkRefused(
            403,
            "Sign in to use this link",
            "Sign in with the account this email was sent to, and you will come back here "
            "to confirm. Nothing has been changed yet.",
            link.reference,
            come_back=f"{PATH}{token}",
        )
    if viewer is not None and (recipient is None or viewer.id != recipient.id):
        raise LinkRefused(
            403,
            "This link was sent to someone else",
            f"You are signed in as {viewer.name}, and the link works only for the person it "
            "was emailed to. Nothing has been changed. Open the case to act on it yourself.",
            link.reference,
        )
    if recipient is None:
        raise LinkRefused(
            403,
            "This link is not for an account of this service",
            "The address the email went to does not belong to anyone who can sign in here, "
            "so the link cannot act for them. Nothing has been changed. Sign in to act on "
            "the case.",
            link.reference,
        )
    record = seen if seen is not None else await _record(request, recipient, link.reference)
    policy = _policy_of(record)
    action = _action(link.action, recipient)
    try:
        ladder.check(policy, record, action, datetime.now(UTC))
    except ladder.Refused as refused:
        raise LinkRefused(409, NOTHING_TO_DO, _sentence(str(refused)), link.reference) from None
    return Checked(link, recipient, record, policy, action)


async def _used(request: Request, link: ActionLink) -> bool:
    try:
        return bool(
            await run_in_threadpool(request.app.state.register.action_link_used, link.link_id)
        )
    except RegisterUnavailableError:
        raise PageError(503, "Sorry, the service is unavailable", "Try again shortly.") from None


def _sentence(text: str) -> str:
    text = text.strip() or "the case cannot take it now"
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _refused(request: Request, exc: LinkRefused) -> Response:
    return render(
        request,
        "action_link_refused.html",
        status=exc.status,
        refusal=exc,
        sign_in=_sign_in(exc.reference, exc.come_back),
    )


def _sign_in(reference: str | None, come_back: str | None = None) -> str:
    if come_back is None and reference is None:
        return "/sign-in"
    return "/sign-in?" + urlencode({"next": come_back or cases.page_path(reference or "")})


def _page(request: Request, token: str, checked: Checked, **context: Any) -> Response:
    record = checked.record
    return render(
        request,
        "action_link.html",
        token=token,
        record=record,
        stage=checked.policy.stages[record.stage],
        recipient=checked.recipient,
        verb=checked.link.action,
        label=ACTIONS[checked.link.action],
        explained=EXPLAINED[checked.link.action].format(agency=record.receiving_agency.name),
        expires_at=checked.link.expires_at,
        sign_in=_sign_in(record.reference),
        **context,
    )


@router.get("/act/{token}", response_class=HTMLResponse)
async def action_page(request: Request, token: str) -> Response:
    try:
        checked = await _check(request, token)
    except LinkRefused as exc:
        return _refused(request, exc)
    return _page(request, token, checked)


@router.post("/act/{token}", response_class=HTMLResponse)
async def act(request: Request, token: str) -> Response:
    await posted(request)
    try:
        checked = await _check(request, token)
    except LinkRefused as exc:
        return _refused(request, exc)
    link, recipient = checked.link, checked.recipient
    update = (
        DisagreementWorkflow.acknowledge
        if link.action == "acknowledge"
        else DisagreementWorkflow.confirm
    )
    settings = request.app.state.settings
    try:
        case = await cases.find_case(request.app.state.client, link.reference, recipient, "link")
        # Keyed by the link: two presses, or two tabs, are one update.
        await cases.act(
            case,
            update,
            checked.action,
            settings.action_timeout_seconds,
            update_id=f"link-{link.link_id}",
        )
    except ProblemError as exc:
        if exc.status == 404:
            raise NOT_FOUND from None
        if exc.status == 409:
            return _refused(
                request,
                LinkRefused(409, NOTHING_TO_DO, _sentence(exc.detail or ""), link.reference),
            )
        raise PageError(exc.status, "Sorry, the action was not taken", exc.detail or "") from None
    try:
        await run_in_threadpool(
            request.app.state.register.use_action_link,
            link.link_id,
            link.reference,
            link.action,
            recipient.id,
        )
    except RegisterUnavailableError:
        # The case has it; the link, followed again, meets the case's own
        # rule (already acknowledged, no longer awaiting confirmation).
        log.warning("action link %s used but not recorded: the register is down", link.link_id)
    log.info("action link %s used (%s on %s)", link.link_id, link.action, link.reference)
    return RedirectResponse(f"/act/{token}/done", status_code=303)


@router.get("/act/{token}/done", response_class=HTMLResponse)
async def done(request: Request, token: str) -> Response:
    try:
        link = _read(request, token)
    except LinkRefused as exc:
        return _refused(request, exc)
    viewer = _user(request)
    if viewer is not None:
        await _record(request, viewer, link.reference)  # not a party: "Page not found"
    if not await _used(request, link):
        return RedirectResponse(f"/act/{token}", status_code=303)
    return render(
        request,
        "action_link_done.html",
        reference=link.reference,
        title=DONE[link.action],
        sign_in=_sign_in(link.reference),
    )
