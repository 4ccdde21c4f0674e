"""Helpers shared by the API tests (imported as ``api_helpers``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

MERTON_HEALTH = {"key": "merton-health", "name": "Merton health", "kind": "health"}
MERTON_CSC = {
    "key": "merton-childrens-social-care",
    "name": "Merton children's social care",
    "kind": "childrens-social-care",
}


def raise_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "policy": "merton",
        "raising_agency": MERTON_HEALTH,
        "receiving_agency": MERTON_CSC,
        "categories": ["thresholds"],
        "summary": "Referral closed with no further action; health disagrees.",
        "child": {
            "name": "Zebedee Quillfeather",
            "date_of_birth": "2019-04-01",
            "nhs_number": "9434765919",
        },
    }
    body.update(changes)
    return body


class Api:
    """An httpx client that can act as any demo user."""

    def __init__(self, http: httpx.AsyncClient, tokens: dict[str, str]) -> None:
        self.http = http
        self.tokens = tokens

    def _headers(self, user: str | None, extra: dict[str, str] | None) -> dict[str, str]:
        headers = dict(extra or {})
        if user is not None:
            headers["Authorization"] = f"Bearer {self.tokens[user]}"
        return headers

    async def get(
        self, path: str, user: str | None, headers: dict[str, str] | None = None, **kw: Any
    ) -> httpx.Response:
        return await self.http.get(path, headers=self._headers(user, headers), **kw)

    async def post(
        self,
        path: str,
        user: str | None,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        return await self.http.post(path, json=json, headers=self._headers(user, headers))

    async def raise_case(self, user: str = "merton-health-practitioner", **changes: Any) -> str:
        response = await self.post("/disagreements", user, raise_body(**changes))
        assert response.status_code == 201, response.text
        return str(response.json()["reference"])


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 10.0, what: str = "condition"
) -> None:
    """Visibility is eventually consistent: poll until ``check`` holds."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout
    while not await check():
        if loop.time() > give_up:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)
