"""``POST /webhooks/sendgrid``: SendGrid's signed event webhook.

SendGrid posts batches of delivery events (processed, delivered, bounce,
dropped, ...). Each request is signed: ECDSA P-256 with SHA-256 over the
``X-Twilio-Email-Event-Webhook-Timestamp`` header followed by the raw body,
base64 in ``X-Twilio-Email-Event-Webhook-Signature``, verifiable with the
public key SendGrid shows in its mail settings (``SENDGRID_WEBHOOK_PUBLIC_KEY``).
A request without a valid signature is refused with 403 and changes nothing.

Each event is handled once: its ``sg_event_id`` is kept in a small SQLite
store under the data folder, written only after the event has been dealt
with (so a failure answers 503 and SendGrid's retry tries again). A
``bounce`` or ``dropped`` event on one of a case's notices (found through
the ``case_reference`` and ``notice_id`` custom arguments the notice was
sent with) signals the case workflow ``delivery_failed``; the case records
it and tells the business team. The workflow also ignores a repeat of the
same failure, so a second API replica with its own store does no harm.

No bearer token: SendGrid cannot send one. The signature is the
authentication.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import sqlite3
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import anyio
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import APIRouter, Header, Request, Response
from temporalio.service import RPCError, RPCStatusCode

from api import problems
from api.cases import REFERENCE_RE, workflow_id
from api.deps import SettingsDep, TemporalClient
from api.problems import ProblemError
from workflows.messages import DeliveryFailed

log = logging.getLogger("escalation.api.webhooks")

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
FAILURE_EVENTS = frozenset({"bounce", "dropped", "blocked"})
SEEN_FOR = timedelta(days=7)


# --- Signatures ----------------------------------------------------------------------


class WebhookKeyError(ValueError):
    pass


def load_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """SendGrid's verification key: base64 DER (as SendGrid shows it) or PEM."""
    text = text.strip()
    try:
        if "BEGIN PUBLIC KEY" in text:
            key = serialization.load_pem_public_key(text.encode("ascii"))
        else:
            key = serialization.load_der_public_key(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error, UnsupportedAlgorithm) as exc:
        raise WebhookKeyError(f"SENDGRID_WEBHOOK_PUBLIC_KEY is not a public key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise WebhookKeyError("SENDGRID_WEBHOOK_PUBLIC_KEY must be an ECDSA P-256 key")
    return key


def verify_signature(
    key: ec.EllipticCurvePublicKey, payload: bytes, signature: str, timestamp: str
) -> bool:
    """Whether ``signature`` (base64 DER ECDSA) signs timestamp + payload."""
    try:
        raw = base64.b64decode(signature.strip(), validate=True)
        key.verify(raw, timestamp.encode("utf-8") + payload, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


# --- Events seen ------------------------------------------------------------------------


class SeenEvents:
    """The ``sg_event_id`` of every event already dealt with (SQLite)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, at REAL NOT NULL)")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def __contains__(self, event_id: str) -> bool:
        with self._lock, self._connect() as db:
            return db.execute("SELECT 1 FROM seen WHERE id = ?", (event_id,)).fetchone() is not None

    def add(self, event_id: str) -> None:
        now = time.time()
        with self._lock, self._connect() as db:
            db.execute("INSERT OR IGNORE INTO seen (id, at) VALUES (?, ?)", (event_id, now))
            db.execute("DELETE FROM seen WHERE at < ?", (now - SEEN_FOR.total_seconds(),))


_stores: dict[Path, SeenEvents] = {}
_stores_lock = threading.Lock()


def seen_events(path: Path) -> SeenEvents:
    with _stores_lock:
        if path not in _stores:
            _stores[path] = SeenEvents(path)
        return _stores[path]


# --- The route --------------------------------------------------------------------------


def _refused(detail: str) -> ProblemError:
    return ProblemError(403, problems.FORBIDDEN, "Not allowed", detail)


def _failure(event: dict[str, Any]) -> DeliveryFailed | None:
    """The delivery failure an event reports, if it is one about a case's notice."""
    kind = str(event.get("event", ""))
    if kind == "bounce" and event.get("type") == "blocked":
        kind = "blocked"
    if kind not in FAILURE_EVENTS:
        return None
    notice_id = event.get("notice_id")
    if not isinstance(notice_id, str) or not notice_id:
        return None
    reason = event.get("reason") or event.get("response") or event.get("status") or ""
    template = event.get("template")
    recipient = event.get("email")
    return DeliveryFailed(
        notice_id=notice_id,
        event=kind,
        reason=str(reason)[:500],
        recipient=str(recipient) if recipient else None,
        template=str(template) if isinstance(template, str) else None,
    )


@router.post(
    "/sendgrid",
    status_code=204,
    summary="SendGrid event webhook",
    description="SendGrid's signed event webhook. A bounce or drop of a case's notice is "
    "recorded on the case and reported to the partnership's business team.",
    responses={
        400: {"description": "The signed body is not a JSON list of events"},
        **problems.responses(403, 422, 503),
    },
)
async def sendgrid_events(
    request: Request,
    client: TemporalClient,
    settings: SettingsDep,
    signature: Annotated[str | None, Header(alias=SIGNATURE_HEADER, max_length=512)] = None,
    timestamp: Annotated[str | None, Header(alias=TIMESTAMP_HEADER, max_length=32)] = None,
) -> Response:
    if not settings.sendgrid_webhook_public_key:
        raise ProblemError(
            503,
            problems.UNAVAILABLE,
            "Service unavailable",
            "the SendGrid event webhook is not configured (SENDGRID_WEBHOOK_PUBLIC_KEY)",
        )
    try:
        key = load_public_key(settings.sendgrid_webhook_public_key)
    except WebhookKeyError as exc:
        log.error("%s", exc)
        raise ProblemError(
            503, problems.UNAVAILABLE, "Service unavailable", "the webhook key is not usable"
        ) from None
    if not signature or not timestamp:
        raise _refused(f"the request is not signed ({SIGNATURE_HEADER}, {TIMESTAMP_HEADER})")
    body = await request.body()
    if not verify_signature(key, body, signature, timestamp):
        log.warning("SendGrid webhook: bad signature refused")
        raise _refused("the signature does not verify")
    max_age = settings.sendgrid_webhook_max_age_seconds
    if max_age:
        try:
            age = time.time() - int(timestamp.strip())
        except ValueError:
            raise _refused("the timestamp is not a Unix time") from None
        if age > max_age or age < -300:
            raise _refused("the signature's timestamp is too old or in the future")
    try:
        events = json.loads(body)
    except ValueError:
        raise ProblemError(400, problems.VALIDATION, "Bad request", "not JSON") from None
    if not isinstance(events, list):
        raise ProblemError(400, problems.VALIDATION, "Bad request", "expected a list of events")

    store = seen_events(settings.webhook_events_path)
    for event in events:
        if not isinstance(event, dict):
            continue
        event_id = event.get("sg_event_id")
        if isinstance(event_id, str) and await anyio.to_thread.run_sync(
            store.__contains__, event_id
        ):
            continue
        failure = _failure(event)
        reference = event.get("case_reference")
        if failure is not None and isinstance(reference, str) and REFERENCE_RE.fullmatch(reference):
            await _signal(client, reference, failure)
        if isinstance(event_id, str):
            await anyio.to_thread.run_sync(store.add, event_id)
    return Response(status_code=204)


async def _signal(client: Any, reference: str, failure: DeliveryFailed) -> None:
    handle = client.get_workflow_handle(workflow_id(reference))
    try:
        await handle.signal("delivery_failed", failure, rpc_timeout=timedelta(seconds=10))
    except RPCError as exc:
        if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
            # The case is closed (or gone): nothing left to tell it.
            log.info("delivery failure for closed case %s (%s)", reference, failure.notice_id)
            return
        log.warning("could not signal case %s: %s", reference, exc.status.name)
        raise ProblemError(
            503,
            problems.UNAVAILABLE,
            "Service unavailable",
            "the case could not be told; SendGrid will retry",
            headers={"Retry-After": "30"},
        ) from None
    log.info("delivery failure (%s) recorded on case %s", failure.event, reference)
