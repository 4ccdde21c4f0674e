"""Limits on what a request may be, enforced before anything parses it, and
the access log, which records what a request was for, never what it said.

``BodyLimit`` is ASGI middleware in front of every route. It reads a
request's body up to the route's limit (the codec routes carry whole
history pages, so theirs is larger) and answers 413 with a problem the
moment the body is larger, whether ``Content-Length`` says so or the bytes
do; a JSON body nested deeper than ``MAX_JSON_DEPTH`` answers 400 before the
JSON parser (and its recursion) sees it. Only then does the route run, with
the body replayed to it unchanged.

A body is never echoed or logged: it may hold a child's details.
"""

from __future__ import annotations

import json
import logging
import re
import time
import weakref
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from api import problems

access_log = logging.getLogger("escalation.api.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

KIB = 1024
MIB = 1024 * KIB
# The largest legitimate body: a raise (a 10,000-character concern, the
# child's details) or an action with its form's fields.
DEFAULT_BODY_LIMIT = 512 * KIB
# The Temporal UI sends a page of a case's history to /codec/decode at once.
CODEC_BODY_LIMIT = 8 * MIB
# SendGrid posts its events in batches of up to 768 KB.
WEBHOOK_BODY_LIMIT = 2 * MIB
MAX_JSON_DEPTH = 32

BODY_TOO_LARGE = "body-too-large"
INVALID_BODY = "invalid-body"

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(raw: bytes) -> int:
    """How deeply ``raw``'s arrays and objects nest, without parsing it:
    strings (where brackets mean nothing) are removed first, then only the
    brackets are counted."""
    brackets = _STRING.sub(b'""', raw).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for byte in brackets:
        if byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def body_limit(path: str) -> int:
    if path.startswith("/codec/"):
        return CODEC_BODY_LIMIT
    if path.startswith("/webhooks/"):
        return WEBHOOK_BODY_LIMIT
    return DEFAULT_BODY_LIMIT


async def _problem(
    send: Send, path: str, status: int, slug: str, title: str, detail: str, headers: dict[str, str]
) -> None:
    body = json.dumps(
        {
            "type": problems.problem_type(slug),
            "title": title,
            "status": status,
            "detail": detail,
            "instance": path,
        }
    ).encode()
    raw_headers = [
        (b"content-type", problems.PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """See the module's docstring. ``extra_headers(scope)`` adds headers to
    its refusals (the codec routes' CORS headers, so the Temporal UI can
    show why it was refused)."""

    def __init__(
        self, app: ASGIApp, extra_headers: Callable[[Scope], dict[str, str]] | None = None
    ) -> None:
        self.app = app
        self.extra_headers = extra_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        limit = body_limit(path)
        headers = dict(
            (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]
        )
        extra = self.extra_headers(scope) if self.extra_headers else {}

        async def too_large() -> None:
            await _problem(
                send,
                path,
                413,
                BODY_TOO_LARGE,
                "The request body is too large",
                f"this route takes bodies of at most {limit // KIB} KiB; "
                "shorten the text (every field has a maximum length)",
                extra,
            )

        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await too_large()
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await too_large()
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        # Whatever the declared type: the codec routes parse any body as JSON.
        if json_depth(body) > MAX_JSON_DEPTH:
            await _problem(
                send,
                path,
                400,
                INVALID_BODY,
                "The request body is nested too deeply",
                f"JSON arrays and objects may nest at most {MAX_JSON_DEPTH} levels deep",
                extra,
            )
            return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class AccessLog:
    """One line per request on ``escalation.api.access``: the method, the
    route's template (``/disagreements/{reference}``), the status and the
    time taken. Never the path as sent, its query string or its body: a
    name typed into a filter or a mistyped URL may be a child's. Uvicorn's
    own access log, which writes the request line whole, is switched off
    (``--no-access-log``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            access_log.info(
                "%s %s %d %.0fms",
                scope.get("method", "-"),
                route_template(scope),
                status or 500,
                (time.monotonic() - started) * 1000,
            )


def route_template(scope: Scope) -> str:
    """The template of the route that matched (or, for a request refused
    before routing, would have); ``(unmatched)`` for a path no route serves."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path:
        return str(path)
    path = str(scope.get("path", ""))
    for template, pattern in _templates(scope.get("app")):
        if pattern.fullmatch(path):
            return template
    return "(unmatched)"


_TEMPLATES: weakref.WeakKeyDictionary[Any, list[tuple[str, re.Pattern[str]]]] = (
    weakref.WeakKeyDictionary()
)


def _templates(app: Any) -> list[tuple[str, re.Pattern[str]]]:
    if app is None or not hasattr(app, "openapi"):
        return []
    if app not in _TEMPLATES:
        _TEMPLATES[app] = [
            (template, re.compile(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))))
            for template in app.openapi().get("paths", {})
        ]
    return _TEMPLATES[app]
