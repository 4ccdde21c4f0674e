"""Sending through SendGrid with the real ``sendgrid`` client, pointed at a
local HTTP endpoint that records each request and answers as scripted."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import secrets
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

import activities.email as email_module
from activities.email import (
    Ledger,
    NoticeConfigError,
    SendGridSink,
    notice_setup,
)
from activities.notices import (
    UNFILLED_SUFFIX,
    Addressee,
    NoticeActivities,
    OutboxSink,
    recipient_key,
)
from bench.capture import CaptureServer
from escalation.action_links import LinkMaker
from escalation.codec import KeyRing
from escalation.settings import Settings
from policies.directory import example_directory, parse_directory
from register import Register
from register.migrate import upgrade
from tests.conftest import Harness, make_request, state_of
from workflows.messages import (
    ChildDetails,
    FilledField,
    FilledForm,
    Notice,
    Recipient,
)

API_KEY = "SG.test-key-for-a-local-endpoint"
SENDER = Addressee("Merton escalation service", "escalation@merton.example.org")
CHILD = ChildDetails(
    name="Jamie Okonkwo-Smith",
    date_of_birth=date(2015, 3, 3),
    address="12 Acacia Avenue, Morden SM4 1AA",
    nhs_number="943 476 5919",
)
SECRETS = ("Jamie", "Okonkwo", "Acacia", "SM4 1AA", "943 476 5919", "2015-03-03", "3 March 2015")


# --- A local SendGrid ------------------------------------------------------------------


@dataclass
class Captured:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeSendGrid:
    """Answers 202 (with an X-Message-Id) unless told otherwise. Like
    SendGrid, it speaks HTTP/1.1 and keeps a connection open for the next
    request; ``connections`` counts the connections opened to it."""

    url: str = ""
    requests: list[Captured] = field(default_factory=list)
    script: list[tuple[str | None, int, dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    connections: int = 0
    # When set, each request waits here for the others before it is answered.
    together: threading.Barrier | None = None

    def answer(
        self,
        status: int,
        headers: dict[str, str] | None = None,
        body: Any = None,
        to: str | None = None,
    ) -> None:
        """The answer to the next request (to ``to``'s copy, if given)."""
        data = json.dumps(body).encode() if body is not None else b""
        self.script.append((to, status, headers or {}, data))

    def next_answer(self, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        recipient = body["personalizations"][0]["to"][0]["email"]
        for i, (to, status, headers, data) in enumerate(self.script):
            if to in (None, recipient):
                del self.script[i]
                return status, headers, data
        return 202, {}, b""

    @property
    def mail_sends(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests if r.path == "/v3/mail/send"]


@pytest.fixture
def sendgrid_server() -> Iterator[FakeSendGrid]:
    fake = FakeSendGrid()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            with fake.lock:
                fake.connections += 1

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            with fake.lock:
                fake.requests.append(
                    Captured("POST", self.path, dict(self.headers.items()), json.loads(raw))
                )
                message_id = f"msg-{len(fake.requests)}"
                status, headers, body = fake.next_answer(fake.requests[-1].body)
            if fake.together is not None:
                try:
                    fake.together.wait()
                except threading.BrokenBarrierError:
                    status, headers, body = 503, {}, b""
            self.send_response(status)
            if status == 202:
                self.send_header("X-Message-Id", message_id)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            # An account without the Email Activity add-on.
            with fake.lock:
                fake.requests.append(Captured("GET", self.path, dict(self.headers.items()), {}))
            body = b'{"errors":[{"message":"access forbidden"}]}'
            self.send_response(403)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


RING = KeyRing.generate()


def register_in(folder: Path) -> Register:
    """The register in a SQLite file in ``folder``, migrated: a new one for
    the same folder is another worker process on the same database."""
    url = f"sqlite:///{folder / 'register.sqlite3'}"
    upgrade(url)
    return Register.from_url(url, RING)


def sink_for(fake: FakeSendGrid, tmp_path: Path, **kwargs: Any) -> SendGridSink:
    return SendGridSink(API_KEY, register_in(tmp_path), host=fake.url, **kwargs)


def activities(sink: Any, directory: Any = None) -> NoticeActivities:
    return NoticeActivities(sink, directory or example_directory(), sender=SENDER)


def pro_forma() -> FilledForm:
    return FilledForm(
        key="escalation-pro-forma",
        name="Escalation Stage One/Two Pro-forma",
        partnership="Merton Safeguarding Children Partnership (MSCP)",
        reference="MER-7K2Q9XAB",
        sent_to="Safeguarding Partnership Business Team, via secure email",
        source="Appendix 1",
        fields=[
            FilledField(
                key="child-name",
                label="Name of child/young person",
                value=CHILD.name,
                identifying=True,
            ),
            FilledField(key="child-dob", label="DOB", value="3 March 2015", identifying=True),
            FilledField(key="what-was-agreed", label="If yes, what was agreed?", value="A plan"),
        ],
    )


def notice(template: str = "stage-started", **changes: Any) -> Notice:
    return Notice(
        notice_id=f"MER-7K2Q9XAB-00004-{template}",
        reference="MER-7K2Q9XAB",
        template=template,  # type: ignore[arg-type]
        policy_id="merton",
        partnership="Merton Safeguarding Children Partnership (MSCP)",
        area="merton",
        recipients=[
            Recipient(
                role="named-professional",
                title="Named Professional",
                agency="merton-health",
                agency_kind="health",
                area="merton",
            ),
            Recipient(
                role="head-of-service",
                title="Head of Service",
                agency="merton-childrens-social-care",
                agency_kind="childrens-social-care",
                area="merton",
            ),
        ],
        stage=2,
        stage_name="Stage 2: senior leaders",
        stage_summary="Senior Leader to Senior Leader attempt to resolve within 5 working days.",
        deadline=None,
        deadline_text=None,
        status="open",
    ).model_copy(update=changes)


def business_record() -> Notice:
    return notice(
        "business-team-record",
        recipients=[Recipient(role="business-team", title="Business Team", area="merton")],
        forms=["escalation-pro-forma"],
        filled_forms=[pro_forma()],
        context={"event": "resolved"},
    )


def without_head_of_service() -> Any:
    data = example_directory().model_dump(mode="json")
    roles = data["partnerships"]["merton"]["areas"]["merton"]["agencies"][
        "merton-childrens-social-care"
    ]["roles"]
    del roles["head-of-service"]
    return parse_directory(data, "test")


def words_of(body: dict[str, Any]) -> str:
    """Everything in a request but the attachments' content."""
    stripped = json.loads(json.dumps(body))
    for attachment in stripped.get("attachments", []):
        attachment["content"] = "<pdf>"
    return json.dumps(stripped)


def to_of(body: dict[str, Any]) -> str:
    return str(body["personalizations"][0]["to"][0]["email"])


# --- The request ----------------------------------------------------------------------


async def test_the_request_carries_recipients_case_reference_and_the_form(
    sendgrid_server: FakeSendGrid, tmp_path: Path
) -> None:
    acts = activities(sink_for(sendgrid_server, tmp_path))
    receipt = await ActivityEnvironment().run(acts.send_notice, business_record())
    assert receipt.delivered and not receipt.duplicate
    (request,) = sendgrid_server.requests
    assert request.path == "/v3/mail/send"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    body = request.body
    assert body["from"] == {"email": SENDER.email, "name": SENDER.name}
    assert body["personalizations"][0]["to"] == [
        {"email": "mscp-business-team@merton.example.org", "name": "MSCP Business Team"}
    ]
    assert "custom_args" not in body
    assert body["personalizations"][0]["custom_args"] == {
        "case_reference": "MER-7K2Q9XAB",
        "notice_id": "MER-7K2Q9XAB-00004-business-team-record",
        "ledger_key": recipient_key(
            "MER-7K2Q9XAB-00004-business-team-record", "mscp-business-team@merton.example.org"
        ),
        "template": "business-team-record",
        "policy": "merton",
    }
    assert sorted(body["categories"]) == ["business-team-record", "escalation-notice", "merton"]
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert body["subject"].startswith("[MER-7K2Q9XAB] For the record: resolved")
    assert body["tracking_settings"] == {
        "click_tracking": {"enable": False, "enable_text": False},
        "open_tracking": {"enable": False},
    }
    assert "mail_settings" not in body
    (attachment,) = body["attachments"]
    assert attachment["filename"] == "MER-7K2Q9XAB-escalation-pro-forma.pdf"
    assert attachment["type"] == "application/pdf"
    assert attachment["disposition"] == "attachment"
    pdf = base64.b64decode(attachment["content"])
    assert CHILD.name in PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
    # The child is named only inside the attached form.
    words = words_of(body)
    for secret in SECRETS:
        assert secret not in words, secret


STAGE_HOLDERS = [
    "tom.fraser@merton-health.example.org",
    "dev.ward@merton-childrens-social-care.example.org",
]


async def test_stage_notices_go_to_both_agencies_role_holders_each_alone(
    sendgrid_server: FakeSendGrid, tmp_path: Path
) -> None:
    acts = activities(sink_for(sendgrid_server, tmp_path))
    await ActivityEnvironment().run(acts.send_notice, notice())
    # One request, a message (personalization) per recipient: nobody sees
    # another's address.
    (body,) = sendgrid_server.mail_sends
    people = sorted(
        body["personalizations"], key=lambda p: STAGE_HOLDERS.index(p["to"][0]["email"])
    )
    assert [[t["email"] for t in p["to"]] for p in people] == [[a] for a in STAGE_HOLDERS]
    for personalization, address in zip(people, STAGE_HOLDERS, strict=True):
        assert set(personalization) == {"to", "custom_args"}
        assert personalization["custom_args"]["ledger_key"] == recipient_key(
            notice().notice_id, address
        )
    assert "attachments" not in body


def as_delivered(body: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Each recipient's words (text, HTML) as SendGrid makes them from the
    request: the shared content with their personalization's substitutions."""
    text, html = (c["value"] for c in body["content"])
    out = {}
    for personalization in body["personalizations"]:
        own = dict(personalization.get("substitutions") or {})
        mine = [text, html]
        for tag, words in own.items():
            assert words, "an empty substitution"
            mine = [m.replace(tag, words) for m in mine]
        out[personalization["to"][0]["email"]] = (mine[0], mine[1])
    return out


def with_links(fake: FakeSendGrid, tmp_path: Path) -> tuple[NoticeActivities, Notice]:
    """Notices with action links, and a raise that asks the receiving
    side's owner (alone) to acknowledge."""
    maker = LinkMaker(secrets.token_bytes(32), "https://escalation.example", timedelta(days=7))
    acts = NoticeActivities(
        sink_for(fake, tmp_path), example_directory(), sender=SENDER, links=maker
    )
    raised = notice(
        "stage-started",
        context={"reason": "raised"},
        receiving_agency="merton-childrens-social-care",
    )
    return acts, raised


async def test_each_recipients_own_link_travels_in_the_one_request(
    sendgrid_server: FakeSendGrid, tmp_path: Path
) -> None:
    """The receiving side's owner is asked to acknowledge: their copy alone
    carries the link. One request still carries both copies, the link as
    their personalization's substitution, and each recipient gets exactly
    the words their own copy has."""
    acts, raised = with_links(sendgrid_server, tmp_path)
    (email,), _ = acts.compose(raised)
    copies = {c.to[0].email: (c.text, c.html) for c in email.copies()}
    receiving = "dev.ward@merton-childrens-social-care.example.org"
    assert "/act/" in copies[receiving][0] and "/act/" not in "".join(copies[STAGE_HOLDERS[0]])
    await ActivityEnvironment().run(acts.send_notice, raised)
    (body,) = sendgrid_server.mail_sends
    assert "/act/" not in json.dumps(body["content"])
    assert as_delivered(body) == copies


async def test_copies_whose_own_words_are_too_long_to_share_go_as_a_request_each(
    sendgrid_server: FakeSendGrid, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past SendGrid's limit on a personalization's substitutions, each copy
    is its own request, all sent at once (the stand-in answers neither until
    both have arrived: one after the other, the notice would fail)."""
    monkeypatch.setattr(email_module, "SUBSTITUTION_BYTES", 10)
    acts, raised = with_links(sendgrid_server, tmp_path)
    sendgrid_server.together = threading.Barrier(len(STAGE_HOLDERS), timeout=30)
    receipt = await ActivityEnvironment().run(acts.send_notice, raised)
    assert receipt.delivered
    sends = sendgrid_server.mail_sends
    assert sorted(to_of(b) for b in sends) == sorted(STAGE_HOLDERS)
    assert all(len(b["personalizations"]) == 1 for b in sends)
    assert sum("/act/" in b["content"][0]["value"] for b in sends) == 1


async def test_sandbox_mode(sendgrid_server: FakeSendGrid, tmp_path: Path) -> None:
    acts = activities(sink_for(sendgrid_server, tmp_path, sandbox=True))
    await ActivityEnvironment().run(acts.send_notice, notice())
    assert sendgrid_server.mail_sends[0]["mail_settings"] == {"sandbox_mode": {"enable": True}}


def test_eu_data_residency_uses_the_eu_host(tmp_path: Path) -> None:
    sink = SendGridSink(API_KEY, register_in(tmp_path), eu_residency=True)
    assert sink.host == "https://api.eu.sendgrid.com"
    assert SendGridSink(API_KEY, register_in(tmp_path)).host == "https://api.sendgrid.com"


# --- Exactly once ---------------------------------------------------------------------------


async def test_a_retry_after_a_crash_sends_nothing_twice(
    sendgrid_server: FakeSendGrid, tmp_path: Path
) -> None:
    # SendGrid accepts, then the worker dies before the activity completes:
    # Temporal retries the activity on a new worker process.
    await ActivityEnvironment().run(
        activities(sink_for(sendgrid_server, tmp_path)).send_notice, notice()
    )
    assert len(sendgrid_server.mail_sends) == 1
    restarted = activities(sink_for(sendgrid_server, tmp_path))
    receipt = await ActivityEnvironment().run(restarted.send_notice, notice())
    assert receipt.duplicate and receipt.delivered
    assert len(sendgrid_server.mail_sends) == 1
    entries = Ledger(register_in(tmp_path)).entries()
    assert sorted(e["key"] for e in entries) == sorted(
        [notice().notice_id, *(recipient_key(notice().notice_id, a) for a in STAGE_HOLDERS)]
    )
    assert sorted(str(e["message_id"]) for e in entries) == ["None", "msg-1", "msg-1"]


async def test_a_notice_refused_for_now_is_sent_again_whole(
    sendgrid_server: FakeSendGrid, tmp_path: Path
) -> None:
    sendgrid_server.answer(503)
    acts = activities(sink_for(sendgrid_server, tmp_path))
    with pytest.raises(ApplicationError):
        await ActivityEnvironment().run(acts.send_notice, notice())
    receipt = await ActivityEnvironment().run(acts.send_notice, notice())
    assert receipt.delivered
    sent_to = [
        sorted(p["to"][0]["email"] for p in b["personalizations"])
        for b in sendgrid_server.mail_sends
    ]
    assert sent_to == [sorted(STAGE_HOLDERS)] * 2


async def test_emails_go_over_one_kept_connection(
    sendgrid_server: FakeSendGrid, tmp_path: Path
) -> None:
    """Five notices to the business team, one after another: five emails on
    the one connection the sink opened, not a connection each."""
    acts = activities(sink_for(sendgrid_server, tmp_path))
    for seq in range(5):
        await ActivityEnvironment().run(
            acts.send_notice,
            notice(
                "business-team-record",
                notice_id=f"MER-7K2Q9XAB-{seq:05d}-business-team-record",
                recipients=[Recipient(role="business-team", title="Business Team", area="merton")],
                context={"event": "resolved"},
            ),
        )
    assert len(sendgrid_server.mail_sends) == 5
    assert sendgrid_server.connections == 1


async def test_a_failure_half_way_resends_only_what_was_not_accepted(
    sendgrid_server: FakeSendGrid, tmp_path: Path
) -> None:
    """The notice and the business team's copy about an unfilled role: the
    first is accepted, the second meets a 500; the retry sends the second only."""
    sendgrid_server.answer(202)
    sendgrid_server.answer(500, body={"errors": [{"message": "internal"}]})
    acts = activities(sink_for(sendgrid_server, tmp_path), without_head_of_service())
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(acts.send_notice, notice())
    assert not caught.value.non_retryable and caught.value.type == "SendGridUnavailable"
    receipt = await ActivityEnvironment().run(acts.send_notice, notice())
    assert receipt.unfilled_roles == ["merton-childrens-social-care:head-of-service"]
    sends = sendgrid_server.mail_sends
    keys = [s["personalizations"][0]["custom_args"]["ledger_key"] for s in sends]
    team = "mscp-business-team@merton.example.org"
    assert keys == [
        recipient_key(notice().notice_id, "tom.fraser@merton-health.example.org"),
        recipient_key(notice().notice_id + UNFILLED_SUFFIX, team),
        recipient_key(notice().notice_id + UNFILLED_SUFFIX, team),
    ]
    assert sends[2]["personalizations"][0]["to"] == [
        {"email": "mscp-business-team@merton.example.org", "name": "MSCP Business Team"}
    ]
    assert "Nobody in the role directory holds Head of Service" in sends[2]["content"][0]["value"]


# --- A worker that dies between SendGrid and the ledger -------------------------------


@pytest.fixture
def stand_in(tmp_path: Path) -> Iterator[CaptureServer]:
    """The bench's SendGrid stand-in (``bench.capture``), Email Activity and all."""
    server = CaptureServer(("127.0.0.1", 0), tmp_path / "capture.jsonl")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        server.out.close()


class WorkerKilled(BaseException):
    """The worker process dying: nothing after it in the activity runs."""


def dying_sink(url: str, tmp_path: Path, *, reach_sendgrid: bool, **kwargs: Any) -> SendGridSink:
    """A sink whose worker dies at each post, after SendGrid took the copy
    or before it got there."""
    sink = SendGridSink(API_KEY, register_in(tmp_path), host=url, **kwargs)
    post = sink.post

    def post_then_die(body: dict[str, Any]) -> Any:
        if reach_sendgrid:
            post(body)
        raise WorkerKilled

    sink.post = post_then_die  # type: ignore[method-assign]
    return sink


def stand_in_url(server: CaptureServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def business_team_notice() -> Notice:
    return notice(
        "business-team-record",
        recipients=[Recipient(role="business-team", title="Business Team", area="merton")],
        context={"event": "resolved"},
    )


async def test_a_copy_sendgrid_took_before_the_worker_died_is_not_sent_again(
    stand_in: CaptureServer, tmp_path: Path
) -> None:
    """SendGrid accepted the copy; the worker died before the ledger
    recorded it. The retry finds it in SendGrid's Email Activity and records
    it as sent without posting it again, however young the attempt."""
    url = stand_in_url(stand_in)
    dying = activities(dying_sink(url, tmp_path, reach_sendgrid=True))
    with pytest.raises(WorkerKilled):
        await ActivityEnvironment().run(dying.send_notice, business_team_notice())
    assert stand_in.received == 1
    restarted = SendGridSink(API_KEY, register_in(tmp_path), host=url)
    receipt = await ActivityEnvironment().run(
        activities(restarted).send_notice, business_team_notice()
    )
    assert receipt.delivered
    assert stand_in.received == 1
    team = "mscp-business-team@merton.example.org"
    key = recipient_key(business_team_notice().notice_id, team)
    entries = {e["key"]: e["message_id"] for e in restarted.ledger.entries()}
    assert entries[key] == stand_in.messages(key)[0]
    assert restarted.ledger.maybe_duplicated() == []


async def test_a_copy_that_never_reached_sendgrid_is_sent_once_the_feeds_lag_has_passed(
    stand_in: CaptureServer, tmp_path: Path
) -> None:
    """The worker died after recording the attempt and before SendGrid got
    the copy. Until the attempt is older than the activity feed's lag the
    retry sends nothing and asks Temporal to try later; after, it sends."""
    url = stand_in_url(stand_in)
    dying = activities(dying_sink(url, tmp_path, reach_sendgrid=False))
    with pytest.raises(WorkerKilled):
        await ActivityEnvironment().run(dying.send_notice, business_team_notice())
    early = SendGridSink(API_KEY, register_in(tmp_path), host=url, activity_lag=timedelta(hours=1))
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(activities(early).send_notice, business_team_notice())
    assert caught.value.type == "SendGridActivityPending" and not caught.value.non_retryable
    assert caught.value.next_retry_delay is not None
    assert timedelta(minutes=59) < caught.value.next_retry_delay <= timedelta(hours=1)
    assert stand_in.received == 0
    # The same attempt, with the lag passed.
    later = SendGridSink(API_KEY, register_in(tmp_path), host=url, activity_lag=timedelta(0))
    receipt = await ActivityEnvironment().run(activities(later).send_notice, business_team_notice())
    assert receipt.delivered and not receipt.duplicate
    assert stand_in.received == 1
    again = await ActivityEnvironment().run(activities(later).send_notice, business_team_notice())
    assert again.duplicate and stand_in.received == 1


async def test_without_email_activity_access_an_unsure_copy_is_sent_again_and_flagged(
    sendgrid_server: FakeSendGrid, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An account without Email Activity (403) cannot say whether it took
    the copy: it is posted again (at least once), the ledger marks it as
    possibly a duplicate and the log says so by its key alone."""
    dying = activities(dying_sink(sendgrid_server.url, tmp_path, reach_sendgrid=True))
    with pytest.raises(WorkerKilled):
        await ActivityEnvironment().run(dying.send_notice, business_record())
    restarted = sink_for(sendgrid_server, tmp_path)
    with caplog.at_level("WARNING", logger="escalation.sendgrid"):
        receipt = await ActivityEnvironment().run(
            activities(restarted).send_notice, business_record()
        )
    assert receipt.delivered
    assert [r.method for r in sendgrid_server.requests] == ["POST", "GET", "POST"]
    key = recipient_key(business_record().notice_id, "mscp-business-team@merton.example.org")
    assert restarted.ledger.maybe_duplicated() == [key]
    warning = "\n".join(r.getMessage() for r in caplog.records)
    assert key in warning and "may be a duplicate" in warning
    for secret in (*SECRETS, "mscp-business-team"):
        assert secret not in warning


async def test_an_eu_subuser_whose_activity_sendgrid_does_not_keep_falls_back_to_sending(
    stand_in: CaptureServer, tmp_path: Path
) -> None:
    """SendGrid keeps no Email Activity for EU-region subusers: an empty
    feed there proves nothing, so the unsure copy is posted again and flagged."""
    url = stand_in_url(stand_in)
    dying = activities(dying_sink(url, tmp_path, reach_sendgrid=True, eu_residency=True))
    with pytest.raises(WorkerKilled):
        await ActivityEnvironment().run(dying.send_notice, business_team_notice())
    restarted = SendGridSink(API_KEY, register_in(tmp_path), host=url, eu_residency=True)
    await ActivityEnvironment().run(activities(restarted).send_notice, business_team_notice())
    assert stand_in.received == 2
    key = recipient_key(business_team_notice().notice_id, "mscp-business-team@merton.example.org")
    assert restarted.ledger.maybe_duplicated() == [key]


# --- Failures -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 413])
async def test_a_4xx_is_not_retried_and_not_recorded(
    sendgrid_server: FakeSendGrid, tmp_path: Path, status: int
) -> None:
    sendgrid_server.answer(
        status,
        body={
            "errors": [{"message": "The from address does not match a verified Sender Identity"}]
        },
    )
    sink = sink_for(sendgrid_server, tmp_path)
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(activities(sink).send_notice, notice())
    assert caught.value.non_retryable and caught.value.type == "NoticeRejected"
    assert f"SendGrid answered {status}" in caught.value.message
    assert "verified Sender Identity" in caught.value.message
    assert sink.sent([notice().notice_id]) == set()


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_a_5xx_is_retried(sendgrid_server: FakeSendGrid, tmp_path: Path, status: int) -> None:
    sendgrid_server.answer(status)
    sink = sink_for(sendgrid_server, tmp_path)
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(activities(sink).send_notice, notice())
    assert not caught.value.non_retryable and caught.value.type == "SendGridUnavailable"
    receipt = await ActivityEnvironment().run(activities(sink).send_notice, notice())
    # The refused request again, whole.
    assert receipt.delivered and len(sendgrid_server.mail_sends) == 2


async def test_a_429_is_retried_after_retry_after(
    sendgrid_server: FakeSendGrid, tmp_path: Path
) -> None:
    sendgrid_server.answer(429, {"Retry-After": "7"})
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(
            activities(sink_for(sendgrid_server, tmp_path)).send_notice, notice()
        )
    assert not caught.value.non_retryable and caught.value.type == "SendGridRateLimited"
    assert caught.value.next_retry_delay == timedelta(seconds=7)


async def test_an_unreachable_sendgrid_is_retried(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = SendGridSink(API_KEY, register_in(tmp_path), host=f"http://127.0.0.1:{port}", timeout=2)
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(activities(sink).send_notice, notice())
    assert not caught.value.non_retryable and caught.value.type == "SendGridUnavailable"


# --- On a real case -----------------------------------------------------------------------


async def test_a_refused_send_is_recorded_on_the_case_and_reported(
    ts_env: WorkflowEnvironment,
    new_worker: Callable[[], Harness],
    sendgrid_server: FakeSendGrid,
    tmp_path: Path,
) -> None:
    """SendGrid refuses the raise's first notice (400): the case records it,
    stays open, and the business team is told through SendGrid."""
    sendgrid_server.answer(400, body={"errors": [{"message": "Invalid email address"}]})
    harness = new_worker()
    harness.sink = sink_for(sendgrid_server, tmp_path)  # type: ignore[assignment]
    request = make_request("merton", await ts_env.get_current_time())
    request.raised_by.email = "raiser@merton-health.example.org"
    async with harness.worker(directory=example_directory(), sender=SENDER):
        handle = await harness.raise_case(request)
        try:
            for _ in range(200):
                state = await state_of(handle)
                if any(e.template == "delivery-failed" for e in state.events):
                    break
                await asyncio.sleep(0.05)
        finally:
            await handle.terminate("test over")
    failed = [e for e in state.events if e.type == "notice_failed"]
    assert len(failed) == 1 and "Invalid email address" in (failed[0].detail or "")
    assert state.status == "open"
    reports = [
        b
        for b in sendgrid_server.mail_sends
        if b["personalizations"][0]["custom_args"]["template"] == "delivery-failed"
    ]
    assert len(reports) == 1
    assert reports[0]["personalizations"][0]["to"][0]["email"] == (
        "mscp-business-team@merton.example.org"
    )
    assert "(rejected: NoticeRejected: SendGrid answered 400" in reports[0]["content"][0]["value"]


# --- Configuration --------------------------------------------------------------------------


def settings(tmp_path: Path, **env: Any) -> Settings:
    return Settings(_env_file=None, ESCALATION_DATA_DIR=tmp_path, **env)  # type: ignore[call-arg]


def test_without_a_key_notices_go_to_the_outbox_addressed_by_the_example(tmp_path: Path) -> None:
    setup = notice_setup(settings(tmp_path), register_in(tmp_path))
    assert isinstance(setup.sink, OutboxSink)
    assert setup.sink.folder == tmp_path / "outbox"
    assert setup.directory is not None and "merton" in setup.directory.partnerships
    setup = notice_setup(
        settings(tmp_path, ESCALATION_EXAMPLE_DIRECTORY="false"), register_in(tmp_path)
    )
    assert setup.directory is None


def test_a_key_needs_a_directory_and_a_real_sender(tmp_path: Path) -> None:
    with pytest.raises(NoticeConfigError, match="ESCALATION_DIRECTORY_FILE is not"):
        notice_setup(settings(tmp_path, SENDGRID_API_KEY=API_KEY), register_in(tmp_path))
    directory = tmp_path / "directory.yaml"
    directory.write_text(
        (Path(__file__).parent.parent / "policies/data/directory.example.yaml").read_text()
    )
    with pytest.raises(NoticeConfigError, match="ESCALATION_SENDER_EMAIL"):
        notice_setup(
            settings(tmp_path, SENDGRID_API_KEY=API_KEY, ESCALATION_DIRECTORY_FILE=str(directory)),
            register_in(tmp_path),
        )
    setup = notice_setup(
        settings(
            tmp_path,
            SENDGRID_API_KEY=API_KEY,
            ESCALATION_DIRECTORY_FILE=str(directory),
            ESCALATION_SENDER_EMAIL="escalation@merton.gov.uk",
            SENDGRID_EU_RESIDENCY="true",
            SENDGRID_SANDBOX="true",
        ),
        register_in(tmp_path),
    )
    assert isinstance(setup.sink, SendGridSink)
    assert setup.sink.host == "https://api.eu.sendgrid.com" and setup.sink.sandbox
    assert setup.sender.email == "escalation@merton.gov.uk"
    # The ledger is the register's, shared by every worker that uses it.
    assert setup.sink.ledger.register.engine.url.database == str(tmp_path / "register.sqlite3")


def test_a_bad_directory_file_stops_the_worker(tmp_path: Path) -> None:
    bad = tmp_path / "d.yaml"
    bad.write_text("partnerships: {merton: {business_team: [{name: X}]}}\n")
    with pytest.raises(NoticeConfigError, match="business_team\\[0\\].name"):
        notice_setup(settings(tmp_path, ESCALATION_DIRECTORY_FILE=str(bad)), register_in(tmp_path))


@pytest.mark.parametrize("value", ["changeme", "placeholder", "not-a-sendgrid-key-at-all"])
def test_placeholder_keys_are_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(ValueError, match="SENDGRID_API_KEY"):
        settings(tmp_path, SENDGRID_API_KEY=value)
