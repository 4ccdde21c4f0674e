"""The canary test: a child's identifying details never sit in the
clear anywhere the running system keeps data.

Starts the real stack as `make run` does (Temporal's dev server persisted to
a SQLite file, the worker, the API), raises cases under all five policies
through the HTTP API with a distinctive fake child, and a distinct canary in
every free-text field (each also naming the child, as practitioners do), and
takes them through acknowledgement, notes, immediate risk, a shortened
deadline that escalates by itself for real, manual escalation (with forms),
resolution, written confirmation and withdrawal. Once every notice is sent it
stops the stack and searches every file in the data folder (the SQLite
database with any -wal/-shm, the server's, worker's and API's logs, the
users and key files, the notices in the outbox) and the launcher's own
output, as bytes, for the canaries in plain text (any case) and in base64
(at every alignment): zero hits. The notices are emails, so each is also
read as one: its headers and text parts decoded (quoted-printable can split
a word across lines) and searched too.

One place may carry the child: the PDF of a partnership's
form attached to the business team's email, where the source form has
fields for the child's details. The test reads those PDFs and holds them to
exactly that (see ``check_form_attachments``).

Positive controls, so that the test proves encryption rather than absence:
the product's converter (with the stack's key file) reads the child back
from each workflow's history, and a note back from its update; the database
holds the encrypted payloads' ``binary/encrypted`` marker and the workflow
ids in the clear (so it is searchable as it lies); `temporal workflow show`
without the codec shows ``binary/encrypted`` payloads and no canary; and the
form PDFs are shown to have been read.

An operator who leaves out the codec endpoint is refused: a note about the
child sent as an update never enters the case (its canary is searched for
with the others), and one sent as a signal is recorded as refused.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from canary_helpers import (
    Attachment,
    Hit,
    Stack,
    needles,
    read_tokens,
    search,
    search_files,
    search_text,
)
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from escalation.codec import ENCODING
from escalation.converter import data_converter
from escalation.temporal_bin import temporal_cli
from policies.loader import get_policy
from workflows.messages import AddNote, RaiseDisagreement

CHILD = {
    "name": "Zanzibar Quillfeather-Canary",
    "date_of_birth": "2015-03-17",
    "address": "17 Canary Wharf Lane, Nowhere",
    "nhs_number": "943 476 5919",
}

# The child's details in every form they might be written in.
IDENTITY = {
    "child name": CHILD["name"],
    "child first name": "Zanzibar",
    "child surname": "Quillfeather",
    "address": CHILD["address"],
    "address street": "Canary Wharf Lane",
    "NHS number (spaced)": CHILD["nhs_number"],
    "NHS number": "9434765919",
    "NHS number (dashed)": "943-476-5919",
    "date of birth (ISO)": CHILD["date_of_birth"],
    "date of birth (dd/mm/yyyy)": "17/03/2015",
    "date of birth (long)": "17 March 2015",
    "date of birth (compact)": "20150317",
}

# One canary per free-text path, so a hit names the path that leaked.
TEXT = {
    "summary": "CanarySummaryQ7X2",
    "acknowledgement note": "CanaryAckNoteK4M8",
    "note": "CanaryNoteTextP3V6",
    "immediate-risk reason": "CanaryRiskReasonB9D1",
    "shortened-deadline reason": "CanaryDeadlineReasonH5T7",
    "escalation reason": "CanaryEscalateReasonW2J4",
    "escalation form": "CanaryEscalationFormF8L3",
    "resolution outcome": "CanaryResolveOutcomeR6N9",
    "resolution form": "CanaryResolutionFormG1Z5",
    "written confirmation": "CanaryConfirmationC3Y8",
    "withdrawal reason": "CanaryWithdrawReasonS7U2",
    "operator CLI note": "CanaryCliNoteE4Q1",
    "operator CLI update without the codec": "CanaryPlainUpdateA6R3",
    "operator CLI update that does not read": "CanaryUnreadableUpdateK8P2",
}
# A signal keeps what it carried in the history as it was sent, refused or
# not: the one sent without the codec carries no child.
PLAIN_SIGNAL = "Operator's note sent without the codec endpoint"
# One that is not even a note (a list where the text goes).
UNREADABLE_SIGNAL = "Operator's unreadable note sent without the codec endpoint"
CANARIES = {**IDENTITY, **{f"{path} canary": token for path, token in TEXT.items()}}
NEEDLES = needles(CANARIES)
IDENTITY_NEEDLES = needles(IDENTITY)
TEXT_NEEDLES = [n for n in NEEDLES if n not in IDENTITY_NEEDLES]
ENCRYPTED_MARKERS = (ENCODING, b"YmluYXJ5L2VuY3J5cHRlZA==")  # plain and base64


def text(path: str) -> str:
    """Free text as a practitioner writes it: the path's canary and the child."""
    return f"{TEXT[path]}: about {CHILD['name']} (DOB 17/03/2015, NHS {CHILD['nhs_number']})."


PRACTITIONER = "merton-health-practitioner"
MANAGER = "merton-csc-manager"
POLICE = "merton-police-practitioner"
MERTON_TEAM = "merton-business-team"
CHESHIRE_POLICE = "cheshire-police-practitioner"
CHESHIRE_TEAM = "cheshire-business-team"
OPERATOR = "operator"


def agency(key: str, name: str, kind: str) -> dict[str, str]:
    return {"key": key, "name": name, "kind": kind}


MERTON_HEALTH = agency("merton-health", "Merton health", "health")
MERTON_CSC = agency(
    "merton-childrens-social-care", "Merton children's social care", "childrens-social-care"
)
MERTON_POLICE = agency("merton-police", "Merton police", "police")


class Api:
    def __init__(self, http: httpx.AsyncClient, tokens: dict[str, str]) -> None:
        self.http = http
        self.tokens = tokens

    def _auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    async def raise_case(self, user: str, **body: Any) -> str:
        body = {
            "categories": ["thresholds"],
            "summary": text("summary"),
            "child": CHILD,
            **body,
        }
        response = await self.http.post("/disagreements", json=body, headers=self._auth(user))
        assert response.status_code in (201, 202), response.text
        return str(response.json()["reference"])

    async def act(self, ref: str, verb: str, user: str, body: Any = None) -> dict[str, Any]:
        response = await self.http.post(
            f"/disagreements/{ref}/{verb}", json=body, headers=self._auth(user)
        )
        assert response.status_code == 200, f"{verb} on {ref}: {response.text}"
        return dict(response.json())

    async def state(self, ref: str, user: str = OPERATOR) -> dict[str, Any]:
        response = await self.http.get(f"/disagreements/{ref}", headers=self._auth(user))
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def until(self, ref: str, check: Any, what: str, timeout: float = 30.0) -> dict:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout
        while True:
            state = await self.state(ref)
            if check(state):
                return state
            if loop.time() > give_up:
                events = [(e["type"], e.get("template")) for e in state["events"]]
                raise AssertionError(f"{ref}: timed out waiting for {what}; events {events}")
            await asyncio.sleep(0.25)


@dataclass(frozen=True)
class Case:
    ref: str
    policy: str
    last_notice: str  # the template of the last notice it sends


def soon(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def notices_of(state: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in state["events"] if e.get("notice_id")]


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    stack = Stack(tmp_path / "data")
    # The positive control reads history with the stack's own key file.
    monkeypatch.setenv("ESCALATION_DATA_DIR", str(stack.data_dir))
    for name in ("ESCALATION_CODEC_KEYS", "ESCALATION_CODEC_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    stack.start()
    try:
        yield stack
    finally:
        stack.kill()


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[Api]:
    tokens = read_tokens(stack.data_dir / "demo-tokens.txt")
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as http:
        yield Api(http, tokens)


async def type_the_child_where_it_does_not_belong(api: Api, ref: str) -> None:
    """A careless user: the child's name and NHS number typed into filters,
    query strings and paths. Each is refused or ignored, and none may reach
    a log (the access log records route templates only)."""
    name, nhs = CHILD["name"], CHILD["nhs_number"]
    auth = api._auth(MANAGER)
    for params in ({"agency": name}, {"category": nhs}, {"page_token": name}):
        response = await api.http.get("/disagreements", params=params, headers=auth)
        assert response.status_code == 422, response.text
    response = await api.http.get("/policies/merton/explain", params={"raised": name}, headers=auth)
    assert response.status_code == 422, response.text
    response = await api.http.get(f"/disagreements/{ref}", params={"child": name}, headers=auth)
    assert response.status_code == 200, response.text
    for path in (f"/disagreements/{name}", f"/{name}/{nhs}"):
        assert (await api.http.get(path, headers=auth)).status_code == 404


async def signal_as_the_readme_shows(api: Api, stack: Stack, ref: str) -> None:
    """An operator's note sent with the Temporal CLI, as the README shows it:
    through the codec endpoint, so it is encrypted like everything else."""
    signalled = subprocess.run(
        [
            temporal_cli(),
            "workflow",
            "signal",
            "--address",
            stack.address,
            "--workflow-id",
            f"disagreement-{ref}",
            "--codec-endpoint",
            f"{stack.api_url}/codec",
            "--codec-auth",
            f"Bearer {api.tokens[OPERATOR]}",
            "--name",
            "add_note",
            "--input",
            json.dumps({"text": text("operator CLI note")}),
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert signalled.returncode == 0, signalled.stderr.decode(errors="replace")[-500:]
    await api.until(
        ref,
        lambda s: any(TEXT["operator CLI note"] in n["text"] for n in s["notes"]),
        "the operator's note",
    )


async def act_without_the_codec(api: Api, stack: Stack, ref: str) -> None:
    """An operator who leaves out ``--codec-endpoint``. A note about the child
    sent as an update is refused before it enters the case (its canary must
    be found nowhere), with a refusal readable without the codec saying how
    to send it; a note sent as a signal is refused and recorded on the case,
    saying the same."""

    def cli(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [temporal_cli(), "workflow", *args, "--address", stack.address]
            + ["--workflow-id", f"disagreement-{ref}", "--name", "add_note"],
            capture_output=True,
            timeout=30,
            check=False,
        )

    note = json.dumps({"text": text("operator CLI update without the codec")})
    updated = cli("update", "execute", "--input", note)
    said = (updated.stdout + updated.stderr).decode(errors="replace")
    assert updated.returncode != 0, said[-500:]
    assert "the add_note update arrived unencrypted and is refused" in said, said[-500:]
    assert "--codec-endpoint" in said, said[-500:]
    signalled = cli("signal", "--input", json.dumps({"text": PLAIN_SIGNAL}))
    assert signalled.returncode == 0, signalled.stderr.decode(errors="replace")[-500:]
    state = await api.until(
        ref,
        lambda s: any(
            "the add_note signal arrived unencrypted and is refused" in (e.get("detail") or "")
            for e in s["events"]
        ),
        "the unencrypted signal's refusal",
    )
    assert not any(PLAIN_SIGNAL in n["text"] for n in state["notes"])

    # Not a note at all (a list where the text goes): the update is refused
    # readably, saying how to send it and not what it held; the signal is
    # refused and recorded like the one above.
    garbled = json.dumps({"text": [text("operator CLI update that does not read")]})
    updated = cli("update", "execute", "--input", garbled)
    said = (updated.stdout + updated.stderr).decode(errors="replace")
    assert updated.returncode != 0, said[-500:]
    assert "arrived unencrypted and could not be read" in said, said[-500:]
    assert "--codec-endpoint" in said, said[-500:]
    signalled = cli("signal", "--input", json.dumps({"text": [UNREADABLE_SIGNAL]}))
    assert signalled.returncode == 0, signalled.stderr.decode(errors="replace")[-500:]
    await api.until(
        ref,
        lambda s: (
            sum(
                "the add_note signal arrived unencrypted and is refused" in (e.get("detail") or "")
                for e in s["events"]
            )
            == 2
        ),
        "the unreadable signal's refusal",
    )


async def run_cases(api: Api, stack: Stack) -> dict[str, Case]:
    """Every policy, every kind of action."""
    # Raise: at least one case per policy, as whoever may raise it.
    merton = await api.raise_case(
        PRACTITIONER, policy="merton", raising_agency=MERTON_HEALTH, receiving_agency=MERTON_CSC
    )
    merton_withdrawn = await api.raise_case(
        MERTON_TEAM, policy="merton", raising_agency=MERTON_POLICE, receiving_agency=MERTON_CSC
    )
    cheshire = await api.raise_case(
        CHESHIRE_POLICE,
        policy="cheshire",
        area="cheshire-west",
        raising_agency=agency("cheshire-west-police", "Cheshire West and Chester police", "police"),
        receiving_agency=agency(
            "cheshire-west-childrens-social-care",
            "Cheshire West children's social care",
            "childrens-social-care",
        ),
    )
    hillingdon = await api.raise_case(
        OPERATOR,
        policy="hillingdon",
        raising_agency=agency("hillingdon-health", "Hillingdon health", "health"),
        receiving_agency=agency(
            "hillingdon-childrens-social-care",
            "Hillingdon children's social care",
            "childrens-social-care",
        ),
        immediate_risk=True,
        start_stage=1,
    )
    staffordshire = await api.raise_case(
        OPERATOR,
        policy="staffordshire-stoke",
        area="staffordshire",
        raising_agency=agency("staffordshire-police", "Staffordshire police", "police"),
        receiving_agency=agency(
            "staffordshire-childrens-social-care",
            "Staffordshire children's social care",
            "childrens-social-care",
        ),
    )
    wirral = await api.raise_case(
        OPERATOR,
        policy="wirral",
        raising_agency=agency("wirral-education", "Wirral school", "education"),
        receiving_agency=agency(
            "wirral-childrens-social-care", "Wirral children's social care", "childrens-social-care"
        ),
    )

    # Merton: acknowledge, a note, immediate risk, and a deadline a few
    # seconds away so that the case escalates by itself. Wirral likewise.
    await api.act(merton, "acknowledge", MANAGER, {"note": text("acknowledgement note")})
    await api.act(merton, "notes", PRACTITIONER, {"text": text("note")})
    await api.act(merton, "immediate-risk", MANAGER, {"reason": text("immediate-risk reason")})
    reason = text("shortened-deadline reason")
    await api.act(merton, "deadline", MANAGER, {"deadline": soon(4), "reason": reason})
    await api.act(wirral, "deadline", OPERATOR, {"deadline": soon(4), "reason": reason})
    await api.act(merton_withdrawn, "notes", POLICE, {"text": text("note")})
    await type_the_child_where_it_does_not_belong(api, merton)
    await signal_as_the_readme_shows(api, stack, merton)
    await act_without_the_codec(api, stack, merton)

    # Cheshire: up every step to the one that needs Appendix A, then resolved.
    await api.act(cheshire, "acknowledge", CHESHIRE_TEAM, {"note": text("acknowledgement note")})
    for _ in range(2):
        await api.act(cheshire, "escalate", CHESHIRE_POLICE, {"reason": text("escalation reason")})
    moved = await api.act(
        cheshire,
        "escalate",
        CHESHIRE_POLICE,
        {"reason": text("escalation reason"), "form": {"brief-details": text("escalation form")}},
    )
    assert moved["stage"] == 3
    await api.act(
        cheshire,
        "resolve",
        CHESHIRE_TEAM,
        {"outcome": text("resolution outcome"), "form": {"methodology": text("resolution form")}},
    )

    # Staffordshire and Stoke: through the stage that needs the formal
    # escalation form (stage 3) to stage 5, where the form goes to the board
    # manager; resolved there.
    await api.act(staffordshire, "escalate", OPERATOR, {"reason": text("escalation reason")})
    await api.act(
        staffordshire,
        "escalate",
        OPERATOR,
        {
            "reason": text("escalation reason"),
            "form": {
                "summary-of-concerns": text("escalation form"),
                "requested-action": text("escalation form"),
            },
        },
    )
    for _ in range(2):
        await api.act(staffordshire, "escalate", OPERATOR, {"reason": text("escalation reason")})
    resolved = await api.act(
        staffordshire,
        "resolve",
        OPERATOR,
        {
            "outcome": text("resolution outcome"),
            "form": {
                "resolution-of-issues": text("resolution form"),
                "actions-taken": text("resolution form"),
            },
        },
    )
    # Stage 5 ¶3: confirmed in writing between the parties, at every stage.
    assert resolved["stage"] == 4 and resolved["status"] == "awaiting-confirmation", resolved
    await api.act(staffordshire, "confirm", OPERATOR, {})

    # Hillingdon: raised at immediate risk at a later stage, then a jump.
    await api.act(
        hillingdon,
        "immediate-risk",
        OPERATOR,
        {"reason": text("immediate-risk reason"), "jump_to_stage": 3},
    )
    await api.act(
        hillingdon,
        "resolve",
        OPERATOR,
        {
            "outcome": text("resolution outcome"),
            "form": {
                "record-of-discussions": text("resolution form"),
                "outcome": text("resolution form"),
            },
        },
    )
    await api.act(hillingdon, "confirm", OPERATOR, {"confirmation": text("written confirmation")})

    # The shortened deadlines pass: both cases escalate by themselves.
    for ref in (merton, wirral):
        await api.until(
            ref,
            lambda s: s["stage"] == 1 and any(e["type"] == "auto_escalated" for e in s["events"]),
            "the automatic escalation",
        )

    # Merton on to the senior leaders, resolved, confirmed in writing.
    await api.act(merton, "escalate", PRACTITIONER, {"reason": text("escalation reason")})
    resolved = await api.act(
        merton,
        "resolve",
        MANAGER,
        {
            "outcome": text("resolution outcome"),
            "form": {
                "completed-by": text("resolution form"),
                "what-was-agreed": text("resolution form"),
                "agency-learning": text("resolution form"),
                "partnership-learning": text("resolution form"),
            },
        },
    )
    assert resolved["status"] == "awaiting-confirmation"
    # §4.4.2: "the receiving senior manager will confirm the outcome".
    await api.act(merton, "confirm", MANAGER, {"confirmation": text("written confirmation")})
    # Wirral, at stage 2 after its automatic escalation: resolved there, so
    # its (identity-free) pro-forma goes to the business manager.
    await api.act(
        wirral,
        "resolve",
        OPERATOR,
        {
            "outcome": text("resolution outcome"),
            "form": {"resolution": text("resolution form"), "learning": text("resolution form")},
        },
    )
    await api.act(merton_withdrawn, "withdraw", POLICE, {"reason": text("withdrawal reason")})

    return {
        "merton": Case(merton, "merton", "outcome-confirmed"),
        "merton withdrawn": Case(merton_withdrawn, "merton", "withdrawn"),
        "cheshire": Case(cheshire, "cheshire", "resolved"),
        "hillingdon": Case(hillingdon, "hillingdon", "outcome-confirmed"),
        "staffordshire-stoke": Case(staffordshire, "staffordshire-stoke", "outcome-confirmed"),
        "wirral": Case(wirral, "wirral", "resolved"),
    }


async def check_history(client: Client, cases: dict[str, Case]) -> list[str]:
    """The positive control: each case's input is stored encrypted, and with
    the stack's key (the product's converter, reading the stack's key file)
    the child comes back from the history; so does an update's free text."""
    problems = []
    converter = client.data_converter
    for name, case in cases.items():
        history = await client.get_workflow_handle(f"disagreement-{case.ref}").fetch_history()
        started = history.events[0].workflow_execution_started_event_attributes
        payloads = list(started.input.payloads)
        encodings = sorted({p.metadata.get("encoding", b"").decode() for p in payloads})
        if encodings != [ENCODING.decode()]:
            problems.append(f"{name} case {case.ref}: its input is stored as {encodings}")
        raw = b"".join(p.SerializeToString() for p in payloads)
        problems += [str(h) for h in search(f"{case.ref}'s stored input", raw, NEEDLES)]
        try:
            [request] = await converter.decode(payloads, [RaiseDisagreement])
        except Exception as exc:  # the key does not open it: say so, and go on
            problems.append(f"{name} case {case.ref}: input not readable ({type(exc).__name__})")
            continue
        child = request.child
        read = child is not None and (
            child.name,
            child.date_of_birth and child.date_of_birth.isoformat(),
            child.address,
            child.nhs_number,
        ) == (CHILD["name"], CHILD["date_of_birth"], CHILD["address"], CHILD["nhs_number"])
        if not read or TEXT["summary"] not in request.summary:
            problems.append(f"{name} case {case.ref}: the decoded input is not the raised case")

    merton = cases["merton"].ref
    history = await client.get_workflow_handle(f"disagreement-{merton}").fetch_history()
    notes = [
        e.workflow_execution_update_accepted_event_attributes.accepted_request.input
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
        and e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        == "add_note"
    ]
    if not notes:
        return [*problems, f"{merton}: the note's update is not in the history"]
    args = list(notes[0].args.payloads)
    if any(p.metadata.get("encoding") != ENCODING for p in args):
        problems.append(f"{merton}: the note's update is not stored encrypted")
    try:
        [note] = await converter.decode(args, [AddNote])
    except Exception as exc:
        return [*problems, f"{merton}: the note's update not readable ({type(exc).__name__})"]
    if TEXT["note"] not in note.text:
        problems.append(f"{merton}: the decoded note is not the note added")
    return problems


def check_cli(stack: Stack, cases: dict[str, Case]) -> tuple[list[str], list[Hit]]:
    """`temporal workflow show -o json` without the codec: ciphertext only."""
    problems, hits = [], []
    for case in cases.values():
        shown = subprocess.run(
            [
                temporal_cli(),
                "workflow",
                "show",
                "--address",
                stack.address,
                "-w",
                f"disagreement-{case.ref}",
                "-o",
                "json",
            ],
            capture_output=True,
            timeout=30,
            check=False,
        )
        where = f"`temporal workflow show -w disagreement-{case.ref} -o json`"
        if shown.returncode != 0:
            problems.append(f"{where} failed: {shown.stderr.decode(errors='replace')[-500:]}")
        if not any(marker in shown.stdout for marker in ENCRYPTED_MARKERS):
            problems.append(f"{where} shows no binary/encrypted payload")
        hits += search(where, shown.stdout, NEEDLES)
        hits += search(f"{where} (stderr)", shown.stderr, NEEDLES)
    return problems, hits


def check_form_attachments(attachments: list[Attachment], cases: dict[str, Case]) -> list[Hit]:
    """Forms attached to notices name nobody: where the source form asks for
    the child's details (Merton's pro-forma, Cheshire's Appendix A,
    Staffordshire's formal escalation form) the emailed copy says they are
    withheld, and typed free text has the child scrubbed out; the complete
    form is downloaded from the case by those allowed to see it. Returns the
    hits that break this."""
    hits = []
    text: dict[str, str] = {}
    typed: dict[str, list[Hit]] = {}
    for a in attachments:
        case = next((c for c in cases.values() if a.filename.startswith(f"{c.ref}-")), None)
        assert case is not None and a.filename.endswith(".pdf"), a.filename
        form = get_policy(case.policy).form(a.filename[len(case.ref) + 1 : -len(".pdf")])
        where = f"{a.email}: attachment {a.filename} ({a.template}, to {a.roles or 'nobody'})"
        hits += search_text(where, a.text, IDENTITY_NEEDLES)
        text[form.key] = text.get(form.key, "") + a.text
        typed[form.key] = search_text(where, a.text, NEEDLES)
    # The PDFs were read, not skipped: the pro-forma says what it withholds,
    # and Wirral's and Hillingdon's forms hold the typed answers.
    expected = {"escalation-pro-forma", "appendix-a", "formal-escalation-form"}
    expected |= {"appendix-1", "escalation-notification"}
    assert expected <= set(text), f"forms attached: {sorted(text)}"
    flat = " ".join(text["escalation-pro-forma"].split())
    assert "Withheld from email" in flat, "the pro-forma's withheld note is missing: PDF not read?"
    for key in ("appendix-1", "escalation-notification"):
        assert any(h.label.startswith("resolution form canary") for h in typed[key]), (
            f"{key} lacks the typed answers: PDF not read?"
        )
    return hits


async def test_no_child_data_in_the_clear_anywhere_the_stack_keeps_data(
    stack: Stack, api: Api
) -> None:
    data = stack.data_dir
    cases = await run_cases(api, stack)

    # Every case is closed and has sent its closing notice, and its workflow
    # has completed (so every notice it owes has gone); every notice the
    # cases recorded is in the outbox.
    assert (data / "codec-keys.json").exists(), "the embedded default made no key file"
    client = await Client.connect(stack.address, data_converter=data_converter())
    recorded: list[str] = []
    templates: set[str] = set()
    for case in cases.values():
        await api.until(
            case.ref,
            lambda s, t=case.last_notice: (
                s["status"] not in ("open", "overdue", "awaiting-confirmation")
                and any(e.get("template") == t for e in notices_of(s))
            ),
            f"the {case.last_notice!r} notice",
        )
        handle = client.get_workflow_handle(f"disagreement-{case.ref}")
        await asyncio.wait_for(handle.result(), 30)
        state = await api.state(case.ref)
        recorded += [e["notice_id"] for e in notices_of(state)]
        templates |= {e["template"] for e in notices_of(state)}
    # An email is recorded as sent once each of its recipients has their copy.
    sent = {p.name for p in (data / "outbox" / ".sent").iterdir()}
    missing = [n for n in recorded if n not in sent]
    assert not missing, f"notices recorded but not in the outbox: {missing}"
    # Each copy is addressed to one person, who sees no other recipient.
    for path in (data / "outbox").glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert len(message["To"].addresses) == 1, (path.name, message["To"])
        assert message["Cc"] is None and message["Bcc"] is None, path.name
    assert templates >= {
        "stage-started",
        "immediate-risk",
        "deadline-shortened",
        "escalated-automatically",
        "business-team-record",
        "resolved",
        "outcome-confirmed",
        "withdrawn",
    }, templates

    # While the stack runs: the history, with and without the key. Problems
    # are collected, so that the files are searched (and reported) anyway.
    problems = await check_history(client, cases)
    cli_problems, hits = check_cli(stack, cases)
    problems += cli_problems

    stopped = stack.stop()
    assert stopped == 0, stack.output.decode(errors="replace")[-3000:]

    files, found, attachments = search_files(data, NEEDLES)
    hits += found
    hits += search("the launcher's stdout/stderr", stack.output, NEEDLES)
    hits += check_form_attachments(attachments, cases)
    names = {str(p.relative_to(data)) for p in files}
    for expected in ("temporal.db", "temporal.log", "worker.log", "api.log"):
        assert expected in names, sorted(names)
    assert sum(1 for n in names if n.startswith("outbox/") and n.endswith(".eml")) >= len(recorded)
    # The API's access log was written (and so searched): route templates.
    api_log = (data / "api.log").read_text(errors="replace")
    for line in ("GET /disagreements/{reference} 200", "GET /disagreements 422"):
        if line not in api_log:
            problems.append(f"api.log has no access line {line!r}")

    # The database can be searched as it lies: the encrypted payloads' marker
    # and the workflow ids are there, in the clear.
    database = b"".join(
        (data / n).read_bytes() for n in sorted(names) if n.startswith("temporal.db")
    )
    if ENCODING not in database:
        problems.append("the SQLite files hold no binary/encrypted payload")
    for case in cases.values():
        if f"disagreement-{case.ref}".encode() not in database:
            problems.append(f"the SQLite files do not hold disagreement-{case.ref}")

    # The register holds every case (its reference and its sealed columns),
    # so the search above of register.sqlite3 had something to search.
    assert "register.sqlite3" in names, sorted(names)
    register = b"".join(
        (data / n).read_bytes() for n in sorted(names) if n.startswith("register.sqlite3")
    )
    for case in cases.values():
        if case.ref.encode() not in register:
            problems.append(f"the register does not hold {case.ref}")
    if b"v1." not in register:
        problems.append("the register holds no sealed value")

    if problems or hits:
        pytest.fail(_report(problems, hits), pytrace=False)


def _report(problems: list[str], hits: list[Hit], per_place: int = 12) -> str:
    lines = [f"children's data is not protected: {len(problems)} problems, {len(hits)} hits"]
    lines += [f"  {p}" for p in problems]
    by_place: dict[str, list[Hit]] = {}
    for hit in hits:
        by_place.setdefault(hit.where, []).append(hit)
    for where, found in sorted(by_place.items()):
        lines.append(f"  {where}:")
        lines += [f"    - {h.label} x{h.count} at {h.offset}: ...{h.context}..." for h in found]
        if len(found) > per_place:
            lines[-(len(found) - per_place) :] = [f"    (and {len(found) - per_place} more)"]
    return "\n".join(lines)
