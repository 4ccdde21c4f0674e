"""The partnerships' forms: filled from the case, rendered as PDF with every
field their source documents list, anonymised where the policy says so."""

from __future__ import annotations

import io
import re
from datetime import UTC, date, datetime
from typing import Any

import pytest
from pypdf import PdfReader

from activities.forms import latin1, pdf_filename, render_pdf
from escalation.simulate import parties
from policies.loader import builtin_policies, get_policy
from workflows import ladder
from workflows.forms import fill_form, scrub
from workflows.messages import (
    Actor,
    CaseEvent,
    CaseState,
    ChildDetails,
    FilledForm,
    Note,
    RaiseDisagreement,
)

CHILD = ChildDetails(
    name="Jamie Okonkwo-Smith",
    date_of_birth=date(2015, 3, 3),
    address="12 Acacia Avenue, Morden SM4 1AA",
    nhs_number="943 476 5919",
)
RAISED = datetime(2027, 1, 4, 10, tzinfo=UTC)
NOW = datetime(2027, 1, 20, 12, tzinfo=UTC)

# Where each form is sent, as the policies name it: (policy, stage, form).
FORMS = [
    ("merton", 2, "escalation-pro-forma"),
    ("staffordshire-stoke", 4, "formal-escalation-form"),
    ("cheshire", 3, "appendix-a"),
    ("wirral", 1, "appendix-1"),
    ("wirral", 2, "appendix-2"),
    ("hillingdon", 2, "escalation-notification"),
]

# The labels each source document prints (shared/policy-sources), checked
# against the policy data so that the PDF shows the document's own fields.
SOURCE_LABELS = {
    "escalation-pro-forma": [
        "Name of child/young person",
        "DOB",
        "Address",
        "Name, Role and Agency of person completing this form",
        "Name, Roles and Agency of others involved",
        "Brief details of the professional disagreement",
        "Has the disagreement been resolved at Stage 1 or 2",
        "If yes, what was agreed?",
        "How long did it take for the issue to be resolved from the date of initial escalation?",
        "What is the learning for your agencies from this case?",
        "Is there learning for the wider safeguarding partnership?",
        "A requirement for staff training",
        "Development of a new SSP Protocol",
        "Further discussion at a particular SSP Sub Group",
        "Other",
    ],
    "formal-escalation-form": [
        "Date",
        "Name of Child",
        "DOB",
        "NHS number",
        "Practitioner",
        "Agency/Team",
        "Summary of Concerns",
        "Requested Action",
        "Response",
        "Resolution of Issues",
        "Actions Taken to Resolve the Professional Disagreement",
    ],
    "appendix-a": [
        "Name of Child/Young Person",
        "Date of Birth",
        "Address",
        "Name of Manager who escalated concern at Step 1, Role and Agency",
        "Name of Manager who escalated concern at Step 2, Role and Agency",
        "Date that Step 2 was concluded",
        "Name of Board Members, Roles and Agencies Involved",
        "Brief details about the inter-agency disagreement",
        "What was the methodology used to resolve the disagreement?",
    ],
    "appendix-1": ["Stage at which the conflict was resolved", "Agencies involved"],
    "appendix-2": ["Stage at which the conflict was resolved", "Agencies involved"],
    "escalation-notification": [
        "Date",
        "Escalation Stage",
        "Name and agency of professionals involved",
        "Issue/Concern",
        "Record of discussions",
        "Outcome",
        "Date referred to LSCB/SAB",
    ],
}


def case(
    policy_id: str, stage: int, *, resolved: bool = True, child: ChildDetails | None = CHILD
) -> tuple[CaseState, RaiseDisagreement]:
    policy = get_policy(policy_id)
    raising, receiving, area = parties(policy)
    request = RaiseDisagreement(
        reference="TST-7K2Q9XAB",
        policy=policy,
        area=area,
        raised_by=Actor(id="u1", name="Priya Shah", agency=raising.key, role="practitioner"),
        raising_agency=raising,
        receiving_agency=receiving,
        summary=(
            "The health visitor believes Jamie Okonkwo-Smith (born 03/03/2015) of 12 Acacia "
            "Avenue, NHS 9434765919, needs a strategy discussion; CSC closed the referral."
        ),
        child=child,
        raised_at=RAISED,
    )
    state = ladder.new_state(request, RAISED)
    state.stage = stage
    state.stage_name = policy.stages[stage].name
    state.stages_reached = list(range(stage + 1))
    for index in range(1, stage + 1):
        event = CaseEvent(
            seq=index,
            at=datetime(2027, 1, 4 + index, 17, tzinfo=UTC),
            type="auto_escalated",
            stage=index,
        )
        # As the workflow records an event: the forms read its tallies.
        state.events.append(event)
        ladder.tally(state, event)
    state.notes.append(
        Note(
            at=datetime(2027, 1, 12, 11, tzinfo=UTC),
            by=Actor(),
            text="Met with Jamie Okonkwo-Smith's allocated social worker",
        )
    )
    if resolved:
        state.status = "resolved"
        state.outcome = "Agreed: Jamie will be discussed at a strategy meeting on Friday"
        state.resolved_at = NOW
    return state, request


def fill(policy_id: str, stage: int, key: str, **kwargs: object) -> FilledForm:
    state, request = case(policy_id, stage, **kwargs)  # type: ignore[arg-type]
    return fill_form(get_policy(policy_id), state, request, key, NOW)


def pdf_text(data: bytes) -> str:
    reader = PdfReader(io.BytesIO(data))
    text = " ".join(page.extract_text() or "" for page in reader.pages)
    return re.sub(r"\s+", " ", text)


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", latin1(text)).strip()


def test_every_policy_form_is_covered_here() -> None:
    named = {(p.id, f.key) for p in builtin_policies().values() for f in p.forms}
    assert named == {(pid, key) for pid, _, key in FORMS}


@pytest.mark.parametrize(("policy_id", "stage", "key"), FORMS, ids=[f[2] for f in FORMS])
def test_form_renders_every_field_of_its_source_document(
    policy_id: str, stage: int, key: str
) -> None:
    policy = get_policy(policy_id)
    form = policy.form(key)
    filled = fill(policy_id, stage, key)
    assert [f.key for f in filled.fields] == [f.key for f in form.fields]
    data = render_pdf(filled)
    assert data.startswith(b"%PDF-")
    text = pdf_text(data)
    assert squash(form.name) in text
    assert filled.reference in text
    for field in form.fields:
        assert squash(field.label) in text, field.label
    for label in SOURCE_LABELS[key]:
        assert squash(label) in text, label
    assert pdf_filename(filled) == f"TST-7K2Q9XAB-{key}.pdf"


@pytest.mark.parametrize(("policy_id", "stage", "key"), FORMS, ids=[f[2] for f in FORMS])
def test_identifying_fields_only_where_the_source_asks(
    policy_id: str, stage: int, key: str
) -> None:
    form = get_policy(policy_id).form(key)
    filled = fill(policy_id, stage, key)
    text = pdf_text(render_pdf(filled))
    wants_child = any(f.identifying for f in form.fields)
    assert ("Jamie Okonkwo-Smith" in text) == wants_child
    reader = PdfReader(io.BytesIO(render_pdf(filled)))
    metadata = " ".join(str(v) for v in (reader.metadata or {}).values())
    assert "Jamie" not in metadata and "TST-7K2Q9XAB" in metadata


def test_hillingdon_form_is_anonymised_even_in_free_text() -> None:
    filled = fill("hillingdon", 2, "escalation-notification")
    assert filled.anonymised
    text = pdf_text(render_pdf(filled))
    for secret in ("Jamie", "Okonkwo", "Acacia", "03/03/2015", "943", "SM4"):
        assert secret not in text, secret
    assert "[the child]" in text and "[date of birth]" in text and "[NHS number]" in text
    assert "ANONYMISED" in text
    assert "strategy meeting on Friday" in text  # the outcome, scrubbed, is still there
    assert "allocated social worker" in text  # the record of discussions: the case's notes


def test_merton_pro_forma_is_filled_from_the_case() -> None:
    values = {f.key: f.value for f in fill("merton", 2, "escalation-pro-forma").fields}
    assert values["child-name"] == "Jamie Okonkwo-Smith"
    assert values["child-dob"] == "3 March 2015"
    assert values["child-address"] == "12 Acacia Avenue, Morden SM4 1AA"
    assert values["resolved-at-stage-1-or-2"] == "Yes"
    assert values["what-was-agreed"].startswith("Agreed: Jamie")
    assert values["time-to-resolve"].startswith("16 calendar days: raised Monday 4 January 2027")
    assert "Priya Shah" in values["others-involved"]
    assert values["completed-by"] == ""  # for the resolving manager to complete
    at_three = {f.key: f.value for f in fill("merton", 3, "escalation-pro-forma").fields}
    assert at_three["resolved-at-stage-1-or-2"] == "No"
    assert at_three["if-not-why"].startswith("Raised to Stage 3: MSCP executive on")


def test_typed_values_win_and_unresolved_cases_leave_resolution_blank() -> None:
    state, request = case("staffordshire-stoke", 2, resolved=False)
    state.escalation_forms["formal-escalation-form"] = {
        "summary-of-concerns": "Threshold disagreement; stages 1 and 2 tried on 5 and 6 Jan",
        "requested-action": "Strategy discussion within 1 working day",
    }
    filled = fill_form(
        get_policy("staffordshire-stoke"), state, request, "formal-escalation-form", NOW
    )
    values = {f.key: f.value for f in filled.fields}
    assert values["summary-of-concerns"].startswith("Threshold disagreement")
    assert values["requested-action"] == "Strategy discussion within 1 working day"
    assert values["resolution-of-issues"] == "" and values["actions-taken"] == ""
    assert values["nhs-number"] == "943 476 5919"
    assert values["date"] == "Wednesday 20 January 2027"
    text = pdf_text(render_pdf(filled))
    assert "THIS DOCUMENT MUST BE SENT SECURELY" in text
    assert "(to be completed)" in text


def test_cheshire_appendix_a_says_how_each_step_was_escalated() -> None:
    values = {f.key: f.value for f in fill("cheshire", 3, "appendix-a").fields}
    assert (
        "escalated automatically when the deadline passed on Wednesday 6 January"
        in (values["step-1-manager"])
    )
    assert values["step-2-concluded"] == "Thursday 7 January 2027"
    assert values["board-members"] == ""


def test_without_child_details_identifying_fields_are_blank() -> None:
    filled = fill("merton", 2, "escalation-pro-forma", child=None)
    values = {f.key: f.value for f in filled.fields}
    assert values["child-name"] == values["child-dob"] == values["child-address"] == ""
    assert render_pdf(filled).startswith(b"%PDF-")


def test_scrub_replaces_every_form_of_the_childs_details() -> None:
    text = (
        "JAMIE OKONKWO-SMITH, dob 2015-03-03 / 3 March 2015, lives at 12 acacia avenue "
        "(SM4 1AA); NHS 943-476-5919. Jamie's school."
    )
    out = scrub(text, CHILD)
    for secret in ("JAMIE", "Jamie", "2015", "acacia", "SM4", "5919"):
        assert secret not in out, secret
    assert scrub(text, None) == text


def test_long_answers_flow_onto_further_pages() -> None:
    state, request = case("merton", 2)
    state.resolution_form = {"agency-learning": "Learning. " * 600}
    filled = fill_form(get_policy("merton"), state, request, "escalation-pro-forma", NOW)
    reader = PdfReader(io.BytesIO(render_pdf(filled)))
    assert len(reader.pages) >= 3
    text = pdf_text(render_pdf(filled))
    assert "Is there learning for the wider safeguarding partnership?" in text


# --- GET /disagreements/{ref}/forms/{form} ------------------------------------------------


class TokenUsers:
    """An authenticator: the bearer token is the user's id."""

    def __init__(self, *users: object) -> None:
        self.users = {u.id: u for u in users}  # type: ignore[attr-defined]

    async def authenticate(self, token: str) -> object:
        from api.auth import AuthError

        if token not in self.users:
            raise AuthError("the bearer token is not recognised")
        return self.users[token]


async def test_the_form_route_serves_the_pdf_to_those_who_may_see_the_case(
    ts_env: Any, new_worker: Any, tmp_path: Any
) -> None:
    import asyncio

    import httpx

    from api.main import create_app
    from api.routes import forms as forms_route
    from api.users import User
    from escalation.settings import Settings
    from tests.conftest import make_request

    users = TokenUsers(
        User(
            id="csc",
            name="CSC manager",
            agency="merton-childrens-social-care",
            partnership="merton",
            role="manager",
        ),
        User(
            id="police",
            name="Police manager",
            agency="merton-police",
            partnership="merton",
            role="manager",
        ),
        User(id="team", name="MSCP business team", partnership="merton", role="business-team"),
    )
    settings = Settings(_env_file=None, ESCALATION_DATA_DIR=tmp_path)  # type: ignore[call-arg]
    app = create_app(settings, client=ts_env.client, authenticator=users)  # type: ignore[arg-type]
    app.include_router(forms_route.router)
    harness = new_worker()
    request = make_request("merton", await ts_env.get_current_time())
    request = request.model_copy(update={"child": CHILD})
    path = f"/disagreements/{request.reference}/forms/escalation-pro-forma"
    async with harness.worker():
        handle = await harness.raise_case(request)
        try:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://test"
            ) as http:
                for _ in range(100):
                    response = await http.get(path, headers={"Authorization": "Bearer csc"})
                    if response.status_code == 200:
                        break
                    await asyncio.sleep(0.1)
                assert response.status_code == 200, response.text
                assert response.headers["content-type"] == "application/pdf"
                assert response.headers["cache-control"] == "no-store"
                assert (
                    f"{request.reference}-escalation-pro-forma.pdf"
                    in (response.headers["content-disposition"])
                )
                text = pdf_text(response.content)
                assert CHILD.name in text and "Escalation Stage One/Two Pro-forma" in text
                team = await http.get(path, headers={"Authorization": "Bearer team"})
                assert team.status_code == 200
                other = await http.get(path, headers={"Authorization": "Bearer police"})
                assert other.status_code == 404
                nobody = await http.get(path)
                assert nobody.status_code == 401
                unknown = await http.get(
                    f"/disagreements/{request.reference}/forms/appendix-a",
                    headers={"Authorization": "Bearer csc"},
                )
                assert unknown.status_code == 404
                assert "has no form 'appendix-a'" in unknown.json()["detail"]
        finally:
            await handle.terminate("test over")
