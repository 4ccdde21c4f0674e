"""``python -m chaos`` (``make chaos``): the chaos drill.

On the embedded stack of ``make bench`` (``bench.stack``: dev server, worker,
API, the SendGrid stand-in ``bench.capture``), all on loopback:

1. raise CHAOS_CASES open cases through the API, spread over the five
   policies, each by a practitioner of its raising agency;
2. for CHAOS_SECONDS: move most cases' deadlines into the run (two in a row
   where there is time), send manager actions throughout (notes around each
   deadline, acknowledgements, resolutions and confirmations, escalations,
   withdrawals, immediate risk), and at random instants SIGKILL the worker
   (restarting it at once) CHAOS_WORKER_KILLS times and restart the dev
   server CHAOS_SERVER_RESTARTS times (SIGKILL and SIGTERM in turn);
3. wait, bounded, until every deadline due has been acted on and the
   register has caught up with every case;
4. judge (``chaos.verdict``): each email the record requires arrived once,
   every deadline fired, the largest lag after each recovery, every history
   replays. It prints a table and exits 1 on any loss, duplicate, missed
   deadline or replay failure, or a recovery slower than
   CHAOS_RECOVERY_LIMIT seconds (10; 0 leaves recovery out of the verdict),
   counted from the last worker SIGKILL before the cases answered (a kill
   before they were picked up killed the worker taking them over); the
   table gives it counted from their deadline or request too.

Every request loop is bounded in count and time; every process is stopped
by its own id. Logs, the SQLite files and the capture stay in
``chaos/results/run/`` until the next run; the table in
``chaos/results/latest.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

from api.cases import workflow_id
from api.users import StoredUser, hash_token, new_token, write_users
from bench.stack import Stack, StackError
from bench.stats import CaptureLog, CpuMeter, env_float, env_int, percentile, say
from chaos import verdict as v
from escalation.converter import data_converter
from escalation.settings import Settings
from policies.directory import example_directory
from workflows.messages import CaseState

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"

# The five policies, each with an area and the two agencies of its cases
# (agency keys as the example role directory has them).
PARTIES: dict[str, tuple[str, str]] = {
    "merton": ("merton", "merton"),
    "staffordshire-stoke": ("staffordshire", "staffordshire"),
    "cheshire": ("cheshire-west", "cheshire-west"),
    "wirral": ("wirral", "wirral"),
    "hillingdon": ("hillingdon", "hillingdon"),
}
DRILL_REASON = "Chaos drill"


@dataclass
class Config:
    cases: int = 200
    worker_kills: int = 50
    server_restarts: int = 5
    seconds: float = 540.0
    seed: int = 0
    # A recovery slower than this fails the drill (0: reported only).
    recovery_limit: float = 10.0
    # How long to wait after the run for deadlines due and the register.
    drain_limit: float = 240.0

    @classmethod
    def from_env(cls) -> Config:
        return cls(
            cases=env_int("CHAOS_CASES", cls.cases),
            worker_kills=env_int("CHAOS_WORKER_KILLS", cls.worker_kills),
            server_restarts=env_int("CHAOS_SERVER_RESTARTS", cls.server_restarts),
            seconds=env_float("CHAOS_SECONDS", cls.seconds),
            seed=env_int("CHAOS_SEED", int(time.time())),
            recovery_limit=env_float("CHAOS_RECOVERY_LIMIT", cls.recovery_limit),
            drain_limit=env_float("CHAOS_DRAIN_LIMIT", cls.drain_limit),
        )


# --- The people ---------------------------------------------------------------------


@dataclass(frozen=True)
class Party:
    policy: str
    area: str
    raising: str
    receiving: str

    @property
    def raiser(self) -> str:
        return f"{self.policy}-raiser"

    @property
    def raising_manager(self) -> str:
        return f"{self.policy}-raising-manager"

    @property
    def manager(self) -> str:
        return f"{self.policy}-receiving-manager"

    def raise_body(self, n: int) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "area": self.area,
            "raising_agency": {"key": self.raising, "name": "Health", "kind": "health"},
            "receiving_agency": {
                "key": self.receiving,
                "name": "Children's social care",
                "kind": "childrens-social-care",
            },
            "categories": ["thresholds"],
            "summary": f"{DRILL_REASON}: case {n}.",
            "decision_disputed": "The referral was closed with no further action.",
            "child": {"name": "Chaos Child", "date_of_birth": "2019-04-01"},
        }


def parties() -> list[Party]:
    return [
        Party(policy, area, f"{prefix}-health", f"{prefix}-childrens-social-care")
        for policy, (area, prefix) in PARTIES.items()
    ]


def write_people(data_dir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The drill's users (a practitioner and a manager of each agency of each
    policy) in the API's users file: (tokens, emails) by user id."""
    users: list[StoredUser] = []
    tokens: dict[str, str] = {}
    for p in parties():
        for uid, agency, role in (
            (p.raiser, p.raising, "practitioner"),
            (p.raising_manager, p.raising, "manager"),
            (p.manager, p.receiving, "manager"),
        ):
            tokens[uid] = new_token()
            users.append(
                StoredUser(
                    id=uid,
                    name=uid.replace("-", " ").title(),
                    email=f"{uid}@chaos.example.org",
                    agency=agency,
                    partnership=p.policy,
                    role=role,
                    token_sha256=hash_token(tokens[uid]),
                )
            )
    write_users(data_dir / "users.yaml", users)
    return tokens, {u.id: str(u.email) for u in users}


# --- Talking to the API ---------------------------------------------------------------


@dataclass
class Tally:
    sent: Counter[str] = field(default_factory=Counter)
    outcome: Counter[str] = field(default_factory=Counter)
    # The first few refusals and failures, for the details.
    samples: list[str] = field(default_factory=list)
    # (sent, seconds until answered) of every manager action, tries included.
    answers: list[tuple[float, float]] = field(default_factory=list)

    def note(self, what: str, status: int, text: str) -> None:
        if len(self.samples) < 20:
            self.samples.append(f"{what} {status}: {text[:200]}")

    def line(self) -> str:
        return ", ".join(f"{k} {n}" for k, n in sorted(self.outcome.items()))


class Api:
    # A request that meets a restarting server or a worker that is down is
    # tried again this many times, a second or more apart.
    ATTEMPTS = 6

    def __init__(self, base_url: str, tokens: dict[str, str]) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(40.0))
        self.tokens = tokens
        self.tally = Tally()

    async def post(
        self, user: str, path: str, body: dict[str, Any], what: str, key: str | None = None
    ) -> Any:
        """The answer's JSON on success, else None; 409 (a refusal, recorded
        on the case) and 422 are answers, not failures."""
        self.tally.sent[what] += 1
        headers = {"Authorization": f"Bearer {self.tokens[user]}"}
        if key:
            # A raise tried again after a lost answer is the same case.
            headers["Idempotency-Key"] = key
        sent = time.time()
        for attempt in range(self.ATTEMPTS):
            try:
                response = await self.http.post(path, json=body, headers=headers)
            except httpx.HTTPError:
                status = 0
            else:
                status = response.status_code
                if (status < 300 or status in (409, 422)) and what != "raise":
                    self.tally.answers.append((sent, time.time() - sent))
                if status < 300:
                    self.tally.outcome["ok"] += 1
                    return response.json()
                if status in (409, 422):
                    self.tally.outcome[f"refused ({status})"] += 1
                    self.tally.note(what, status, response.text)
                    return None
            if attempt + 1 < self.ATTEMPTS:
                await asyncio.sleep(1.0 + attempt)
        self.tally.answers.append((sent, time.time() - sent))
        self.tally.outcome[f"gave up ({status or 'no answer'})"] += 1
        self.tally.note(what, status, "gave up")
        return None

    async def close(self) -> None:
        await self.http.aclose()


# --- What happens when ---------------------------------------------------------------


@dataclass(order=True)
class Planned:
    at: float  # seconds after the run opens
    user: str = field(compare=False)
    reference: str = field(compare=False)
    verb: str = field(compare=False)
    body: dict[str, Any] = field(compare=False)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def plan_actions(
    rng: random.Random, cases: list[tuple[str, Party]], opens: float, seconds: float
) -> list[Planned]:
    """Seven in ten cases get their deadline moved into the run (and again
    once it has fired, when there is time) with notes arriving around each
    deadline; the rest get the other manager actions at random instants."""
    plan: list[Planned] = []

    def at(t: float, user: str, ref: str, verb: str, body: dict[str, Any]) -> None:
        plan.append(Planned(t, user, ref, verb, body))

    def deadline(t: float, due: float, p: Party, ref: str) -> None:
        body = {"deadline": _iso(opens + due), "reason": f"{DRILL_REASON}: deadline moved."}
        at(t, p.manager, ref, "deadline", body)
        for user in (p.manager, p.raiser):
            note = {"text": f"{DRILL_REASON}: a note as the deadline passes."}
            at(due + rng.uniform(-1.5, 3.0), user, ref, "notes", note)

    for ref, p in cases:
        if rng.random() < 0.7:
            first = rng.uniform(2.0, max(3.0, seconds - 110.0))
            due = first + rng.uniform(20.0, 45.0)
            deadline(first, due, p, ref)
            second = due + rng.uniform(15.0, 25.0)
            due2 = second + rng.uniform(20.0, 45.0)
            if due2 < seconds - 10.0:
                deadline(second, due2, p, ref)
            if rng.random() < 0.5:
                at(rng.uniform(1.0, seconds - 10.0), p.manager, ref, "acknowledge", {})
            continue
        t0 = rng.uniform(1.0, seconds * 0.5)
        at(t0, p.manager, ref, "acknowledge", {"note": f"{DRILL_REASON}: received."})
        at(t0 + rng.uniform(2.0, 20.0), p.raiser, ref, "notes", {"text": f"{DRILL_REASON}."})
        t1 = t0 + rng.uniform(20.0, 60.0)
        choice = rng.choice(["resolve", "escalate", "withdraw", "immediate-risk", "pre-empted"])
        reason = {"reason": f"{DRILL_REASON}: {choice}."}
        if choice == "resolve":
            at(t1, p.manager, ref, "resolve", {"outcome": f"{DRILL_REASON}: agreed."})
            at(t1 + rng.uniform(5.0, 30.0), p.manager, ref, "confirm", {})
        elif choice == "escalate":
            at(t1, p.raising_manager, ref, "escalate", reason)
        elif choice == "withdraw":
            at(t1, p.raiser, ref, "withdraw", reason)
        elif choice == "immediate-risk":
            at(t1, p.raising_manager, ref, "immediate-risk", reason)
        else:
            # A deadline that a resolution makes moot before it passes.
            due = t1 + rng.uniform(30.0, 50.0)
            body = {"deadline": _iso(opens + due), "reason": f"{DRILL_REASON}: deadline moved."}
            at(t1, p.manager, ref, "deadline", body)
            at(t1 + 10.0, p.manager, ref, "resolve", {"outcome": f"{DRILL_REASON}: agreed."})
    plan.sort()
    return [a for a in plan if a.at < seconds]


@dataclass(order=True)
class Disruption:
    at: float
    kind: str = field(compare=False)  # "worker SIGKILL" | "server SIGKILL" | "server SIGTERM"


def plan_disruptions(
    rng: random.Random, kills: int, restarts: int, seconds: float
) -> list[Disruption]:
    """Each disruption at a random instant in its own slot of the run, so a
    restart has time to complete before the next one."""
    slots = kills + restarts
    if slots == 0:
        return []
    width = (seconds - 10.0) / slots
    servers = set(rng.sample(range(slots), restarts))
    out, n = [], 0
    for i in range(slots):
        when = 5.0 + (i + rng.uniform(0.1, 0.9)) * width
        if i in servers:
            out.append(Disruption(when, f"server {'SIGKILL' if n % 2 == 0 else 'SIGTERM'}"))
            n += 1
        else:
            out.append(Disruption(when, "worker SIGKILL"))
    return out


# --- The run -----------------------------------------------------------------------------


@dataclass
class Run:
    cfg: Config
    stack: Stack
    api: Api
    opens: float = 0.0
    raised: list[str] = field(default_factory=list)
    # (instant, back in service, what) of each disruption.
    disruptions: list[tuple[float, float, str]] = field(default_factory=list)
    worker_died_alone: int = 0
    stopped: bool = False

    def elapsed(self) -> float:
        return time.time() - self.opens


async def raise_cases(run: Run, rng: random.Random) -> list[tuple[str, Party]]:
    people = parties()
    semaphore = asyncio.Semaphore(8)
    cases: list[tuple[str, Party]] = []

    async def one(n: int) -> None:
        p = people[n % len(people)]
        async with semaphore:
            answer = await run.api.post(
                p.raiser, "/disagreements", p.raise_body(n), "raise", key=f"chaos-{n}"
            )
        if answer:
            cases.append((str(answer["reference"]), p))
            if len(cases) % max(1, run.cfg.cases // 5) == 0:
                say(f"    raised {len(cases)}/{run.cfg.cases}")

    await asyncio.wait_for(
        asyncio.gather(*(one(n) for n in range(run.cfg.cases))), 60 + run.cfg.cases
    )
    rng.shuffle(cases)
    return cases


async def carry_out(run: Run, plan: list[Planned]) -> None:
    semaphore = asyncio.Semaphore(16)

    async def one(a: Planned) -> None:
        async with semaphore:
            await run.api.post(a.user, f"/disagreements/{a.reference}/{a.verb}", a.body, a.verb)

    tasks = []
    for action in plan:
        delay = run.opens + action.at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(action)))
    await asyncio.gather(*tasks)


async def disrupt(run: Run, plan: list[Disruption]) -> None:
    stack = run.stack
    for d in plan:
        while time.time() < run.opens + d.at:
            await asyncio.sleep(min(0.5, run.opens + d.at - time.time()))
            await _revive_worker(run)
        at = time.time()
        if d.kind == "worker SIGKILL":
            await asyncio.to_thread(stack.kill, "worker", signal.SIGKILL)
            await asyncio.to_thread(stack.restart, "worker")
        else:
            sig = signal.SIGKILL if d.kind.endswith("SIGKILL") else signal.SIGTERM
            await asyncio.to_thread(stack.kill, "server", sig)
            await asyncio.sleep(1.0)
            await asyncio.to_thread(stack.restart, "server")
        run.disruptions.append((at, time.time(), d.kind))


async def _revive_worker(run: Run) -> None:
    """A worker that exits by itself is a finding: counted, and restarted so
    the drill goes on."""
    if not run.stack.worker.running():
        run.worker_died_alone += 1
        say(f"    the worker exited by itself:\n{run.stack.worker.tail(5)}")
        await asyncio.to_thread(run.stack.restart, "worker")


async def show_progress(run: Run, capture: CaptureLog, every: float = 15.0) -> None:
    while not run.stopped:
        await asyncio.sleep(every)
        capture.poll()
        kinds = Counter(k.split()[0] for _, _, k in run.disruptions)
        say(
            f"    [{run.elapsed():4.0f}s/{run.cfg.seconds:.0f}s] worker kills "
            f"{kinds['worker']}/{run.cfg.worker_kills}, server restarts "
            f"{kinds['server']}/{run.cfg.server_restarts}; actions "
            f"{sum(run.api.tally.sent.values())} ({run.api.tally.line()}); "
            f"emails {len(capture.records)}"
        )


async def drain(run: Run, limit: float) -> None:
    """Until every deadline due has been acted on, bounded."""
    give_up = time.time() + limit
    waiting = -1
    while time.time() < give_up:
        record = await asyncio.to_thread(v.read_register, run.stack.register_url)
        due = [
            d
            for d in v.deadlines(record, {}, time.time())
            if d.outcome in ("missed", "not-yet-due")
        ]
        if not due:
            return
        if len(due) != waiting:
            say(f"    {len(due)} deadlines still to fire")
            waiting = len(due)
        await _revive_worker(run)
        await asyncio.sleep(2.0)


async def caught_up(run: Run, client: Client, limit: float) -> list[str]:
    """Until the register holds every event of every case, bounded: the
    references it still lags behind on."""
    give_up = time.time() + limit
    behind = list(run.raised)
    while behind and time.time() < give_up:
        record = await asyncio.to_thread(v.read_register, run.stack.register_url)
        still = []
        for ref in behind:
            case = record.cases.get(ref)
            if case is None:
                still.append(ref)
                continue
            if case.status in ("resolved", "withdrawn"):
                continue
            state = await client.get_workflow_handle(workflow_id(ref)).query(
                "state", result_type=CaseState
            )
            if case.recorded_seq < state.next_seq - 1:
                still.append(ref)
        behind = still
        if behind:
            say(f"    the register is behind on {len(behind)} cases")
            await asyncio.sleep(2.0)
    return behind


@dataclass
class Result:
    cfg: Config
    raised: int
    in_register: int
    not_caught_up: list[str]
    emails: v.Emails
    deadlines: list[v.Deadline]
    recoveries: list[v.Recovery]
    replay_failures: dict[str, str]
    worker_died_alone: int
    actions: Tally
    cpu: dict[str, Any]
    run_s: float

    @property
    def fired(self) -> list[v.Deadline]:
        return [d for d in self.deadlines if d.outcome == "fired"]

    @property
    def missed(self) -> list[v.Deadline]:
        return [d for d in self.deadlines if d.outcome in ("missed", "early", "not-yet-due")]

    def slow(self) -> list[v.Recovery]:
        limit = self.cfg.recovery_limit
        return [r for r in self.recoveries if limit and r.worst is not None and r.worst > limit]

    def failures(self) -> list[str]:
        out = []
        if self.raised < self.cfg.cases:
            out.append(f"{self.cfg.cases - self.raised} cases could not be raised")
        if self.in_register < self.raised:
            out.append(f"{self.raised - self.in_register} raised cases missing from the register")
        if self.not_caught_up:
            out.append(f"the register is behind on {len(self.not_caught_up)} cases")
        if self.emails.losses:
            out.append(f"{self.emails.losses} emails lost")
        if self.emails.duplicates:
            out.append(f"{self.emails.duplicates} emails sent twice")
        if self.missed:
            out.append(f"{len(self.missed)} deadlines not acted on at their instant")
        if self.replay_failures:
            out.append(f"{len(self.replay_failures)} histories fail to replay")
        if self.worker_died_alone:
            out.append(f"the worker exited by itself {self.worker_died_alone} times")
        if self.slow():
            out.append(f"{len(self.slow())} recoveries slower than {self.cfg.recovery_limit:.0f} s")
        return out

    def table(self) -> str:
        e = self.emails
        lags = [d.lag for d in self.fired if d.lag is not None]
        kills = [r for r in self.recoveries if r.kind.startswith("worker")]
        servers = [r for r in self.recoveries if r.kind.startswith("server")]

        def worst(rs: list[v.Recovery], since_last: bool) -> str:
            if not rs:
                return "-"
            if since_last:
                lags = [r.max_lag_since_last for r in rs if r.max_lag_since_last is not None]
                waits = [r.max_answer_since_last for r in rs if r.max_answer_since_last is not None]
            else:
                lags = [r.max_lag for r in rs if r.max_lag is not None]
                waits = [r.max_answer for r in rs if r.max_answer is not None]
            parts = []
            if lags:
                parts.append(
                    f"largest deadline lag after each: median {percentile(lags, 50):.1f} s, "
                    f"max {max(lags):.1f} s ({len(lags)} of {len(rs)} had a deadline due)"
                )
            if waits:
                parts.append(
                    f"slowest answer to an action after each: median "
                    f"{percentile(waits, 50):.1f} s, max {max(waits):.1f} s"
                )
            return "; ".join(parts) or "nothing was due after them"

        def back(rs: list[v.Recovery]) -> str:
            if not rs:
                return "-"
            took = [r.back_at - r.at for r in rs]
            p50 = percentile(took, 50)
            return f"back in service after median {p50:.1f} s, max {max(took):.1f} s"

        outcome = Counter(d.outcome for d in self.deadlines)
        rows = [
            ("Cases raised (in the register)", f"{self.raised} ({self.in_register})"),
            (
                "Requests (raises and manager actions)",
                f"{sum(self.actions.sent.values())} sent: {self.actions.line()}",
            ),
            ("Worker SIGKILLs", f"{len(kills)}; {back(kills)}"),
            ("Dev server restarts", f"{len(servers)}; {back(servers)}"),
            ("Emails the record requires", str(e.required)),
            ("Emails received", str(e.arrived)),
            ("Lost", f"{e.losses} (notices the record marks failed: {len(e.failed)})"),
            ("Sent twice (same email)", str(len(e.twice))),
            ("Sent again under another notice id", _again(e.again_under_another_id)),
            ("Not in the record", str(len(e.not_in_record))),
            (
                "Deadlines set",
                f"{len(self.deadlines)}: fired {outcome['fired']}, moved on first "
                f"{outcome['moved-first']}, missed {len(self.missed)}",
            ),
            (
                "Deadline to notice",
                f"p50 {percentile(lags, 50):.2f} s, p99 {percentile(lags, 99):.2f} s, "
                f"max {max(lags):.2f} s"
                if lags
                else "-",
            ),
            (
                "Recovery after a worker SIGKILL, from the deadline or request",
                worst(kills, since_last=False),
            ),
            (
                "Recovery after a worker SIGKILL, from the last SIGKILL before the answer",
                worst(kills, since_last=True),
            ),
            (
                "Recovery after a dev server restart, from the deadline or request",
                worst(servers, since_last=False),
            ),
            (
                "Recovery after a dev server restart, from the last worker SIGKILL before "
                "the answer",
                worst(servers, since_last=True),
            ),
            (
                "Histories replayed",
                f"{self.raised - len(self.replay_failures)}/{self.raised}",
            ),
            ("Worker exits nobody caused", str(self.worker_died_alone)),
            (
                "Machine",
                f"{os.cpu_count()} CPUs, busy {self.cpu.get('machine_busy_pct', '?')}% "
                f"from the run's start to the end of the drain ({self.cpu.get('wall_s')} s)",
            ),
        ]
        lines = ["| Measure | Result |", "| --- | --- |"]
        lines += [f"| {a} | {b} |" for a, b in rows]
        return "\n".join(lines)

    def details(self, limit: int = 10) -> str:
        out = []
        missed = self.missed
        for title, items in (
            ("lost", self.emails.lost + self.emails.failed),
            ("sent twice", self.emails.twice),
            ("sent again under another notice id", self.emails.again_under_another_id),
            ("not in the record", self.emails.not_in_record),
            ("deadlines missed", [f"{d.reference} stage {d.stage} {d.outcome}" for d in missed]),
            ("replay failures", [f"{k}: {m}" for k, m in self.replay_failures.items()]),
            ("register behind", self.not_caught_up),
            ("requests refused or given up (first 20)", self.actions.samples),
        ):
            if items:
                out.append(f"{title} ({len(items)}):")
                out += [f"  {i}" for i in items[:limit]]
        return "\n".join(out)


def _again(emails: list[str]) -> str:
    """How many emails, and of how many notices of how many cases."""
    if not emails:
        return "0"
    notices = {line.split(" (", 1)[1].split("~", 1)[0] for line in emails}
    cases = {line.split(" ", 1)[0] for line in emails}
    return f"{len(emails)} ({len(notices)} notices of {len(cases)} cases)"


def as_json(result: Result) -> dict[str, Any]:
    """The run's figures, for a closer look than the table gives."""
    return {
        "config": vars(result.cfg),
        "failures": result.failures(),
        "emails": {k: x for k, x in vars(result.emails).items() if k != "first_arrival"},
        "deadlines": [vars(d) for d in result.deadlines],
        "recoveries": [vars(r) for r in result.recoveries],
        "replay_failures": result.replay_failures,
        "actions": {"sent": result.actions.sent, "outcome": result.actions.outcome},
        "cpu": result.cpu,
    }


async def drill(
    cfg: Config, stack: Stack, tokens: dict[str, str], emails_of: dict[str, str]
) -> Result:
    rng = random.Random(cfg.seed)
    api = Api(stack.api_url, tokens)
    converter = data_converter(
        Settings(ESCALATION_CODEC_KEYS=stack.codec_keys, ESCALATION_DATA_DIR=str(stack.data_dir))
    )
    client = await Client.connect(stack.temporal_address, data_converter=converter)
    capture = CaptureLog(stack.capture_file)
    run = Run(cfg, stack, api)
    try:
        say(f"\n[raise] {cfg.cases} cases across {', '.join(PARTIES)}")
        cases = await raise_cases(run, rng)
        run.raised = [ref for ref, _ in cases]
        run.opens = time.time() + 2.0
        actions = plan_actions(rng, cases, run.opens, cfg.seconds)
        disruptions = plan_disruptions(rng, cfg.worker_kills, cfg.server_restarts, cfg.seconds)
        say(
            f"\n[run] {cfg.seconds:.0f}s: {len(actions)} manager actions, "
            f"{cfg.worker_kills} worker SIGKILLs, {cfg.server_restarts} dev server restarts"
        )
        # Restarted processes have new ids: the machine's busy share is the figure.
        meter = CpuMeter({})
        meter.start()
        progress = asyncio.create_task(show_progress(run, capture))
        try:
            await asyncio.gather(carry_out(run, actions), disrupt(run, disruptions))
            while time.time() < run.opens + cfg.seconds:
                await asyncio.sleep(0.5)
                await _revive_worker(run)
            ends = time.time()
            say(f"\n[drain] until every deadline due has fired (at most {cfg.drain_limit:.0f}s)")
            await drain(run, cfg.drain_limit)
        finally:
            run.stopped = True
            progress.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await progress
        cpu = meter.stop()
        behind = await caught_up(run, client, 120.0)
        checked_at = time.time()
        say("\n[verdict] the record against the capture; replaying every history")
        record = await asyncio.to_thread(v.read_register, stack.register_url)
        capture.poll()
        expected = v.expected_emails(record, example_directory(), emails_of)
        emails = v.compare(record, expected, capture.records)
        dls = v.deadlines(record, emails.first_arrival, checked_at)
        fired = [d for d in dls if d.outcome == "fired"]
        recs = v.recoveries(fired, api.tally.answers, run.disruptions, ends)
        failures = await v.replay_all(client, run.raised, converter)
        return Result(
            cfg=cfg,
            raised=len(run.raised),
            in_register=sum(1 for r in run.raised if r in record.cases),
            not_caught_up=behind,
            emails=emails,
            deadlines=dls,
            recoveries=recs,
            replay_failures=failures,
            worker_died_alone=run.worker_died_alone,
            actions=api.tally,
            cpu=cpu,
            run_s=ends - run.opens,
        )
    finally:
        await api.close()


def run_drill(cfg: Config, data_dir: Path) -> Result:
    """Start the stack in ``data_dir``, run the drill, stop everything."""
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    tokens, emails_of = write_people(data_dir)
    stack = Stack(data_dir, baseline=False)
    say(f"Starting the stack in {data_dir} ...")
    try:
        stack.start()
        say(f"    Temporal {stack.temporal_address}, API {stack.api_url}")
        return asyncio.run(drill(cfg, stack, tokens, emails_of))
    finally:
        stack.stop()


def main() -> int:
    cfg = Config.from_env()
    say(
        f"Chaos drill: {cfg.cases} cases, {cfg.worker_kills} worker SIGKILLs, "
        f"{cfg.server_restarts} dev server restarts over {cfg.seconds:.0f}s (seed {cfg.seed})"
    )
    try:
        result = run_drill(cfg, RESULTS / "run")
    except StackError as exc:
        say(f"\nThe stack failed: {exc}")
        return 2
    text = result.table()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.md").write_text(text + "\n", encoding="utf-8")
    (RESULTS / "latest.json").write_text(
        json.dumps(as_json(result), indent=1, default=str), encoding="utf-8"
    )
    say("\n" + text)
    details = result.details()
    if details:
        say("\n" + details)
    failures = result.failures()
    if failures:
        say("\nFAILED: " + "; ".join(failures))
        return 1
    say("\nPASSED: nothing lost, nothing sent twice, every deadline fired, every history replays.")
    return 0
