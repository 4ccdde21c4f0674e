"""Listing a register of 10,000 cases: ``GET /disagreements`` filtered by
partnership and status, a page of 50, as the business team would ask.

The register is a SQLite file (the embedded default) filled through
``Register.record``, the workflow's own door: 10,000 cases across the five
partnerships, open and closed, each with its raise's events. The API runs
in-process (no network in the figure) with the demo users; each request is
timed from the client's side. ``python -m bench.register_list`` runs it
alone; ``make bench`` runs it as its ``register`` scenario.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from api.main import create_app
from api.users import ensure_demo_users
from escalation.codec import KeyRing
from escalation.settings import Settings
from policies.loader import builtin_policies
from register import Register
from register.migrate import upgrade
from workflows import ladder
from workflows.messages import Actor, Agency, CaseEvent, CaseStatus, RaiseDisagreement, RecordCase

CASES = 10_000
REQUESTS = 200
PAGE = 50
STATUSES: tuple[CaseStatus, ...] = (
    "open",
    "open",
    "open",
    "overdue",
    "awaiting-confirmation",
    "resolved",
    "withdrawn",
)


def _case(policy_id: str, i: int, at: datetime) -> RecordCase:
    policy = builtin_policies()[policy_id]
    raising = Agency(key=f"{policy_id[:8]}-health", name="Health", kind="health")
    receiving = Agency(
        key=f"{policy_id[:8]}-csc", name="Children's social care", kind="childrens-social-care"
    )
    request = RaiseDisagreement(
        reference=f"BEN-{i:08d}",
        policy=policy,
        area=policy.areas[0].key,
        raised_by=Actor(id="p1", name="P", agency=raising.key, role="practitioner"),
        raising_agency=raising,
        receiving_agency=receiving,
        categories=[random.choice(["thresholds", "housing", "health", "education"])],
        summary="A benchmark case",
        raised_at=at,
    )
    state = ladder.new_state(request, at)
    state.status = random.choice(STATUSES)
    state.clock.deadline = at + timedelta(days=random.randint(1, 30))
    if state.status in ("resolved", "withdrawn"):
        state.closed_at = at + timedelta(days=3)
    for kind in ("raised", "stage_started", "notice"):
        state.events.append(CaseEvent(seq=state.next_seq, at=at, type=kind, stage=0))
        state.next_seq += 1
    return RecordCase(case=state, after_seq=0)


def seed(register: Register, n: int) -> float:
    began = time.monotonic()
    policies = sorted(builtin_policies())
    start = datetime(2026, 1, 5, 9, tzinfo=UTC)
    for i in range(n):
        register.record(_case(policies[i % len(policies)], i, start + timedelta(minutes=37 * i)))
    return time.monotonic() - began


async def measure(data_dir: Path, register: Register, requests: int) -> dict[str, Any]:
    settings = Settings(
        _env_file=None,
        ESCALATION_DATA_DIR=str(data_dir),
        ESCALATION_API_SECRET=uuid.uuid4().hex + uuid.uuid4().hex,
        TEMPORAL_ADDRESS="127.0.0.1:9",  # lists never touch Temporal
    )
    app = create_app(settings, register=register)
    token = {u.id: t for u, t in ensure_demo_users(data_dir)}["merton-business-team"]
    headers = {"Authorization": f"Bearer {token}"}
    timings: dict[str, list[float]] = {"open": [], "resolved": [], "deadline": []}
    params: dict[str, dict[str, str | int | list[str]]] = {
        "open": {"partnership": "merton", "status": ["open", "overdue"], "page_size": PAGE},
        "resolved": {"partnership": "merton", "status": "resolved", "page_size": PAGE},
        "deadline": {
            "partnership": "merton",
            "status": "open",
            "sort": "deadline",
            "page_size": PAGE,
        },
    }
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            for query in params.values():
                response = await http.get("/disagreements", params=query, headers=headers)
                assert response.status_code == 200, response.text
            for i in range(requests):
                for name, query in params.items():
                    began = time.perf_counter()
                    response = await http.get("/disagreements", params=query, headers=headers)
                    timings[name].append((time.perf_counter() - began) * 1000)
                    assert response.status_code == 200
                if (i + 1) % (requests // 4) == 0:
                    print(f"    {i + 1}/{requests} rounds of lists", flush=True)
    return {
        name: {
            "p50_ms": round(statistics.median(values), 1),
            "p95_ms": round(statistics.quantiles(values, n=20)[18], 1),
        }
        for name, values in timings.items()
    }


def scenario_register(cases: int = CASES, requests: int = REQUESTS) -> dict[str, Any]:
    random.seed(7)
    with tempfile.TemporaryDirectory(prefix="bench-register-") as folder:
        data_dir = Path(folder)
        url = f"sqlite:///{data_dir / 'register.sqlite3'}"
        upgrade(url)
        register = Register.from_url(url, KeyRing.generate())
        print(f"  Register: seeding {cases} cases through Register.record ...", flush=True)
        seeded = seed(register, cases)
        print(f"    seeded in {seeded:.1f}s; listing, {requests} rounds ...", flush=True)
        lists = asyncio.run(measure(data_dir, register, requests))
        register.close()
    return {"cases": cases, "page_size": PAGE, "seed_s": round(seeded, 1), "lists": lists}


if __name__ == "__main__":
    cases = int(os.environ.get("BENCH_REGISTER_CASES", CASES))
    print(scenario_register(cases))
