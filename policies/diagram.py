"""A policy's ladder as a Mermaid flowchart, and the README section built from
the built-in policies.

Pure: a ``Policy`` goes in, text comes out. ``escalation policy diagram``
prints ``mermaid(policy)``; ``escalation policy diagram --readme README.md``
rewrites the block between ``README_START`` and ``README_END`` with
``readme_section(...)``, and a test fails when the README is out of date.

Every label is quoted (``["..."]``) and escaped, so a title with brackets,
quotes or an ampersand cannot break the diagram's syntax.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from policies.model import BusinessTeamNotice, NoTimescale, Policy, Stage

README_START = "<!-- policies:start -->"
README_END = "<!-- policies:end -->"
README_COMMAND = "escalation policy diagram --readme README.md"

# The order in which DESIGN.md lists the first customers; any other built-in
# policy follows, by id.
DESIGN_ORDER = ("merton", "staffordshire-stoke", "cheshire", "wirral", "hillingdon")

_EVENT_WORDS = {
    "stage_started": "when the stage starts",
    "resolved": "when resolved here",
    "escalated_from": "when escalated from here",
    "outcome": "of the outcome",
}


def in_design_order(policies: Iterable[Policy]) -> list[Policy]:
    def rank(policy: Policy) -> tuple[int, str]:
        if policy.id in DESIGN_ORDER:
            return (DESIGN_ORDER.index(policy.id), policy.id)
        return (len(DESIGN_ORDER), policy.id)

    return sorted(policies, key=rank)


# --- Mermaid ----------------------------------------------------------------


def escape(text: str) -> str:
    """Text safe inside a quoted Mermaid label: entity codes for the
    characters Mermaid or its HTML rendering would read as syntax."""
    out = []
    for char in " ".join(text.split()):
        if char == "#":
            out.append("#35;")
        elif char == '"':
            out.append("#quot;")
        elif char == "<":
            out.append("#lt;")
        elif char == ">":
            out.append("#gt;")
        elif char == "&":
            out.append("#amp;")
        elif char == "`":
            out.append("'")
        else:
            out.append(char)
    return "".join(out)


def _label(*lines: str) -> str:
    return '"' + "<br/>".join(escape(line) for line in lines if line) + '"'


def _has_timescale(stage: Stage) -> bool:
    return not isinstance(stage.timescale, NoTimescale)


def _notice_text(notice: BusinessTeamNotice, policy: Policy) -> str:
    what = "told" if notice.form is None else f"sent the {policy.form(notice.form).name}"
    return f"business team {what} {_EVENT_WORDS[notice.when]}"


def _stage_lines(policy: Policy, index: int) -> list[str]:
    stage = policy.stages[index]
    lines = [stage.name, stage.timescale.describe()]
    anchor = policy.timescale_anchor(index)
    if anchor is not None:
        lines[-1] += (
            " from the raise" if anchor < 0 else f" from the start of {policy.stages[anchor].name}"
        )
    if not _has_timescale(stage):
        cadence = policy.reminder_cadence(index).describe()
        lines.append(f"no automatic escalation: reminders every {cadence}")
    elif index == policy.final_stage:
        cadence = policy.reminder_cadence(index).describe()
        lines.append(f"if overdue: reminders every {cadence} until determined")
    for notice in stage.business_team:
        if notice.form is None:
            lines.append(_notice_text(notice, policy))
    return lines


def _risk_lines(policy: Policy) -> list[str]:
    rule = policy.immediate_risk
    lines = ["Immediate risk of significant harm"]
    override = rule.timescale_override
    if override is None:
        lines.append("timescales unchanged")
    elif rule.override_applies_to == "current-stage":
        lines.append(f"current stage: {override.describe()}")
    else:
        lines.append(f"current and every later stage: {override.describe()}")
    areas = {a.key: a.name for a in policy.areas}
    for contact in rule.urgent_contacts:
        if contact.area is None:
            lines.append(f"tell at once: {contact.title}")
        else:
            lines.append(f"tell at once, for {areas[contact.area]}: {contact.title}")
    if rule.may_start_at_later_stage and rule.may_jump_to_later_stage:
        lines.append("may start at, or jump to, a later stage")
    elif rule.may_start_at_later_stage:
        lines.append("may start at a later stage")
    elif rule.may_jump_to_later_stage:
        lines.append("may jump to a later stage")
    return lines


def mermaid(policy: Policy) -> str:
    """The ladder as a Mermaid ``flowchart TD``: raised, one node per stage,
    escalation edges, resolved, and notes for forms and immediate risk."""
    out = ["flowchart TD"]
    out.append(f"    raised([{_label('Disagreement raised')}])")
    for index in range(len(policy.stages)):
        out.append(f"    s{index}[{_label(*_stage_lines(policy, index))}]")
    out.append(f"    resolved([{_label('Resolved')}])")

    out.append("    raised --> s0")
    for index, stage in enumerate(policy.stages):
        if index < policy.final_stage:
            edge = "deadline passes / escalate" if _has_timescale(stage) else "escalate"
            out.append(f'    s{index} -->|"{edge}"| s{index + 1}')
        for route in stage.may_escalate_directly_to:
            target = policy.stage_index(route.to)
            out.append(f'    s{index} -.->|"escalate directly"| s{target}')
    for index, stage in enumerate(policy.stages):
        confirm = stage.written_confirmation
        if confirm is not None:
            text = f"resolved: confirm in writing, {confirm.describe()}"
            out.append(f'    s{index} -->|"{escape(text)}"| resolved')
        else:
            out.append(f"    s{index} --> resolved")

    notes: list[str] = []
    for number, form in enumerate(policy.forms):
        node = f"form{number}"
        lines = [f"Form: {form.name}", f"sent to: {form.sent_to}"]
        if form.anonymised:
            lines.append("anonymised: identifies nobody")
        out.append(f"    {node}[{_label(*lines)}]")
        notes.append(node)
        for index, stage in enumerate(policy.stages):
            if stage.form_required == form.key:
                out.append(f'    {node} -.->|"required to escalate here"| s{index}')
            for notice in stage.business_team:
                if notice.form == form.key:
                    text = f"sent {_EVENT_WORDS[notice.when]}"
                    out.append(f'    s{index} -.->|"{escape(text)}"| {node}')

    out.append(f"    risk{{{{{_label(*_risk_lines(policy))}}}}}")
    notes.append("risk")
    out.append('    raised -.->|"child at immediate risk, at raise or later"| risk')

    out.append("    classDef note fill:#fff8dc,stroke:#b59a00")
    out.append("    classDef done fill:#e6f4ea,stroke:#2e7d32")
    out.append(f"    class {','.join(notes)} note")
    out.append("    class resolved done")
    return "\n".join(out) + "\n"


# --- The README section -------------------------------------------------------


def _and_list(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _short_name(stage: Stage) -> str:
    """'Stage 2', 'Step 3', 'Day 1-2': the part of the name before a colon."""
    return stage.name.split(":", 1)[0].strip() or stage.name


def _ladder_text(policy: Policy) -> str:
    """The timescales in order, condensed: '5 stages of 5 working days each',
    '4 stages: 48 hours, then 5, 6, 6 working days'."""
    count = f"{len(policy.stages)} stages"
    kinds = [s.timescale.kind for s in policy.stages]
    described = [s.timescale.describe() for s in policy.stages]
    if all(kind == "none" for kind in kinds):
        return f"{count}, none with a written timescale"
    if len(set(described)) == 1:
        return f"{count} of {described[0]} each"
    groups: list[str] = []
    index = 0
    while index < len(policy.stages):
        kind = kinds[index]
        run = index
        while run + 1 < len(kinds) and kinds[run + 1] == kind:
            run += 1
        if kind == "working_days":
            days = [str(getattr(s.timescale, "days", "")) for s in policy.stages[index : run + 1]]
            unit = "working day" if days == ["1"] else "working days"
            groups.append(f"{', '.join(days)} {unit}")
        elif kind == "none":
            groups.append("no written timescale")
        else:
            groups.append(", ".join(described[index : run + 1]))
        index = run + 1
    return f"{count}: " + ", then ".join(groups)


def highlights(policy: Policy) -> str:
    """One line of what sets this policy apart, derived from its data so that
    it cannot drift from the YAML."""
    parts = [_ladder_text(policy)]
    if "adults-at-risk" in policy.subjects:
        parts.append("children and adults at risk")
    if len(policy.areas) > 1:
        parts.append(f"covers {_and_list([a.name for a in policy.areas])}")

    confirmed = [s for s in policy.stages if s.written_confirmation is not None]
    if confirmed:
        where = _and_list([_short_name(s) for s in confirmed])
        parts.append(f"outcome confirmed in writing at {where}")

    for form in policy.forms:
        uses = []
        required = [_short_name(s) for s in policy.stages if s.form_required == form.key]
        if required:
            uses.append(f"needed to escalate to {_and_list(required)}")
        sent = [
            _short_name(s)
            for s in policy.stages
            if any(n.form == form.key for n in s.business_team)
        ]
        if sent:
            uses.append(f"sent to the business team at {_and_list(sent)}")
        if form.anonymised:
            uses.append("anonymised")
        name = shorten(form.name, 100)
        parts.append(f"{name} ({', '.join(uses)})" if uses else name)

    rule = policy.immediate_risk
    override = rule.timescale_override
    if override is None:
        risk = "immediate risk: timescales unchanged"
    elif rule.override_applies_to == "current-stage":
        risk = f"immediate risk: {override.describe()} for the current stage"
    else:
        risk = f"immediate risk: {override.describe()} from the current stage on"
    told = list(dict.fromkeys(c.title for c in rule.urgent_contacts if c.area is None))
    if any(c.area is not None for c in rule.urgent_contacts):
        told.append("each area's urgent contact")
    risk += f", {_and_list(told)} told at once"
    if rule.may_start_at_later_stage and rule.may_jump_to_later_stage:
        risk += ", may start at or jump to a later stage"
    elif rule.may_start_at_later_stage:
        risk += ", may start at a later stage"
    elif rule.may_jump_to_later_stage:
        risk += ", may jump to a later stage"
    parts.append(risk)
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."


def _confirmation_lines(policy: Policy) -> list[str]:
    """Every written-confirmation duty with its source sentence."""
    rows = [
        f"- {_short_name(s)}: {s.written_confirmation.describe()} ({s.written_confirmation.source})"
        for s in policy.stages
        if s.written_confirmation is not None
    ]
    return ["Written confirmation of the outcome:", "", *rows, ""] if rows else []


def _reading_lines(policy: Policy) -> list[str]:
    """The sentences of the source that read two ways, and the reading chosen."""
    if not policy.readings:
        return []
    out = ["Contested readings:", ""]
    for r in policy.readings:
        out.append(
            f"- **{r.about}**: read as {r.chosen}; not {r.alternative}. {r.why} ({r.source})"
        )
    return [*out, ""]


def shorten(text: str, width: int) -> str:
    """At most ``width`` characters, cut at a word and marked with '…'."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    if " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" /,;:-(") + "…"


ADDING_YOUR_POLICY = f"""\
### Adding your partnership's policy

A partnership's own policy is one YAML file; nothing else changes. The commands
below are the installed `escalation` command (`make install`, then
`.venv/bin/escalation` or an activated `.venv`).

1. Copy the built-in policy whose ladder is closest to yours:
   `cp policies/data/merton.yaml my.yaml`.
2. Edit it: `id`, `partnership`, `document`, `areas`, then each stage's owners
   per kind of agency, its `timescale` (`kind: working_days`, `hours`,
   `same_working_day` or `none`), its `written_confirmation` (`within`,
   `counts_from: resolution` or `stage-start`, and `by`: who confirms), the
   earlier stages told of its outcome (`outcome_to`), direct routes past
   stages that may not be relevant (`may_escalate_directly_to`), forms (with
   `form_due` for a stage entered without its form) and business-team
   notices, the immediate-risk rule, and `readings` for any sentence of your
   document that can be read two ways. Every entry carries `source:`, the
   sentence of your document it encodes. The format reference is
   [docs/policy-format.md](docs/policy-format.md).
3. Validate it: `escalation policy check my.yaml` prints one line per problem
   (file, field path, what is wrong, and for an unknown field the fields
   allowed there) and exits 1 until the file is valid; it also warns of a
   ladder that is probably not what you meant (two stages in a row with the
   same owners, a stage nobody owns in some kinds of agency).
4. Check the deadlines against your document:
   `escalation policy explain --policy-file my.yaml --raised 2026-12-23T11:00`
   (add `--immediate-risk` for the urgent route, `--json` for machines), then
   `escalation policy show --policy-file my.yaml` and
   `escalation policy diagram --policy-file my.yaml`.
5. Rehearse a case on real dates: `escalation simulate --policy-file my.yaml
   --raised 2027-01-04T09:00 --act 2027-01-05T10:00=escalate`, choosing the
   case with `--raising-agency KIND --receiving-agency KIND --area KEY`
   (closure days from `ESCALATION_EXTRA_CLOSURES` apply, as in the worker).
6. Name the people who hold each role in the role directory
   (`policies/data/directory.example.yaml` shows the shape; set
   `ESCALATION_DIRECTORY_FILE`), then `escalation directory check FILE
   --policy-file my.yaml` lists every role the policy names that nobody holds.
7. To ship it as a built-in policy, put it in `policies/data/` and run
   `{README_COMMAND}` to regenerate this section.
"""


def readme_section(policies: Iterable[Policy]) -> str:
    """The README text between the markers (without the markers)."""
    out = [
        "## The five policies",
        "",
        "Generated from `policies/data/*.yaml` by "
        f"`{README_COMMAND}`; a test fails when this section falls out of date, "
        "so edit the YAML and regenerate rather than editing here. Each diagram "
        "is the ladder that runs if nobody acts: every deadline that passes "
        "escalates to the next stage, and any stage can end in resolution. "
        "`escalation policy explain ID --raised ISO8601` turns it into dates.",
        "",
    ]
    for policy in in_design_order(policies):
        out += [
            f"### {policy.partnership} (`{policy.id}`)",
            "",
            highlights(policy),
            "",
            "```mermaid",
            mermaid(policy).rstrip("\n"),
            "```",
            "",
        ]
        out += _confirmation_lines(policy)
        out += _reading_lines(policy)
    out.append(ADDING_YOUR_POLICY.rstrip("\n"))
    return "\n".join(out)


class ReadmeMarkersMissing(ValueError):
    pass


def _marker_span(text: str) -> tuple[int, int]:
    start = text.find(README_START)
    end = text.find(README_END)
    if start < 0 or end < 0 or end < start:
        raise ReadmeMarkersMissing(
            f"the README must contain {README_START} followed by {README_END}"
        )
    return start + len(README_START), end


def readme_block(text: str) -> str:
    """What the README holds between the markers now."""
    start, end = _marker_span(text)
    return text[start:end]


def readme_block_for(policies: Iterable[Policy]) -> str:
    """What the README should hold between the markers."""
    return "\n" + readme_section(policies) + "\n"


def replace_readme_block(text: str, policies: Iterable[Policy]) -> str:
    """The README with the block between the markers regenerated; everything
    outside the markers is kept byte for byte."""
    start, end = _marker_span(text)
    return text[:start] + readme_block_for(policies) + text[end:]
