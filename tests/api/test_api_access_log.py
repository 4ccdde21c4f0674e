"""The access log records what a request was for (method, route template,
status), never what it said: no query string, no path as typed, no body."""

from __future__ import annotations

import logging
import re

import pytest
from api_helpers import Api

NAME = "Zanzibar Quillfeather-Access"


async def test_the_access_log_has_route_templates_and_statuses_only(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    ref = await api.raise_case()
    caplog.set_level(logging.INFO, logger="escalation.api.access")
    caplog.clear()

    await api.get("/disagreements", "merton-csc-manager", params={"agency": NAME})
    await api.get(f"/disagreements/{ref}", "merton-csc-manager", params={"child": NAME})
    await api.get(f"/disagreements/{NAME}", "merton-csc-manager")
    await api.get(f"/nowhere/{NAME}", "merton-csc-manager")
    await api.post(f"/disagreements/{ref}/notes", "merton-csc-manager", {"text": NAME})
    await api.post(f"/disagreements/{ref}/notes", "merton-csc-manager", {"text": NAME * 30_000})

    lines = [r.getMessage() for r in caplog.records if r.name == "escalation.api.access"]
    assert [re.sub(r" \d+ms$", "", line) for line in lines] == [
        "GET /disagreements 422",
        "GET /disagreements/{reference} 200",
        "GET /disagreements/{reference} 404",
        "GET (unmatched) 404",
        "POST /disagreements/{reference}/notes 200",
        "POST /disagreements/{reference}/notes 413",
    ]
    everything = caplog.text.lower()
    assert "zanzibar" not in everything and "quillfeather" not in everything
