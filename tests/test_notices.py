"""Notices: the words of every template, roles resolved through the
directory, unfilled roles reported, the .eml outbox, the ledger that sends
nothing twice, and the workflow's side (forms attached, unfilled roles and
delivery failures recorded on the case)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import io
import re
from collections.abc import AsyncIterator, Callable
from collections.abc import Set as AbstractSet
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, get_args

import pytest
from pypdf import PdfReader
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.notices import (
    UNFILLED_SUFFIX,
    Addressee,
    MemorySink,
    NoticeActivities,
    OutboxSink,
    OutgoingEmail,
    recipient_key,
    resolve,
)
from activities.templates import TEMPLATES, render
from policies.directory import Directory, example_directory, parse_directory
from policies.loader import get_policy
from tests.conftest import Harness, make_request, state_of
from workflows import ladder
from workflows.disagreement import DisagreementWorkflow
from workflows.messages import (
    Actor,
    AddNote,
    CaseState,
    ChildDetails,
    DeliveryFailed,
    Escalate,
    FilledField,
    FilledForm,
    Notice,
    NoticeTemplate,
    RaiseDisagreement,
    Recipient,
    Resolve,
)

CHILD = ChildDetails(
    name="Jamie Okonkwo-Smith",
    date_of_birth=date(2015, 3, 3),
    address="12 Acacia Avenue, Morden SM4 1AA",
    nhs_number="943 476 5919",
)
SECRETS = ("Jamie", "Okonkwo", "Acacia", "SM4 1AA", "943 476 5919", "2015")
SUMMARY = "Stage 2 summary in the policy's own words."


def notice(template: str = "stage-started", **changes: Any) -> Notice:
    base = Notice(
        notice_id=f"MER-7K2Q9XAB-00003-{template}",
        reference="MER-7K2Q9XAB",
        template=template,  # type: ignore[arg-type]
        policy_id="merton",
        partnership="Merton Safeguarding Children Partnership (MSCP)",
        area="merton",
        recipients=[
            Recipient(
                role="named-professional",
                title="Named Professionals for NHS provider Trusts and GPs",
                agency="merton-health",
                agency_kind="health",
                area="merton",
            ),
            Recipient(
                role="head-of-service",
                title="Service area Head of Service",
                agency="merton-childrens-social-care",
                agency_kind="childrens-social-care",
                area="merton",
            ),
            Recipient(
                role="raiser",
                title="Priya Shah (raised the concern)",
                email="priya.shah@merton-health.example.org",
                area="merton",
            ),
        ],
        stage=2,
        stage_name="Stage 2: senior leaders",
        stage_summary=SUMMARY,
        deadline=datetime(2027, 1, 11, 17, tzinfo=UTC),
        deadline_text="Mon 11 Jan 2027 17:00 GMT",
        status="open",
        context={"reason": "the deadline passed", "from_stage": "1"},
        case_url="https://escalation.merton.example.org/disagreements/MER-7K2Q9XAB",
    )
    return base.model_copy(update=changes)


def pro_forma() -> FilledForm:
    return FilledForm(
        key="escalation-pro-forma",
        name="Escalation Stage One/Two Pro-forma",
        partnership="Merton Safeguarding Children Partnership (MSCP)",
        reference="MER-7K2Q9XAB",
        sent_to="Safeguarding Partnership Business Team, via secure email",
        source="Appendix 1",
        fields=[
            FilledField(
                key="child-name",
                label="Name of child/young person",
                value=CHILD.name,
                identifying=True,
            ),
            FilledField(key="child-dob", label="DOB", value="3 March 2015", identifying=True),
            FilledField(key="what-was-agreed", label="If yes, what was agreed?", value="A plan"),
        ],
    )


def without(directory: Directory, *path: str) -> Directory:
    """The directory with one entry removed (path of keys under partnerships)."""
    data = directory.model_dump(mode="json")
    node = data["partnerships"]
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return parse_directory(data, "test")


# --- Templates ----------------------------------------------------------------------


def test_there_are_words_for_every_template() -> None:
    assert set(TEMPLATES) == set(get_args(NoticeTemplate))


@pytest.mark.parametrize("template", sorted(get_args(NoticeTemplate)))
def test_every_template_says_what_when_and_where(template: str) -> None:
    n = notice(template, context={"reason": "raised", "event": "resolved", "confirmation": "due"})
    rendered = render(n, ["Service area Head of Service, Merton children's social care"])
    assert "[MER-7K2Q9XAB]" in rendered.subject
    for body in (rendered.text, rendered.html):
        assert SUMMARY.replace("'", "&#x27;") in body or SUMMARY in body
        assert "Stage 2" in body
        assert "MER-7K2Q9XAB" in body
        assert "Service area Head of Service" in body
    assert "Open the case: https://escalation.merton.example.org/disagreements/MER-7K2Q9XAB" in (
        rendered.text
    )
    assert 'href="https://escalation.merton.example.org/disagreements/MER-7K2Q9XAB"' in (
        rendered.html
    )
    assert rendered.html.startswith("<!DOCTYPE html>")


@pytest.mark.parametrize(
    "template",
    [
        "stage-started",
        "escalated-automatically",
        "deadline-day-reminder",
        "deadline-shortened",
        "written-confirmation-due",
        "immediate-risk",
    ],
)
def test_templates_with_a_deadline_give_it_with_weekday_and_local_time(template: str) -> None:
    rendered = render(notice(template))
    assert "Mon 11 Jan 2027 17:00 GMT" in rendered.text


def test_no_timescale_stage_says_so() -> None:
    text = render(notice("stage-started", deadline=None, deadline_text=None)).text
    assert "no written timescale" in text


def test_immediate_risk_is_marked_urgent() -> None:
    rendered = render(notice("immediate-risk"))
    assert rendered.subject.startswith("URGENT [MER-7K2Q9XAB]")
    assert "immediate risk of significant harm" in rendered.text


def test_business_team_record_names_the_attached_form() -> None:
    n = notice(
        "business-team-record",
        forms=["escalation-pro-forma"],
        filled_forms=[pro_forma()],
        context={"event": "resolved"},
    )
    text = render(n).text
    assert "Attached, filled from the case: Escalation Stage One/Two Pro-forma" in text


# --- Resolving roles ------------------------------------------------------------------------


def test_roles_resolve_to_the_directorys_people_and_the_raiser() -> None:
    resolution = resolve(example_directory(), notice())
    assert [a.email for a in resolution.to] == [
        "tom.fraser@merton-health.example.org",
        "dev.ward@merton-childrens-social-care.example.org",
        "priya.shah@merton-health.example.org",
    ]
    assert resolution.unfilled == []
    assert resolution.audience[0] == (
        "Named Professionals for NHS provider Trusts and GPs, Merton health (NHS)"
    )


def test_an_unheld_role_is_reported_not_skipped() -> None:
    directory = without(
        example_directory(),
        "merton",
        "areas",
        "merton",
        "agencies",
        "merton-health",
        "roles",
        "named-professional",
    )
    resolution = resolve(directory, notice())
    assert [r.label for r in resolution.unfilled] == ["merton-health:named-professional"]
    assert len(resolution.to) == 2


def test_without_a_directory_only_the_raiser_resolves_and_nothing_is_unfilled() -> None:
    resolution = resolve(None, notice())
    assert [a.email for a in resolution.to] == ["priya.shah@merton-health.example.org"]
    assert resolution.unfilled == []


def test_the_same_person_is_mailed_once() -> None:
    n = notice(
        recipients=[
            Recipient(
                role="independent-person", title="Independent Person", agency=a, area="merton"
            )
            for a in ("merton-health", "merton-childrens-social-care")
        ]
    )
    assert len(resolve(example_directory(), n).to) == 1


# --- The activity ---------------------------------------------------------------------------


async def test_send_notice_once_and_a_retry_sends_nothing_more() -> None:
    sink = MemorySink()
    acts = NoticeActivities(sink, example_directory())
    env = ActivityEnvironment()
    first = await env.run(acts.send_notice, notice())
    again = await env.run(acts.send_notice, notice())
    assert (first.delivered, first.duplicate, first.unfilled_roles) == (True, False, [])
    assert (again.delivered, again.duplicate) == (True, True)
    assert len(sink.notices) == 1 and len(sink.emails) == 1
    mail = sink.emails[0]
    assert mail.sender.email == "escalation@example.org"
    assert mail.custom_args["case_reference"] == "MER-7K2Q9XAB"


async def test_unfilled_roles_go_to_the_business_team_and_back_to_the_case() -> None:
    directory = without(
        example_directory(),
        "merton",
        "areas",
        "merton",
        "agencies",
        "merton-childrens-social-care",
        "roles",
        "head-of-service",
    )
    sink = MemorySink()
    receipt = await ActivityEnvironment().run(
        NoticeActivities(sink, directory).send_notice, notice()
    )
    assert receipt.unfilled_roles == ["merton-childrens-social-care:head-of-service"]
    own, copy = sink.emails
    assert copy.key == own.key + UNFILLED_SUFFIX
    assert [a.email for a in copy.to] == ["mscp-business-team@merton.example.org"]
    assert copy.subject.startswith("Unfilled role: [MER-7K2Q9XAB]")
    assert "Nobody in the role directory holds Service area Head of Service" in copy.text
    assert "merton-childrens-social-care" in copy.text
    # A retry repeats neither email, and still reports the role.
    again = await ActivityEnvironment().run(NoticeActivities(sink, directory).send_notice, notice())
    assert again.unfilled_roles == receipt.unfilled_roles and len(sink.emails) == 2


async def test_the_case_link_falls_back_to_the_case_page_at_the_public_url() -> None:
    sink = MemorySink()
    acts = NoticeActivities(sink, example_directory(), public_url="https://esc.example.org/")
    await ActivityEnvironment().run(acts.send_notice, notice(case_url=None))
    assert "https://esc.example.org/cases/MER-7K2Q9XAB" in sink.emails[0].text


async def test_a_notice_that_would_name_the_child_is_refused() -> None:
    leaky = notice(
        "business-team-record",
        forms=["escalation-pro-forma"],
        filled_forms=[pro_forma()],
        stage_name=f"Stage 2 for {CHILD.name}",
    )
    sink = MemorySink()
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(NoticeActivities(sink).send_notice, leaky)
    assert caught.value.non_retryable and caught.value.type == "IdentifyingNotice"
    assert CHILD.name not in str(caught.value)
    assert sink.emails == []


# --- The .eml outbox -------------------------------------------------------------------------


async def test_outbox_writes_one_readable_eml_per_email(tmp_path: Path) -> None:
    sink = OutboxSink(tmp_path / "outbox")
    n = notice(
        "business-team-record",
        recipients=[Recipient(role="business-team", title="Business Team", area="merton")],
        forms=["escalation-pro-forma"],
        filled_forms=[pro_forma()],
        context={"event": "resolved"},
    )
    acts = NoticeActivities(sink, example_directory(), sender=Addressee("Esc", "esc@x.example.org"))
    await ActivityEnvironment().run(acts.send_notice, n)
    files = sorted((tmp_path / "outbox").glob("*.eml"))
    team = "mscp-business-team@merton.example.org"
    assert [f.name for f in files] == [sink.path(recipient_key(n.notice_id, team)).name]
    message = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert message["To"] == "MSCP Business Team <mscp-business-team@merton.example.org>"
    assert message["From"] == "Esc <esc@x.example.org>"
    assert message["Subject"].startswith("[MER-7K2Q9XAB] For the record: resolved")
    assert message["X-Escalation-Reference"] == "MER-7K2Q9XAB"
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert plain is not None and SUMMARY in plain.get_content()
    assert html is not None and "<h1" in html.get_content()
    attachments = list(message.iter_attachments())
    assert [a.get_filename() for a in attachments] == ["MER-7K2Q9XAB-escalation-pro-forma.pdf"]
    pdf = attachments[0].get_content()
    assert pdf.startswith(b"%PDF-")
    assert CHILD.name in PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
    words = plain.get_content() + html.get_content() + str(message["Subject"])
    for secret in SECRETS:
        assert secret not in words
    # The file is the ledger: a retry sees it and writes nothing.
    stamp = files[0].stat().st_mtime_ns
    receipt = await ActivityEnvironment().run(acts.send_notice, n)
    assert receipt.duplicate and files[0].stat().st_mtime_ns == stamp
    assert sorted((tmp_path / "outbox").glob("*.eml")) == files


async def test_each_recipient_gets_their_own_copy_in_the_outbox(tmp_path: Path) -> None:
    sink = OutboxSink(tmp_path / "outbox")
    acts = NoticeActivities(sink, example_directory(), sender=Addressee("Esc", "esc@x.example.org"))
    n = notice()
    emails, _ = acts.compose(n)
    people = [a.email for a in emails[0].to]
    assert len(people) >= 2

    # A crash after the first copy was written: the retry writes the rest.
    first = emails[0].copies()[0]
    sink.path(first.key).write_bytes(first.as_message().as_bytes())
    stamp = sink.path(first.key).stat().st_mtime_ns
    receipt = await ActivityEnvironment().run(acts.send_notice, n)

    assert receipt.delivered
    files = sorted((tmp_path / "outbox").glob("*.eml"))
    assert len(files) == len(people)
    assert sink.path(first.key).stat().st_mtime_ns == stamp
    seen = []
    for path in files:
        raw = path.read_bytes()
        message = email.message_from_bytes(raw, policy=email.policy.default)
        (to,) = message["To"].addresses
        seen.append(to.addr_spec)
        others = [p for p in people if p != to.addr_spec]
        assert not any(other.encode() in raw for other in others), path.name
    assert sorted(seen) == sorted(people)
    again = await ActivityEnvironment().run(acts.send_notice, n)
    assert again.duplicate and sorted((tmp_path / "outbox").glob("*.eml")) == files


async def test_an_outbox_email_from_before_per_recipient_copies_is_not_sent_again(
    tmp_path: Path,
) -> None:
    sink = OutboxSink(tmp_path / "outbox")
    acts = NoticeActivities(sink, example_directory(), sender=Addressee("Esc", "esc@x.example.org"))
    n = notice()
    sink.path(n.notice_id).write_bytes(b"To: everyone at once\n\nthe old way")

    receipt = await ActivityEnvironment().run(acts.send_notice, n)

    assert receipt.duplicate
    assert [p.name for p in (tmp_path / "outbox").glob("*.eml")] == [f"{n.notice_id}.eml"]


def test_an_email_without_people_is_still_a_valid_message() -> None:
    mail = OutgoingEmail(
        key="K",
        notice_id="K",
        reference="R-0001",
        template="stage-started",
        policy_id="merton",
        sender=Addressee("Esc", "esc@example.org"),
        to=[],
        subject="S",
        text="t",
        html="<p>h</p>",
    )
    assert mail.as_message()["To"] == "undisclosed-recipients:;"


# --- The workflow's side ------------------------------------------------------------------------


def receiving_manager(request: Any) -> Actor:
    return Actor(
        id="mgr", name="Receiving manager", agency=request.receiving_agency.key, role="manager"
    )


async def wait_for(
    handle: WorkflowHandle, predicate: Callable[[CaseState], bool], seconds: float = 20
) -> CaseState:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        state = await state_of(handle)
        if predicate(state):
            return state
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not met; events: {[e.type for e in state.events]}")
        await asyncio.sleep(0.05)


async def barrier(handle: WorkflowHandle) -> None:
    for _ in range(100):
        try:
            await handle.execute_update(DisagreementWorkflow.add_note, AddNote(text="barrier"))
            return
        except WorkflowUpdateFailedError as failure:
            cause = failure.cause
            if not (isinstance(cause, ApplicationError) and cause.type == "NotReady"):
                raise
            await asyncio.sleep(0.05)


@asynccontextmanager
async def open_case(harness: Harness, request: Any) -> AsyncIterator[WorkflowHandle]:
    handle = await harness.raise_case(request)
    try:
        await barrier(handle)
        yield handle
    finally:
        description = await handle.describe()
        if description.status and description.status.name == "RUNNING":
            await handle.terminate("test over")


async def test_business_team_gets_the_pro_forma_filled_from_the_case(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness]
) -> None:
    harness = new_worker()
    request = make_request("merton", await ts_env.get_current_time())
    request = request.model_copy(update={"child": CHILD, "summary": f"About {CHILD.name}"})
    request.raised_by.email = "priya.shah@merton-health.example.org"
    manager = receiving_manager(request)
    async with harness.worker(directory=example_directory()), open_case(harness, request) as case:
        for _ in range(2):
            await case.execute_update(
                DisagreementWorkflow.escalate, Escalate(by=manager, reason="not resolved")
            )
        await case.execute_update(
            DisagreementWorkflow.resolve,
            Resolve(
                by=manager,
                outcome=f"Agreed a plan for {CHILD.name}",
                form={"agency-learning": "Share thresholds"},
            ),
        )
        state = await wait_for(
            case, lambda s: any(e.template == "business-team-record" for e in s.events)
        )
        # Written confirmation (Merton stage 2): the form query works on the case too.
        form = await case.query("form", "escalation-pro-forma", result_type=FilledForm)
    assert state.unfilled_roles == []
    # The pro-forma goes on leaving stage 1 and on the resolution (Appendix 1).
    record = [
        n
        for n in harness.sink.notices
        if n.template == "business-team-record" and n.context.get("event") == "resolved"
    ]
    assert len(record) == 1 and record[0].forms == ["escalation-pro-forma"]
    # The emailed copy names nobody: identifying fields are withheld and the
    # child is scrubbed from typed text; the case's own form is complete.
    values = {f.key: f.value for f in record[0].filled_forms[0].fields}
    assert values["child-name"].startswith("Withheld from email")
    assert CHILD.name not in values["what-was-agreed"]
    assert values["what-was-agreed"].startswith("Agreed a plan for")
    assert values["agency-learning"] == "Share thresholds"
    complete = {f.key: f.value for f in form.fields}
    assert complete["child-name"] == CHILD.name
    assert complete["what-was-agreed"] == f"Agreed a plan for {CHILD.name}"
    (mail,) = harness.sink.emails_for(record[0].notice_id)
    assert [a.email for a in mail.to] == ["mscp-business-team@merton.example.org"]
    assert mail.attachments[0].filename.endswith("-escalation-pro-forma.pdf")
    pdf_text = PdfReader(io.BytesIO(mail.attachments[0].content)).pages[0].extract_text()
    assert CHILD.name not in pdf_text
    assert "Withheld from email" in " ".join(pdf_text.split())
    for sent in harness.sink.emails:
        words = " ".join(
            [sent.subject, sent.text, sent.html, *sent.categories, *sent.custom_args.values()]
        )
        for secret in SECRETS:
            assert secret not in words, (sent.template, secret)


async def test_unfilled_roles_are_recorded_on_the_case(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness]
) -> None:
    harness = new_worker()
    request = make_request("merton", await ts_env.get_current_time())
    directory = without(
        example_directory(),
        "merton",
        "areas",
        "merton",
        "agencies",
        "merton-childrens-social-care",
        "roles",
        "practitioner",
    )
    async with harness.worker(directory=directory), open_case(harness, request) as case:
        state = await wait_for(case, lambda s: any(e.type == "unfilled_roles" for e in s.events))
    assert state.unfilled_roles == ["merton-childrens-social-care:practitioner", "raiser"]
    event = next(e for e in state.events if e.type == "unfilled_roles")
    assert event.template == "stage-started" and event.notice_id
    copies = [e for e in harness.sink.emails if e.key.endswith(UNFILLED_SUFFIX)]
    assert copies and all(
        [a.email for a in c.to] == ["mscp-business-team@merton.example.org"] for c in copies
    )


async def test_a_bounce_is_recorded_and_the_business_team_told(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness]
) -> None:
    harness = new_worker()
    request = make_request("merton", await ts_env.get_current_time())
    async with harness.worker(directory=example_directory()), open_case(harness, request) as case:
        first = harness.sink.notices[0]
        report = DeliveryFailed(
            notice_id=first.notice_id,
            event="bounce",
            reason="550 5.1.1 user unknown",
            recipient="safeguarding-duty@merton-health.example.org",
        )
        await case.signal("delivery_failed", report)
        await case.signal("delivery_failed", report)  # a repeat
        state = await wait_for(
            case, lambda s: any(e.template == "delivery-failed" for e in s.events)
        )
        await barrier(case)
        state = await state_of(case)
    assert state.delivery_failures == [report]
    failed = [e for e in state.events if e.type == "delivery_failed"]
    assert len(failed) == 1 and failed[0].notice_id == first.notice_id
    assert "550 5.1.1 user unknown" in (failed[0].detail or "")
    told = [n for n in harness.sink.notices if n.template == "delivery-failed"]
    assert len(told) == 1
    assert [r.role for r in told[0].recipients] == ["business-team"]
    assert (
        told[0].context["failed_template"] == "immediate-risk"
        or told[0].context["failed_template"] == first.template
    )
    text = harness.sink.emails_for(told[0].notice_id)[0].text
    assert "was not delivered (bounce: 550 5.1.1 user unknown)" in text
    assert state.status == "open"


class RefusingSink(MemorySink):
    """Refuses one template's emails as SendGrid would, every time or only
    the first ``times`` tries; counts the tries."""

    def __init__(
        self, template: str, refusal: Callable[[], Exception], times: int | None = None
    ) -> None:
        super().__init__()
        self.template = template
        self.refusal = refusal
        self.times = times
        self.tries = 0

    def deliver(
        self,
        notice: Notice,
        email: OutgoingEmail | None = None,
        sent: AbstractSet[str] = frozenset(),
    ) -> None:
        if notice.template == self.template:
            self.tries += 1
            if self.times is None or self.tries <= self.times:
                raise self.refusal()
        super().deliver(notice, email, sent)


async def test_a_refused_notice_does_not_stop_the_case(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness]
) -> None:
    harness = new_worker()
    harness.sink = RefusingSink(
        "stage-started",
        lambda: ApplicationError(
            "SendGrid answered 400", type="NoticeRejected", non_retryable=True
        ),
    )
    request = make_request("wirral", await ts_env.get_current_time())
    async with harness.worker(directory=example_directory()), open_case(harness, request) as case:
        state = await wait_for(
            case, lambda s: any(e.template == "delivery-failed" for e in s.events)
        )
    failed = [e for e in state.events if e.type == "notice_failed"]
    assert len(failed) == 1 and failed[0].template == "stage-started"
    assert "NoticeRejected: SendGrid answered 400" in (failed[0].detail or "")
    told = [n for n in harness.sink.notices if n.template == "delivery-failed"]
    assert told[0].context["event"] == "rejected"
    assert state.status == "open" and state.stage == 0


async def test_a_stage_notice_that_misses_its_first_try_still_goes_once(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness]
) -> None:
    """A stage's clock and its first notice go in one activity; when the
    notice cannot go then, the stage keeps its deadline and the same notice
    (the same id, so no recipient gets it twice) goes by its own activity."""
    harness = new_worker()
    harness.sink = RefusingSink(
        "stage-started",
        lambda: ApplicationError("SendGrid could not be reached", type="SendGridUnavailable"),
        times=1,
    )
    request = make_request("wirral", await ts_env.get_current_time())
    async with harness.worker(directory=example_directory()), open_case(harness, request) as case:
        state = await wait_for(
            case,
            lambda s: (
                s.notices_sent.get("0:stage-started") == 1
                and any(e.type == "notice" and e.template == "stage-started" for e in s.events)
            ),
        )
    # Refused once, then every email of it went (the sink is called per email).
    assert harness.sink.tries == 1 + len(harness.sink.emails_for(started_id(request)))
    started = [n for n in harness.sink.notices if n.template == "stage-started"]
    assert [n.notice_id for n in started] == [started_id(request)]
    assert started[0].deadline == state.clock.deadline is not None
    assert started[0].deadline_text == state.clock.deadline_text
    assert not [e for e in state.events if e.type == "notice_failed"]


def started_id(request: RaiseDisagreement) -> str:
    return f"{request.reference}-s0n1-stage-started"


def test_filled_forms_skip_forms_the_policy_does_not_have() -> None:
    policy = get_policy("wirral")
    request = make_request("wirral", datetime(2027, 1, 4, 10, tzinfo=UTC))
    state = ladder.new_state(request, datetime(2027, 1, 4, 10, tzinfo=UTC))
    forms = ladder.filled_forms(policy, state, request, ["appendix-1", "nope"], state.raised_at)
    assert [f.key for f in forms] == ["appendix-1"]


def test_notice_ids_name_their_template() -> None:
    from workflows.disagreement import _template_of

    assert _template_of("MER-12345-00007-stage-started") == "stage-started"
    assert _template_of("T-ABC-00012-delivery-failed") == "delivery-failed"
    assert re.fullmatch(r"notice", _template_of("odd"))
