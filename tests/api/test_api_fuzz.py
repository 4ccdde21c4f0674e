"""Schemathesis against the app's own OpenAPI schema: every route, with a
valid token for each role (and a real case, policy and form some of the
time), against the real Temporal dev server and worker. Whatever it sends,
the answer is never a 5xx, and every error is a problem detail (RFC 9457).

The generated requests are made on the test's event loop (where the worker
runs) from a thread that drives Hypothesis; generation is derandomised, so
a run is repeatable and a failure reproduces."""

from __future__ import annotations

import asyncio
import base64
import warnings
from typing import Any

import httpx
import schemathesis
from api_helpers import Api
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from escalation.settings import Settings

USERS = (
    "merton-health-practitioner",
    "merton-csc-manager",
    "merton-business-team",
    "cheshire-business-team",
    "operator",
)
EXAMPLES_PER_ROUTE = 25


def _webhook_key() -> str:
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def _check(response: httpx.Response, what: str) -> str | None:
    """What is wrong with an answer, if anything."""
    if response.status_code >= 500:
        return f"{what}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        kind = response.headers.get("content-type", "")
        if not kind.startswith("application/problem+json"):
            return f"{what}: {response.status_code} is not a problem ({kind})"
        body = response.json()
        if body.get("status") != response.status_code or not body.get("title"):
            return f"{what}: {response.status_code} problem lacks status or title: {body}"
        if not isinstance(body.get("type"), str):
            return f"{what}: {response.status_code} problem lacks a type: {body}"
    return None


async def test_no_route_answers_5xx_or_an_error_that_is_not_a_problem(
    api: Api,
    app: FastAPI,
    dev_env: WorkflowEnvironment,
    settings: Settings,
    tokens: dict[str, str],
) -> None:
    # Its own app: the fuzzing acts on cases (and a webhook key is set, so
    # the webhook answers rather than saying it is not configured).
    fuzzed = create_app(
        settings.model_copy(update={"sendgrid_webhook_public_key": _webhook_key()}),
        client=dev_env.client,
    )
    cases = [await api.raise_case() for _ in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        schema = schemathesis.openapi.from_dict(app.openapi())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    loop = asyncio.get_running_loop()
    failures: list[str] = []
    counts: dict[str, int] = {}

    async with fuzzed.router.lifespan_context(fuzzed):
        transport = httpx.ASGITransport(app=fuzzed)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:

            async def send(kwargs: dict[str, Any]) -> httpx.Response:
                headers = dict(kwargs.get("headers") or {})
                if kwargs.get("cookies"):
                    headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in kwargs["cookies"].items())
                return await http.request(
                    kwargs["method"],
                    kwargs["url"],
                    params=kwargs.get("params"),
                    headers=headers,
                    json=kwargs.get("json"),
                    content=kwargs.get("data") if "json" not in kwargs else None,
                    timeout=60,
                )

            def fuzz() -> None:
                # Valid requests, then ones that break the schema on purpose.
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                    for operation in operations:
                        fuzz_one(operation, f"{operation.method.upper()} {operation.path}", mode)

            def fuzz_one(operation: Any, name: str, mode: GenerationMode) -> None:
                @hypothesis_settings(
                    max_examples=EXAMPLES_PER_ROUTE,
                    deadline=None,
                    database=None,
                    derandomize=True,
                    suppress_health_check=list(HealthCheck),
                )
                @given(
                    case=operation.as_strategy(generation_mode=mode),
                    user=st.sampled_from(USERS),
                    real=st.booleans(),
                    ref=st.sampled_from(cases),
                )
                def run(case: Any, user: str, real: bool, ref: str) -> None:
                    parameters = case.path_parameters or {}
                    if real and "reference" in parameters:
                        parameters["reference"] = ref
                    if real and "policy_id" in parameters:
                        parameters["policy_id"] = "merton"
                    if real and "form" in parameters:
                        parameters["form"] = "escalation-pro-forma"
                    kwargs = case.as_transport_kwargs(
                        base_url="http://api.test",
                        headers={"Authorization": f"Bearer {tokens[user]}"},
                    )
                    response = asyncio.run_coroutine_threadsafe(send(kwargs), loop).result(120)
                    counts[name] = counts.get(name, 0) + 1
                    problem = _check(response, f"{name} ({mode.value}) as {user} ({kwargs['url']})")
                    if problem:
                        failures.append(problem)

                try:
                    run()
                except Unsatisfiable:
                    # A route with nothing to get wrong (no parameters, no body).
                    if mode is GenerationMode.POSITIVE:
                        raise

            await asyncio.to_thread(fuzz)

    assert not failures, "\n".join(failures[:20])
    # Every route was exercised.
    assert set(counts) == {f"{o.method.upper()} {o.path}" for o in operations}
    assert min(counts.values()) >= 10, counts
