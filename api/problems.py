"""Errors as problem details (RFC 9457, ``application/problem+json``).

Every error the API returns has ``type``, ``title``, ``status`` and, where
it helps, ``detail`` (what to do about it). ``type`` is a relative URI under
``/problems/`` naming the kind of problem, or ``about:blank`` for plain HTTP
errors. No problem ever carries a child's name, date of birth, address or
NHS number: request bodies are never echoed (validation errors give the
field and the rule, not the value).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("escalation.api")

PROBLEM_JSON = "application/problem+json"

# The kinds of problem, by slug (the ``type`` is ``/problems/<slug>``).
ACTION_REFUSED = "action-refused"
CASE_CLOSED = "case-closed"
CASE_NOT_READY = "case-not-ready"
IDEMPOTENCY_KEY_REUSED = "idempotency-key-reused"
INVALID_RAISE = "invalid-raise"
VALIDATION = "validation-error"
UNAUTHENTICATED = "unauthenticated"
FORBIDDEN = "forbidden"
NOT_FOUND = "not-found"
UNAVAILABLE = "service-unavailable"
NOT_READY = "not-ready"
TIMEOUT = "timeout"


def problem_type(slug: str) -> str:
    return f"/problems/{slug}"


class FieldProblem(BaseModel):
    location: str = Field(description="Where the problem is: body, query, path or header.")
    pointer: str = Field(description="JSON pointer to the field, e.g. /raising_agency/key.")
    detail: str


class Problem(BaseModel):
    """RFC 9457 problem details; extension members may follow."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(default="about:blank", examples=["/problems/action-refused"])
    title: str = Field(examples=["The action was refused"])
    status: int = Field(examples=[409])
    detail: str | None = Field(
        default=None, examples=["cannot resolve: the case is closed (resolved)"]
    )
    instance: str | None = Field(default=None, examples=["/disagreements/MER-7K2Q9XAB/resolve"])


class ProblemError(Exception):
    """Raise anywhere in a route to answer with a problem."""

    def __init__(
        self,
        status: int,
        slug: str | None,
        title: str,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.headers = headers or {}
        self.extensions = extensions


def invalid_query(field: str, detail: str) -> ProblemError:
    """422 for one query parameter, shaped as a validation problem."""
    return ProblemError(
        422,
        VALIDATION,
        "The request is not valid",
        f"{field}: {detail}",
        errors=[FieldProblem(location="query", pointer=f"/{field}", detail=detail).model_dump()],
    )


def register_unavailable() -> ProblemError:
    return ProblemError(
        503,
        UNAVAILABLE,
        "Service unavailable",
        "the case register (the database) cannot be reached; try again shortly",
        headers={"Retry-After": "5"},
    )


def not_found(what: str = "No such case") -> ProblemError:
    return ProblemError(
        404,
        NOT_FOUND,
        "Not found",
        f"{what}, or you are not a party to it",
    )


def problem_response(
    request: Request,
    status: int,
    title: str,
    detail: str | None = None,
    slug: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": problem_type(slug) if slug else "about:blank",
        "title": title,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    body["instance"] = request.url.path
    body.update(extensions)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _pointer(loc: tuple[Any, ...]) -> tuple[str, str]:
    location = str(loc[0]) if loc else "body"
    parts = [str(p) for p in loc[1:]]
    return location, "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def validation_problem(request: Request, errors: list[dict[str, Any]]) -> JSONResponse:
    fields = []
    for err in errors:
        location, pointer = _pointer(tuple(err.get("loc", ())))
        # Never echo err["input"]: it may be a child's details.
        fields.append(FieldProblem(location=location, pointer=pointer, detail=err["msg"]))
    summary = "; ".join(
        f"{f.pointer if f.pointer != '/' else f.location}: {f.detail}" for f in fields
    )
    return problem_response(
        request,
        422,
        "The request is not valid",
        summary[:1000],
        VALIDATION,
        errors=[f.model_dump() for f in fields],
    )


async def _problem_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(
        request,
        exc.status,
        exc.title,
        exc.detail,
        exc.slug,
        headers=exc.headers,
        **exc.extensions,
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    try:
        title = HTTPStatus(exc.status_code).phrase
    except ValueError:
        title = "Error"
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
    return problem_response(
        request, exc.status_code, title, detail, headers=getattr(exc, "headers", None)
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return validation_problem(request, list(exc.errors()))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # The type only: an exception's message could quote case data.
    log.error("unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path)
    return problem_response(
        request,
        500,
        "Internal Server Error",
        "Something went wrong on our side; the error has been logged.",
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _problem_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)


# --- OpenAPI documentation of the problems each route may answer -------------------

_EXAMPLES: dict[int, tuple[str, dict[str, Any]]] = {
    401: (
        "Missing or unrecognised bearer token",
        {
            "type": problem_type(UNAUTHENTICATED),
            "title": "Authentication required",
            "status": 401,
            "detail": "the bearer token is not recognised",
            "instance": "/disagreements",
        },
    ),
    403: (
        "Authenticated, but not allowed to do this",
        {
            "type": problem_type(FORBIDDEN),
            "title": "Not allowed",
            "status": 403,
            "detail": "you may raise a disagreement only on behalf of your own agency "
            "(merton-health)",
            "instance": "/disagreements",
        },
    ),
    404: (
        "No such case, or the caller's agency is not a party to it",
        {
            "type": problem_type(NOT_FOUND),
            "title": "Not found",
            "status": 404,
            "detail": "No such case, or you are not a party to it",
            "instance": "/disagreements/MER-7K2Q9XAB",
        },
    ),
    409: (
        "The case refused the action (the reason is in detail), or is closed",
        {
            "type": problem_type(ACTION_REFUSED),
            "title": "The action was refused",
            "status": 409,
            "detail": "a deadline may only be shortened, never lengthened: the current "
            "deadline is Mon 4 Jan 2027 17:00 GMT",
            "instance": "/disagreements/MER-7K2Q9XAB/deadline",
        },
    ),
    422: (
        "The request is not valid",
        {
            "type": problem_type(VALIDATION),
            "title": "The request is not valid",
            "status": 422,
            "detail": "/outcome: String should have at least 1 character",
            "instance": "/disagreements/MER-7K2Q9XAB/resolve",
            "errors": [
                {
                    "location": "body",
                    "pointer": "/outcome",
                    "detail": "String should have at least 1 character",
                }
            ],
        },
    ),
    503: (
        "Temporal or the worker cannot be reached",
        {
            "type": problem_type(UNAVAILABLE),
            "title": "Service unavailable",
            "status": 503,
            "detail": "the case service (Temporal) cannot be reached; try again shortly",
            "instance": "/disagreements",
        },
    ),
}


_PROBLEM_SCHEMA = Problem.model_json_schema()


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries, with an example, for these problem statuses."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        description, example = _EXAMPLES[status]
        out[status] = {
            "description": description,
            "content": {PROBLEM_JSON: {"schema": _PROBLEM_SCHEMA, "example": example}},
        }
    return out
