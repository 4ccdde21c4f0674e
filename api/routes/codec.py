"""The codec endpoint: Temporal's remote codec protocol for the Temporal UI
and CLI (``POST /codec/encode`` and ``POST /codec/decode``).

Point the UI at ``http://<api>/codec`` (``temporal server start-dev
--ui-codec-endpoint``, or the UI's codec settings) and the CLI with
``--codec-endpoint http://<api>/codec --codec-auth "Bearer <token>"``.

Only operators and business-team users may call it: decoding shows a case's
identifying details in the clear. Each encrypted payload carries, bound into
its encryption, the partnership of the case it belongs to
(``escalation.codec``): an operator may decode any payload; a business-team
user only their own partnership's. Any other payload (another partnership's,
or one that names none, as payloads written before payloads were labelled
do) is answered as it came, still encrypted, so the UI shows it as
ciphertext and learns nothing. What a business-team user encodes is labelled
with their partnership, what an operator encodes with none. Every decode is
logged with the user's id and the number of payloads (and of those withheld),
never their content.

The UI calls the endpoint from the browser, from its own origin, with
``Content-Type``, ``X-Namespace`` and (when configured) ``Authorization``
headers, so the browser first sends a CORS preflight. Allowed origins are
``ESCALATION_CODEC_CORS_ORIGINS``; every answer, errors included, carries the
CORS headers, so the UI can show why a request was refused.
"""

from __future__ import annotations

import html
import json
import logging
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials

from api import problems
from api.deps import SettingsDep, bearer, get_current_user
from api.limits import CODEC_BODY_LIMIT
from api.problems import ProblemError
from api.users import User
from escalation.codec import (
    CodecDecodeError,
    CodecRequestError,
    decode_payloads_json,
    encode_payloads_json,
)
from escalation.converter import payload_codec
from escalation.settings import Settings

log = logging.getLogger("escalation.api.codec")

router = APIRouter(prefix="/codec", tags=["codec"])

CODEC_ROLES = frozenset({"operator", "business-team"})
COOKIE = "escalation_codec"
COOKIE_MAX_AGE = 8 * 3600
MAX_BODY_BYTES = CODEC_BODY_LIMIT
INVALID_PAYLOADS = "invalid-payloads"
UNDECODABLE = "undecodable-payload"

_PREFLIGHT = {
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, X-Namespace",
    "Access-Control-Max-Age": "600",
}


def cors_headers(request: Request, settings: Settings) -> dict[str, str]:
    origin = request.headers.get("origin")
    headers = {"Vary": "Origin"}
    if origin and origin in settings.codec_cors_origins:
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Allow-Credentials"] = "true"
    return headers


async def codec_user(
    request: Request,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> User:
    """An authenticated operator or business-team user; refusals carry the
    CORS headers too. The Temporal UI of the embedded default has no login of
    its own to send a bearer token, so the token may also come from the
    cookie that ``/codec/login`` sets."""
    cors = cors_headers(request, settings)
    if credentials is None and request.cookies.get(COOKIE):
        credentials = HTTPAuthorizationCredentials(
            scheme="Bearer", credentials=request.cookies[COOKIE]
        )
    try:
        user = await get_current_user(request, credentials)
    except ProblemError as exc:
        exc.headers = {**exc.headers, **cors}
        raise
    if user.role not in CODEC_ROLES:
        raise ProblemError(
            403,
            problems.FORBIDDEN,
            "Not allowed",
            "only operators and business-team users may use the codec endpoint",
            headers=cors,
        )
    return user


CodecUser = Annotated[User, Depends(codec_user)]


def _scope(user: User) -> str | None:
    """The one partnership whose payloads the user may see; None: all (an
    operator). A business-team user without a partnership sees none."""
    if user.role == "operator":
        return None
    return user.partnership or "-"


async def _body(request: Request, cors: dict[str, str]) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise ProblemError(413, None, "Payload Too Large", headers=cors)
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict):
        raise ProblemError(
            400,
            INVALID_PAYLOADS,
            "The body is not Payloads",
            'expected the JSON form of Payloads: {"payloads": [{"metadata": {...}, '
            '"data": "<base64>"}]}',
            headers=cors,
        )
    return body


def _preflight(request: Request, settings: Settings) -> Response:
    cors = cors_headers(request, settings)
    if "Access-Control-Allow-Origin" in cors:
        cors.update(_PREFLIGHT)
    return Response(status_code=204, headers=cors)


@router.options("/encode", include_in_schema=False)
async def encode_preflight(request: Request, settings: SettingsDep) -> Response:
    return _preflight(request, settings)


@router.options("/decode", include_in_schema=False)
async def decode_preflight(request: Request, settings: SettingsDep) -> Response:
    return _preflight(request, settings)


_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The payloads, encoded or decoded, in the same JSON form",
        "content": {
            "application/json": {
                "example": {
                    "payloads": [{"metadata": {"encoding": "anNvbi9wbGFpbg=="}, "data": "e30="}]
                }
            }
        },
    },
    400: {"description": "The body is not the JSON form of Payloads, or cannot be decoded"},
    401: {"description": "Missing or unrecognised bearer token"},
    403: {"description": "Not an operator or business-team user"},
}


@router.post(
    "/encode",
    summary="Encrypt payloads (Temporal remote codec protocol)",
    responses=_RESPONSES,
)
async def encode(request: Request, settings: SettingsDep, user: CodecUser) -> JSONResponse:
    cors = cors_headers(request, settings)
    body = await _body(request, cors)
    try:
        result = await encode_payloads_json(body, payload_codec(settings), partnership=_scope(user))
    except CodecRequestError as exc:
        raise ProblemError(
            400, INVALID_PAYLOADS, "The body is not Payloads", str(exc), headers=cors
        ) from None
    log.debug("codec encode by %s: %d payloads", user.id, len(result.get("payloads", [])))
    return JSONResponse(result, headers=cors)


@router.post(
    "/decode",
    summary="Decrypt payloads (Temporal remote codec protocol); every call is logged",
    responses=_RESPONSES,
)
async def decode(request: Request, settings: SettingsDep, user: CodecUser) -> JSONResponse:
    cors = cors_headers(request, settings)
    body = await _body(request, cors)
    count = len(body["payloads"]) if isinstance(body.get("payloads"), list) else 0
    log.info("codec decode by user %s: %d payloads", user.id, count)
    scope = _scope(user)
    try:
        result, withheld = await decode_payloads_json(
            body,
            payload_codec(settings),
            may_decode=None if scope is None else (lambda partnership: partnership == scope),
        )
    except CodecRequestError as exc:
        raise ProblemError(
            400, INVALID_PAYLOADS, "The body is not Payloads", str(exc), headers=cors
        ) from None
    except CodecDecodeError as exc:
        # The message names the key id only.
        raise ProblemError(
            400, UNDECODABLE, "A payload cannot be decoded", str(exc), headers=cors
        ) from None
    if withheld:
        log.info(
            "codec decode by user %s: %d payloads withheld (not of partnership %s)",
            user.id,
            withheld,
            scope,
        )
    return JSONResponse(result, headers=cors)


# --- Signing the Temporal UI in --------------------------------------------

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Codec sign-in</title>
<style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;line-height:1.5}}
input{{width:100%;padding:.4rem;font-family:monospace}}button{{padding:.4rem 1rem}}
.error{{color:#b00020}}</style></head><body>
<h1>Let the Temporal UI decrypt cases</h1>
{body}
</body></html>"""

_FORM = """<p>Case histories are encrypted. Paste your operator or business-team
token to let this browser's Temporal UI decrypt them through this codec
endpoint for the next 8 hours.</p>
{error}
<form method="post" action="/codec/login">
<label for="token">Bearer token</label>
<input id="token" name="token" type="password" autocomplete="off" required>
<p><button type="submit">Sign in</button></p>
</form>"""

_DONE = """<p>Signed in as <strong>{name}</strong> ({role}) until the cookie
expires in 8 hours.</p>
<p>In the Temporal UI, open the codec settings (the glasses icon at the top
right), check that the endpoint is <code>{endpoint}</code>, tick
<em>Include cross-origin credentials</em>, and apply. Payloads then show
decrypted; every decode is logged under your name.</p>
<form method="post" action="/codec/logout"><button type="submit">Sign out</button></form>"""


@router.get("/login", include_in_schema=False, response_class=HTMLResponse)
async def login_form() -> HTMLResponse:
    return HTMLResponse(_PAGE.format(body=_FORM.format(error="")))


@router.post("/login", include_in_schema=False, response_class=HTMLResponse)
async def login(request: Request, settings: SettingsDep) -> HTMLResponse:
    fields = parse_qs((await request.body()).decode("utf-8", "replace"))
    token = (fields.get("token") or [""])[0].strip()
    credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)
    try:
        user = await codec_user(request, settings, credentials)
    except ProblemError as exc:
        error = f'<p class="error">{html.escape(exc.detail or exc.title)}</p>'
        return HTMLResponse(_PAGE.format(body=_FORM.format(error=error)), status_code=exc.status)
    endpoint = str(request.url_for("decode")).removesuffix("/decode")
    page = _DONE.format(
        name=html.escape(user.name), role=html.escape(user.role), endpoint=html.escape(endpoint)
    )
    response = HTMLResponse(_PAGE.format(body=page))
    # HttpOnly and SameSite=Strict: scripts cannot read it and other sites
    # cannot make the browser send it; the UI on another port of the same
    # host is the same site, so its codec calls carry it.
    response.set_cookie(
        COOKIE,
        token,
        max_age=COOKIE_MAX_AGE,
        path="/codec",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    log.info("codec sign-in by user %s", user.id)
    return response


@router.post("/logout", include_in_schema=False, response_class=HTMLResponse)
async def logout() -> HTMLResponse:
    response = HTMLResponse(_PAGE.format(body="<p>Signed out.</p>"))
    response.delete_cookie(COOKIE, path="/codec")
    return response
