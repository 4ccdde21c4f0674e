"""``POST /webhooks/sendgrid``: SendGrid's signed event webhook, verified
with a real ECDSA P-256 key pair; deduplicated; a bounce or drop reaches the
case."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from api.routes import webhooks
from api.routes.webhooks import load_public_key, verify_signature
from escalation.settings import Settings
from policies.directory import example_directory
from tests.conftest import Harness, make_request, state_of
from workflows.messages import DeliveryFailed

SIG = "X-Twilio-Email-Event-Webhook-Signature"
TS = "X-Twilio-Email-Event-Webhook-Timestamp"


# --- Keys and signing, as SendGrid does ----------------------------------------------------


@pytest.fixture(scope="module")
def private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_b64(key: ec.EllipticCurvePrivateKey) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def sign(key: ec.EllipticCurvePrivateKey, body: bytes, timestamp: str) -> str:
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode()


def signed(
    key: ec.EllipticCurvePrivateKey, events: Any, timestamp: str | None = None
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(events).encode()
    ts = timestamp or str(int(time.time()))
    return body, {SIG: sign(key, body, ts), TS: ts, "Content-Type": "application/json"}


def bounce(event_id: str = "ev-1", **changes: Any) -> dict[str, Any]:
    event = {
        "email": "safeguarding-duty@merton-health.example.org",
        "timestamp": 1798000000,
        "event": "bounce",
        "type": "bounce",
        "reason": "550 5.1.1 The email account does not exist",
        "status": "5.1.1",
        "sg_event_id": event_id,
        "sg_message_id": "msg-1.filter",
        "case_reference": "MER-7K2Q9XAB",
        "notice_id": "MER-7K2Q9XAB-00003-stage-started",
        "template": "stage-started",
        "policy": "merton",
        "category": ["escalation-notice", "stage-started", "merton"],
    }
    event.update(changes)
    return event


# --- A Temporal client that records signals ------------------------------------------------


class FakeHandle:
    def __init__(self, client: FakeClient, workflow_id: str) -> None:
        self.client = client
        self.id = workflow_id

    async def signal(self, name: str, arg: Any, **kwargs: Any) -> None:
        if self.client.fail_with is not None:
            raise RPCError("boom", self.client.fail_with, b"")
        self.client.signals.append((self.id, name, arg))


class FakeClient:
    def __init__(self) -> None:
        self.signals: list[tuple[str, str, Any]] = []
        self.fail_with: RPCStatusCode | None = None

    def get_workflow_handle(self, workflow_id: str) -> FakeHandle:
        return FakeHandle(self, workflow_id)


def make_app(tmp_path: Path, client: Any, public_key: str | None, **env: Any) -> FastAPI:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        ESCALATION_DATA_DIR=tmp_path,
        SENDGRID_WEBHOOK_PUBLIC_KEY=public_key or "",
        **env,
    )
    app = create_app(settings, client=client, authenticator=object())  # type: ignore[arg-type]
    app.include_router(webhooks.router)
    return app


@pytest_asyncio.fixture
async def fake() -> FakeClient:
    return FakeClient()


@pytest_asyncio.fixture
async def http(
    tmp_path: Path, fake: FakeClient, private_key: ec.EllipticCurvePrivateKey
) -> AsyncIterator[httpx.AsyncClient]:
    app = make_app(tmp_path, fake, public_b64(private_key))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


# --- Verification -------------------------------------------------------------------------


def test_signature_verifies_only_for_the_signed_timestamp_and_body(
    private_key: ec.EllipticCurvePrivateKey,
) -> None:
    key = load_public_key(public_b64(private_key))
    body, headers = signed(private_key, [bounce()])
    assert verify_signature(key, body, headers[SIG], headers[TS])
    assert not verify_signature(key, body + b" ", headers[SIG], headers[TS])
    assert not verify_signature(key, body, headers[SIG], str(int(headers[TS]) + 1))
    assert not verify_signature(key, body, "not base64!", headers[TS])
    other = ec.generate_private_key(ec.SECP256R1())
    assert not verify_signature(key, body, sign(other, body, headers[TS]), headers[TS])


def test_the_key_may_be_pem_and_must_be_p256(private_key: ec.EllipticCurvePrivateKey) -> None:
    pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert isinstance(load_public_key(pem.decode()), ec.EllipticCurvePublicKey)
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(webhooks.WebhookKeyError, match="P-256"):
        load_public_key(public_b64(p384))
    with pytest.raises(webhooks.WebhookKeyError):
        load_public_key("bm90IGEga2V5")


# --- The route ------------------------------------------------------------------------------


async def test_a_signed_bounce_signals_the_case(
    http: httpx.AsyncClient, fake: FakeClient, private_key: ec.EllipticCurvePrivateKey
) -> None:
    body, headers = signed(private_key, [bounce(), bounce("ev-2", event="delivered")])
    response = await http.post("/webhooks/sendgrid", content=body, headers=headers)
    assert response.status_code == 204, response.text
    assert fake.signals == [
        (
            "disagreement-MER-7K2Q9XAB",
            "delivery_failed",
            DeliveryFailed(
                notice_id="MER-7K2Q9XAB-00003-stage-started",
                event="bounce",
                reason="550 5.1.1 The email account does not exist",
                recipient="safeguarding-duty@merton-health.example.org",
                template="stage-started",
            ),
        )
    ]


async def test_drops_and_blocks_signal_too(
    http: httpx.AsyncClient, fake: FakeClient, private_key: ec.EllipticCurvePrivateKey
) -> None:
    events = [
        bounce("ev-d", event="dropped", type=None, reason="Bounced Address"),
        bounce("ev-b", type="blocked", reason="blocked by receiver"),
        bounce("ev-o", event="open"),
        bounce("ev-x", case_reference=None),  # not one of our cases' notices
    ]
    body, headers = signed(private_key, events)
    assert (await http.post("/webhooks/sendgrid", content=body, headers=headers)).status_code == 204
    assert [(s[2].event, s[2].reason) for s in fake.signals] == [
        ("dropped", "Bounced Address"),
        ("blocked", "blocked by receiver"),
    ]


async def test_an_event_is_handled_once(
    http: httpx.AsyncClient, fake: FakeClient, private_key: ec.EllipticCurvePrivateKey
) -> None:
    for _ in range(2):
        body, headers = signed(private_key, [bounce("ev-same")])
        response = await http.post("/webhooks/sendgrid", content=body, headers=headers)
        assert response.status_code == 204
    assert len(fake.signals) == 1


@pytest.mark.parametrize("case", ["bad", "missing", "tampered", "other-key", "old", "future"])
async def test_an_unverified_request_is_refused(
    http: httpx.AsyncClient,
    fake: FakeClient,
    private_key: ec.EllipticCurvePrivateKey,
    case: str,
) -> None:
    body, headers = signed(private_key, [bounce()])
    if case == "bad":
        headers[SIG] = base64.b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01").decode()
    elif case == "missing":
        del headers[SIG]
    elif case == "tampered":
        body = body.replace(b"MER-7K2Q9XAB", b"MER-AAAAAAAA")
    elif case == "other-key":
        headers[SIG] = sign(ec.generate_private_key(ec.SECP256R1()), body, headers[TS])
    elif case == "old":
        body, headers = signed(private_key, [bounce()], str(int(time.time()) - 4 * 24 * 3600))
    else:
        body, headers = signed(private_key, [bounce()], str(int(time.time()) + 3600))
    response = await http.post("/webhooks/sendgrid", content=body, headers=headers)
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert fake.signals == []


async def test_unconfigured_webhook_answers_503(
    tmp_path: Path, private_key: ec.EllipticCurvePrivateKey
) -> None:
    app = make_app(tmp_path, FakeClient(), None)
    body, headers = signed(private_key, [bounce()])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        response = await client.post("/webhooks/sendgrid", content=body, headers=headers)
    assert response.status_code == 503


async def test_a_signed_body_that_is_not_a_list_is_a_bad_request(
    http: httpx.AsyncClient, private_key: ec.EllipticCurvePrivateKey
) -> None:
    body, headers = signed(private_key, {"event": "bounce"})
    assert (await http.post("/webhooks/sendgrid", content=body, headers=headers)).status_code == 400


async def test_temporal_down_answers_503_and_the_retry_is_handled(
    http: httpx.AsyncClient, fake: FakeClient, private_key: ec.EllipticCurvePrivateKey
) -> None:
    fake.fail_with = RPCStatusCode.UNAVAILABLE
    body, headers = signed(private_key, [bounce("ev-retry")])
    response = await http.post("/webhooks/sendgrid", content=body, headers=headers)
    assert response.status_code == 503 and response.headers["Retry-After"] == "30"
    fake.fail_with = None
    response = await http.post("/webhooks/sendgrid", content=body, headers=headers)
    assert response.status_code == 204 and len(fake.signals) == 1


async def test_a_closed_case_is_not_an_error(
    http: httpx.AsyncClient, fake: FakeClient, private_key: ec.EllipticCurvePrivateKey
) -> None:
    fake.fail_with = RPCStatusCode.NOT_FOUND
    body, headers = signed(private_key, [bounce("ev-closed")])
    assert (await http.post("/webhooks/sendgrid", content=body, headers=headers)).status_code == 204


# --- Through to a real case -------------------------------------------------------------------


async def test_a_bounce_reaches_the_case_and_the_business_team(
    ts_env: WorkflowEnvironment,
    new_worker: Callable[[], Harness],
    tmp_path: Path,
    private_key: ec.EllipticCurvePrivateKey,
) -> None:
    harness = new_worker()
    request = make_request("merton", await ts_env.get_current_time())
    app = make_app(tmp_path, ts_env.client, public_b64(private_key))
    async with harness.worker(directory=example_directory()):
        handle = await harness.raise_case(request)
        try:
            for _ in range(200):
                if harness.sink.notices:
                    break
                await asyncio.sleep(0.05)
            first = harness.sink.notices[0]
            body, headers = signed(
                private_key,
                [
                    bounce(
                        "ev-real",
                        case_reference=request.reference,
                        notice_id=first.notice_id,
                        template=first.template,
                    )
                ],
            )
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://test"
            ) as client:
                response = await client.post("/webhooks/sendgrid", content=body, headers=headers)
            assert response.status_code == 204
            for _ in range(200):
                state = await state_of(handle)
                if any(e.template == "delivery-failed" for e in state.events):
                    break
                await asyncio.sleep(0.05)
        finally:
            await handle.terminate("test over")
    assert [f.notice_id for f in state.delivery_failures] == [first.notice_id]
    told = [n for n in harness.sink.notices if n.template == "delivery-failed"]
    assert len(told) == 1 and told[0].context["failed_notice"] == first.notice_id
