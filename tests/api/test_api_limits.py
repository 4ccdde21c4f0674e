"""What a careless user or an attacker can send: every answer is a problem
(4xx), never a 500 or a 503, and nothing unbounded is accepted."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from api_helpers import Api, eventually, raise_body
from fastapi import FastAPI

PRACTITIONER = "merton-health-practitioner"
OPERATOR = "operator"


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"]
    return body


async def _post_raw(
    api: Api, path: str, user: str, content: bytes | AsyncIterator[bytes]
) -> httpx.Response:
    return await api.http.post(
        path,
        content=content,
        headers={
            "Authorization": f"Bearer {api.tokens[user]}",
            "Content-Type": "application/json",
        },
    )


async def test_a_lone_surrogate_in_the_childs_name_is_refused_with_where_it_is(api: Api) -> None:
    # json.dumps writes the lone surrogate as the escape "\ud800", as a
    # careless client would.
    body = json.dumps(raise_body(child={"name": "A\ud800 Child"})).encode()
    assert b"\\ud800" in body

    response = await _post_raw(api, "/disagreements", PRACTITIONER, body)

    problem = _problem(response, 422)
    assert "/child/name" in problem["detail"] and "surrogate" in problem["detail"]
    assert "A\\ud800 Child" not in response.text and "Child" not in problem["detail"]


async def test_a_lone_surrogate_in_a_note_is_refused(api: Api) -> None:
    ref = await api.raise_case()
    body = json.dumps({"text": "call \udfff back"}).encode()

    response = await _post_raw(api, f"/disagreements/{ref}/notes", PRACTITIONER, body)

    assert "surrogate" in _problem(response, 422)["detail"]


@pytest.mark.parametrize("path", ["/codec/decode", "/codec/encode", "/disagreements"])
async def test_json_nested_a_thousand_deep_is_refused(api: Api, path: str) -> None:
    body = b'{"payloads": ' + b"[" * 1000 + b"]" * 1000 + b"}"

    response = await _post_raw(api, path, OPERATOR, body)

    assert "nested too deeply" in _problem(response, 400)["title"]


async def test_json_nested_within_the_limit_still_reaches_the_codec(api: Api) -> None:
    # Brackets inside strings do not count.
    body = json.dumps({"payloads": [], "note": "[" * 1000}).encode()
    response = await _post_raw(api, "/codec/encode", OPERATOR, body)
    assert response.status_code == 200, response.text
    assert response.json() == {}


async def test_explaining_a_raise_at_the_end_of_the_calendar_is_refused(api: Api) -> None:
    response = await api.get("/policies/merton/explain?raised=9999-12-31T23:00", PRACTITIONER)

    assert "raised must be between" in _problem(response, 422)["detail"]


async def test_a_garbage_page_token_is_refused_at_once(api: Api) -> None:
    for token in ("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "not a token!", "QUJD"):
        response = await api.get("/disagreements", PRACTITIONER, params={"page_token": token})
        assert "page_token" in _problem(response, 422)["detail"]


async def test_a_page_token_the_api_gave_leads_to_the_next_page(api: Api) -> None:
    await api.raise_case()
    await api.raise_case()

    async def two_listed() -> bool:
        response = await api.get("/disagreements", PRACTITIONER, params={"page_size": 2})
        return len(response.json()["items"]) == 2

    await eventually(two_listed, what="two cases listed")
    first = (await api.get("/disagreements", PRACTITIONER, params={"page_size": 1})).json()
    token = first["next_page_token"]
    assert token

    second = await api.get(
        "/disagreements", PRACTITIONER, params={"page_size": 1, "page_token": token}
    )
    assert second.status_code == 200, second.text
    assert second.json()["items"][0]["reference"] != first["items"][0]["reference"]


async def test_a_ten_megabyte_field_is_refused_before_it_is_read(api: Api) -> None:
    body = json.dumps(raise_body(summary="x" * 10_000_000)).encode()

    response = await _post_raw(api, "/disagreements", PRACTITIONER, body)

    assert "at most 512 KiB" in _problem(response, 413)["detail"]


async def test_a_streamed_body_without_a_length_is_cut_off_at_the_limit(api: Api) -> None:
    ref = await api.raise_case()

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"text": "'
        for _ in range(100):
            yield b"y" * 100_000
        yield b'"}'

    response = await _post_raw(api, f"/disagreements/{ref}/notes", PRACTITIONER, chunks())

    _problem(response, 413)


async def test_the_codec_takes_larger_bodies_but_not_unbounded_ones(api: Api) -> None:
    big = json.dumps({"payloads": [{"metadata": {}, "data": "QUJD" * 250_000}]}).encode()
    assert len(big) > 512 * 1024
    response = await _post_raw(api, "/codec/encode", OPERATOR, big)
    assert response.status_code == 200, response.text[:300]

    huge = json.dumps({"payloads": [{"metadata": {}, "data": "QUJD" * 2_500_000}]}).encode()
    _problem(await _post_raw(api, "/codec/encode", OPERATOR, huge), 413)


async def test_a_batch_of_sendgrid_events_is_not_cut_off(api: Api) -> None:
    # SendGrid batches up to 768 KB of events; unsigned, this one is refused
    # for its signature, not its size.
    events = [{"event": "delivered", "sg_event_id": "x" * 100}] * 6000
    body = json.dumps(events).encode()
    assert len(body) > 600 * 1024
    response = await api.http.post(
        "/webhooks/sendgrid", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code != 413, response.text


@pytest.mark.parametrize(
    ("child", "pointer"),
    [
        ({"name": "N" * 1_000_000}, None),  # over the body limit: 413
        ({"name": "N" * 201}, "/child/name"),
        ({"name": "A. Child", "address": "a" * 501}, "/child/address"),
        ({"name": "A. Child", "nhs_number": "9" * 21}, "/child/nhs_number"),
        ({"name": "A. Child", "date_of_birth": "2999-01-01"}, "/child/date_of_birth"),
        ({"name": "A. Child", "date_of_birth": "1850-01-01"}, "/child/date_of_birth"),
    ],
)
async def test_the_childs_details_are_bounded(
    api: Api, child: dict[str, str], pointer: str | None
) -> None:
    response = await api.post("/disagreements", PRACTITIONER, raise_body(child=child))

    if pointer is None:
        _problem(response, 413)
    else:
        problem = _problem(response, 422)
        assert [e["pointer"] for e in problem["errors"]] == [pointer], problem
        assert child.get("date_of_birth", "N" * 201) not in response.text


async def test_a_date_of_birth_in_the_future_says_what_to_do(api: Api) -> None:
    response = await api.post(
        "/disagreements",
        PRACTITIONER,
        raise_body(child={"name": "A. Child", "date_of_birth": "2999-01-01"}),
    )
    assert "must be in the past" in _problem(response, 422)["detail"]


async def test_an_agency_name_and_form_fields_are_bounded(api: Api) -> None:
    agency = {"key": "merton-health", "name": "H" * 201, "kind": "health"}
    response = await api.post("/disagreements", PRACTITIONER, raise_body(raising_agency=agency))
    _problem(response, 422)

    ref = await api.raise_case()
    too_many = {f"field-{i}": "x" for i in range(41)}
    response = await api.post(
        f"/disagreements/{ref}/resolve", PRACTITIONER, {"outcome": "Agreed.", "form": too_many}
    )
    _problem(response, 422)


@pytest.mark.parametrize(
    "deadline", ["9999-12-31T23:59:59-14:00", "9999-12-31T23:59:59+14:00", "2999-06-01T12:00Z"]
)
async def test_a_deadline_beyond_the_horizon_is_refused(api: Api, deadline: str) -> None:
    ref = await api.raise_case()

    response = await api.post(
        f"/disagreements/{ref}/deadline", PRACTITIONER, {"deadline": deadline, "reason": "Soon."}
    )

    assert "at most 366 days ahead" in _problem(response, 422)["detail"]


@pytest.mark.parametrize(
    "value", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "2999-01-01T00:00:00Z"]
)
@pytest.mark.parametrize("name", ["raised_from", "raised_to", "closed_from", "closed_to"])
async def test_a_list_filter_at_the_ends_of_the_calendar_is_refused(
    api: Api, name: str, value: str
) -> None:
    response = await api.get("/disagreements", PRACTITIONER, params={name: value})

    assert "must be between 2000-01-01 and 2200-01-01" in _problem(response, 422)["detail"]


async def test_a_deadline_at_the_start_of_the_calendar_is_refused(api: Api) -> None:
    ref = await api.raise_case()
    response = await api.post(
        f"/disagreements/{ref}/deadline",
        PRACTITIONER,
        {"deadline": "0001-01-01T00:00:00+14:00", "reason": "Soon."},
    )
    assert "must be between" in _problem(response, 422)["detail"]


def _strings_without_max_length(schema: Any, where: str, found: list[str]) -> None:
    if isinstance(schema, dict):
        unbounded = schema.get("type") == "string" and "maxLength" not in schema
        if unbounded and "enum" not in schema and schema.get("format") not in ("date", "date-time"):
            found.append(where)
        for key, value in schema.items():
            _strings_without_max_length(value, f"{where}/{key}", found)
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            _strings_without_max_length(value, f"{where}/{index}", found)


def _refs(schema: Any) -> set[str]:
    text = json.dumps(schema)
    return {part.split('"')[0] for part in text.split("#/components/schemas/")[1:]}


def test_every_string_a_person_can_send_has_a_maximum_length(app: FastAPI) -> None:
    spec = app.openapi()
    components = spec["components"]["schemas"]
    inputs: set[str] = set()
    found: list[str] = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                _strings_without_max_length(
                    parameter["schema"], f"{method} {path} {parameter['name']}", found
                )
            body = operation.get("requestBody", {}).get("content", {})
            for media in body.values():
                inputs |= _refs(media["schema"])
                _strings_without_max_length(media["schema"], f"{method} {path} body", found)
    seen: set[str] = set()
    while inputs - seen:
        name = (inputs - seen).pop()
        seen.add(name)
        inputs |= _refs(components[name])
        _strings_without_max_length(components[name], name, found)
    assert "RaiseRequest" in seen and "ChildIn" in seen
    assert not found, found
