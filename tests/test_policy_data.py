"""The five built-in policies against DESIGN.md §6 (normative timescales) and
the source documents' structure: every line cites its source, forms exist
where stages name them, and child-identifying fields are flagged."""

from __future__ import annotations

import pytest

from policies.loader import builtin_policies
from policies.model import Policy

# DESIGN.md §6: each policy's stages in order, with (kind, value).
# value is working days for working_days, hours for hours, None otherwise.
LADDERS: dict[str, list[tuple[str, str, int | None]]] = {
    "merton": [
        ("practitioners", "working_days", 5),
        ("line-managers", "working_days", 5),
        ("senior-leaders", "working_days", 5),
        ("mscp-executive", "working_days", 5),
        ("independent-person", "working_days", 5),
    ],
    "staffordshire-stoke": [
        ("practitioners", "working_days", 1),
        ("line-managers", "working_days", 1),
        ("senior-managers", "working_days", 2),
        ("assistant-directors", "working_days", 5),
        ("board-representatives", "working_days", 2),
        # Stage 5 ¶5: still unresolved, "referred to an independent professional adviser".
        ("independent-professional-adviser", "none", None),
    ],
    "cheshire": [
        # "Day 1-2", read as two working days (the policy file's readings).
        ("practitioners", "working_days", 2),
        ("line-managers", "working_days", 5),
        ("designated-safeguarding-leads", "working_days", 6),
        ("delegated-safeguarding-partners", "working_days", 6),
    ],
    "wirral": [
        ("professionals", "working_days", 5),
        ("safeguarding-leads", "none", None),
        ("board-members", "none", None),
        ("board-chair", "none", None),
    ],
    "hillingdon": [
        ("practitioners", "none", None),
        ("supervisors", "none", None),
        ("operations-managers", "none", None),
        ("board-chair", "none", None),
    ],
}

IDENTIFYING_KEYS = {"child-name", "child-dob", "child-address", "nhs-number"}


def _value(timescale) -> int | None:
    if timescale.kind == "working_days":
        return timescale.days
    if timescale.kind == "hours":
        return timescale.hours
    return None


@pytest.fixture(scope="module")
def policies() -> dict[str, Policy]:
    return builtin_policies()


def test_exactly_the_five_policies(policies):
    assert sorted(policies) == sorted(LADDERS)


@pytest.mark.parametrize("policy_id", sorted(LADDERS))
def test_ladder_matches_design_table(policies, policy_id):
    policy = policies[policy_id]
    got = [(s.key, s.timescale.kind, _value(s.timescale)) for s in policy.stages]
    assert got == LADDERS[policy_id]
    assert policy.final_stage == len(LADDERS[policy_id]) - 1


@pytest.mark.parametrize("policy_id", sorted(LADDERS))
def test_calendar_and_defaults(policies, policy_id):
    policy = policies[policy_id]
    assert policy.nation == "ENG"
    assert policy.time_zone == "Europe/London"
    assert policy.close_of_business.strftime("%H:%M") == "17:00"
    assert policy.start_of_business.strftime("%H:%M") == "09:00"
    assert policy.reminder_every.days == 5
    assert policy.acknowledgement.timescale.kind == "working_days"
    assert policy.acknowledgement.timescale.days == 1


@pytest.mark.parametrize("policy_id", sorted(LADDERS))
def test_everything_cites_its_source(policies, policy_id):
    policy = policies[policy_id]
    cited = [policy.business_team_source, policy.acknowledgement.source]
    cited += [policy.acknowledgement.timescale.source, policy.reminder_every.source]
    cited += [a.source for a in policy.areas]
    for stage in policy.stages:
        cited += [stage.source, stage.timescale.source]
        cited += [o.source for o in stage.owners]
        cited += [n.source for n in stage.business_team]
        cited += [n.source for n in stage.extra_notices]
        if stage.written_confirmation is not None:
            cited.append(stage.written_confirmation.source)
            if stage.written_confirmation.within is not None:
                cited.append(stage.written_confirmation.within.source)
        cited += [f.source for f in stage.outcome_to]
        cited += [r.source for r in stage.may_escalate_directly_to]
        if stage.form_due is not None:
            cited += [stage.form_due.source, stage.form_due.within.source]
        if stage.reminder_every is not None:
            cited.append(stage.reminder_every.source)
    risk = policy.immediate_risk
    cited.append(risk.source)
    cited += [c.source for c in risk.urgent_contacts]
    if risk.timescale_override is not None:
        cited.append(risk.timescale_override.source)
    if risk.may_start_at:
        cited.append(risk.may_start_at_source or "")
    cited += [f.source for f in policy.forms]
    cited += [r.source for r in policy.readings]
    assert all(isinstance(c, str) and c.strip() for c in cited)


@pytest.mark.parametrize("policy_id", sorted(LADDERS))
def test_every_stage_has_an_any_owner(policies, policy_id):
    for stage in policies[policy_id].stages:
        assert any(o.agency_kind == "any" for o in stage.owners), stage.key
        kinds = [o.agency_kind for o in stage.owners]
        assert len(kinds) == len(set(kinds)), stage.key


@pytest.mark.parametrize("policy_id", sorted(LADDERS))
def test_forms_named_by_stages_exist(policies, policy_id):
    policy = policies[policy_id]
    form_keys = {f.key for f in policy.forms}
    for stage in policy.stages:
        named = [stage.form_required] + [n.form for n in stage.business_team]
        for key in named:
            if key is not None:
                assert key in form_keys, (stage.key, key)
                assert policy.form(key).key == key


@pytest.mark.parametrize("policy_id", sorted(LADDERS))
def test_child_details_are_flagged_identifying(policies, policy_id):
    for form in policies[policy_id].forms:
        for field in form.fields:
            if field.key in IDENTIFYING_KEYS:
                assert field.identifying, (form.key, field.key)
            else:
                assert not field.identifying, (form.key, field.key)


@pytest.mark.parametrize(
    ("policy_id", "stage_key", "form_key"),
    [
        ("staffordshire-stoke", "senior-managers", "formal-escalation-form"),
        ("cheshire", "delegated-safeguarding-partners", "appendix-a"),
    ],
)
def test_form_required_needs_details_from_the_escalation(policies, policy_id, stage_key, form_key):
    policy = policies[policy_id]
    stage = policy.stages[policy.stage_index(stage_key)]
    assert stage.form_required == form_key
    assert [s.key for s in policy.stages if s.form_required] == [stage_key]
    from_escalation = [f for f in policy.form(form_key).fields_from("escalation") if f.required]
    assert from_escalation
    assert not any(f.identifying for f in from_escalation)


# --- Merton -----------------------------------------------------------------


def test_merton_immediate_risk(policies):
    risk = policies["merton"].immediate_risk
    assert risk.timescale_override is not None
    assert risk.timescale_override.kind == "working_days"
    assert risk.timescale_override.days == 2
    assert risk.override_applies_to == "current-and-later"


# --- Staffordshire and Stoke-on-Trent ---------------------------------------


def test_staffordshire_areas_and_no_override(policies):
    policy = policies["staffordshire-stoke"]
    assert [a.key for a in policy.areas] == ["staffordshire", "stoke-on-trent"]
    assert policy.immediate_risk.timescale_override is None
    assert policy.immediate_risk.urgent_contacts


def test_staffordshire_notices_and_confirmations(policies):
    policy = policies["staffordshire-stoke"]
    stages = {s.key: s for s in policy.stages}
    confirm = {
        k: (c.within.days if c.within else None, c.counts_from, c.by)
        for k, s in stages.items()
        if (c := s.written_confirmation)
    }
    assert confirm == {
        "practitioners": (1, "resolution", "receiving-side"),
        "line-managers": (1, "resolution", "receiving-manager"),
        # Stage 3 ¶8: "within 2 working days of the matter being formally escalated".
        "senior-managers": (2, "stage-start", "either-manager"),
        # Stage 5 ¶3: "At all stages ... written confirmation between the parties".
        "assistant-directors": (None, "resolution", "either-party"),
        "board-representatives": (None, "resolution", "either-party"),
        "independent-professional-adviser": (None, "resolution", "either-party"),
    }
    routes = [r.to for r in stages["line-managers"].may_escalate_directly_to]
    assert routes == ["board-representatives"]
    assert stages["senior-managers"].form_due is not None
    assert stages["senior-managers"].form_due.send_to == "raising-stage-owner"
    assert [n.when for n in stages["assistant-directors"].extra_notices] == ["stage_started"]
    final = stages["board-representatives"].business_team
    assert [(n.when, n.form) for n in final] == [("stage_started", "formal-escalation-form")]
    form = policy.form("formal-escalation-form")
    flagged = {f.key for f in form.fields if f.identifying}
    assert flagged == {"child-name", "child-dob", "nhs-number"}
    required = {f.key for f in form.fields_from("escalation") if f.required}
    assert required == {"summary-of-concerns", "requested-action"}


# --- Pan-Cheshire -----------------------------------------------------------


def test_cheshire_areas_and_front_doors(policies):
    policy = policies["cheshire"]
    areas = [a.key for a in policy.areas]
    assert areas == ["cheshire-west", "cheshire-east", "halton", "warrington"]
    risk = policy.immediate_risk
    assert risk.timescale_override is None
    contacts = [c.area for c in risk.urgent_contacts]
    assert sorted(contacts) == sorted(areas)
    assert len({c.role for c in risk.urgent_contacts}) == 4


def test_cheshire_step_3_form_and_record(policies):
    policy = policies["cheshire"]
    stages = {s.key: s for s in policy.stages}
    confirm = stages["line-managers"].written_confirmation
    assert confirm is not None and confirm.within is None and confirm.by == "receiving-manager"
    step3 = stages["delegated-safeguarding-partners"]
    assert step3.form_due is not None and step3.form_due.send_to == "business-team"
    assert ("stage_started", "appendix-a") in [(n.when, n.form) for n in step3.business_team]
    form = policy.form("appendix-a")
    flagged = {f.key for f in form.fields if f.identifying}
    assert flagged == {"child-name", "child-dob", "child-address"}
    assert all(f.filled_from == "case" for f in form.fields if f.identifying)
    assert "brief-details" in {f.key for f in form.fields_from("escalation") if f.required}


# --- Wirral -----------------------------------------------------------------


def test_wirral_immediate_risk(policies):
    risk = policies["wirral"].immediate_risk
    assert risk.timescale_override is not None
    assert risk.timescale_override.kind == "same_working_day"
    assert risk.override_applies_to == "current-stage"
    assert not risk.may_jump_to_later_stage


def test_wirral_pro_formas_on_resolution(policies):
    policy = policies["wirral"]
    sent = {s.key: [(n.when, n.form) for n in s.business_team if n.form] for s in policy.stages}
    assert sent == {
        "professionals": [],
        "safeguarding-leads": [("resolved", "appendix-1")],
        "board-members": [("resolved", "appendix-2")],
        "board-chair": [],
    }
    for form in policy.forms:
        assert not any(f.identifying for f in form.fields)


# --- Hillingdon -------------------------------------------------------------


def test_hillingdon_subjects_and_discretion(policies):
    policy = policies["hillingdon"]
    assert set(policy.subjects) == {"children", "adults-at-risk"}
    risk = policy.immediate_risk
    assert risk.timescale_override is None
    assert risk.may_start_at_later_stage
    assert risk.may_jump_to_later_stage


def test_hillingdon_business_team_and_anonymised_form(policies):
    policy = policies["hillingdon"]
    stages = {s.key: s for s in policy.stages}
    # "keep a record of all ongoing disagreements" from stage 2 on, and
    # "advised of any outcome" at every stage.
    assert [n.when for n in stages["practitioners"].business_team] == ["outcome"]
    for key in ("supervisors", "operations-managers", "board-chair"):
        whens = [n.when for n in stages[key].business_team]
        assert "stage_started" in whens and "outcome" in whens, key
    form = policy.form("escalation-notification")
    assert form.anonymised
    assert not any(f.identifying for f in form.fields)
    assert not IDENTIFYING_KEYS & {f.key for f in form.fields}
    for key in ("supervisors", "operations-managers", "board-chair"):
        assert ("resolved", form.key) in [(n.when, n.form) for n in stages[key].business_team]


@pytest.mark.parametrize("policy_id", ["staffordshire-stoke", "cheshire", "hillingdon"])
def test_no_override_where_design_says_none(policies, policy_id):
    assert policies[policy_id].immediate_risk.timescale_override is None


@pytest.mark.parametrize(
    ("policy_id", "about"),
    [
        ("staffordshire-stoke", "Stage 5 timescale"),
        ("cheshire", "Day 1-2 (practitioners) timescale"),
        ("merton", "Stage 3 (MSCP executive) timescale"),
        ("wirral", "'their manager should be contacted within one working day'"),
    ],
)
def test_each_contested_reading_is_recorded_with_its_alternative(policies, policy_id, about):
    readings = {r.about: r for r in policies[policy_id].readings}
    reading = readings[about]
    assert reading.chosen != reading.alternative
    assert "'" in reading.source  # quotes the source sentence


@pytest.mark.parametrize("policy_id", sorted(LADDERS))
def test_every_written_confirmation_quotes_its_source(policies, policy_id):
    for stage in policies[policy_id].stages:
        if stage.written_confirmation is not None:
            assert "'" in stage.written_confirmation.source, stage.key
