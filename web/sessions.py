"""Page sessions and CSRF, as values signed with the API's key.

The session cookie holds only the signed-in user's id, a CSRF token and when
it was issued (itsdangerous signs and timestamps it); the user is looked up
in the users file on every request, so removing someone signs them out. A
person signed in through the identity provider has no entry in a file: the
cookie carries what the provider's ID token said of them (name, email,
agency, partnership, role), signed like the rest. An
anonymous visitor gets a session too, so the sign-in form itself carries a
CSRF token; signing in issues a new token (no session fixation). What a
person just did ("You escalated the case") rides in it to the page they are
sent to, shown there once: a reload does not say it again.

Every form posts ``csrf_token``; a POST without the session's token is 403.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE = "escalation_session"
SESSION_SALT = "escalation.pages.session"
# A working day and a bit: a session outlives a shift, not a night.
SESSION_SECONDS = 10 * 60 * 60
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass
class Session:
    user_id: str | None
    csrf: str
    issued: int
    fresh: bool = False
    profile: dict[str, Any] | None = None
    # What the person just did, for the next page to say once.
    flash: str | None = None
    # Changed since it was read: the response must carry it.
    changed: bool = False

    @classmethod
    def new(cls, user_id: str | None = None, profile: dict[str, Any] | None = None) -> Session:
        return cls(
            user_id, secrets.token_urlsafe(32), int(time.time()), fresh=True, profile=profile
        )


class CsrfError(Exception):
    """The form did not carry the session's CSRF token."""


def _serializer(secret: bytes) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=SESSION_SALT)


def read_session(request: Request, secret: bytes) -> Session:
    """The request's session, or a new anonymous one (expired, forged or absent)."""
    value = request.cookies.get(COOKIE)
    if value:
        try:
            data = _serializer(secret).loads(value, max_age=SESSION_SECONDS)
            profile = data.get("p")
            flash = data.get("f")
            return Session(
                data.get("u"),
                str(data["c"]),
                int(data["t"]),
                profile=profile if isinstance(profile, dict) else None,
                flash=flash if isinstance(flash, str) else None,
            )
        except (BadSignature, KeyError, TypeError, ValueError):
            pass
    return Session.new()


def write_session(request: Request, response: Response, secret: bytes, session: Session) -> None:
    data: dict[str, Any] = {"u": session.user_id, "c": session.csrf, "t": session.issued}
    if session.profile is not None:
        data["p"] = session.profile
    if session.flash:
        data["f"] = session.flash
    value = _serializer(secret).dumps(data)
    response.set_cookie(
        COOKIE,
        value,
        max_age=max(SESSION_SECONDS - (int(time.time()) - session.issued), 0),
        httponly=True,
        samesite="lax",
        secure=request.url.hostname not in LOCAL_HOSTS,
        path="/",
    )


def clear_session(request: Request, response: Response) -> None:
    response.delete_cookie(
        COOKIE,
        path="/",
        httponly=True,
        samesite="lax",
        secure=request.url.hostname not in LOCAL_HOSTS,
    )


def check_csrf(session: Session, submitted: object) -> None:
    if (
        session.fresh
        or not isinstance(submitted, str)
        or not hmac.compare_digest(submitted.encode(), session.csrf.encode())
    ):
        raise CsrfError()
