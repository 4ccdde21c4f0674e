"""Signing in to the pages through the identity provider the API trusts
(``ESCALATION_OIDC_*``): OpenID Connect's authorization-code flow with PKCE,
by authlib.

Starting sign-in sends the browser to the provider with a fresh state,
nonce and PKCE verifier, kept meanwhile in a short-lived signed cookie
(``HttpOnly``, ``SameSite=Lax``, so it comes back with the provider's
redirect and with nothing else). The callback takes the code only with the
same state, exchanges it with the verifier, and accepts the ID token only if
the provider's keys signed it, for this client, unexpired and with the same
nonce. The person is read from its claims exactly as the API reads an
access token's (``api.auth.user_from_claims``: agency, partnership and role).

Signing out ends the provider's session too, where the provider offers an
``end_session_endpoint`` (OpenID Connect RP-Initiated Logout): the browser
goes there with this client's id and comes back to the sign-in page. Without
it, on a shared computer the next person to press "Sign in" would be signed
in as the last one, without a password.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from joserfc.errors import JoseError

from api.auth import AuthError, user_from_claims
from api.users import User
from escalation.settings import Settings
from web.sessions import LOCAL_HOSTS

log = logging.getLogger("escalation.pages")

PENDING_COOKIE = "escalation_sign_in"
PENDING_SALT = "escalation.pages.oidc"
# Long enough to type a password and answer a second factor, no longer.
PENDING_SECONDS = 10 * 60
CALLBACK_PATH = "/sign-in/callback"
# Where the provider sends the browser back after ending its session.
SIGNED_OUT_PATH = "/sign-in?signed_out=1"


class SignInRefused(Exception):
    """The provider's answer is not one this sign-in may accept; the reason
    is for the log, never for the page (it could help a forger)."""


class ProviderUnavailable(Exception):
    """The identity provider cannot be reached."""


@dataclass(frozen=True)
class Pending:
    state: str
    nonce: str
    verifier: str
    next: str


class OidcSignIn:
    """The pages' client at the identity provider, one per app."""

    def __init__(self, settings: Settings) -> None:
        # Imported here: the embedded default (local users) never loads authlib.
        from authlib.integrations.starlette_client import OAuth, OAuthError

        assert settings.oidc_issuer and settings.oidc_client_id
        self.settings = settings
        self._refused: tuple[type[Exception], ...] = (OAuthError, JoseError, ValueError, KeyError)
        secret = settings.oidc_client_secret
        oauth = OAuth()
        self.client: Any = oauth.register(
            "provider",
            client_id=settings.oidc_client_id,
            client_secret=secret.get_secret_value() if secret else None,
            server_metadata_url=(
                settings.oidc_issuer.rstrip("/") + "/.well-known/openid-configuration"
            ),
            client_kwargs={
                "scope": "openid profile email",
                "code_challenge_method": "S256",
                "token_endpoint_auth_method": "client_secret_basic" if secret else "none",
                "timeout": 10,
            },
        )

    def redirect_uri(self, request: Request) -> str:
        return self._base(request) + CALLBACK_PATH

    def signed_out_uri(self, request: Request) -> str:
        return self._base(request) + SIGNED_OUT_PATH

    def _base(self, request: Request) -> str:
        return (self.settings.public_url or str(request.base_url)).rstrip("/")

    async def end_session_url(self, request: Request) -> str | None:
        """Where to send the browser for the provider to end its own session
        and send it back signed out; None where the provider has no such
        endpoint or cannot be reached (the person is still signed out here)."""
        try:
            metadata = await self.client.load_server_metadata()
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            log.warning("OIDC discovery failed at sign-out: %s", type(exc).__name__)
            return None
        endpoint = metadata.get("end_session_endpoint")
        if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
            return None
        query = urlencode(
            {
                "client_id": self.settings.oidc_client_id,
                "post_logout_redirect_uri": self.signed_out_uri(request),
            }
        )
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"

    async def start(self, request: Request, target: str) -> tuple[str, Pending]:
        """The provider's authorization URL, and what the callback must match."""
        try:
            found = await self.client.create_authorization_url(self.redirect_uri(request))
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            log.error("OIDC discovery failed: %s", type(exc).__name__)
            raise ProviderUnavailable() from None
        pending = Pending(found["state"], found["nonce"], found["code_verifier"], target)
        return str(found["url"]), pending

    async def finish(self, request: Request, pending: Pending | None) -> User:
        """The person the provider signed in, from its redirect back to us."""
        params = request.query_params
        state = params.get("state") or ""
        if pending is None:
            raise SignInRefused("no sign-in was started in this browser, or it expired")
        if not hmac.compare_digest(state.encode(), pending.state.encode()):
            raise SignInRefused("the state does not match the sign-in this browser started")
        if params.get("error") or not params.get("code"):
            raise SignInRefused(f"the provider answered {params.get('error') or 'no code'}")
        try:
            token = await self.client.fetch_access_token(
                redirect_uri=self.redirect_uri(request),
                code=params["code"],
                code_verifier=pending.verifier,
            )
            claims = await self.client.parse_id_token(token, nonce=pending.nonce)
        except httpx.HTTPError as exc:
            log.error("OIDC token exchange failed: %s", type(exc).__name__)
            raise ProviderUnavailable() from None
        except self._refused as exc:
            raise SignInRefused(
                f"the provider's tokens were refused ({type(exc).__name__})"
            ) from None
        if claims is None:
            raise SignInRefused("the provider gave no ID token")
        try:
            return user_from_claims(dict(claims), self.settings.oidc_claim_prefix)
        except AuthError as exc:
            raise SignInRefused(exc.reason) from None


def sign_in_client(request: Request) -> OidcSignIn | None:
    """The app's OIDC sign-in, or None when the pages sign in local users."""
    settings: Settings = request.app.state.settings
    if not settings.oidc_issuer or not settings.oidc_client_id:
        return None
    found = getattr(request.app.state, "oidc_sign_in", None)
    if found is None:
        found = request.app.state.oidc_sign_in = OidcSignIn(settings)
    assert isinstance(found, OidcSignIn)
    return found


def _serializer(secret: bytes) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=PENDING_SALT)


def write_pending(request: Request, response: Response, secret: bytes, pending: Pending) -> None:
    value = _serializer(secret).dumps(
        {"s": pending.state, "n": pending.nonce, "v": pending.verifier, "t": pending.next}
    )
    response.set_cookie(
        PENDING_COOKIE,
        value,
        max_age=PENDING_SECONDS,
        httponly=True,
        samesite="lax",
        secure=request.url.hostname not in LOCAL_HOSTS,
        path=CALLBACK_PATH,
    )


def read_pending(request: Request, secret: bytes) -> Pending | None:
    value = request.cookies.get(PENDING_COOKIE)
    if not value:
        return None
    try:
        data = _serializer(secret).loads(value, max_age=PENDING_SECONDS)
        return Pending(str(data["s"]), str(data["n"]), str(data["v"]), str(data["t"]))
    except (BadSignature, KeyError, TypeError, ValueError):
        return None


def clear_pending(request: Request, response: Response) -> None:
    response.delete_cookie(
        PENDING_COOKIE,
        path=CALLBACK_PATH,
        httponly=True,
        samesite="lax",
        secure=request.url.hostname not in LOCAL_HOSTS,
    )
