"""Filling a policy's forms from a case: pure functions.

The workflow calls ``fill_form`` when a business-team notice carries a form
(and the ``form`` query calls it for ``GET /disagreements/{ref}/forms/{form}``),
so a form is always filled from the case's own record: its state, and the
raise request with the child's details. Nothing here does I/O or reads a
clock; ``now`` is the workflow's.

Each field is filled, in order of preference, from

1. what a manager typed for it: the escalation form given when escalating
   into the stage that needs this form, then the resolution's form fields;
2. the case: the child's details (only for fields the source form marks as
   identifying), the agencies, the stages reached and when, the outcome;
3. nothing: the field is left blank for the business team to complete.

An anonymised form (Hillingdon's "keep the client anonymous") never carries
an identifying field; on it, and on any form that asks for no identifying
field (Wirral's), the child's name, date of birth, address and NHS number are
scrubbed from every free-text value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from zoneinfo import ZoneInfo

from policies.model import Form, FormField, Policy
from workflows.messages import CaseState, ChildDetails, FilledField, FilledForm, RaiseDisagreement

REDACTED = "[the child]"
_POSTCODE = re.compile(r"\b[A-Z]{1,2}[0-9][A-Z0-9]?\s*[0-9][A-Z]{2}\b", re.IGNORECASE)
_TAGS = {
    "name": "[the child]",
    "dob": "[date of birth]",
    "address": "[address]",
    "nhs": "[NHS number]",
}


def _day(value: datetime | date | None, zone: str) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = value.astimezone(ZoneInfo(zone)).date()
    return f"{value:%A} {value.day} {value:%B %Y}"


def _dob(value: date | None) -> str:
    return "" if value is None else f"{value.day} {value:%B %Y}"


class _Case:
    """What the field rules read: the policy, the state, the request, now."""

    def __init__(
        self, policy: Policy, state: CaseState, request: RaiseDisagreement, now: datetime
    ) -> None:
        self.policy = policy
        self.state = state
        self.request = request
        self.now = now
        self.zone = policy.time_zone

    @property
    def child(self) -> ChildDetails | None:
        return self.request.child

    def day(self, value: datetime | date | None) -> str:
        return _day(value, self.zone)

    def agencies(self) -> str:
        s = self.state
        return f"{s.raising_agency.name} and {s.receiving_agency.name}"

    def first_told_business_team(self) -> datetime | None:
        return self.state.business_team_told_at

    def stage_label(self, index: int) -> str:
        return self.policy.stages[index].name

    def entered(self, index: int) -> tuple[str, datetime, str | None] | None:
        """How and when the case entered stage ``index`` (first time)."""
        entry = self.state.stage_entries.get(index)
        return None if entry is None else (entry.how, entry.at, entry.by)

    def owners(self, index: int) -> str:
        stage = self.policy.stages[index]
        a, b = self.state.raising_agency, self.state.receiving_agency
        title_a, title_b = stage.owner_for(a.kind).title, stage.owner_for(b.kind).title
        if title_a == title_b:
            return f"{title_a} ({a.name}; {b.name})"
        return f"{title_a}, {a.name}; {title_b}, {b.name}"

    def escalated_from(self, index: int) -> str:
        """Who escalated the case out of stage ``index``, in words."""
        if index + 1 >= len(self.policy.stages):
            return ""
        entered = self.entered(index + 1)
        if entered is None:
            return "" if index not in self.state.stages_reached else "not escalated from this step"
        kind, at, by = entered
        if kind == "auto_escalated":
            how = f"escalated automatically when the deadline passed on {self.day(at)}"
        else:
            how = f"escalated on {self.day(at)}" + (f" by user {by}" if by else "")
        return f"{self.owners(index)} ({how})"

    def professionals(self) -> str:
        s = self.state
        reached = sorted(set(s.stages_reached) | {s.stage})
        lines = [f"{s.raised_by.name}, {s.raising_agency.name} (raised the concern)"]
        for index in reached:
            lines.append(f"{self.stage_label(index)}: {self.owners(index)}")
        return "\n".join(lines)

    def resolved_stage(self) -> int | None:
        return self.state.stage if self.state.resolved_at is not None else None


def _time_to_resolve(case: _Case) -> str:
    s = case.state
    if s.resolved_at is None:
        return "not yet resolved"
    zone = ZoneInfo(case.zone)
    days = (s.resolved_at.astimezone(zone).date() - s.raised_at.astimezone(zone).date()).days
    unit = "day" if days == 1 else "days"
    return (
        f"{days} calendar {unit}: raised {case.day(s.raised_at)}, "
        f"resolved {case.day(s.resolved_at)}"
    )


def _merton_resolved_early(case: _Case) -> str:
    stage = case.resolved_stage()
    if stage is None:
        return "No (not yet resolved)"
    return "Yes" if stage in (1, 2) else "No"


def _merton_if_not(case: _Case) -> str:
    stage = case.resolved_stage()
    if stage is None or stage in (1, 2):
        return ""
    entered = case.entered(stage)
    when = case.day(entered[1]) if entered else case.day(case.state.raised_at)
    return (
        f"Raised to {case.stage_label(stage)} on {when}; "
        f"the concern was first raised on {case.day(case.state.raised_at)}"
    )


def _step_concluded(case: _Case, index: int) -> str:
    entered = case.entered(index + 1)
    return case.day(entered[1]) if entered else ""


def _notes(case: _Case) -> str:
    return "\n".join(f"{case.day(n.at)}: {n.text}" for n in case.state.notes)


def reads_notes(policy: Policy) -> bool:
    """Whether one of the policy's forms is filled with the case's notes,
    which the case must then keep whole (the workflow fills the forms)."""
    return any(_RULES.get(f.key) is _notes for form in policy.forms for f in form.fields)


# Field key -> how the case fills it. Keys are shared across the policies'
# forms where they mean the same thing (child-name, date, ...).
_RULES: dict[str, Callable[[_Case], str]] = {
    "child-name": lambda c: c.child.name if c.child else "",
    "child-dob": lambda c: _dob(c.child.date_of_birth) if c.child else "",
    "child-address": lambda c: (c.child.address or "") if c.child else "",
    "nhs-number": lambda c: (c.child.nhs_number or "") if c.child else "",
    "date": lambda c: c.day(c.now),
    # The day the business team was first sent anything about the case,
    # not the day the form is filled.
    "date-referred": lambda c: c.day(c.first_told_business_team() or c.now),
    # Merton, Appendix 1
    "others-involved": lambda c: c.professionals(),
    "disagreement-details": lambda c: c.request.summary,
    "resolved-at-stage-1-or-2": _merton_resolved_early,
    "what-was-agreed": lambda c: c.state.outcome or "",
    "time-to-resolve": _time_to_resolve,
    "if-not-why": _merton_if_not,
    # Staffordshire and Stoke-on-Trent, Formal Escalation Form
    "practitioner": lambda c: c.state.raised_by.name,
    "agency-team": lambda c: c.state.raising_agency.name,
    "summary-of-concerns": lambda c: c.request.summary,
    "resolution-of-issues": lambda c: c.state.outcome or "",
    "resolution-date": lambda c: c.day(c.state.resolved_at),
    # Pan-Cheshire, Appendix A
    "step-1-manager": lambda c: c.escalated_from(1),
    "step-2-manager": lambda c: c.escalated_from(2),
    "step-2-concluded": lambda c: _step_concluded(c, 2),
    "brief-details": lambda c: c.request.summary,
    "methodology": lambda c: c.state.outcome or "",
    # Wirral, Appendices 1 and 2
    "stage": lambda c: c.state.stage_name,
    "agencies": lambda c: c.agencies(),
    "brief-conflict": lambda c: c.request.summary,
    "resolution": lambda c: c.state.outcome or "",
    # Hillingdon, notification of an escalation
    "escalation-stage": lambda c: c.state.stage_name,
    "professionals-involved": lambda c: c.professionals(),
    "issue-concern": lambda c: c.request.summary,
    "record-of-discussions": _notes,
    "outcome": lambda c: c.state.outcome or "",
}


def _child_patterns(child: ChildDetails | None) -> list[tuple[re.Pattern[str], str]]:
    if child is None:
        return []
    texts: list[tuple[str, str]] = []
    name = child.name.strip()
    if name:
        texts.append((name, _TAGS["name"]))
        texts += [(p, _TAGS["name"]) for p in re.split(r"[\s,]+", name) if len(p) >= 3]
    if child.address:
        texts.append((child.address.strip(), _TAGS["address"]))
        texts += [
            (p.strip(), _TAGS["address"]) for p in child.address.split(",") if len(p.strip()) >= 4
        ]
        texts += [(m.group(0), _TAGS["address"]) for m in _POSTCODE.finditer(child.address)]
    if child.date_of_birth:
        d = child.date_of_birth
        for text in (
            d.isoformat(),
            f"{d:%d/%m/%Y}",
            f"{d.day}/{d.month}/{d.year}",
            f"{d:%d/%m/%y}",
            f"{d.day} {d:%B %Y}",
            f"{d.day} {d:%b %Y}",
            f"{d:%B} {d.day}, {d.year}",
        ):
            texts.append((text, _TAGS["dob"]))
    patterns = []
    for text, tag in sorted(set(texts), key=lambda t: len(t[0]), reverse=True):
        escaped = r"\s*".join(re.escape(p) for p in text.split())
        patterns.append((re.compile(rf"(?<!\w){escaped}(?!\w)", re.IGNORECASE), tag))
    if child.nhs_number:
        digits = re.sub(r"\D", "", child.nhs_number)
        if digits:
            patterns.append((re.compile(r"[\s-]*".join(digits)), _TAGS["nhs"]))
    return patterns


def scrub(text: str, child: ChildDetails | None) -> str:
    """The text with the child's identifying details replaced by tags."""
    for pattern, tag in _child_patterns(child):
        text = pattern.sub(tag, text)
    return text


def _value(case: _Case, form: Form, field: FormField) -> str:
    typed = case.state.escalation_forms.get(form.key, {}).get(field.key, "").strip()
    if not typed:
        typed = case.state.resolution_form.get(field.key, "").strip()
    rule = _RULES.get(field.key)
    if field.identifying:
        if form.anonymised:
            return ""
        derived = rule(case) if rule else ""
        return derived or typed
    if typed:
        return typed
    return rule(case) if rule else ""


WITHHELD = "Withheld from email: download the completed form from the case record"


def fill_form(
    policy: Policy,
    state: CaseState,
    request: RaiseDisagreement,
    key: str,
    now: datetime,
    for_email: bool = False,
) -> FilledForm:
    """The policy's form ``key`` filled from the case (KeyError if the
    policy has no such form). ``for_email``: the copy attached to a notice,
    which names nobody; the complete form is downloaded from the case by
    those allowed to see it, since email leaves our control."""
    form = policy.form(key)
    case = _Case(policy, state, request, now)
    # A form carries the child's identity only in fields that ask for it: one
    # that has none (Wirral's) or must identify nobody (Hillingdon's) has the
    # child's details scrubbed from its free text, as has every emailed copy.
    scrubbed = for_email or form.anonymised or not any(f.identifying for f in form.fields)
    fields = []
    for field in form.fields:
        value = _value(case, form, field)
        if for_email and field.identifying and not form.anonymised:
            value = WITHHELD
        if scrubbed:
            value = scrub(value, request.child)
        fields.append(
            FilledField(
                key=field.key,
                label=field.label,
                value=value,
                filled_from=field.filled_from,
                identifying=field.identifying,
            )
        )
    return FilledForm(
        key=form.key,
        name=form.name,
        partnership=policy.partnership,
        reference=state.reference,
        sent_to=form.sent_to,
        source=form.source,
        anonymised=form.anonymised,
        completed_on=_day(now, policy.time_zone),
        fields=fields,
    )
