"""The pages: sign in, Your cases, Raise a disagreement, A case, Business team.

Every page reads and acts through ``api.cases``, the same door as the JSON
API, so a page shows a user exactly the cases the API would, a case they may
not see is the same "Page not found" as one that does not exist, and an
action goes to the case's own validator as the API's does. Forms post the
session's CSRF token and a key made when the form was drawn: a raise keyed
so is one case however often it is sent, an action one update.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from starlette.datastructures import FormData

from api import cases
from api.auth import UsersFileAuthenticator
from api.problems import ProblemError
from api.routes.forms import form_pdf, pdf_response
from api.schemas import (
    AcknowledgeBody,
    ConfirmBody,
    DeadlineBody,
    EscalateBody,
    ImmediateRiskBody,
    NoteBody,
    RaiseRequest,
    ResolveBody,
    WithdrawBody,
)
from api.users import PARTY_ROLES, User, ensure_demo_users
from escalation.settings import Settings
from policies.directory import Directory, example_directory, load_directory
from policies.loader import UnknownPolicyError, builtin_policies, get_policy
from policies.model import FormField, Policy
from register.listing import CaseQuery
from web import dates
from web.forms import Errors, from_validation
from web.oidc import (
    SIGNED_OUT_PATH,
    ProviderUnavailable,
    SignInRefused,
    clear_pending,
    read_pending,
    sign_in_client,
    write_pending,
)
from web.sessions import (
    CsrfError,
    Session,
    check_csrf,
    clear_session,
    read_session,
    write_session,
)
from workflows import ladder
from workflows.disagreement import DisagreementWorkflow
from workflows.messages import (
    OPEN_STATUSES,
    Acknowledge,
    Action,
    Actor,
    AddNote,
    Agency,
    CaseRecord,
    ConfirmOutcome,
    Escalate,
    FlagImmediateRisk,
    Resolve,
    ShortenDeadline,
    Withdraw,
)

log = logging.getLogger("escalation.pages")

HERE = Path(__file__).parent
STATIC = HERE / "static"
templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters["long_date"] = dates.long_date
templates.env.filters["short_date"] = dates.short_date
FORM_KEY_RE = re.compile(r"^[0-9a-f]{32}$")
TIME_RE = re.compile(r"^([01]?[0-9]|2[0-3])[:.]([0-5][0-9])$")

# The kinds of disagreement the partnerships' policies name (Cheshire's
# "levels of need, roles and responsibilities, the need for action,
# communication"; Merton's thresholds, decisions at meetings, drift and
# services), as the non-identifying categories a case is raised with and
# the theme reports count.
CATEGORIES = (
    ("thresholds", "Levels of need or thresholds"),
    ("roles-and-responsibilities", "Roles and responsibilities"),
    ("decision-making", "A decision or action, for example at a strategy meeting or conference"),
    ("lack-of-action", "Another professional not acting"),
    ("drift-or-delay", "Drift or delay in progressing actions"),
    ("provision-of-services", "Provision of services"),
    ("communication", "Communication or sharing information"),
)

router = APIRouter(include_in_schema=False)

STATUS_WORDS = {
    "open": "Open",
    "overdue": "Overdue",
    "awaiting-confirmation": "Awaiting written confirmation",
    "resolved": "Resolved",
    "withdrawn": "Withdrawn",
}
EVENT_WORDS = {
    "raised": "Raised",
    "stage_started": "Stage started",
    "acknowledged": "Acknowledged",
    "notice": "Notice sent",
    "reminder": "Reminder sent",
    "auto_escalated": "Escalated automatically",
    "escalated": "Escalated",
    "immediate_risk": "Immediate risk flagged",
    "deadline_shortened": "Deadline brought forward",
    "note": "Discussion recorded",
    "resolved": "Resolved",
    "confirmed": "Outcome confirmed in writing",
    "overdue": "Overdue",
    "withdrawn": "Withdrawn",
    "closed": "Closed",
    "refused": "Action refused",
    "unfilled_roles": "Nobody holds a role",
    "notice_failed": "Notice not sent",
    "delivery_failed": "Notice not delivered",
    "clock_failed": "Deadline could not be worked out",
}
templates.env.globals["STATUS_WORDS"] = STATUS_WORDS
templates.env.globals["EVENT_WORDS"] = EVENT_WORDS


class SignInRequired(Exception):
    pass


class PageError(Exception):
    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(title)
        self.status = status
        self.title = title
        self.message = message


PROVIDER_DOWN = PageError(
    503,
    "Sorry, you cannot sign in at the moment",
    "The service that checks who you are cannot be reached. Try again in a few minutes.",
)
NOT_FOUND = PageError(
    404,
    "Page not found",
    "If you typed the web address, check it is correct. If you "
    "followed a link, the case may not exist or may not be one you can see.",
)


def install(app: FastAPI) -> None:
    """Include the pages and their error handling in the app."""
    app.include_router(router)

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/sign-in?{urlencode({'next': target})}", status_code=303)

    @app.exception_handler(PageError)
    async def _page_error(request: Request, exc: PageError) -> Response:
        return render(request, "error.html", status=exc.status, error=exc)

    @app.exception_handler(CsrfError)
    async def _csrf(request: Request, exc: CsrfError) -> Response:
        error = PageError(
            403,
            "Your form could not be sent",
            "The form had expired or did not come from this service. Go back, reload the "
            "page and try again.",
        )
        return render(request, "error.html", status=403, error=error)


# --- Sessions and users ----------------------------------------------------------


def _secret(request: Request) -> bytes:
    secret = request.app.state.secret
    if secret is None:
        raise PageError(503, "Sorry, the service is unavailable", "Try again in a moment.")
    return bytes(secret)


def _session(request: Request) -> Session:
    session = getattr(request.state, "page_session", None)
    if session is None:
        session = read_session(request, _secret(request))
        request.state.page_session = session
    return session


def _user(request: Request) -> User | None:
    session = _session(request)
    authenticator = request.app.state.authenticator
    if session.user_id is None:
        return None
    if isinstance(authenticator, UsersFileAuthenticator):
        return authenticator.user(session.user_id)
    if session.profile is not None and sign_in_client(request) is not None:
        try:
            user = User.model_validate(session.profile)
        except ValidationError:
            return None
        return user if user.id == session.user_id else None
    return None


def signed_in(request: Request) -> User:
    user = _user(request)
    if user is None:
        raise SignInRequired()
    return user


def redirect_saying(request: Request, url: str, what: str) -> Response:
    """Off to ``url`` (303), whose page says once what the person just did."""
    session = _session(request)
    session.flash = what
    response = RedirectResponse(url, status_code=303)
    write_session(request, response, _secret(request), session)
    return response


def _just_done(request: Request) -> str | None:
    """What the person just did, taken from the session: the page says it
    this once, and its response carries the session without it."""
    session = _session(request)
    what, session.flash = session.flash, None
    if what is not None:
        session.changed = True
    return what


async def posted(request: Request) -> FormData:
    """The form, once its CSRF token is the session's (403 otherwise)."""
    form = await request.form()
    check_csrf(_session(request), form.get("csrf_token"))
    return form


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    session = _session(request)
    context.setdefault("user", _user(request))
    context.setdefault("errors", Errors())
    response = templates.TemplateResponse(
        request, template, {"csrf_token": session.csrf, **context}, status_code=status
    )
    if session.fresh or session.changed:
        write_session(request, response, _secret(request), session)
    # Pages show case details: never keep them in a shared cache.
    response.headers["Cache-Control"] = "no-store"
    return response


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _demo_users(settings: Settings) -> list[User]:
    if settings.oidc_issuer or not settings.demo_users:
        return []
    return [user for user, _token in ensure_demo_users(settings.data_dir, settings.users_file)]


def _safe_next(target: str | None) -> str:
    # Only a path on this site: never an open redirect.
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return "/cases"


@router.get("/", response_class=HTMLResponse)
async def home(request: Request) -> Response:
    return RedirectResponse("/cases" if _user(request) else "/sign-in", status_code=303)


def _by_partnership(
    settings: Settings, users: list[User]
) -> list[tuple[str, list[tuple[User, str]]]]:
    """The demonstration users by partnership, each with what they are in
    words (their role and their agency's name, not its key)."""
    groups: dict[str, list[tuple[User, str]]] = {}
    names: dict[str, dict[str, Agency]] = {}
    for user in users:
        name = "Every partnership"
        what = user.role.replace("-", " ")
        if user.partnership in builtin_policies():
            policy = get_policy(user.partnership or "")
            name = policy.partnership
            if user.agency:
                if policy.id not in names:
                    names[policy.id] = _agencies(settings, policy)
                agency = names[policy.id].get(user.agency)
                what += f", {agency.name if agency else user.agency}"
        groups.setdefault(name, []).append((user, what))
    return list(groups.items())


def _sign_in_page(
    request: Request, target: str, status: int = 200, errors: Errors | None = None
) -> Response:
    settings = _settings(request)
    return render(
        request,
        "sign_in.html",
        status=status,
        next=target,
        demo_users=_by_partnership(settings, _demo_users(settings)),
        local=not settings.oidc_issuer,
        provider=sign_in_client(request) is not None,
        errors=errors or Errors(),
    )


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_page(request: Request, next: str | None = None) -> Response:
    return _sign_in_page(request, _safe_next(next))


@router.get("/sign-in/provider")
async def sign_in_with_provider(request: Request, next: str | None = None) -> Response:
    """Off to the identity provider, with what its answer must match."""
    client = sign_in_client(request)
    if client is None:
        raise NOT_FOUND
    try:
        url, pending = await client.start(request, _safe_next(next))
    except ProviderUnavailable:
        raise PROVIDER_DOWN from None
    response = RedirectResponse(url, status_code=303)
    write_pending(request, response, _secret(request), pending)
    return response


@router.get("/sign-in/callback")
async def sign_in_callback(request: Request) -> Response:
    client = sign_in_client(request)
    if client is None:
        raise NOT_FOUND
    pending = read_pending(request, _secret(request))
    try:
        user = await client.finish(request, pending)
    except ProviderUnavailable:
        raise PROVIDER_DOWN from None
    except SignInRefused as exc:
        log.warning("page sign-in through the identity provider refused: %s", exc)
        errors = Errors()
        errors.general.append("You could not be signed in. Start again from this page.")
        response = _sign_in_page(request, pending.next if pending else "/cases", 400, errors)
        clear_pending(request, response)
        return response
    response = RedirectResponse(_safe_next(pending.next if pending else None), status_code=303)
    clear_pending(request, response)
    # A new session (and CSRF token) for the person the provider vouched for.
    session = Session.new(user.id, profile=user.model_dump())
    write_session(request, response, _secret(request), session)
    log.info("page sign-in through the identity provider: user %s", user.id)
    return response


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(request: Request) -> Response:
    form = await posted(request)
    settings = _settings(request)
    authenticator = request.app.state.authenticator
    target = _safe_next(str(form.get("next") or ""))
    user: User | None = None
    errors = Errors()
    demo = str(form.get("demo_user") or "")
    if demo:
        user = next((u for u in _demo_users(settings) if u.id == demo), None)
        if user is None:
            errors.general.append("That demonstration user is not available")
    elif isinstance(authenticator, UsersFileAuthenticator):
        token = str(form.get("token") or "").strip()
        if not token:
            errors.add("token", "Enter your access token")
        else:
            try:
                user = await authenticator.authenticate(token)
            except Exception:  # noqa: BLE001 - any refusal reads the same to the person
                errors.add("token", "The access token is not recognised")
    if user is None:
        if not errors:
            errors.general.append("Sign-in with a local access token is not available here")
        return _sign_in_page(request, target, 400, errors)
    response = RedirectResponse(target, status_code=303)
    # A new token on sign-in: a token planted before it is worth nothing after.
    write_session(request, response, _secret(request), Session.new(user.id))
    log.info("page sign-in: user %s", user.id)
    return response


@router.post("/sign-out", response_class=HTMLResponse)
async def sign_out(request: Request) -> Response:
    await posted(request)
    provider = sign_in_client(request)
    # The provider's session ended too, where it can be, so that the next
    # person at this computer is asked who they are.
    ended_there = await provider.end_session_url(request) if provider is not None else None
    response = RedirectResponse(ended_there or SIGNED_OUT_PATH, status_code=303)
    clear_session(request, response)
    return response


# --- Your cases ---------------------------------------------------------------------


async def _cases(request: Request, user: User, **filters: Any) -> list[Any]:
    register = request.app.state.register
    if register is None:
        raise PageError(503, "Sorry, the service is unavailable", "Try again in a moment.")
    query = CaseQuery(
        scope=cases.register_scope(user), now=datetime.now(UTC), page_size=100, **filters
    )
    try:
        items, _last = await cases.list_cases(register, query)
    except ProblemError as exc:
        raise PageError(exc.status, "Sorry, the service is unavailable", exc.detail or "") from None
    return items


@router.get("/cases", response_class=HTMLResponse)
async def your_cases(request: Request) -> Response:
    user = signed_in(request)
    waiting = await _cases(request, user, statuses=sorted(OPEN_STATUSES), sort="deadline")
    # Open cases with no deadline left (overdue) come first: they are the most late.
    waiting.sort(
        key=lambda c: (c.status != "overdue", c.deadline or datetime.max.replace(tzinfo=UTC))
    )
    closed = await _cases(request, user, statuses=["resolved", "withdrawn"])
    return render(request, "cases.html", waiting=waiting, closed=closed)


# --- Raise a disagreement -----------------------------------------------------------


def _directory(settings: Settings) -> Directory:
    if settings.directory_file:
        return load_directory(settings.directory_file)
    return example_directory()


def _agencies(settings: Settings, policy: Policy) -> dict[str, Agency]:
    entry = _directory(settings).partnership(policy.id)
    found: dict[str, Agency] = {}
    if entry is not None:
        pools = [entry.agencies, *(area.agencies for area in entry.areas.values())]
        for pool in pools:
            for key, agency in pool.items():
                found.setdefault(key, Agency(key=key, name=agency.name, kind=agency.kind))
    return found


def _raise_context(request: Request, user: User) -> dict[str, Any]:
    settings = _settings(request)
    if user.role not in PARTY_ROLES or user.partnership is None:
        raise PageError(
            403,
            "You cannot raise a disagreement here",
            "Disagreements are raised by practitioners and managers, on behalf of their agency.",
        )
    policy = get_policy(user.partnership)
    agencies = _agencies(settings, policy)
    own = agencies.get(user.agency or "") or Agency(
        key=user.agency or "unknown", name=user.agency or "unknown", kind="other"
    )
    others = [a for key, a in sorted(agencies.items(), key=lambda kv: kv[1].name) if key != own.key]
    return {
        "policy": policy,
        "own": own,
        "others": others,
        "agencies": agencies,
        "categories": CATEGORIES,
    }


@router.get("/cases/new", response_class=HTMLResponse)
async def raise_page(request: Request) -> Response:
    user = signed_in(request)
    context = _raise_context(request, user)
    return render(request, "raise.html", values={}, chosen=[], form_key=uuid.uuid4().hex, **context)


def _date_parts(
    form: FormData, prefix: str, errors: Errors, field: str, label: str
) -> tuple[int, int, int] | None:
    """A GOV.UK date input's day, month and year, or None (blank, or an
    error added for the field)."""
    parts = [str(form.get(f"{prefix}_{p}") or "").strip() for p in ("day", "month", "year")]
    if not any(parts):
        return None
    if not all(parts):
        errors.add(field, f"{label} must include a day, month and year")
        return None
    day, month, year = parts
    if not (day.isdigit() and month.isdigit() and year.isdigit() and len(year) == 4):
        errors.add(field, f"{label} must be a real date")
        return None
    return int(year), int(month), int(day)


def _date_of_birth(form: FormData, errors: Errors) -> str | None:
    # The API's own validator decides whether the date is real.
    parts = _date_parts(form, "child_dob", errors, "child_date_of_birth", "Date of birth")
    if parts is None:
        return None
    year, month, day = parts
    return f"{year:04d}-{month:02d}-{day:02d}"


@router.post("/cases/new", response_class=HTMLResponse)
async def raise_submit(request: Request) -> Response:
    user = signed_in(request)
    form = await posted(request)
    context = _raise_context(request, user)
    policy: Policy = context["policy"]
    errors = Errors()
    values = {k: str(v) for k, v in form.items() if isinstance(v, str)}
    chosen = [str(v) for v in form.getlist("categories") if isinstance(v, str)]
    form_key = values.get("form_key", "")
    if not FORM_KEY_RE.fullmatch(form_key):
        form_key = uuid.uuid4().hex  # a tampered key: a fresh one, so nothing is replayed

    receiving = context["agencies"].get(values.get("receiving_agency", ""))
    if receiving is None or receiving.key == context["own"].key:
        errors.add("receiving_agency", "Select the agency whose decision you disagree with")
    area = values.get("area") or None
    if len(policy.areas) > 1 and area not in {a.key for a in policy.areas}:
        errors.add("area", "Select the area the child lives in")
    child: dict[str, Any] | None = None
    dob = _date_of_birth(form, errors)
    child_fields = {
        "name": values.get("child_name", "").strip(),
        "date_of_birth": dob,
        "address": values.get("child_address", "").strip() or None,
        "nhs_number": values.get("child_nhs_number", "").strip() or None,
    }
    if any(child_fields.values()):
        if not child_fields["name"]:
            errors.add("child_name", "Enter the child's name")
        child = child_fields
    body: dict[str, Any] = {
        "policy": policy.id,
        "area": area,
        "raising_agency": context["own"].model_dump(),
        "receiving_agency": receiving.model_dump() if receiving else None,
        "categories": chosen,
        "summary": values.get("summary", "").strip(),
        "decision_disputed": values.get("decision_disputed", "").strip() or None,
        "child": child,
        "immediate_risk": values.get("immediate_risk") == "yes",
    }
    request_body: RaiseRequest | None = None
    try:
        request_body = RaiseRequest.model_validate(body)
    except ValidationError as exc:
        from_validation(exc, errors)
    if errors or request_body is None:
        return _raise_again(request, context, values, chosen, form_key, errors)
    settings = _settings(request)
    try:
        raised = await cases.raise_case(
            request.app.state.client, settings, _secret(request), user, request_body, form_key
        )
    except ProblemError as exc:
        if exc.status in (403, 422):
            found = (exc.extensions or {}).get("problems") or [exc.detail]
            errors.general += [str(p) for p in found]
            return _raise_again(request, context, values, chosen, form_key, errors)
        raise PageError(
            exc.status, "Sorry, the case could not be raised", exc.detail or ""
        ) from None
    return redirect_saying(request, cases.page_path(raised.started.reference), RAISED)


def _raise_again(
    request: Request,
    context: dict[str, Any],
    values: dict[str, str],
    chosen: list[str],
    key: str,
    errors: Errors,
) -> Response:
    return render(
        request,
        "raise.html",
        status=422,
        values=values,
        chosen=chosen,
        form_key=key,
        errors=errors,
        **context,
    )


# --- A case -------------------------------------------------------------------------------


def _form_fields(policy: Policy, key: str | None, origin: str) -> list[FormField]:
    if key is None:
        return []
    try:
        return list(policy.form(key).fields_from(origin))
    except KeyError:
        return []


def _resolution_forms(policy: Policy, record: CaseRecord) -> list[tuple[str, list[FormField]]]:
    """The forms whose resolution fields the stage's outcome fills in."""
    stage = policy.stages[record.stage]
    keys = [n.form for n in stage.business_team if n.form]
    keys += [s.form_required for s in policy.stages[: record.stage + 1] if s.form_required]
    out, seen = [], set()
    for key in keys:
        if key and key not in seen:
            seen.add(key)
            fields = _form_fields(policy, key, "resolution")
            if fields:
                out.append((policy.form(key).name, fields))
    return out


def _may(policy: Policy, record: CaseRecord, action: Action) -> bool:
    try:
        ladder.check(policy, record, action, datetime.now(UTC))
    except ladder.Refused:
        return False
    return True


def available_actions(policy: Policy, record: CaseRecord, user: User) -> dict[str, Any]:
    """The actions this user may take on the case now, by the case's own rules."""
    by = user.actor()
    actions: dict[str, Any] = {}
    if _may(policy, record, Acknowledge(by=by)):
        actions["acknowledge"] = True
    if record.stage < policy.final_stage:
        target = policy.stages[record.stage + 1]
        fields = _form_fields(policy, target.form_required, "escalation")
        filled = {f.key: "-" for f in fields}
        if _may(policy, record, Escalate(by=by, reason="-", form=filled)):
            form_name = policy.form(target.form_required).name if target.form_required else None
            actions["escalate"] = {"stage": target, "fields": fields, "form_name": form_name}
    if _may(policy, record, Resolve(by=by, outcome="-")):
        actions["resolve"] = {"forms": _resolution_forms(policy, record)}
    if _may(policy, record, ConfirmOutcome(by=by)):
        actions["confirm"] = True
    if _may(policy, record, FlagImmediateRisk(by=by, reason="-")):
        actions["immediate_risk"] = True
    if record.clock.deadline is not None:
        # Whether a deadline a minute from now would be accepted: one that is
        # already closer than that cannot be brought forward.
        soon = datetime.now(UTC) + timedelta(minutes=1)
        if soon < record.clock.deadline and _may(
            policy, record, ShortenDeadline(by=by, deadline=soon, reason="-")
        ):
            actions["deadline"] = True
    if _may(policy, record, AddNote(by=by, text="-")):
        actions["note"] = True
    if _may(policy, record, Withdraw(by=by, reason="-")):
        actions["withdraw"] = True
    return actions


def case_forms(policy: Policy, record: CaseRecord) -> list[dict[str, Any]]:
    """Each of the policy's forms with what the case did with it: sent with
    a notice (to the business team, or whom the stage names), received from
    the person who owed it, or still owed."""
    out = []
    for form in policy.forms:
        sent = [
            e for e in record.events if form.key in e.forms and e.type in ("notice", "reminder")
        ]
        out.append(
            {
                "key": form.key,
                "name": form.name,
                "sent": sent,
                "received": record.forms_received.get(form.key),
                "due": record.forms_due.get(form.key),
            }
        )
    return out


def _owners(policy: Policy, record: CaseRecord) -> list[tuple[str, str]]:
    stage = policy.stages[record.stage]
    return [
        (agency.name, stage.owner_for(agency.kind).title)
        for agency in (record.raising_agency, record.receiving_agency)
    ]


async def _record(request: Request, user: User, reference: str) -> CaseRecord:
    settings = _settings(request)
    try:
        return await cases.read_case(
            request.app.state.client,
            request.app.state.register,
            reference,
            user,
            settings.action_timeout_seconds,
        )
    except ProblemError as exc:
        if exc.status == 404:
            raise NOT_FOUND from None
        raise PageError(exc.status, "Sorry, the case cannot be shown", exc.detail or "") from None


def _policy_of(record: CaseRecord) -> Policy:
    try:
        return get_policy(record.policy_id)
    except UnknownPolicyError:
        raise NOT_FOUND from None


async def _case_page(
    request: Request,
    user: User,
    reference: str,
    status: int = 200,
    errors: Errors | None = None,
    values: dict[str, str] | None = None,
    open_action: str | None = None,
) -> Response:
    record = await _record(request, user, reference)
    done = _just_done(request)
    policy = _policy_of(record)
    stage = policy.stages[record.stage]
    events = [e for e in record.events if e.type not in ("notice", "reminder")]
    return render(
        request,
        "case.html",
        status=status,
        record=record,
        policy=policy,
        stage=stage,
        owners=_owners(policy, record),
        events=list(reversed(events)),
        actions=available_actions(policy, record, user),
        forms=case_forms(policy, record),
        form_key=uuid.uuid4().hex,
        values=values or {},
        errors=errors or Errors(),
        open_action=open_action,
        raised=done == RAISED,
        done=done,
    )


@router.get("/cases/{reference}", response_class=HTMLResponse)
async def case_page(request: Request, reference: str) -> Response:
    user = signed_in(request)
    return await _case_page(request, user, reference)


@router.get("/cases/{reference}/forms/{form}.pdf")
async def case_form(request: Request, reference: str, form: str) -> Response:
    """One of the case's forms filled from it as it stands, as the API's
    GET /disagreements/{ref}/forms/{form} gives it, for whoever may see the case."""
    user = signed_in(request)
    try:
        pdf, filename = await form_pdf(
            request.app.state.client, _settings(request), reference, user, form
        )
    except ProblemError as exc:
        if exc.status == 404:
            raise NOT_FOUND from None
        raise PageError(
            exc.status, "Sorry, the form cannot be downloaded", exc.detail or ""
        ) from None
    return pdf_response(pdf, filename)


# What the case page says once after the raise form (its confirmation panel).
RAISED = "raised"

DONE_WORDS = {
    "acknowledge": "You acknowledged the concern",
    "escalate": "You escalated the case",
    "resolve": "You recorded the outcome",
    "confirm": "You confirmed the outcome in writing",
    "immediate-risk": "You flagged immediate risk of significant harm",
    "note": "You recorded the discussion",
    "withdraw": "You withdrew the disagreement",
    "deadline": "You brought the deadline forward",
}
templates.env.globals["DONE_WORDS"] = DONE_WORDS


def _form_values(form: FormData, prefix: str) -> dict[str, str]:
    return {
        key.removeprefix(prefix): str(value).strip()
        for key, value in form.items()
        if key.startswith(prefix) and isinstance(value, str) and str(value).strip()
    }


class Invalid(Exception):
    """A posted form the pages refuse before the API's bodies see it."""

    def __init__(self, errors: Errors) -> None:
        super().__init__("invalid form")
        self.errors = errors


def _new_deadline(form: FormData, text: dict[str, str]) -> datetime:
    """The day and time posted for a new deadline, in the partnership's time
    zone (every policy here is English)."""
    errors = Errors()
    parts = _date_parts(form, "deadline", errors, "deadline", "The new deadline")
    clock = TIME_RE.fullmatch(text.get("deadline_time", ""))
    if not errors and parts is None:
        errors.add("deadline", "Enter the new deadline")
    elif not errors and clock is None:
        errors.add("deadline", "Enter the time as hours and minutes, for example 17:00")
    if errors or parts is None or clock is None:
        raise Invalid(errors)
    year, month, day = parts
    try:
        return datetime(year, month, day, int(clock[1]), int(clock[2]), tzinfo=dates.LONDON)
    except ValueError:
        errors.add("deadline", "The new deadline must be a real date")
        raise Invalid(errors) from None


def _action(verb: str, form: FormData, by: Actor) -> tuple[Any, Action]:
    """The workflow update and its action for a posted action form; the API's
    bodies validate it (ValidationError otherwise)."""
    text = {k: str(v).strip() for k, v in form.items() if isinstance(v, str)}
    if verb == "acknowledge":
        ack = AcknowledgeBody(note=text.get("note") or None)
        return DisagreementWorkflow.acknowledge, Acknowledge(by=by, note=ack.note)
    if verb == "escalate":
        esc = EscalateBody(reason=text.get("reason", ""), form=_form_values(form, "form-"))
        return DisagreementWorkflow.escalate, Escalate(by=by, reason=esc.reason, form=esc.form)
    if verb == "resolve":
        res = ResolveBody(outcome=text.get("outcome", ""), form=_form_values(form, "form-"))
        return DisagreementWorkflow.resolve, Resolve(by=by, outcome=res.outcome, form=res.form)
    if verb == "confirm":
        con = ConfirmBody(confirmation=text.get("confirmation") or "Outcome confirmed in writing")
        return DisagreementWorkflow.confirm, ConfirmOutcome(by=by, confirmation=con.confirmation)
    if verb == "immediate-risk":
        risk = ImmediateRiskBody(reason=text.get("reason", ""))
        return DisagreementWorkflow.immediate_risk, FlagImmediateRisk(by=by, reason=risk.reason)
    if verb == "note":
        note = NoteBody(text=text.get("text", ""))
        return DisagreementWorkflow.add_note, AddNote(by=by, text=note.text)
    if verb == "deadline":
        moved = DeadlineBody(deadline=_new_deadline(form, text), reason=text.get("reason", ""))
        return DisagreementWorkflow.shorten_deadline, ShortenDeadline(
            by=by, deadline=moved.deadline, reason=moved.reason
        )
    if verb == "withdraw":
        wd = WithdrawBody(reason=text.get("reason", ""))
        return DisagreementWorkflow.withdraw, Withdraw(by=by, reason=wd.reason)
    raise NOT_FOUND


def _prefixed(errors: Errors, verb: str) -> Errors:
    # Every action form on the page has its own field ids: "escalate-reason".
    return Errors({f"{verb}-{k}": m for k, m in errors.fields.items()}, errors.general)


@router.post("/cases/{reference}/{verb}", response_class=HTMLResponse)
async def case_action(request: Request, reference: str, verb: str) -> Response:
    user = signed_in(request)
    form = await posted(request)
    if verb not in DONE_WORDS:
        raise NOT_FOUND
    values = {k: str(v) for k, v in form.items() if isinstance(v, str)}
    form_key = values.get("form_key", "")
    if not FORM_KEY_RE.fullmatch(form_key):
        form_key = uuid.uuid4().hex
    try:
        update, action = _action(verb, form, user.actor())
    except ValidationError as exc:
        errors = _prefixed(from_validation(exc), verb)
        return await _case_page(request, user, reference, 422, errors, values, verb)
    except Invalid as exc:
        return await _case_page(
            request, user, reference, 422, _prefixed(exc.errors, verb), values, verb
        )
    settings = _settings(request)
    try:
        case = await cases.find_case(request.app.state.client, reference, user, verb)
        await cases.act(
            case, update, action, settings.action_timeout_seconds, update_id=f"page-{form_key}"
        )
    except ProblemError as exc:
        if exc.status == 404:
            raise NOT_FOUND from None
        if exc.status != 409:
            raise PageError(
                exc.status, "Sorry, the action was not taken", exc.detail or ""
            ) from None
        errors = Errors()
        if isinstance(action, Escalate):
            record = await _record(request, user, reference)
            policy = _policy_of(record)
            if record.stage < policy.final_stage:
                target = record.stage + 1
                fields = _form_fields(policy, policy.stages[target].form_required, "escalation")
                for f in fields:
                    if f.required and not action.form.get(f.key, "").strip():
                        errors.add(f"form-{f.key}", f"Enter {f.label.lower()}")
        detail = exc.detail or "the case could not take it"
        detail = detail[0].upper() + detail[1:]
        if isinstance(action, ShortenDeadline):
            errors.add("deadline", detail)
        if not errors:
            errors.general.append(detail)
        errors = _prefixed(errors, verb)
        return await _case_page(request, user, reference, 422, errors, values, verb)
    return redirect_saying(request, cases.page_path(reference), verb)


# --- Business team --------------------------------------------------------------------

BUSINESS_ROLES = frozenset({"business-team", "operator"})


def _business_filters(request: Request) -> tuple[dict[str, Any], dict[str, str]]:
    params = request.query_params
    chosen = {k: params.get(k, "") for k in ("overdue", "awaiting", "immediate_risk", "stage")}
    filters: dict[str, Any] = {}
    if chosen["overdue"] == "yes":
        filters["overdue"] = True
    if chosen["awaiting"] == "yes":
        filters["statuses"] = ["awaiting-confirmation"]
    if chosen["immediate_risk"] == "yes":
        filters["immediate_risk"] = True
    if chosen["stage"].isdigit() and int(chosen["stage"]) < 100:
        filters["stage"] = int(chosen["stage"])
    else:
        chosen["stage"] = ""
    return filters, chosen


def _business_user(request: Request) -> User:
    user = signed_in(request)
    if user.role not in BUSINESS_ROLES:
        raise NOT_FOUND
    return user


@router.get("/business-team", response_class=HTMLResponse)
async def business_team(request: Request) -> Response:
    user = _business_user(request)
    filters, chosen = _business_filters(request)
    items = await _cases(request, user, **filters)
    policy = None
    if user.partnership in builtin_policies():
        policy = get_policy(user.partnership or "")
    query = urlencode({k: v for k, v in chosen.items() if v})
    scope = None if user.role == "operator" else user.partnership or "-"
    reports = await run_in_threadpool(request.app.state.register.reports, scope)
    forms = await run_in_threadpool(request.app.state.register.forms_sent, scope)
    return render(
        request,
        "business.html",
        items=items,
        chosen=chosen,
        policy=policy,
        reports=reports,
        forms=[(row, _form_name(row.policy_id, row.form)) for row in forms],
        csv_link="/business-team/cases.csv" + (f"?{query}" if query else ""),
    )


def _form_name(policy_id: str, key: str) -> str:
    try:
        return get_policy(policy_id).form(key).name
    except (UnknownPolicyError, KeyError):
        return key


@router.get("/business-team/reports/{report_id}.{kind}")
async def business_team_report(request: Request, report_id: str, kind: str) -> Response:
    """A theme report as it was mailed: the same PDF or CSV, for the
    partnership's business team (an operator: any)."""
    user = _business_user(request)
    if kind not in ("pdf", "csv") or len(report_id) > 48:
        raise NOT_FOUND
    row = await run_in_threadpool(request.app.state.register.report, report_id)
    if row is None or (user.role != "operator" and row.policy_id != user.partnership):
        raise NOT_FOUND
    if kind == "pdf":
        return Response(
            row.pdf,
            media_type="application/pdf",
            headers={"Content-Disposition": f'attachment; filename="{row.id}.pdf"'},
        )
    return Response(
        row.csv,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{row.id}.csv"'},
    )


CSV_COLUMNS = (
    "reference",
    "policy",
    "area",
    "stage",
    "stage_name",
    "status",
    "deadline",
    "immediate_risk",
    "raising_agency",
    "receiving_agency",
    "raised_at",
    "closed_at",
)


@router.get("/business-team/cases.csv")
async def business_team_csv(request: Request) -> Response:
    user = _business_user(request)
    filters, _chosen = _business_filters(request)
    items = await _cases(request, user, **filters)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for item in items:
        row = item.model_dump(mode="json")
        writer.writerow(["" if row[c] is None else row[c] for c in CSV_COLUMNS])
    stamp = datetime.now(UTC).strftime("%Y%m%d")
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="cases-{stamp}.csv"',
            "Cache-Control": "no-store",
        },
    )
