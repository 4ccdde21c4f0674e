"""What a list of cases asks for: filters, order, and page tokens.

Page tokens are keyset positions (the sort value and reference of the last
row shown), signed with the API's key so that a token cannot be forged or
garbled into a query: a bad one is refused at once as invalid.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

Sort = Literal["raised", "deadline"]
SORTS: tuple[Sort, ...] = ("raised", "deadline")


class InvalidPageToken(ValueError):
    """The page token was not one this service gave out for this list."""


@dataclass(frozen=True)
class Scope:
    """Which cases the reader may see at all: a partnership (None: every
    one, for operators) and, for a party's user, their agency."""

    partnership: str | None = None
    agency: str | None = None


@dataclass(frozen=True)
class CaseQuery:
    scope: Scope
    now: datetime
    partnership: str | None = None
    area: str | None = None
    stage: int | None = None
    statuses: Sequence[str] = ()
    overdue: bool | None = None
    immediate_risk: bool | None = None
    agency: str | None = None
    category: str | None = None
    raised_from: datetime | None = None
    raised_to: datetime | None = None
    closed_from: datetime | None = None
    closed_to: datetime | None = None
    sort: Sort = "raised"
    page_size: int = 25
    after: tuple[str, str] | None = None


def encode_token(key: bytes, query_sort: Sort, position: tuple[str, str]) -> str:
    body = json.dumps([query_sort, *position], separators=(",", ":")).encode()
    mac = hmac.new(key, b"page\0" + body, hashlib.sha256).digest()[:12]
    return base64.urlsafe_b64encode(mac + body).decode("ascii").rstrip("=")


def decode_token(key: bytes, query_sort: Sort, token: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise InvalidPageToken("page_token is not valid") from None
    mac, body = raw[:12], raw[12:]
    expected = hmac.new(key, b"page\0" + body, hashlib.sha256).digest()[:12]
    if len(raw) <= 12 or not hmac.compare_digest(mac, expected):
        raise InvalidPageToken("page_token is not valid: pass the next_page_token of a list")
    values: Any = json.loads(body)
    if values[0] != query_sort:
        raise InvalidPageToken("page_token belongs to a list in another order")
    return str(values[1]), str(values[2])
