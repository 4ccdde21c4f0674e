"""Sending the notices a policy requires, exactly once each.

The contract: a ``Notice`` names its recipients by role, its template and the
case reference, and carries a deterministic ``notice_id``. The activity

1. resolves the roles to people through the role directory
   (``policies.directory``), collecting the roles nobody holds;
2. renders the notice's words (``activities.templates``) and any forms it
   carries as PDF attachments (``activities.forms``);
3. hands each email to a sink: the notice itself, and, when a role is
   unfilled, a copy to the business team saying who it did not reach;
4. answers with a ``NoticeReceipt`` listing the unfilled roles, which the
   workflow records on the case.

A sink keeps a ledger of the email keys it has delivered (the notice id, and
``<notice id>~unfilled`` for the business team's copy), and the activity
checks it before every delivery, so an activity retried after a crash
between delivery and completion sends nothing twice.

Each recipient gets their own copy, addressed to them alone, so nobody sees
who else a notice went to: the outbox and SendGrid sinks deliver an email as
one message per recipient (``OutgoingEmail.copies``), each under its own
ledger key (``<email key>~to-<digest of the address>``), and record the
email's own key once every copy has gone. An activity retried after a crash
half-way through an email's recipients sends only the copies not yet sent.
Where the notice asks a recipient for one thing (acknowledge, confirm the
outcome in writing), their copy alone carries the link that does it
(``escalation.action_links``), in words of its own (``OutgoingEmail.personal``).

Sinks: ``MemorySink`` (``escalation simulate`` and the tests),
``OutboxSink`` (development: one readable ``.eml`` file per email under the
data folder) and ``activities.email.SendGridSink`` (production).

No directory configured (capture mode, as in simulation) means no role can
be resolved: notices are captured as they are and no role is reported
unfilled.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
import threading
from collections.abc import Collection, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Protocol

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.templates import render
from escalation.action_links import LinkMaker
from policies.directory import Directory
from workflows.messages import Notice, NoticeReceipt, Recipient

log = logging.getLogger("escalation.notices")

UNFILLED_SUFFIX = "~unfilled"
RECIPIENT_INFIX = "~to-"


def recipient_key(key: str, address: str) -> str:
    """The ledger key of one recipient's copy of an email: a digest of the
    address, so that file names and ledger rows do not list people."""
    digest = hashlib.sha256(address.strip().lower().encode("utf-8")).hexdigest()[:16]
    return f"{key}{RECIPIENT_INFIX}{digest}"


# --- The email a notice becomes ---------------------------------------------------


@dataclass(frozen=True)
class Addressee:
    name: str
    email: str

    def header(self) -> Address:
        local, _, domain = self.email.partition("@")
        return Address(display_name=self.name, username=local, domain=domain)


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    mime_type: str = "application/pdf"


@dataclass
class OutgoingEmail:
    """One email, ready for any sink. ``key`` is its ledger key."""

    key: str
    notice_id: str
    reference: str
    template: str
    policy_id: str
    sender: Addressee
    to: list[Addressee]
    subject: str
    text: str
    html: str
    attachments: list[Attachment] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    # A recipient's own words (text, HTML) by lower-cased address, where
    # their copy differs: the action link made for them alone.
    personal: dict[str, tuple[str, str]] = field(default_factory=dict)

    def copies(self) -> list[OutgoingEmail]:
        """The email as each recipient gets it: to them alone, under their
        own ledger key, in their own words. An email to nobody (capture mode)
        stays as it is."""
        if not self.to:
            return [self]
        out = []
        for person in self.to:
            text, html = self.personal.get(person.email.lower(), (self.text, self.html))
            out.append(
                dataclasses.replace(
                    self,
                    key=recipient_key(self.key, person.email),
                    to=[person],
                    text=text,
                    html=html,
                    personal={},
                )
            )
        return out

    @property
    def categories(self) -> list[str]:
        """SendGrid categories: the kind of notice, never anything about a child."""
        return ["escalation-notice", self.template, self.policy_id]

    @property
    def custom_args(self) -> dict[str, str]:
        """Carried back in SendGrid's delivery events: the case reference and
        the notice, so a bounce finds its case. Nothing identifying."""
        return {
            "case_reference": self.reference,
            "notice_id": self.notice_id,
            "ledger_key": self.key,
            "template": self.template,
            "policy": self.policy_id,
        }

    def as_message(self) -> EmailMessage:
        """The email as an RFC 5322 message: text with an HTML alternative,
        and the forms attached."""
        msg = EmailMessage()
        msg["Subject"] = self.subject
        msg["From"] = self.sender.header()
        if self.to:
            msg["To"] = [a.header() for a in self.to]
        else:
            msg["To"] = "undisclosed-recipients:;"
        msg["Date"] = formatdate(usegmt=True)
        domain = self.sender.email.partition("@")[2] or "escalation.invalid"
        safe = "".join(c if c.isalnum() or c in "-._~" else "-" for c in self.key)
        msg["Message-ID"] = f"<{safe}@{domain}>"
        msg["X-Escalation-Reference"] = self.reference
        msg["X-Escalation-Notice-Id"] = self.notice_id
        msg["X-Escalation-Template"] = self.template
        if self.roles:
            msg["X-Escalation-Roles"] = ", ".join(self.roles)
        # 8bit rather than quoted-printable: the outbox's files stay readable
        # as text, and SendGrid gets the parts as JSON, not as this message.
        msg.set_content(self.text, cte="8bit")
        msg.add_alternative(self.html, subtype="html", cte="8bit")
        for attachment in self.attachments:
            maintype, _, subtype = attachment.mime_type.partition("/")
            msg.add_attachment(
                attachment.content,
                maintype=maintype,
                subtype=subtype,
                filename=attachment.filename,
            )
        return msg


# --- Sinks ---------------------------------------------------------------------


class NoticeSink(Protocol):
    def sent(self, keys: Collection[str]) -> set[str]:
        """Which of these email keys (an email's own, or a recipient's
        copy's) the ledger holds: asked once for a notice's keys."""
        ...

    def deliver(
        self, notice: Notice, email: OutgoingEmail, sent: AbstractSet[str] = frozenset()
    ) -> None:
        """Send what of ``email`` is not in ``sent`` (the ledger's keys of its
        copies, as ``sent`` answered just before)."""
        ...


class MemorySink:
    """Keeps every notice in order: what `escalation simulate` and the tests
    read. ``emails`` holds every email (a notice's own, and the business
    team's copies about unfilled roles)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.notices: list[Notice] = []
        self.emails: list[OutgoingEmail] = []
        self._ids: set[str] = set()

    def sent(self, keys: Collection[str]) -> set[str]:
        with self._lock:
            return self._ids.intersection(keys)

    def deliver(
        self,
        notice: Notice,
        email: OutgoingEmail | None = None,
        sent: AbstractSet[str] = frozenset(),
    ) -> None:
        key = email.key if email is not None else notice.notice_id
        with self._lock:
            if key in self._ids:
                return
            self._ids.add(key)
            if key == notice.notice_id:
                self.notices.append(notice)
            if email is not None:
                self.emails.append(email)

    def emails_for(self, notice_id: str) -> list[OutgoingEmail]:
        with self._lock:
            return [e for e in self.emails if e.notice_id == notice_id]


def _safe_name(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in key)


class OutboxSink:
    """Development: one readable ``.eml`` file per recipient's copy of an
    email under a folder (open it in any mail client). The files' existence
    is the ledger of what was sent, and ``.sent/<email key>`` records an
    email whose every copy was written; each is written atomically (rename),
    so a crash never leaves a half email that would count as sent."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.folder / f"{_safe_name(key)}.eml"

    def _done(self, key: str) -> Path:
        return self.folder / ".sent" / _safe_name(key)

    def sent(self, keys: Collection[str]) -> set[str]:
        # An email's own file: written whole before each recipient had a copy.
        return {key for key in keys if self._done(key).exists() or self.path(key).exists()}

    def deliver(
        self, notice: Notice, email: OutgoingEmail, sent: AbstractSet[str] = frozenset()
    ) -> None:
        for copy in email.copies():
            path = self.path(copy.key)
            if path.exists():
                continue
            tmp = path.with_suffix(".eml.tmp")
            tmp.write_bytes(copy.as_message().as_bytes())
            os.replace(tmp, path)
        if email.to:
            done = self._done(email.key)
            done.parent.mkdir(exist_ok=True)
            done.touch()


# --- Resolving roles to people ---------------------------------------------------


@dataclass
class Resolution:
    to: list[Addressee]
    audience: list[str]
    unfilled: list[Recipient]
    # The recipient (role) each address was reached as, by lower-cased address.
    reached_as: dict[str, Recipient] = field(default_factory=dict)


def _raiser_name(recipient: Recipient) -> str:
    return recipient.title.removesuffix(" (raised the concern)")


def _agency_name(directory: Directory | None, notice: Notice, recipient: Recipient) -> str | None:
    if recipient.agency is None:
        return None
    if directory is not None:
        entry = directory.agency(notice.policy_id, recipient.area or notice.area, recipient.agency)
        if entry is not None:
            return entry.name
    return recipient.agency


def resolve(directory: Directory | None, notice: Notice) -> Resolution:
    """The people a notice goes to, who it is for (by role), and the roles
    nobody holds."""
    to: list[Addressee] = []
    reached_as: dict[str, Recipient] = {}
    audience: list[str] = []
    unfilled: list[Recipient] = []
    for recipient in notice.recipients:
        agency = _agency_name(directory, notice, recipient)
        audience.append(f"{recipient.title}, {agency}" if agency else recipient.title)
        if recipient.email:
            people = [Addressee(_raiser_name(recipient), recipient.email)]
        elif directory is None:
            continue  # capture mode: nothing to resolve against
        else:
            holders = directory.holders(
                notice.policy_id,
                recipient.area or notice.area,
                recipient.role,
                agency=recipient.agency,
            )
            people = [Addressee(p.name, p.email) for p in holders]
            if not people:
                unfilled.append(recipient)
        for person in people:
            if person.email.lower() not in reached_as:
                reached_as[person.email.lower()] = recipient
                to.append(person)
    return Resolution(to=to, audience=audience, unfilled=unfilled, reached_as=reached_as)


def _describe(recipients: Sequence[Recipient]) -> str:
    parts = []
    for r in recipients:
        where = f" in {r.agency}" if r.agency else ""
        area = f" ({r.area})" if r.area and not r.agency else ""
        parts.append(f"{r.title}{where}{area} [role {r.role}]")
    return "; ".join(parts)


# --- The activity -------------------------------------------------------------------


def identifying_values(notice: Notice) -> list[str]:
    """The child's details as the notice's forms carry them: what must never
    appear in a subject, body, category or custom argument."""
    values = []
    for form in notice.filled_forms:
        for f in form.fields:
            if f.identifying and len(f.value.strip()) >= 3:
                values.append(f.value.strip())
    return values


def check_not_identifying(notice: Notice, email: OutgoingEmail) -> None:
    words = [email.subject, email.text, email.html, *email.categories]
    words += list(email.custom_args.values())
    haystack = "\n".join(words).lower()
    for value in identifying_values(notice):
        if value.lower() in haystack:
            # Never log the value itself.
            raise ApplicationError(
                f"notice {notice.notice_id} would carry a child's identifying details in "
                "its words; not sent",
                type="IdentifyingNotice",
                non_retryable=True,
            )


class NoticeActivities:
    def __init__(
        self,
        sink: NoticeSink,
        directory: Directory | None = None,
        sender: Addressee | None = None,
        public_url: str | None = None,
        links: LinkMaker | None = None,
    ) -> None:
        self.sink = sink
        self.directory = directory
        self.sender = sender or Addressee("Escalation service", "escalation@example.org")
        self.public_url = public_url.rstrip("/") if public_url else None
        self.links = links

    def _personal(self, notice: Notice, resolution: Resolution) -> dict[str, tuple[str, str]]:
        """Each recipient's own words where the notice asks them for one
        thing: their copy carries a link for that action and for them."""
        if self.links is None:
            return {}
        now = datetime.now(UTC)
        personal = {}
        for person in resolution.to:
            recipient = resolution.reached_as[person.email.lower()]
            key = recipient_key(notice.notice_id, person.email)
            offer = self.links.offer(notice, recipient, person.email, key, now)
            if offer is not None:
                words = render(notice, resolution.audience, act=offer)
                personal[person.email.lower()] = (words.text, words.html)
        return personal

    def compose(self, notice: Notice) -> tuple[list[OutgoingEmail], list[Recipient]]:
        """The emails a notice becomes (its own first), and the unfilled roles."""
        if notice.case_url is None and self.public_url:
            notice = notice.model_copy(
                update={"case_url": f"{self.public_url}/cases/{notice.reference}"}
            )
        resolution = resolve(self.directory, notice)
        attachments = []
        if notice.filled_forms:
            # The PDF library (29 MiB in memory) loads with the first form sent.
            from activities.forms import pdf_filename, render_pdf

            attachments = [
                Attachment(pdf_filename(form), render_pdf(form)) for form in notice.filled_forms
            ]
        roles = [r.label for r in notice.recipients]
        rendered = render(notice, resolution.audience)
        own = OutgoingEmail(
            key=notice.notice_id,
            notice_id=notice.notice_id,
            reference=notice.reference,
            template=notice.template,
            policy_id=notice.policy_id,
            sender=self.sender,
            to=resolution.to,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            attachments=attachments,
            roles=roles,
            personal=self._personal(notice, resolution),
        )
        emails = [own]
        if resolution.unfilled and self.directory is not None:
            team = self.directory.business_team(notice.policy_id, notice.area)
            preface = (
                "This is the business team's copy. Nobody in the role directory holds "
                f"{_describe(resolution.unfilled)}, so this notice did not reach them. Please "
                "make sure they are told, and add the role's holders to the directory."
            )
            copy = render(notice, resolution.audience, preface=preface)
            emails.append(
                OutgoingEmail(
                    key=notice.notice_id + UNFILLED_SUFFIX,
                    notice_id=notice.notice_id,
                    reference=notice.reference,
                    template=notice.template,
                    policy_id=notice.policy_id,
                    sender=self.sender,
                    to=[Addressee(p.name, p.email) for p in team],
                    subject=f"Unfilled role: {copy.subject}",
                    text=copy.text,
                    html=copy.html,
                    attachments=attachments,
                    roles=["business-team"],
                )
            )
        for email in emails:
            for each in email.copies():
                check_not_identifying(notice, each)
        return emails, resolution.unfilled

    @activity.defn(name="send_notice")
    async def send_notice(self, notice: Notice) -> NoticeReceipt:
        # Composing (templates, forms' PDFs), the ledger and the sends are all
        # synchronous: one thread for the lot keeps the worker's event loop
        # free, with one hand-over rather than one a step.
        return await asyncio.to_thread(self._send_notice, notice)

    def _send_notice(self, notice: Notice) -> NoticeReceipt:
        emails, unfilled = self.compose(notice)
        # The ledger asked once for every key the notice may have used.
        keys = {notice.notice_id}
        for email in emails:
            keys.add(email.key)
            keys.update(copy.key for copy in email.copies())
        sent = self.sink.sent(keys)
        duplicate = notice.notice_id in sent
        delivered = duplicate
        for email in emails:
            if email.key in sent:
                # Logged by id only: a notice's context is case data.
                activity.logger.info("email %s already sent; not sending again", email.key)
                continue
            if not email.to and self.directory is not None:
                activity.logger.error(
                    "email %s has nobody to go to (roles: %s)", email.key, ", ".join(email.roles)
                )
                continue
            self.sink.deliver(notice, email, sent)
            if email.key == notice.notice_id:
                delivered = True
        if unfilled:
            activity.logger.warning(
                "notice %s: nobody holds %s", notice.notice_id, ", ".join(r.label for r in unfilled)
            )
        return NoticeReceipt(
            notice_id=notice.notice_id,
            delivered=delivered,
            duplicate=duplicate,
            unfilled_roles=[r.label for r in unfilled],
        )
