"""A case's timeline in words: who did what, and why, for people to read.

Pure, so the running case's ``record`` query and the register's reads tell
the same story: "escalated by Ama Owusu, manager at Merton health: no
agreement at practitioner level".
"""

from __future__ import annotations

from workflows.messages import CaseEvent, CaseState

_VERBS = {
    "raised": "raised",
    "acknowledged": "acknowledged",
    "escalated": "escalated",
    "immediate_risk": "immediate risk flagged",
    "deadline_shortened": "deadline shortened",
    "note": "note",
    "resolved": "resolved",
    "confirmed": "outcome confirmed in writing",
    "withdrawn": "withdrawn",
    "refused": "refused",
    "closed": "closed",
}
_ROLES = {
    "practitioner": "practitioner",
    "manager": "manager",
    "business-team": "business team",
    "operator": "operator",
}


def who(event: CaseEvent, state: CaseState) -> str | None:
    """The person who acted, as their token named them."""
    if event.by in (None, "system") or event.by_role == "system":
        return None
    name = event.by_name or event.by
    role = _ROLES.get(event.by_role or "", event.by_role)
    agencies = {a.key: a.name for a in (state.raising_agency, state.receiving_agency)}
    where = agencies.get(event.by_agency or "", event.by_agency)
    if role and where:
        return f"{name}, {role} at {where}"
    return f"{name}, {role}" if role else name


def describe(event: CaseEvent, state: CaseState) -> str:
    if event.type == "auto_escalated":
        return f"escalated automatically ({event.detail or 'the deadline passed'})"
    if event.type == "stage_started":
        return f"stage {event.stage} started" + (f" ({event.detail})" if event.detail else "")
    if event.type in ("notice", "reminder"):
        return f"{event.type} '{event.template}' sent to {', '.join(event.to)}"
    if event.type == "notice_failed":
        return f"notice '{event.template}' could not be sent: {event.detail}"
    if event.type == "clock_failed":
        return str(event.detail)
    if event.type == "overdue":
        return "overdue: " + (event.detail or "the final stage's deadline passed")
    verb = _VERBS.get(event.type, event.type.replace("_", " "))
    person = who(event, state)
    text = f"{verb} by {person}" if person else verb
    if event.type == "refused":
        return f"{text}: {event.detail}"
    if event.reason:
        return f"{text}: {event.reason}"
    if event.detail and event.type not in ("raised", "closed"):
        return f"{text} ({event.detail})"
    return text


def with_text(state: CaseState) -> list[CaseEvent]:
    """The events with their ``text`` filled in."""
    return [e.model_copy(update={"text": describe(e, state)}) for e in state.events]
