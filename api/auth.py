"""Authentication (who is calling) and authorisation (which cases they may
see and act on).

Two authenticators, one chosen from the settings:

- ``UsersFileAuthenticator`` (the embedded default): bearer tokens checked
  against the SHA-256 hashes in the users file (``api.users``), compared in
  constant time. The file is re-read when it changes.
- ``OidcAuthenticator`` (production, when ``ESCALATION_OIDC_ISSUER`` is set):
  bearer tokens are JWTs signed by a key from the issuer's JWKS, with the
  configured audience. The user's agency, partnership and role come from the
  custom claims ``agency``, ``partnership`` and ``role`` (with the
  configured prefix); ``sub``, ``name`` and ``email`` are standard.

Authorisation (DESIGN.md section 5): a practitioner or manager sees and acts
only on cases of their partnership where their agency is one of the two
parties; the business team sees every case of its partnership; operators
(who run the stack) see every case. A case the user may not see is
indistinguishable from one that does not exist.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import anyio
import httpx
import jwt
from pydantic import ValidationError

from api.users import PARTY_ROLES, StoredUser, User, UsersFileError, hash_token, load_users
from escalation.settings import Settings

log = logging.getLogger("escalation.api.auth")

SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")


class AuthError(Exception):
    """The caller is not authenticated (401) or has no usable identity (403)."""

    def __init__(self, reason: str, status: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class AuthUnavailableError(Exception):
    """The identity provider cannot be reached: 503, not the caller's fault."""


class Authenticator(Protocol):
    async def authenticate(self, token: str) -> User: ...


# --- Users file -------------------------------------------------------------------


class UsersFileAuthenticator:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._users: list[StoredUser] = []
        self._stamp: tuple[int, int] | None = None
        self._refresh()

    def _refresh(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            if self._stamp is not None or not self._users:
                log.warning("no users file at %s: every bearer token is refused", self.path)
            self._users, self._stamp = [], None
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        try:
            self._users = load_users(self.path)
        except UsersFileError as exc:
            # Keep the users we had: a half-edited file must not lock everyone out.
            log.error("users file not loaded: %s", exc)
            return
        self._stamp = stamp
        log.info("loaded %d API users from %s", len(self._users), self.path)

    async def authenticate(self, token: str) -> User:
        self._refresh()
        digest = hash_token(token)
        found: StoredUser | None = None
        # Compare against every user, whatever matches, so timing tells nothing.
        for user in self._users:
            if hmac.compare_digest(digest, user.token_sha256):
                found = user
        if found is None:
            raise AuthError("the bearer token is not recognised")
        return found.public()

    def users(self) -> list[User]:
        """Everyone in the file as it is now (an emailed action link finds
        its recipient among them by address)."""
        self._refresh()
        return [stored.public() for stored in self._users]

    def user(self, user_id: str) -> User | None:
        """The user with this id as the file now has them, or None: a signed-in
        page session is checked against the file on every request, so a user
        removed from it is signed out at once."""
        self._refresh()
        for stored in self._users:
            if stored.id == user_id:
                return stored.public()
        return None


# --- OIDC ------------------------------------------------------------------------


class OidcAuthenticator:
    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        jwks_url: str | None = None,
        claim_prefix: str = "",
        jwks_client: jwt.PyJWKClient | None = None,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.jwks_url = jwks_url
        self.claim_prefix = claim_prefix
        self._jwks = jwks_client

    async def _jwks_client(self) -> jwt.PyJWKClient:
        if self._jwks is None:
            url = self.jwks_url or await self._discover()
            self._jwks = jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=10)
        return self._jwks

    async def _discover(self) -> str:
        where = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                response = await http.get(where)
                response.raise_for_status()
                return str(response.json()["jwks_uri"])
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            log.error("OIDC discovery failed at %s: %s", where, type(exc).__name__)
            raise AuthUnavailableError("the identity provider cannot be reached") from None

    async def authenticate(self, token: str) -> User:
        client = await self._jwks_client()
        try:
            signing_key = await anyio.to_thread.run_sync(client.get_signing_key_from_jwt, token)
            claims = jwt.decode(
                token,
                signing_key.key,
                algorithms=list(SIGNING_ALGORITHMS),
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iss", "sub", "aud"]},
                leeway=30,
            )
        except jwt.PyJWKClientConnectionError:
            raise AuthUnavailableError("the identity provider's keys cannot be fetched") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"the bearer token is not valid ({type(exc).__name__})") from None
        return user_from_claims(claims, self.claim_prefix)


def user_from_claims(claims: dict[str, Any], prefix: str = "") -> User:
    """The person a verified token names: an access token's for the API, the
    ID token's for the pages' sign-in."""
    try:
        return User(
            id=str(claims["sub"]),
            name=str(claims.get("name") or claims.get("preferred_username") or claims["sub"]),
            email=claims.get("email"),
            agency=claims.get(f"{prefix}agency"),
            partnership=claims.get(f"{prefix}partnership"),
            role=claims.get(f"{prefix}role"),
        )
    except ValidationError as exc:
        fields = sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]})
        raise AuthError(
            "the token does not give a usable agency, partnership and role"
            + (f" ({', '.join(fields)})" if fields else ""),
            status=403,
        ) from None


def build_authenticator(settings: Settings) -> Authenticator:
    if settings.oidc_issuer:
        if not settings.oidc_audience:
            raise ValueError("ESCALATION_OIDC_AUDIENCE must be set with ESCALATION_OIDC_ISSUER")
        return OidcAuthenticator(
            settings.oidc_issuer,
            settings.oidc_audience,
            jwks_url=settings.oidc_jwks_url,
            claim_prefix=settings.oidc_claim_prefix,
        )
    return UsersFileAuthenticator(settings.users_path)


# --- Authorisation ---------------------------------------------------------------


def may_access_case(user: User, partnership: str | None, agencies: Sequence[str]) -> bool:
    """May this user see and act on a case of this partnership between these agencies?"""
    if user.role == "operator":
        return True
    if partnership is None or user.partnership != partnership:
        return False
    if user.role == "business-team":
        return True
    return user.role in PARTY_ROLES and user.agency in agencies


def raise_refusal(user: User, policy_id: str, raising_agency: str) -> str | None:
    """Why this user may not raise this case, or None if they may."""
    if user.role == "operator":
        return None
    if user.partnership != policy_id:
        return (
            f"you belong to the {user.partnership} partnership and may raise cases only "
            "under its policy"
        )
    if user.role in PARTY_ROLES and raising_agency != user.agency:
        return f"you may raise a disagreement only on behalf of your own agency ({user.agency})"
    return None
