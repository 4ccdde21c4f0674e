"""A stand-in for SendGrid's v3 API on loopback that timestamps every notice.

``python -m bench.capture --port P --out FILE`` accepts ``POST /v3/mail/send``
exactly as the ``sendgrid`` package sends it, answers ``202 Accepted`` like
SendGrid, and appends one JSON line per email to FILE::

    {"t": 1767225600.123456, "case_reference": "MER-7K2Q9XAB",
     "template": "escalated-automatically", "notice_id": "...", "ledger_key": "..."}

``t`` is the arrival time (``time.time()``, the same wall clock the Temporal
server's timers use on this machine). A request's personalizations are its
emails, a line each, as SendGrid sends a message for each: the reference,
template and ledger key come from each one's ``custom_args`` over the
request's own, which carry nothing identifying. The body itself is not kept.

Each accepted request gets an ``X-Message-Id`` (and each of its emails a
message id starting with it, as SendGrid's Email Activity shows), and ``GET /v3/messages`` with
SendGrid's Email Activity query ``unique_args['ledger_key']="KEY"`` answers
``{"messages": [{"msg_id": ..., "status": "processed", ...}]}`` with the
emails captured under that ledger key: what a retry after a worker crash asks
SendGrid (``activities.email``). Unlike SendGrid's feed it has no lag, so the
stacks that use it set ``SENDGRID_ACTIVITY_LAG`` low (``bench.stack``).

``GET /stats`` answers ``{"received": N, "requests": R, "connections": C}``
(N emails in R requests; C the TCP connections opened to it, so a run shows
whether the sink keeps its connection); anything else is 404. It binds to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAIL_SEND = "/v3/mail/send"
MESSAGES = "/v3/messages"
# The one Email Activity query the product asks: by the ledger key argument.
LEDGER_KEY_QUERY = re.compile(r"unique_args\['ledger_key'\]\s*=\s*\"([^\"]*)\"")
MAX_BODY = 32 * 1024 * 1024


def _emails_args(body: dict[str, Any]) -> list[dict[str, str]]:
    """The custom arguments of each email a request makes: one for each
    personalization, its own over the request's."""
    shared = body.get("custom_args") or {}
    found = []
    for personalization in body.get("personalizations") or [{}]:
        args = dict(shared)
        if isinstance(personalization, dict):
            args.update(personalization.get("custom_args") or {})
        found.append({str(k): str(v) for k, v in args.items()})
    return found


def records_of(body: dict[str, Any], arrived: float) -> list[dict[str, Any]]:
    return [
        {
            "t": arrived,
            "case_reference": args.get("case_reference"),
            "template": args.get("template"),
            "notice_id": args.get("notice_id"),
            "ledger_key": args.get("ledger_key"),
        }
        for args in _emails_args(body)
    ]


class CaptureServer(ThreadingHTTPServer):
    daemon_threads = True
    # A burst of deadlines opens many connections at once: don't refuse them.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], out: Path) -> None:
        super().__init__(address, Handler)
        self.lock = threading.Lock()
        self.received = 0
        self.requests = 0
        self.connections = 0
        # The message ids captured under each ledger key (the file's too,
        # so a restarted stand-in still knows what it took).
        self.by_key: dict[str, list[str]] = {}
        if out.exists():
            for text in out.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(ValueError, AttributeError):
                    line = json.loads(text)
                    self.by_key.setdefault(str(line.get("ledger_key")), []).append(
                        str(line.get("msg_id"))
                    )
        self.out = out.open("a", encoding="utf-8")

    def record(self, lines: list[dict[str, Any]]) -> str:
        """Append a request's emails, a line each; the request's message id."""
        with self.lock:
            self.requests += 1
            request_id = f"capture-{os.getpid()}-{self.requests}"
            for n, line in enumerate(lines, start=1):
                self.received += 1
                line["msg_id"] = message_id = f"{request_id}.{n}"
                self.by_key.setdefault(str(line.get("ledger_key")), []).append(message_id)
                self.out.write(json.dumps(line, separators=(",", ":")) + "\n")
            self.out.flush()
        return request_id

    def messages(self, key: str) -> list[str]:
        with self.lock:
            return list(self.by_key.get(key, ()))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: CaptureServer

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _answer(
        self,
        status: int,
        body: bytes = b"",
        ctype: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        arrived = time.time()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY:
            self._answer(413)
            return
        raw = self.rfile.read(length) if length else b""
        if self.path.split("?", 1)[0].rstrip("/") != MAIL_SEND:
            self._answer(404, b'{"errors":[{"message":"not found"}]}')
            return
        if not self.headers.get("Authorization", "").startswith("Bearer "):
            self._answer(401, b'{"errors":[{"message":"authorization required"}]}')
            return
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            self._answer(400, b'{"errors":[{"message":"bad JSON"}]}')
            return
        message_id = self.server.record(records_of(body, arrived))
        self._answer(202, headers={"X-Message-Id": message_id})

    def do_GET(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        if url.path.rstrip("/") == MESSAGES:
            self._activity(parse_qs(url.query).get("query", [""])[0])
        elif self.path.rstrip("/") == "/stats":
            self._answer(
                200,
                json.dumps(
                    {
                        "received": self.server.received,
                        "requests": self.server.requests,
                        "connections": self.server.connections,
                    }
                ).encode(),
            )
        else:
            self._answer(404)

    def _activity(self, query: str) -> None:
        if not self.headers.get("Authorization", "").startswith("Bearer "):
            self._answer(401, b'{"errors":[{"message":"authorization required"}]}')
            return
        match = LEDGER_KEY_QUERY.fullmatch(query.strip())
        if match is None:
            self._answer(400, b'{"errors":[{"message":"unsupported query"}]}')
            return
        messages = [
            {"msg_id": message_id, "status": "processed", "opens_count": 0, "clicks_count": 0}
            for message_id in self.server.messages(match.group(1))
        ]
        self._answer(200, json.dumps({"messages": messages}).encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    server = CaptureServer(("127.0.0.1", args.port), args.out)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"capture listening on 127.0.0.1:{args.port}, writing {args.out}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.out.close()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
