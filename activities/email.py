"""Sending notices through SendGrid (production).

``SendGridSink`` is a ``NoticeSink`` (``activities.notices``): it turns an
``OutgoingEmail`` into a SendGrid v3 mail-send request with the ``sendgrid``
package and records what SendGrid accepted in a ledger, so a retried
activity never mails the same notice twice.

- **One message per recipient, one request per email.** Each recipient's
  copy is its own message, addressed to them alone, so no recipient sees
  another's address; the copies of one email travel in one request, a
  SendGrid *personalization* each (their address, their ledger key as a
  custom argument, and, where their words differ, their own words as a
  substitution), so the attachments and the shared words are posted once.
  Copies that cannot share a body (their own words past SendGrid's
  substitution limit) go as a request each, at once. Requests go over
  connections the sink keeps open (the ``sendgrid`` package builds the
  request; httpx carries it).
- **Exactly once.** The ledger (the register's ``sent_emails`` and
  ``email_attempts`` tables, shared by every worker host) is asked once for
  all of a notice's keys before anything is sent. Each copy's attempt (its
  key, and when) is written before it is posted; once the requests have
  answered, each copy SendGrid accepted is recorded under its own key (2xx
  only), and the email's own key once every copy is accepted. A worker that
  dies after SendGrid accepted a copy and before that write leaves an
  attempt with no acceptance: SendGrid has no idempotency key, so the retry
  asks SendGrid's Email Activity API (``GET /v3/messages``, by the copy's
  ``ledger_key`` custom argument) and records a copy SendGrid has as
  accepted without posting it again. A copy it has not is posted again only
  once the attempt is older than the feed's lag
  (``SENDGRID_ACTIVITY_LAG``, 2 minutes); until then the activity fails
  retryably (``SendGridActivityPending``) and Temporal tries it later (as
  after a 429: SendGrid allows 6 Email Activity queries a minute). An
  account without Email Activity (401, 403 or 404, and any EU-region
  subuser, for whom SendGrid keeps no feed) gets the copy posted
  again, at least once, with a warning naming only its ledger key and the
  attempt marked ``may_be_duplicate``.
- **Failures.** 429 and 5xx (and a network failure or timeout) raise a
  retryable ``ApplicationError``: Temporal retries the activity with backoff
  (after the ``Retry-After`` SendGrid gives for 429). Any other 4xx (a bad
  key, a refused sender, a malformed address) raises a non-retryable
  ``ApplicationError`` of type ``NoticeRejected``; the workflow records it on
  the case and tells the business team.
- **Privacy.** The request carries the case reference and notice id as
  custom arguments (they come back in the event webhook), categories that
  name only the kind of notice, and no open or click tracking (a tracking
  pixel or rewritten link has no place in safeguarding mail). Forms travel as
  PDF attachments to the business team over SendGrid's TLS.
- **Options.** EU data residency (``api.eu.sendgrid.com``, for an EU
  subuser) and sandbox mode (SendGrid validates the request and sends
  nothing) come from the settings.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
from collections.abc import Collection
from collections.abc import Set as AbstractSet
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (
    Attachment,
    Category,
    ClickTracking,
    CustomArg,
    Disposition,
    FileContent,
    FileName,
    FileType,
    From,
    Mail,
    MailSettings,
    OpenTracking,
    Personalization,
    SandBoxMode,
    Substitution,
    To,
    TrackingSettings,
)
from temporalio.exceptions import ApplicationError

from activities.notices import Addressee, NoticeSink, OutboxSink, OutgoingEmail
from escalation.clitools import CliError
from escalation.settings import Settings
from policies.directory import Directory, DirectoryFileError, example_directory, load_directory
from register import Register, SentEmail
from workflows.messages import Notice

log = logging.getLogger("escalation.sendgrid")

DEFAULT_TIMEOUT = 20.0
# Requests in flight at once, for copies that cannot share one (and
# connections kept to SendGrid).
COPIES_AT_ONCE = 8
# How long to wait after a 429 when SendGrid gives no Retry-After.
DEFAULT_RATE_LIMIT_DELAY = timedelta(seconds=30)
DEFAULT_ACTIVITY_LAG = timedelta(minutes=2)
# What the Email Activity API answers an account (or key) without it.
NO_ACTIVITY_ACCESS = {401, 403, 404}
# SendGrid's limits for one request: its personalizations, and the bytes of
# one personalization's substitutions.
PERSONALIZATIONS_AT_ONCE = 1000
SUBSTITUTION_BYTES = 10_000
# Where each recipient's own words go in the words all the copies share.
OWN_TEXT = "-escalation-own-text-"
OWN_HTML = "-escalation-own-html-"


class Ledger:
    """The keys of the emails SendGrid has accepted, in the register's
    ``sent_emails`` table: every worker, on every host that shares the
    register's database, checks the same ledger."""

    def __init__(self, register: Register) -> None:
        self.register = register

    def sent(self, keys: Collection[str]) -> set[str]:
        return self.register.emails_sent(keys)

    def record(self, accepted: Collection[SentEmail]) -> None:
        self.register.record_emails(accepted)

    def attempted(self, keys: Collection[str]) -> dict[str, datetime]:
        return self.register.email_attempts(keys)

    def attempt(
        self, copies: Collection[SentEmail], may_be_duplicate: Collection[str] = ()
    ) -> None:
        self.register.record_email_attempts(copies, may_be_duplicate)

    def forget_attempts(self, keys: Collection[str]) -> None:
        self.register.forget_email_attempts(keys)

    def maybe_duplicated(self) -> list[str]:
        return self.register.emails_maybe_duplicated()

    def entries(self) -> list[dict[str, Any]]:
        return self.register.emails()


def request_body(email: OutgoingEmail, sandbox: bool = False) -> dict[str, Any]:
    """The v3 mail-send request for one email, built with sendgrid's helpers."""
    mail = Mail(
        from_email=From(email.sender.email, email.sender.name),
        to_emails=[To(a.email, a.name) for a in email.to],
        subject=email.subject,
        plain_text_content=email.text,
        html_content=email.html,
    )
    mail.category = [Category(c) for c in email.categories]
    mail.custom_arg = [CustomArg(k, v) for k, v in email.custom_args.items()]
    for attachment in email.attachments:
        mail.add_attachment(
            Attachment(
                FileContent(base64.b64encode(attachment.content).decode("ascii")),
                FileName(attachment.filename),
                FileType(attachment.mime_type),
                Disposition("attachment"),
            )
        )
    tracking = TrackingSettings()
    tracking.click_tracking = ClickTracking(False, False)
    tracking.open_tracking = OpenTracking(False)
    mail.tracking_settings = tracking
    if sandbox:
        settings = MailSettings()
        settings.sandbox_mode = SandBoxMode(True)
        mail.mail_settings = settings
    return mail.get()


def _shared_and_own(variants: list[str], tag: str) -> tuple[str, list[str] | None]:
    """The words every copy shares, with ``tag`` where they differ, and each
    copy's own words for the tag (None when every copy has the same words).
    Each copy's own words are never empty."""
    if all(v == variants[0] for v in variants):
        return variants[0], None
    prefix = os.path.commonprefix(variants)
    rest = [v[len(prefix) :] for v in variants]
    suffix = os.path.commonprefix([r[::-1] for r in rest])[::-1]
    own = [r[: len(r) - len(suffix)] for r in rest]
    if not all(own):
        if prefix:
            own = [prefix[-1] + o for o in own]
            prefix = prefix[:-1]
        else:
            own = [o + suffix[0] for o in own]
            suffix = suffix[1:]
    return prefix + tag + suffix, own


def shared_request_body(
    copies: list[OutgoingEmail], sandbox: bool = False
) -> dict[str, Any] | None:
    """One v3 mail-send request for the copies of one email (``copies``
    makes each to one recipient, under the email's subject): the shared
    words, attachments and settings once, and a personalization for each
    copy (its recipient alone, its custom arguments, its own words). None
    when the copies cannot share one request."""
    first = copies[0]
    texts = [c.text for c in copies]
    htmls = [c.html for c in copies]
    if any(OWN_TEXT in w or OWN_HTML in w for w in (first.subject, *texts, *htmls)):
        return None
    text, own_text = _shared_and_own(texts, OWN_TEXT)
    html, own_html = _shared_and_own(htmls, OWN_HTML)
    body = request_body(dataclasses.replace(first, text=text, html=html), sandbox)
    body.pop("custom_args", None)
    personalizations = []
    for i, copy in enumerate(copies):
        personalization = Personalization()
        personalization.add_to(To(copy.to[0].email, copy.to[0].name))
        for name, value in copy.custom_args.items():
            personalization.add_custom_arg(CustomArg(name, value))
        own = {}
        if own_text is not None:
            own[OWN_TEXT] = own_text[i]
        if own_html is not None:
            own[OWN_HTML] = own_html[i]
        if len(json.dumps(own).encode("utf-8")) > SUBSTITUTION_BYTES:
            return None
        for tag, words in own.items():
            personalization.add_substitution(Substitution(tag, words))
        personalizations.append(personalization.get())
    body["personalizations"] = personalizations
    return body


@dataclass(frozen=True)
class _Request:
    """One mail-send request: the copies it carries, and what names it in
    a message (the email's key, or the one copy's)."""

    key: str
    copies: list[OutgoingEmail]
    body: dict[str, Any]


def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    try:
        value = headers.get(name)
    except AttributeError:
        return None
    return None if value is None else str(value)


def _retry_after(headers: Any) -> timedelta:
    value = _header(headers, "Retry-After")
    if value:
        if value.strip().isdigit():
            return timedelta(seconds=int(value.strip()))
        try:
            delta = parsedate_to_datetime(value) - datetime.now(UTC)
            return max(delta, timedelta(seconds=1))
        except (TypeError, ValueError):
            pass
    reset = _header(headers, "X-RateLimit-Reset")
    if reset and reset.strip().isdigit():
        delta = datetime.fromtimestamp(int(reset.strip()), UTC) - datetime.now(UTC)
        return max(delta, timedelta(seconds=1))
    return DEFAULT_RATE_LIMIT_DELAY


def _sendgrid_errors(body: Any) -> str:
    try:
        data = json.loads(body.decode("utf-8") if isinstance(body, bytes) else body)
        messages = [str(e.get("message", "")) for e in data.get("errors", [])]
        return "; ".join(m for m in messages if m)[:500]
    except (ValueError, AttributeError, TypeError):
        return ""


class SendGridSink:
    def __init__(
        self,
        api_key: str,
        register: Register,
        *,
        eu_residency: bool = False,
        sandbox: bool = False,
        host: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        activity_lag: timedelta = DEFAULT_ACTIVITY_LAG,
    ) -> None:
        # The sendgrid package gives the host (with its data residency) and
        # the headers it sends; its own transport (python_http_client, on
        # urllib) opens a connection for every request, so the requests go
        # through one httpx client that keeps its connections.
        if host:
            client = SendGridAPIClient(api_key=api_key, host=host.rstrip("/"))
        else:
            client = SendGridAPIClient(api_key=api_key)
            if eu_residency:
                client.set_sendgrid_data_residency("eu")
        self.host = str(client.host)
        self.http = httpx.Client(
            base_url=self.host,
            headers=client.client.request_headers,
            # python_http_client waits for ever by default; the activity must not.
            timeout=timeout,
            limits=httpx.Limits(
                max_connections=COPIES_AT_ONCE, max_keepalive_connections=COPIES_AT_ONCE
            ),
        )
        # A notice's copies go out together, each on its own connection.
        self._copies = ThreadPoolExecutor(COPIES_AT_ONCE, thread_name_prefix="sendgrid")
        self.sandbox = sandbox
        self.activity_lag = activity_lag
        # SendGrid keeps no Email Activity for its EU region's subusers.
        self.activity = not eu_residency
        self.ledger = Ledger(register)

    def close(self) -> None:
        self._copies.shutdown()
        self.http.close()

    def sent(self, keys: Collection[str]) -> set[str]:
        return self.ledger.sent(keys)

    def deliver(
        self, notice: Notice, email: OutgoingEmail, sent: AbstractSet[str] = frozenset()
    ) -> None:
        """The copies not yet sent in one request (or a request each, at
        once, when they cannot share one): each copy's attempt recorded in
        the ledger before it is posted, the accepted ones under their own
        keys after, and the email's own key once every copy is accepted, in
        one write."""
        if email.key in sent:
            return
        if not email.to:
            raise ApplicationError(
                f"email {email.key} has no recipient", type="NoticeRejected", non_retryable=True
            )
        copies = [copy for copy in email.copies() if copy.key not in sent]
        copies, accepted, unsure = self._settle_attempts(copies)
        self.ledger.attempt([_entry(c) for c in copies], unsure)
        requests = self._requests(email, copies)
        if len(requests) == 1:
            outcomes = [self._send(requests[0])]
        else:
            outcomes = list(self._copies.map(self._send, requests))
        for outcome in outcomes:
            if isinstance(outcome, list):
                accepted += outcome
        failures = [o for o in outcomes if isinstance(o, ApplicationError)]
        if not failures:
            accepted.append(SentEmail(email.key, email.notice_id, email.reference))
        self.ledger.record(accepted)
        # Copies SendGrid answered with a refusal it did not take: their
        # retry is posted without asking. One that got no answer stays attempted.
        self.ledger.forget_attempts(
            [key for o in outcomes if isinstance(o, _Refused) for key in o.keys]
        )
        if failures:
            # The first request's failure, in the order of the recipients:
            # the copies accepted are recorded and not sent again on the retry.
            raise failures[0]

    def _requests(self, email: OutgoingEmail, copies: list[OutgoingEmail]) -> list[_Request]:
        requests = []
        for start in range(0, len(copies), PERSONALIZATIONS_AT_ONCE):
            group = copies[start : start + PERSONALIZATIONS_AT_ONCE]
            body = shared_request_body(group, sandbox=self.sandbox)
            if body is not None:
                requests.append(_Request(email.key, group, body))
            else:
                requests += [
                    _Request(c.key, [c], request_body(c, sandbox=self.sandbox)) for c in group
                ]
        return requests

    def _settle_attempts(
        self, copies: list[OutgoingEmail]
    ) -> tuple[list[OutgoingEmail], list[SentEmail], set[str]]:
        """The copies posted before but not recorded as accepted (a worker
        died in between) asked after in SendGrid's Email Activity: one it
        has is accepted and not posted again; one it has not, posted again
        once the activity feed's lag has passed (until then the activity is
        retried); with no Email Activity access, posted again and marked as
        possibly a duplicate. Returns (to post, accepted, possibly duplicated)."""
        attempted = self.ledger.attempted([c.key for c in copies])
        if not attempted:
            return copies, [], set()
        found: dict[str, str | None] = {}
        for copy in copies:
            if copy.key not in attempted:
                continue
            try:
                messages = self._activity(copy.key)
            except ApplicationError:
                # Rate limited (6 queries a minute) or unavailable: what was
                # found so far is kept, the rest asked on the retry.
                self.ledger.record([_entry(c, found[c.key]) for c in copies if c.key in found])
                raise
            if messages is None:
                log.warning(
                    "no Email Activity access: %s is posted again and may be a duplicate",
                    copy.key,
                )
                return copies, [], set(attempted)
            if messages:
                found[copy.key] = messages[0]
                log.info("SendGrid's Email Activity has %s: recorded, not posted again", copy.key)
        accepted = [_entry(c, found[c.key]) for c in copies if c.key in found]
        now = datetime.now(UTC)
        waiting = [
            attempted[c.key] + self.activity_lag - now
            for c in copies
            if c.key in attempted and c.key not in found
        ]
        young = [wait for wait in waiting if wait > timedelta(0)]
        if young:
            self.ledger.record(accepted)
            raise ApplicationError(
                f"{len(young)} copies posted before are not in SendGrid's Email Activity yet",
                type="SendGridActivityPending",
                next_retry_delay=max(max(young), timedelta(seconds=1)),
            )
        return [c for c in copies if c.key not in found], accepted, set()

    def _activity(self, key: str) -> list[str | None] | None:
        """The message ids SendGrid's Email Activity holds for this ledger
        key (a custom argument of every copy), or None when the account
        has no Email Activity access (nor, in the EU region, a feed)."""
        if not self.activity:
            return None
        query = f"unique_args['ledger_key']=\"{key}\""
        try:
            response = self.http.get("/v3/messages", params={"query": query, "limit": 10})
        except httpx.TransportError as exc:
            raise ApplicationError(
                f"SendGrid could not be reached: {type(exc).__name__}",
                type="SendGridUnavailable",
            ) from None
        if response.status_code in NO_ACTIVITY_ACCESS:
            return None
        if not response.is_success:
            what = f"SendGrid's Email Activity answered {response.status_code} for {key}"
            if response.status_code == 429:
                delay = _retry_after(response.headers)
                raise ApplicationError(what, type="SendGridRateLimited", next_retry_delay=delay)
            raise ApplicationError(what, type="SendGridUnavailable")
        try:
            messages = response.json().get("messages") or []
            return [m.get("msg_id") if isinstance(m, dict) else None for m in messages]
        except (ValueError, AttributeError):
            raise ApplicationError(
                f"SendGrid's Email Activity gave no list for {key}", type="SendGridUnavailable"
            ) from None

    def post(self, body: dict[str, Any]) -> httpx.Response:
        """POST /v3/mail/send on the kept connection. Not reached, or no
        answer: SendGrid may or may not have it, so the activity retries."""
        try:
            return self.http.post("/v3/mail/send", json=body)
        except httpx.TransportError as exc:
            raise ApplicationError(
                f"SendGrid could not be reached: {type(exc).__name__}",
                type="SendGridUnavailable",
            ) from None

    def _send(self, request: _Request) -> list[SentEmail] | ApplicationError:
        """One request: what the ledger records of its copies if SendGrid
        accepted it, or why not (``_Refused`` when SendGrid answered, so it
        took none of them)."""
        try:
            response = self.post(request.body)
        except ApplicationError as exc:
            return ApplicationError(f"{exc.message} ({request.key})", type=exc.type)
        if not response.is_success:
            failure = self._failure(
                request.key, response.status_code, response.content, response.headers
            )
            return _Refused(
                failure.message,
                type=failure.type,
                non_retryable=failure.non_retryable,
                next_retry_delay=failure.next_retry_delay,
                keys=[c.key for c in request.copies],
            )
        message_id = response.headers.get("X-Message-Id")
        log.info(
            "SendGrid accepted %s: %d copies (%s)",
            request.key,
            len(request.copies),
            message_id or "no message id",
        )
        return [_entry(c, message_id) for c in request.copies]

    def _failure(self, key: str, status: int, body: Any, headers: Any) -> ApplicationError:
        detail = _sendgrid_errors(body)
        what = f"SendGrid answered {status} for {key}" + (f": {detail}" if detail else "")
        if status == 429:
            return ApplicationError(
                what, type="SendGridRateLimited", next_retry_delay=_retry_after(headers)
            )
        if status >= 500 or status == 0:
            return ApplicationError(what, type="SendGridUnavailable")
        log.error("%s (not retried)", what)
        return ApplicationError(what, type="NoticeRejected", non_retryable=True)


class _Refused(ApplicationError):
    """A request SendGrid answered with a refusal: none of its copies taken."""

    def __init__(self, message: str, *, keys: list[str], **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.keys = keys


def _entry(email: OutgoingEmail, message_id: str | None = None) -> SentEmail:
    return SentEmail(email.key, email.notice_id, email.reference, message_id)


# --- Choosing the transport from the settings -----------------------------------


@dataclass(frozen=True)
class NoticeSetup:
    sink: NoticeSink
    directory: Directory | None
    sender: Addressee
    description: str


class NoticeConfigError(CliError):
    """The settings cannot send notices safely; the worker refuses to start."""


def notice_setup(settings: Settings, register: Register) -> NoticeSetup:
    """SendGrid when an API key is set (which needs a directory and a real
    sender); otherwise the ``.eml`` outbox under the data folder, addressed
    with the directory file or, in development, the example directory."""
    sender = Addressee(settings.sender_name, settings.sender_email)
    directory: Directory | None = None
    if settings.directory_file is not None:
        try:
            directory = load_directory(settings.directory_file)
        except DirectoryFileError as exc:
            raise NoticeConfigError(f"ESCALATION_DIRECTORY_FILE is not valid:\n{exc}") from None
    if settings.sendgrid_api_key is not None:
        if directory is None:
            raise NoticeConfigError(
                "SENDGRID_API_KEY is set but ESCALATION_DIRECTORY_FILE is not: without the "
                "role directory no notice can reach anyone"
            )
        if settings.sender_email.lower().endswith("@example.org"):
            raise NoticeConfigError("set ESCALATION_SENDER_EMAIL to a sender verified in SendGrid")
        sink = SendGridSink(
            settings.sendgrid_api_key.get_secret_value(),
            register,
            eu_residency=settings.sendgrid_eu_residency,
            sandbox=settings.sendgrid_sandbox,
            host=settings.sendgrid_host,
            activity_lag=timedelta(seconds=settings.sendgrid_activity_lag_seconds),
        )
        mode = " (sandbox: nothing is delivered)" if settings.sendgrid_sandbox else ""
        return NoticeSetup(sink, directory, sender, f"SendGrid at {sink.host}{mode}")
    if directory is None and settings.example_directory:
        directory = example_directory()
    outbox = OutboxSink(settings.outbox_dir)
    which = (
        "no directory"
        if directory is None
        else (
            "example directory" if settings.directory_file is None else str(settings.directory_file)
        )
    )
    return NoticeSetup(outbox, directory, sender, f"the outbox {outbox.folder} ({which})")
