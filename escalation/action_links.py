"""Links in a notice that let its recipient do the one thing it asks of them.

A notice that asks one person for one thing (acknowledge the concern;
confirm the agreed outcome in writing) carries, in that recipient's own copy,
a link for that action and that person: ``<public URL>/act/<token>``. The
token is signed with the API's key (itsdangerous) and holds only a link id,
the action, the case reference, a keyed digest of the recipient's address
and when it expires: no child's details, no free text, nothing that names
the person. ``web.links`` reads it; the register keeps the ids of the links
that have been used, so each works once.

Which notice offers which action, to whom, is decided here (``action_for``)
from the notice's template and the policy's rule for the stage; whether the
action is still possible when the link is followed is the case's own rule
(``workflows.ladder.check``), asked again then.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from itsdangerous import BadData, URLSafeSerializer

from policies.loader import UnknownPolicyError, get_policy
from web.dates import long_date
from workflows.messages import Notice, Recipient

SALT = "escalation.action-link"
PATH = "/act/"
# What a link does, in the words of its button and the email's line.
ACTIONS: dict[str, str] = {
    "acknowledge": "Acknowledge the concern",
    "confirm": "Confirm the outcome in writing",
}
# A token is a few hundred characters; anything much longer is not ours.
TOKEN_MAX_LENGTH = 600


class ForgedLinkError(Exception):
    """The token was not signed with this service's key, or was altered."""


@dataclass(frozen=True)
class ActionLink:
    link_id: str
    action: str
    reference: str
    recipient: str  # ``recipient_digest`` of the address it was sent to
    expires_at: datetime

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at


@dataclass(frozen=True)
class Offer:
    """One recipient's link, as their copy of the notice words it."""

    action: str
    url: str
    expires_at: datetime

    @property
    def label(self) -> str:
        return ACTIONS[self.action]

    @property
    def expires_text(self) -> str:
        return long_date(self.expires_at)


def _digest(secret: bytes, purpose: str, value: str) -> str:
    return hmac.new(secret, f"{purpose}\0{value}".encode(), hashlib.sha256).hexdigest()[:32]


def recipient_digest(secret: bytes, address: str) -> str:
    """Keyed, so the token does not reveal whom it was sent to."""
    return _digest(secret, "action-link-recipient", address.strip().lower())


class LinkSigner:
    def __init__(self, secret: bytes) -> None:
        self._serializer = URLSafeSerializer(secret, salt=SALT)

    def token(self, link: ActionLink) -> str:
        return str(
            self._serializer.dumps(
                {
                    "i": link.link_id,
                    "a": link.action,
                    "r": link.reference,
                    "p": link.recipient,
                    "x": int(link.expires_at.timestamp()),
                }
            )
        )

    def read(self, token: str) -> ActionLink:
        if len(token) > TOKEN_MAX_LENGTH:
            raise ForgedLinkError()
        try:
            data: Any = self._serializer.loads(token)
            link = ActionLink(
                link_id=str(data["i"]),
                action=str(data["a"]),
                reference=str(data["r"]),
                recipient=str(data["p"]),
                expires_at=datetime.fromtimestamp(int(data["x"]), UTC),
            )
        except (BadData, KeyError, TypeError, ValueError, OverflowError):
            raise ForgedLinkError() from None
        if link.action not in ACTIONS:
            raise ForgedLinkError()
        return link


# --- Which notice asks whom for what ----------------------------------------------

ACKNOWLEDGE_TEMPLATES = frozenset(
    {"acknowledgement-due", "stage-started", "escalated-automatically"}
)


def _side(notice: Notice, recipient: Recipient) -> str | None:
    """The recipient's side of the disagreement, or None (the business team,
    a role held for the whole partnership)."""
    if recipient.role == "raiser":
        return "raising"
    if recipient.agency is None or notice.receiving_agency is None:
        return None
    return "receiving" if recipient.agency == notice.receiving_agency else "raising"


def _confirming_sides(notice: Notice, recipient: Recipient) -> set[str]:
    try:
        stage = get_policy(notice.policy_id).stages[notice.stage]
    except (UnknownPolicyError, IndexError):
        return {"receiving"}
    rule = stage.written_confirmation
    if rule is None:
        return set()
    if rule.by == "either-party":
        return {"raising", "receiving"}
    if rule.by == "either-manager":
        # The person who raised it is asked as a practitioner, not a manager.
        return set() if recipient.role == "raiser" else {"raising", "receiving"}
    return {"receiving"}


def action_for(notice: Notice, recipient: Recipient) -> str | None:
    """The one action this notice asks of this recipient, if any."""
    side = _side(notice, recipient)
    if side is None:
        return None
    template = notice.template
    if template in ACKNOWLEDGE_TEMPLATES:
        # A reopened stage keeps its acknowledgement.
        if notice.context.get("reason") == "reopened":
            return None
        return "acknowledge" if side == "receiving" else None
    confirming = template == "written-confirmation-due" or (
        template == "resolved" and notice.context.get("confirmation") in ("due", "due-no-timescale")
    )
    if confirming and side in _confirming_sides(notice, recipient):
        return "confirm"
    return None


@dataclass(frozen=True)
class LinkMaker:
    """Makes the links a worker's notices carry (``activities.notices``)."""

    secret: bytes
    public_url: str
    lifetime: timedelta

    def offer(
        self, notice: Notice, recipient: Recipient, address: str, copy_key: str, now: datetime
    ) -> Offer | None:
        action = action_for(notice, recipient)
        if action is None:
            return None
        link = ActionLink(
            # One id per recipient's copy of a notice: a retried send makes
            # the same link, so a notice never offers an action twice.
            link_id=_digest(self.secret, "action-link", copy_key),
            action=action,
            reference=notice.reference,
            recipient=recipient_digest(self.secret, address),
            expires_at=(now + self.lifetime).replace(microsecond=0),
        )
        url = f"{self.public_url.rstrip('/')}{PATH}{LinkSigner(self.secret).token(link)}"
        return Offer(action, url, link.expires_at)
