"""Dependencies the routes declare, as ``Annotated`` aliases.

The app's one Temporal client, its register (the case record), its settings,
its authenticator and the HMAC key live on ``app.state`` (set by
``create_app`` and its lifespan); routes ask for them by type::

    async def route(user: CurrentUser, client: TemporalClient, settings: SettingsDep): ...

Each is ``async def``, though none awaits: FastAPI runs a plain ``def``
dependency in its thread pool, and a profile of the API under load had 15%
of its samples in handing these look-ups to threads and back.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from temporalio.client import Client

from api import problems
from api.auth import Authenticator, AuthError, AuthUnavailableError
from api.problems import ProblemError
from api.users import User
from escalation.settings import Settings
from register import Register

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="A bearer token: a user's token from the users file (embedded default) "
    "or an OIDC access token from the configured issuer (production).",
)


def _state(request: Request, name: str) -> object:
    value = getattr(request.app.state, name, None)
    if value is None:
        raise ProblemError(
            503,
            problems.UNAVAILABLE,
            "Service unavailable",
            "the API is still starting; try again shortly",
            headers={"Retry-After": "1"},
        )
    return value


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_client(request: Request) -> Client:
    return _state(request, "client")  # type: ignore[return-value]


async def get_register(request: Request) -> Register:
    return _state(request, "register")  # type: ignore[return-value]


async def get_secret(request: Request) -> bytes:
    return _state(request, "secret")  # type: ignore[return-value]


def _unauthenticated(reason: str, error: str | None = None) -> ProblemError:
    challenge = 'Bearer realm="escalation"'
    if error:
        challenge += f', error="{error}"'
    return ProblemError(
        401,
        problems.UNAUTHENTICATED,
        "Authentication required",
        reason,
        headers={"WWW-Authenticate": challenge},
    )


async def get_current_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> User:
    if credentials is None or not credentials.credentials:
        raise _unauthenticated("send an Authorization: Bearer <token> header")
    authenticator: Authenticator = _state(request, "authenticator")  # type: ignore[assignment]
    try:
        user = await authenticator.authenticate(credentials.credentials)
    except AuthError as exc:
        if exc.status == 403:
            raise ProblemError(403, problems.FORBIDDEN, "Not allowed", exc.reason) from None
        raise _unauthenticated(exc.reason, "invalid_token") from None
    except AuthUnavailableError as exc:
        raise ProblemError(
            503,
            problems.UNAVAILABLE,
            "Service unavailable",
            str(exc),
            headers={"Retry-After": "5"},
        ) from None
    request.state.user = user
    return user


SettingsDep = Annotated[Settings, Depends(get_settings)]
TemporalClient = Annotated[Client, Depends(get_client)]
CurrentUser = Annotated[User, Depends(get_current_user)]
HmacKey = Annotated[bytes, Depends(get_secret)]
RegisterDep = Annotated[Register, Depends(get_register)]
