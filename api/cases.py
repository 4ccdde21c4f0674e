"""Cases in Temporal: references, starting, finding, authorising and acting.

The routes stay thin; everything that talks to Temporal about a case is
here, so each rule (who may see a case, what a refusal looks like, how a
retried raise finds its first attempt) is written once.

- **References** are non-identifying: the policy's prefix and eight
  characters of Crockford base32 (``MER-7K2Q9XAB``); the workflow id is
  ``disagreement-<reference>``. With an ``Idempotency-Key`` the characters
  are an HMAC of (caller, key), so a retried raise maps to the same workflow
  id and Temporal's id-conflict policy returns the case it already started.
  The memo keeps only an HMAC fingerprint of the request, to refuse the same
  key reused for a different request.
- **Lists and closed cases** come from the register (``register``), which
  the workflow keeps up to date; a running case is read live from its
  workflow. The typed search attributes the API sets at start (and the
  workflow keeps up to date) are for operators in the Temporal UI.
- **Authorisation** is decided from the case's search attributes (its
  partnership and the two agencies), so a refused caller learns nothing a
  missing case would not tell them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.deadlines import plan_clock
from api import problems
from api.auth import may_access_case, raise_refusal
from api.problems import ProblemError
from api.schemas import CaseLinks, CaseSummary, RaiseRequest
from api.users import User
from escalation import search_attributes as sa
from escalation.converter import remember_partnership
from escalation.settings import Settings
from policies.calendar import WorkingDayCalendar
from policies.loader import UnknownPolicyError, get_policy
from policies.model import Policy
from register import Register, RegisterUnavailableError
from register import tables as t
from register.listing import CaseQuery, Scope
from workflows import ladder
from workflows.disagreement import DisagreementWorkflow
from workflows.ladder import raise_problems
from workflows.messages import Action, ActionResult, CaseRecord, CaseState, RaiseDisagreement

log = logging.getLogger("escalation.api")
access_log = logging.getLogger("escalation.api.access")

WORKFLOW_TYPE = "Disagreement"
WORKFLOW_ID_PREFIX = "disagreement-"
FINGERPRINT_MEMO = "request_fingerprint"
SECRET_FILE = "api-secret"
# How long a worker may hold a case's step before the server gives it to
# another: a worker killed in the middle of a step leaves the case waiting
# this long (the server's 10 s default kept cases 10-12 s after a crash in
# the chaos drill). A step that runs longer (its notices) is kept alive by
# the SDK's heartbeat, so only a dead worker meets it. Continue-as-new keeps it.
CASE_TASK_TIMEOUT = timedelta(seconds=5)

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
CODE_LENGTH = 8
REFERENCE_RE = re.compile(r"^[A-Z0-9][A-Z0-9-]{3,40}$")
T = TypeVar("T")


# --- References and the secret -------------------------------------------------------


def load_secret(settings: Settings) -> bytes:
    """The HMAC key: from the settings, or generated once under the data dir."""
    if settings.api_secret is not None:
        return settings.api_secret.get_secret_value().encode("utf-8")
    path = settings.data_dir / SECRET_FILE
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip().encode("utf-8")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secrets.token_urlsafe(48))
    return path.read_text(encoding="utf-8").strip().encode("utf-8")


def reference_prefix(policy_id: str) -> str:
    letters = "".join(c for c in policy_id if c.isalpha())[:3].upper()
    return letters or "ESC"


def _code(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    chars = []
    for _ in range(CODE_LENGTH):
        number, digit = divmod(number, 32)
        chars.append(_ALPHABET[digit])
    return "".join(chars)


def random_reference(policy_id: str) -> str:
    return f"{reference_prefix(policy_id)}-{_code(secrets.token_bytes(5))}"


def derived_reference(secret: bytes, policy_id: str, user_id: str, key: str) -> str:
    """The same (caller, Idempotency-Key) always gives the same reference."""
    digest = hmac.new(secret, f"reference\0{user_id}\0{key}".encode(), hashlib.sha256).digest()
    return f"{reference_prefix(policy_id)}-{_code(digest[:5])}"


def request_fingerprint(secret: bytes, user_id: str, canonical_body: str) -> str:
    """Keyed, so the memo reveals nothing about the request (not even a guessable name)."""
    message = f"raise\0{user_id}\0{canonical_body}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def workflow_id(reference: str) -> str:
    return f"{WORKFLOW_ID_PREFIX}{reference}"


def case_path(reference: str) -> str:
    return f"/disagreements/{reference}"


# --- Temporal failures as problems -------------------------------------------------


def unavailable(exc: BaseException | None = None) -> ProblemError:
    if exc is not None:
        status = getattr(exc, "status", None)
        log.warning("Temporal call failed: %s %s", type(exc).__name__, getattr(status, "name", ""))
    return ProblemError(
        503,
        problems.UNAVAILABLE,
        "Service unavailable",
        "the case service (Temporal) cannot be reached, or no worker answered; try again shortly",
        headers={"Retry-After": "5"},
    )


def _not_ready() -> ProblemError:
    return ProblemError(
        409,
        problems.CASE_NOT_READY,
        "The case is still being raised",
        "the case is still being raised; try again in a moment",
        headers={"Retry-After": "1"},
    )


# --- Starting a case ------------------------------------------------------------------


def start_search_attributes(
    request: RaiseDisagreement, deadline: datetime | None
) -> TypedSearchAttributes:
    """The case's search attributes from the start, so lists find it at once,
    deadline included (the workflow upserts the same keys as the case moves)."""
    policy = request.policy
    stage = policy.stages[request.start_stage]
    pairs: list[SearchAttributePair[Any]] = [
        SearchAttributePair(sa.PARTNERSHIP, policy.id),
        SearchAttributePair(sa.STAGE_INDEX, request.start_stage),
        SearchAttributePair(sa.STAGE_NAME, stage.key),
        SearchAttributePair(sa.STATUS, "open"),
        SearchAttributePair(sa.IMMEDIATE_RISK, request.immediate_risk),
        SearchAttributePair(
            sa.AGENCIES, [request.raising_agency.key, request.receiving_agency.key]
        ),
        SearchAttributePair(sa.CATEGORIES, list(request.categories)),
    ]
    if request.area:
        pairs.append(SearchAttributePair(sa.AREA, request.area))
    if deadline is not None:
        pairs.append(SearchAttributePair(sa.DEADLINE, deadline))
    return TypedSearchAttributes(pairs)


def static_summary(request: RaiseDisagreement) -> str:
    """What the Temporal UI shows for the case: agencies, never the child."""
    text = f"{request.policy.id} · {request.raising_agency.name} → {request.receiving_agency.name}"
    return text + (" · immediate risk" if request.immediate_risk else "")


@dataclass
class Started:
    handle: WorkflowHandle[Any, Any]
    reference: str
    created: bool


async def start_case(
    client: Client,
    settings: Settings,
    request: RaiseDisagreement,
    fingerprint: str | None,
    deadline: datetime | None,
) -> Started:
    """Start the case's workflow. With a fingerprint (an Idempotency-Key was
    given) an existing case with the same id is returned instead, provided it
    was raised by the same request."""
    memo = {FINGERPRINT_MEMO: fingerprint} if fingerprint else None
    idempotent = fingerprint is not None
    wid = workflow_id(request.reference)
    try:
        handle = await client.start_workflow(
            DisagreementWorkflow.run,
            request,
            id=wid,
            task_queue=settings.task_queue,
            id_conflict_policy=(
                WorkflowIDConflictPolicy.USE_EXISTING
                if idempotent
                else WorkflowIDConflictPolicy.FAIL
            ),
            # A reference names one case for ever, even after it closes.
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            memo=memo,
            search_attributes=start_search_attributes(request, deadline),
            static_summary=static_summary(request),
            task_timeout=CASE_TASK_TIMEOUT,
        )
        response = getattr(handle, "_start_workflow_response", None)
        created = bool(getattr(response, "started", True))
    except WorkflowAlreadyStartedError:
        if not idempotent:
            raise
        handle = client.get_workflow_handle(wid)
        created = False
    except RPCError as exc:
        raise unavailable(exc) from None
    if not created:
        await _check_same_request(handle, fingerprint)
    return Started(handle=handle, reference=request.reference, created=created)


async def _check_same_request(handle: WorkflowHandle[Any, Any], fingerprint: str | None) -> None:
    try:
        description = await handle.describe()
        memo = await description.memo()
    except RPCError as exc:
        raise unavailable(exc) from None
    stored = memo.get(FINGERPRINT_MEMO)
    if (
        description.workflow_type != WORKFLOW_TYPE
        or not isinstance(stored, str)
        or fingerprint is None
        or not hmac.compare_digest(stored, fingerprint)
    ):
        raise ProblemError(
            422,
            problems.IDEMPOTENCY_KEY_REUSED,
            "Idempotency-Key reused",
            "this Idempotency-Key was already used for a different request; "
            "use a new key for a new disagreement",
        )


def first_stage(request: RaiseDisagreement, settings: Settings) -> CaseState:
    """The case as its raise leaves it: stage, deadline, acknowledgement due.

    The same pure rules and deadline arithmetic as the workflow and its
    ``plan_stage_clock`` activity, from the same raise instant and the same
    closure dates, so a new case's first deadline is answered at once instead
    of after the worker has planned it (a query round trip per raise
    cost the server and the worker more than the raise itself)."""
    assert request.raised_at is not None
    state = ladder.new_state(request, request.raised_at)
    step = ladder.raise_case(request.policy, state)
    if step.clock is not None:
        calendar = WorkingDayCalendar(request.policy.calendar_spec(), settings.extra_closures)
        state.clock = plan_clock(calendar, step.clock)
    return state


async def wait_until_raised(handle: WorkflowHandle[Any, Any], timeout: float) -> CaseState | None:
    """The case's state once its first stage is planned (its deadline known),
    or None if that takes longer than ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout
    delay = 0.05
    while True:
        remaining = give_up - loop.time()
        try:
            state = await handle.query(
                DisagreementWorkflow.get_state,
                rpc_timeout=timedelta(seconds=max(remaining, 1.0)),
            )
            # A case is made with no events; raising it records the first
            # (which the case may already have let go to the register).
            if state.next_seq > 1:
                return state
        except (WorkflowQueryFailedError, RPCError):
            pass  # not yet raised, or no worker has picked it up yet
        if loop.time() + delay >= give_up:
            return None
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.5)


# --- Finding and authorising a case -----------------------------------------------


@dataclass
class Case:
    reference: str
    handle: WorkflowHandle[Any, Any]
    description: WorkflowExecutionDescription
    partnership: str | None
    agencies: list[str]

    @property
    def running(self) -> bool:
        return self.description.status == WorkflowExecutionStatus.RUNNING

    @property
    def case_status(self) -> str | None:
        return self.description.typed_search_attributes.get(sa.STATUS)


async def find_case(client: Client, reference: str, user: User, purpose: str) -> Case:
    """The case, if it exists and the user may see it; otherwise 404, the same
    either way. A refusal is logged with the user and reference only."""
    if not REFERENCE_RE.fullmatch(reference):
        raise problems.not_found()
    handle = client.get_workflow_handle(workflow_id(reference))
    try:
        description = await handle.describe(rpc_timeout=timedelta(seconds=10))
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise problems.not_found() from None
        raise unavailable(exc) from None
    if description.workflow_type != WORKFLOW_TYPE:
        raise problems.not_found()
    attrs = description.typed_search_attributes
    partnership = attrs.get(sa.PARTNERSHIP)
    agencies = list(attrs.get(sa.AGENCIES) or [])
    if not may_access_case(user, partnership, agencies):
        access_log.warning(
            "access refused: user %s, reference %s (%s)", user.id, reference, purpose
        )
        raise problems.not_found()
    remember_partnership(handle.id, partnership)
    return Case(reference, handle, description, partnership, agencies)


def _closed(case: Case) -> ProblemError:
    status = case.case_status if case.case_status not in (None, "open", "overdue") else None
    workflow_status = case.description.status.name.lower() if case.description.status else ""
    what = status or workflow_status or "closed"
    return ProblemError(
        409, problems.CASE_CLOSED, "The case is closed", f"the case is closed ({what})"
    )


async def act(
    case: Case, update: Any, action: Action, timeout: float, update_id: str | None = None
) -> ActionResult:
    """Send an action as the workflow update of the same name; a refusal
    comes back as 409 with the case's own reason. With an ``update_id`` (a
    page's form key) Temporal applies a resubmitted update only once and
    answers the second with the first's result."""
    if not case.running:
        raise _closed(case)
    try:
        result: ActionResult = await asyncio.wait_for(
            case.handle.execute_update(update, action, id=update_id), timeout
        )
        return result
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type == "ActionRefused":
            raise ProblemError(
                409, problems.ACTION_REFUSED, "The action was refused", cause.message
            ) from None
        if isinstance(cause, ApplicationError) and cause.type == "NotReady":
            raise _not_ready() from None
        log.error(
            "update %s on %s failed: %s", update.__name__, case.reference, type(cause).__name__
        )
        raise ProblemError(
            409, problems.ACTION_REFUSED, "The action was refused", "the case could not take it"
        ) from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            # The case closed between our look and the update.
            with contextlib.suppress(RPCError):
                case.description = await case.handle.describe()
            raise _closed(case) from None
        raise unavailable(exc) from None
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        raise ProblemError(
            504,
            problems.TIMEOUT,
            "The case did not answer in time",
            "no worker answered in time; the action may still be applied, so check the "
            "case before trying again",
        ) from None


# --- Reading and listing from the register ------------------------------------


def register_scope(user: User) -> Scope:
    """Which cases this user may see at all: the same rule as
    ``may_access_case``, as a filter on the register."""
    if user.role == "operator":
        return Scope()
    if user.role == "business-team":
        return Scope(partnership=user.partnership or "-")
    return Scope(partnership=user.partnership or "-", agency=user.agency or "-")


async def _in_thread(call: Callable[..., T], *args: Any) -> T:
    try:
        return await run_in_threadpool(call, *args)
    except RegisterUnavailableError:
        log.warning("the register could not be reached")
        raise problems.register_unavailable() from None


def summary(row: t.Case) -> CaseSummary:
    return CaseSummary(
        reference=row.reference,
        policy=row.policy_id,
        area=row.area,
        stage=row.stage,
        stage_key=row.stage_key,
        stage_name=row.stage_name,
        status=row.status,
        deadline=row.deadline,
        deadline_text=row.deadline_text,
        immediate_risk=row.immediate_risk,
        raising_agency=row.raising_agency,
        receiving_agency=row.receiving_agency,
        agencies=[row.raising_agency, row.receiving_agency],
        categories=list(row.categories or []),
        highest_stage_reached=row.highest_stage_reached,
        raised_at=row.raised_at,
        resolved_at=row.resolved_at,
        closed_at=row.closed_at,
        links=CaseLinks(self=case_path(row.reference)),
    )


async def list_cases(
    register: Register, query: CaseQuery
) -> tuple[list[CaseSummary], tuple[str, str] | None]:
    page = await _in_thread(register.list_cases, query)
    return [summary(row) for row in page.rows], page.last


async def read_case(
    client: Client, register: Register, reference: str, user: User, timeout: float
) -> CaseRecord:
    """The case whole, for a user who may see it: from the running case
    itself (its live state), or from the register once the case has closed
    or Temporal no longer holds it. 404 otherwise, the same either way."""
    if not REFERENCE_RE.fullmatch(reference):
        raise problems.not_found()
    try:
        scope = await run_in_threadpool(register.scope_of, reference)
    except RegisterUnavailableError:
        scope = None  # a running case can still be read from Temporal
        log.warning("the register could not be reached; reading the case from Temporal")
    if scope is not None:
        partnership, agencies, closed = scope
        if not may_access_case(user, partnership, agencies):
            access_log.warning("access refused: user %s, reference %s (read)", user.id, reference)
            raise problems.not_found()
        if closed:
            return await _from_register(register, reference)
    try:
        case = await find_case(client, reference, user, "read")
    except ProblemError as exc:
        if exc.status == 404 and scope is not None:
            # Temporal has let the case go (its retention); the register has not.
            return await _from_register(register, reference)
        raise
    if not case.running and scope is not None:
        return await _from_register(register, reference)
    return await _whole(register, await _live_record(case, timeout))


async def _from_register(register: Register, reference: str) -> CaseRecord:
    record = await _in_thread(register.case, reference)
    if record is None:
        raise problems.not_found()
    return record


async def _whole(register: Register, live: CaseRecord) -> CaseRecord:
    """The running case's record with the events the register holds and the
    case has let go; while the register cannot be read, what the case holds
    (every event since the register last confirmed a write)."""
    try:
        return await run_in_threadpool(register.whole, live)
    except RegisterUnavailableError:
        log.warning("the register could not be reached; the case's earlier events are left out")
        return live


async def _live_record(case: Case, timeout: float) -> CaseRecord:
    """The running case's record once the worker has recorded its raise: the
    API answers a raise before the worker has planned it, and a record
    without its raise (no events, no deadline) would contradict that answer."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + min(timeout, 5.0)
    while True:
        try:
            record: CaseRecord = await case.handle.query(
                DisagreementWorkflow.get_record, rpc_timeout=timedelta(seconds=timeout)
            )
            # A case is made with no events; raising it records the first.
            if record.next_seq > 1:
                return record
        except WorkflowQueryFailedError:
            pass  # only "still being raised" fails the query; it passes in a moment
        except RPCError as exc:
            raise unavailable(exc) from None
        if loop.time() >= give_up:
            raise _not_ready()
        await asyncio.sleep(0.1)


# --- Raising a case (the API's POST /disagreements and the pages' form) ---------


def page_path(reference: str) -> str:
    """The case's page (web/), where a notice's link takes a person."""
    return f"/cases/{reference}"


def case_url(settings: Settings, reference: str) -> str | None:
    return f"{settings.public_url}{page_path(reference)}" if settings.public_url else None


@dataclass
class Raised:
    started: Started
    state: CaseState | None  # None: a retried raise whose case is not yet answering
    policy: Policy
    request: RaiseDisagreement


async def raise_case(
    client: Client,
    settings: Settings,
    secret: bytes,
    user: User,
    body: RaiseRequest,
    idempotency_key: str | None,
) -> Raised:
    """Raise a disagreement for this user, by the same rules whichever door
    it comes through: 422 for a raise the policy refuses, 403 for one the
    user may not make; with an idempotency key, a retry is the same case."""
    try:
        policy = get_policy(body.policy)
    except UnknownPolicyError as exc:
        raise ProblemError(
            422, problems.INVALID_RAISE, "The case cannot be raised", str(exc)
        ) from None
    refusal = raise_refusal(user, policy.id, body.raising_agency.key)
    if refusal:
        raise ProblemError(403, problems.FORBIDDEN, "Not allowed", refusal)
    area = body.area or (policy.areas[0].key if len(policy.areas) == 1 else None)

    fingerprint = None
    if idempotency_key is not None:
        reference = derived_reference(secret, policy.id, user.id, idempotency_key)
        fingerprint = request_fingerprint(secret, user.id, body.model_dump_json())
    else:
        reference = random_reference(policy.id)
    try:
        request = RaiseDisagreement(
            reference=reference,
            policy=policy,
            area=area,
            raised_by=user.actor(),
            raising_agency=body.raising_agency,
            receiving_agency=body.receiving_agency,
            categories=body.categories,
            summary=body.summary,
            decision_disputed=body.decision_disputed,
            child=body.child,
            immediate_risk=body.immediate_risk,
            start_stage=body.start_stage,
            raised_at=datetime.now(UTC),
            case_url=case_url(settings, reference),
        )
    except ValidationError as exc:  # never echo the input: it holds the child's details
        detail = "; ".join(e["msg"] for e in exc.errors(include_url=False, include_input=False))
        raise ProblemError(
            422, problems.INVALID_RAISE, "The case cannot be raised", detail
        ) from None
    found = raise_problems(request)
    if found:
        raise ProblemError(
            422,
            problems.INVALID_RAISE,
            "The case cannot be raised",
            "; ".join(found),
            problems=found,
        )

    # The case as its raise leaves it, worked out here by the rules the worker
    # will apply, so the answer and the list need not wait for the worker.
    planned = first_stage(request, settings)
    for _attempt in range(3):
        try:
            started = await start_case(
                client, settings, request, fingerprint, planned.clock.deadline
            )
            break
        except WorkflowAlreadyStartedError:
            # A random reference collided with an earlier case: draw another.
            reference = random_reference(policy.id)
            request = request.model_copy(
                update={"reference": reference, "case_url": case_url(settings, reference)}
            )
    else:  # pragma: no cover - three collisions in a row
        raise unavailable()

    if started.created:
        state: CaseState | None = planned.model_copy(update={"reference": started.reference})
    else:
        # A retried request: answer with the case as it stands.
        state = await wait_until_raised(started.handle, settings.raise_wait_seconds)
    return Raised(started=started, state=state, policy=policy, request=request)
