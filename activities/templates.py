"""The words of every notice: one template per event, plain text and HTML.

Each template answers, for a busy practitioner, four questions in order:
what happened, what is due and by when (local time with the weekday, as
the deadline activity wrote it), what the policy says this stage is, and
where the case is. A notice names the child only by the case reference:
nothing here reads a child's details, and nothing a person typed (a reason,
an outcome, a note) is copied into a notice, since free text may name the
child. The outcome is read on the case page, behind sign-in.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import get_args

from escalation.action_links import Offer
from workflows.messages import Notice, NoticeTemplate


@dataclass(frozen=True)
class Wording:
    subject: str
    happened: str
    due: str


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def _stage(n: Notice) -> str:
    return n.stage_name


def _by(n: Notice) -> str:
    return n.deadline_text or (n.deadline.isoformat() if n.deadline else "")


def _resolve_by(n: Notice, who: str = "The stage's owners in both agencies") -> str:
    if n.deadline is None:
        return (
            f"{who} should resolve it as soon as possible. This stage has no written "
            "timescale, so it will not escalate by itself: reminders follow until it is "
            "resolved or escalated."
        )
    return (
        f"{who} should resolve it by {_by(n)}. If it is not resolved by then, it escalates "
        "automatically to the next stage (or, at the final stage, becomes overdue)."
    )


def _stage_started(n: Notice) -> Wording:
    if n.context.get("reason") == "reopened":
        return Wording(
            f"Reopened at {_stage(n)}",
            f"The outcome agreed at {_stage(n)} was awaiting written confirmation, and it has "
            "turned out there was no real agreement: the disagreement is open again.",
            _resolve_by(n),
        )
    if n.context.get("reason") == "raised":
        happened = (
            f"A professional disagreement about a child's safety has been raised under the "
            f"{n.partnership} escalation policy. It starts at {_stage(n)}."
        )
    else:
        happened = f"The disagreement has been escalated to {_stage(n)}."
        from_stage = n.context.get("from_stage")
        if from_stage is not None:
            happened = (
                f"The disagreement has been escalated from stage {from_stage} to {_stage(n)} "
                f"({n.context.get('reason', 'escalated')})."
            )
    due = f": resolve by {_by(n)}" if n.deadline else ""
    return Wording(f"Now at {_stage(n)}{due}", happened, _resolve_by(n))


def _escalated_automatically(n: Notice) -> Wording:
    from_stage = n.context.get("from_stage", "the previous stage")
    return Wording(
        f"Escalated automatically to {_stage(n)}",
        f"Nobody resolved the disagreement at stage {from_stage} by its deadline, so it has "
        f"escalated automatically to {_stage(n)}. You are told because you have been "
        "involved in the case so far.",
        _resolve_by(n, "The new stage's owners in both agencies"),
    )


def _acknowledgement_due(n: Notice) -> Wording:
    resolve = f" and seek to resolve it by {_by(n)}" if n.deadline else ""
    return Wording(
        "Please acknowledge the concern raised with your agency",
        f"A concern raised with your agency at {_stage(n)} has not been acknowledged yet.",
        f"Acknowledge it now on the case page (Acknowledge){resolve}.",
    )


def _deadline_day(n: Notice) -> Wording:
    return Wording(
        f"Deadline today: {_stage(n)} is due by {_by(n)}",
        f"Today is the deadline for {_stage(n)} and the disagreement is still open.",
        f"Resolve it, or escalate it, by {_by(n)}. If nothing is recorded by then it "
        "escalates automatically.",
    )


def _stage_reminder(n: Notice) -> Wording:
    return Wording(
        f"Reminder: still open at {_stage(n)}",
        f"The disagreement is still open at {_stage(n)}, which has no written timescale.",
        "Resolve it, or escalate it to the next stage, as soon as possible. A reminder "
        "follows at the policy's interval until you do.",
    )


def _overdue_final(n: Notice) -> Wording:
    passed = f" passed on {_by(n)}" if n.deadline else " has passed"
    return Wording(
        f"Overdue: {_stage(n)} has not determined the disagreement",
        f"The deadline of the final stage, {_stage(n)},{passed} and the disagreement is "
        "still not determined. There is no higher stage.",
        "The final stage's owners should determine it now and record the outcome on the "
        "case. Reminders continue, with the business team copied, until they do.",
    )


def _immediate_risk(n: Notice) -> Wording:
    due = (
        "Act now under established child protection procedures: if the child is not already "
        "known to children's social care, contact the front door today."
    )
    if n.deadline:
        due += f" The current stage must now be resolved by {_by(n)}."
    return Wording(
        "URGENT: immediate risk of significant harm",
        f"A professional has flagged that the child is at immediate risk of significant harm. "
        f"The disagreement is at {_stage(n)}.",
        due,
    )


def _deadline_shortened(n: Notice) -> Wording:
    return Wording(
        f"Deadline brought forward: due by {_by(n)}",
        f"A manager has brought the deadline of {_stage(n)} forward to a timescale that "
        "protects the child.",
        f"Resolve it by {_by(n)}, or it escalates automatically.",
    )


def _resolved(n: Notice) -> Wording:
    if n.context.get("confirmation") == "due-no-timescale":
        due = (
            "The parties must confirm the agreed outcome, and how any outstanding issues will "
            "be pursued, in writing between them, and record it on the case (Confirm outcome). "
            "If the confirmation shows there was no real agreement, reopen the case."
        )
    elif n.context.get("confirmation") == "due":
        due = (
            "The receiving manager must confirm the agreed outcome, and how any outstanding "
            f"issues will be addressed, in writing to their counterpart by {_by(n)}, and "
            "record it on the case (Confirm outcome)."
        )
    else:
        due = (
            "Nothing more is due under the escalation policy. Record the outcome on the "
            "child's record in your agency."
        )
    return Wording(
        f"Resolved at {_stage(n)}",
        f"The disagreement has been resolved at {_stage(n)}. The agreed outcome is recorded "
        "on the case: open it to read it.",
        due,
    )


def _confirmation_due(n: Notice) -> Wording:
    if n.context.get("overdue") == "yes":
        return Wording(
            "Overdue: written confirmation of the outcome",
            f"The written confirmation of the outcome agreed at {_stage(n)} was due by "
            f"{_by(n)} and has not been recorded.",
            "Confirm the outcome in writing to your counterpart now and record it on the case "
            "(Confirm outcome).",
        )
    return Wording(
        f"Written confirmation due by {_by(n)}",
        f"The outcome agreed at {_stage(n)} must be confirmed in writing.",
        f"Confirm it in writing to your counterpart and record it on the case (Confirm "
        f"outcome) by {_by(n)}.",
    )


def _confirmed(n: Notice) -> Wording:
    return Wording(
        "Outcome confirmed: case closed",
        f"The outcome agreed at {_stage(n)} has been confirmed in writing. The case is closed.",
        "Nothing more is due. Record the outcome on the child's record in your agency.",
    )


def _withdrawn(n: Notice) -> Wording:
    return Wording(
        "Disagreement withdrawn: case closed",
        f"The disagreement has been withdrawn at {_stage(n)}. The case is closed.",
        "Nothing more is due under the escalation policy.",
    )


def _business_team_record(n: Notice) -> Wording:
    event = n.context.get("event", "an event")
    forms = [f.name for f in n.filled_forms] or list(n.forms)
    if forms:
        due = (
            f"Attached, filled from the case: {'; '.join(forms)}. Please check it, complete "
            "any blank field and keep it with the partnership's record of escalations."
        )
    else:
        due = "No form is due. Please keep this with the partnership's record of escalations."
    return Wording(
        f"For the record: {event} at {_stage(n)}",
        f"For the partnership's record of escalations: {event} at {_stage(n)}.",
        due,
    )


def _delivery_failed(n: Notice) -> Wording:
    what = n.context.get("failed_template", "a notice")
    event = n.context.get("event", "failed")
    reason = n.context.get("reason", "")
    recipient = n.context.get("recipient")
    to = f" to {recipient}" if recipient else ""
    because = f": {reason}" if reason else ""
    return Wording(
        "A notice about this case was not delivered",
        f"The {what} notice{to} (id {n.context.get('failed_notice', '?')}) was not "
        f"delivered ({event}{because}).",
        "Please make sure the people concerned are told by another route, and correct the "
        "address in the role directory if it is wrong.",
    )


def _form_due(n: Notice) -> Wording:
    form = n.context.get("form", "the stage's form")
    to = n.context.get("addressed_to", "the person it is addressed to")
    by = n.context.get("form_due", "")
    if n.context.get("overdue") == "yes":
        return Wording(
            f"Overdue: {form}",
            f"The {form} for {_stage(n)} was due by {by} and has not arrived.",
            f"Complete it now on the case page (Send the form); it goes to {to}.",
        )
    if n.context.get("part") == "resolution":
        return Wording(
            f"Form due by {by}: {form}",
            f"The disagreement was resolved at {_stage(n)}, and the {form} asks what was "
            "agreed and what can be learned: those questions are not answered yet.",
            f"Answer them on the case page (Send the form) by {by}; the form goes to {to}.",
        )
    return Wording(
        f"Form due by {by}: {form}",
        f"The disagreement has reached {_stage(n)}, which needs the {form}, and it has not "
        "been completed yet.",
        f"The manager who escalated it should complete it on the case page (Send the form) "
        f"by {by}; it goes to {to}.",
    )


def _form_sent(n: Notice) -> Wording:
    forms = [f.name for f in n.filled_forms] or list(n.forms)
    return Wording(
        f"Form for {_stage(n)}: {'; '.join(forms)}",
        f"The disagreement is at {_stage(n)}, and its form is addressed to you.",
        "Attached, without the child's details: open the case to read the complete form.",
    )


TEMPLATES: dict[str, Callable[[Notice], Wording]] = {
    "stage-started": _stage_started,
    "escalated-automatically": _escalated_automatically,
    "acknowledgement-due": _acknowledgement_due,
    "deadline-day-reminder": _deadline_day,
    "stage-reminder": _stage_reminder,
    "overdue-final-stage": _overdue_final,
    "immediate-risk": _immediate_risk,
    "deadline-shortened": _deadline_shortened,
    "resolved": _resolved,
    "written-confirmation-due": _confirmation_due,
    "outcome-confirmed": _confirmed,
    "withdrawn": _withdrawn,
    "business-team-record": _business_team_record,
    "delivery-failed": _delivery_failed,
    "form-due": _form_due,
    "form-sent": _form_sent,
}
assert set(TEMPLATES) == set(get_args(NoticeTemplate)), "a notice template has no words"


def wording(notice: Notice) -> Wording:
    return TEMPLATES[notice.template](notice)


def _act_words(offer: Offer) -> str:
    return (
        f"This link is for you alone. It works once, until {offer.expires_text}. Opening it "
        "changes nothing: the page it opens says what it will do, and acts only when you "
        "press its button."
    )


def render(
    notice: Notice,
    audience: Sequence[str] = (),
    preface: str | None = None,
    act: Offer | None = None,
) -> Rendered:
    """The notice as an email: subject, plain text and HTML.

    ``audience`` lists who is told, by role (not address); ``preface`` is a
    paragraph put first (e.g. to the business team, which roles nobody holds);
    ``act`` is the recipient's own action link (``escalation.action_links``),
    for their copy alone.
    """
    w = wording(notice)
    subject = f"[{notice.reference}] {w.subject}"
    if notice.template == "immediate-risk":
        subject = f"URGENT {subject}"
    link = notice.case_url
    sections: list[tuple[str, str]] = []
    if preface:
        sections.append(("Please note", preface))
    sections += [("What happened", w.happened), ("What is due", w.due)]
    if act is not None:
        sections.append(("Do it from this email", f"{act.label}: {act.url}\n{_act_words(act)}"))
    stage_words = f"{notice.stage_name}: {notice.stage_summary}"
    sections.append(("What the policy says for this stage", stage_words))
    case_line = f"Open the case: {link}" if link else f"Case reference {notice.reference}"
    sections.append(("The case", case_line))
    footer = (
        f"Case reference {notice.reference} · {notice.partnership} · policy {notice.policy_id}. "
        "This notice identifies the child only by the case reference: do not reply with the "
        "child's details. Record discussions on the child's record in your agency."
    )

    text_lines = [w.subject, ""]
    for title, body in sections:
        text_lines += [f"{title}:", body, ""]
    if audience:
        text_lines.append("Sent to:")
        text_lines += [f"  - {who}" for who in audience]
        text_lines.append("")
    text_lines += ["--", footer, ""]
    text = "\n".join(text_lines)

    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(subject)}</title></head>",
        '<body style="font-family: Arial, Helvetica, sans-serif; font-size: 15px; '
        'line-height: 1.45; color: #0b0c0c; max-width: 640px;">',
    ]
    if notice.template == "immediate-risk":
        parts.append(
            '<p style="background: #d4351c; color: #ffffff; padding: 8px 12px; '
            'font-weight: bold;">Immediate risk of significant harm</p>'
        )
    parts.append(f'<h1 style="font-size: 22px;">{e(w.subject)}</h1>')
    for title, body in sections:
        if title == "The case" and link:
            content = f'<a href="{e(link, quote=True)}">Open case {e(notice.reference)}</a>'
        elif title == "Do it from this email" and act is not None:
            content = (
                f'<a href="{e(act.url, quote=True)}" style="font-weight: bold;">'
                f"{e(act.label)}</a><br>{e(_act_words(act))}"
            )
        else:
            content = e(body)
        if title == "What the policy says for this stage":
            content = (
                f"<strong>{e(notice.stage_name)}</strong><br><em>{e(notice.stage_summary)}</em>"
            )
        parts.append(f'<h2 style="font-size: 17px; margin-bottom: 4px;">{e(title)}</h2>')
        parts.append(f'<p style="margin-top: 0;">{content}</p>')
    if audience:
        parts.append('<h2 style="font-size: 17px; margin-bottom: 4px;">Sent to</h2><ul>')
        parts += [f"<li>{e(who)}</li>" for who in audience]
        parts.append("</ul>")
    parts.append(f'<hr><p style="font-size: 13px; color: #505a5f;">{e(footer)}</p>')
    parts.append("</body></html>")
    return Rendered(subject=subject, text=text, html="\n".join(parts))
