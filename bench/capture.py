"""A stand-in for SendGrid's v3 API on loopback that timestamps every notice.

``python -m bench.capture --port P --out FILE`` accepts ``POST /v3/mail/send``
exactly as the ``sendgrid`` package sends it, answers ``202 Accepted`` like
SendGrid, and appends one JSON line per email to FILE::

    {"t": 1767225600.123456, "case_reference": "MER-7K2Q9XAB",
     "template": "escalated-automatically", "notice_id": "...", "ledger_key": "..."}

``t`` is the arrival time (``time.time()``, the same wall clock the Temporal
server's timers use on this machine). The reference and template come from
the email's ``custom_args`` (top level or per personalization), which carry
nothing identifying. The body itself is not kept.

``GET /stats`` answers ``{"received": N, "connections": C}`` (C: the TCP
connections opened to it, so a run shows whether the sink keeps its
connection); anything else is 404. It binds to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MAIL_SEND = "/v3/mail/send"
MAX_BODY = 32 * 1024 * 1024


def _custom_args(body: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    for personalization in body.get("personalizations") or []:
        if isinstance(personalization, dict):
            found.update(personalization.get("custom_args") or {})
    found.update(body.get("custom_args") or {})
    return {str(k): str(v) for k, v in found.items()}


def record_of(body: dict[str, Any], arrived: float) -> dict[str, Any]:
    args = _custom_args(body)
    return {
        "t": arrived,
        "case_reference": args.get("case_reference"),
        "template": args.get("template"),
        "notice_id": args.get("notice_id"),
        "ledger_key": args.get("ledger_key"),
    }


class CaptureServer(ThreadingHTTPServer):
    daemon_threads = True
    # A burst of deadlines opens many connections at once: don't refuse them.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], out: Path) -> None:
        super().__init__(address, Handler)
        self.lock = threading.Lock()
        self.received = 0
        self.connections = 0
        self.out = out.open("a", encoding="utf-8")

    def record(self, line: dict[str, Any]) -> None:
        text = json.dumps(line, separators=(",", ":")) + "\n"
        with self.lock:
            self.out.write(text)
            self.out.flush()
            self.received += 1


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: CaptureServer

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _answer(self, status: int, body: bytes = b"", ctype: str = "application/json") -> None:
        self.send_response(status)
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
        self.server.record(record_of(body, arrived))
        self._answer(202)

    def do_GET(self) -> None:  # noqa: N802
        if self.path.rstrip("/") == "/stats":
            self._answer(
                200,
                json.dumps(
                    {"received": self.server.received, "connections": self.server.connections}
                ).encode(),
            )
        else:
            self._answer(404)


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
