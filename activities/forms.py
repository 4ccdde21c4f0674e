"""The partnerships' forms as PDF, filled from the case.

``render_pdf`` lays out a ``FilledForm`` (``workflows.forms.fill_form``) the
way its source document does: Merton's pro-forma, Staffordshire and
Stoke-on-Trent's Formal Escalation Form, Cheshire's Appendix A and Wirral's
pro-formas as label/answer boxes in the document's order; Hillingdon's
notification form as its one-row table, on a landscape page. Every field the
policy lists is printed with its label, blank where the case cannot fill it,
so the business team can complete it by hand.

The PDF carries the child's details where the source form asks for them (it
goes to the business team only, as an attachment); its metadata never does.
fpdf2's core fonts cover Latin-1, so text is folded to Latin-1 first
(curly quotes to straight ones, dashes to hyphens).
"""

from __future__ import annotations

from fpdf import FPDF, FontFace
from fpdf.enums import XPos, YPos
from fpdf.fonts import CoreFont

from workflows.forms import WITHHELD
from workflows.messages import FilledField, FilledForm

_FOLD = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2212": "-",
        "\u2026": "...",
        "\u2022": "-",
        "\u2192": "->",
        "\u00a0": " ",
    }
)

# Fields the source documents print as Yes/No choices (Merton's Appendix 1).
_YES_NO = {"resolved-at-stage-1-or-2", "staff-training", "new-protocol", "sub-group-discussion"}
# Fields whose answers run to paragraphs: a taller box.
_LONG = {
    "disagreement-details",
    "what-was-agreed",
    "if-not-why",
    "agency-learning",
    "partnership-learning",
    "summary-of-concerns",
    "requested-action",
    "response",
    "resolution-of-issues",
    "actions-taken",
    "brief-details",
    "methodology",
    "brief-conflict",
    "resolution",
    "learning",
    "others-involved",
}
_TABLE_FORMS = {"escalation-notification"}

GREY = (80, 90, 95)
SHADE = (238, 240, 242)


def latin1(text: str) -> str:
    return text.translate(_FOLD).encode("latin-1", "replace").decode("latin-1")


def pdf_filename(form: FilledForm) -> str:
    return f"{form.reference}-{form.key}.pdf"


class _Pdf(FPDF):
    def __init__(self, form: FilledForm, orientation: str) -> None:
        super().__init__(orientation=orientation, unit="mm", format="A4")
        self.form = form
        self.set_margins(15, 15, 15)
        self.set_auto_page_break(True, margin=18)
        # Metadata names the form and case, never the child.
        self.set_title(latin1(f"{form.name} - case {form.reference}"))
        self.set_author(latin1(form.partnership))
        self.set_creator("escalation service")

    def footer(self) -> None:
        self.set_y(-13)
        self.set_font("Helvetica", "", 8)
        self.set_text_color(*GREY)
        text = f"Case {self.form.reference} - {self.form.name} - page {self.page_no()}/{{nb}}"
        self.cell(0, 5, latin1(text), align="C")
        self.set_text_color(0, 0, 0)


def _header(pdf: _Pdf, form: FilledForm) -> None:
    width = pdf.epw
    pdf.set_font("Helvetica", "", 9)
    pdf.set_text_color(*GREY)
    _paragraph(pdf, width, 4.5, latin1(form.partnership))
    pdf.set_text_color(0, 0, 0)
    pdf.set_font("Helvetica", "B", 14)
    _paragraph(pdf, width, 7, latin1(form.name))
    pdf.ln(1)
    pdf.set_font("Helvetica", "", 10)
    line = f"Case reference: {form.reference}"
    if form.completed_on:
        line += f"    Filled from the case on: {form.completed_on}"
    _paragraph(pdf, width, 5, latin1(line))
    pdf.set_font("Helvetica", "", 8.5)
    pdf.set_text_color(*GREY)
    _paragraph(pdf, width, 4, latin1(f"Source: {form.source}"))
    _paragraph(pdf, width, 4, latin1(f"Send to: {form.sent_to}"))
    pdf.set_text_color(0, 0, 0)
    banner = None
    if form.anonymised:
        banner = (
            "ANONYMISED: this form must not identify the child or adult "
            "(keep the client anonymous)."
        )
    elif any(f.identifying and f.value.startswith(WITHHELD) for f in form.fields):
        banner = (
            "The child's identifying details are withheld from this emailed copy; the "
            "complete form is on the case record."
        )
    elif "securely" in form.sent_to.lower() or "secure" in form.sent_to.lower():
        banner = "THIS DOCUMENT MUST BE SENT SECURELY. It contains the child's details."
    if banner:
        pdf.ln(2)
        pdf.set_font("Helvetica", "B", 10)
        pdf.set_fill_color(253, 236, 234)
        _paragraph(pdf, width, 6, latin1(banner), border="LTRB", fill=True)
    pdf.ln(4)


def _text_width(pdf: _Pdf, text: str) -> float:
    """Width of text in the current font, in the page's units: summed from
    a core font's character widths, as fpdf2 does, without its text shaping."""
    font = pdf.current_font
    if not isinstance(font, CoreFont):
        return pdf.get_string_width(text)
    widths: dict[str, int] = font.cw
    return sum(widths[c] for c in text) * pdf.font_size_pt * 0.001 / pdf.k


def _wrap(pdf: _Pdf, width: float, text: str) -> list[str]:
    """The lines text takes in a box of this width, broken at spaces (a word
    wider than the box is broken where it must be). fpdf2's own line breaker
    measures a line again for every character it adds, which made the forms'
    PDFs most of a notice's cost; a word at a time is measured once."""
    room = width - 2 * pdf.c_margin
    space = _text_width(pdf, " ")
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line, used = "", 0.0
        for word in paragraph.split(" "):
            size = _text_width(pdf, word)
            if line and used + space + size <= room:
                line, used = f"{line} {word}", used + space + size
                continue
            if line:
                lines.append(line)
            while size > room and len(word) > 1:
                cut = len(word) - 1
                while cut > 1 and _text_width(pdf, word[:cut]) > room:
                    cut -= 1
                lines.append(word[:cut])
                word = word[cut:]
                size = _text_width(pdf, word)
            line, used = word, size
        lines.append(line.rstrip())
    return lines


def _paragraph(
    pdf: _Pdf, width: float, height: float, text: str, border: str = "", fill: bool = False
) -> None:
    """Text wrapped to the width from the left margin, a cell a line (what
    ``multi_cell`` draws, with its border split over the lines)."""
    lines = _wrap(pdf, width, text)
    for i, line in enumerate(lines):
        edges = "".join(
            side
            for side in "LTRB"
            if side in border
            and (side in "LR" or (side == "T" and i == 0) or (side == "B" and i == len(lines) - 1))
        )
        pdf.cell(
            width, height, line, border=edges or 0, fill=fill, new_x=XPos.LMARGIN, new_y=YPos.NEXT
        )


def _value_text(field: FilledField) -> str:
    value = field.value.strip()
    if field.key in _YES_NO:
        if value.lower().startswith("yes"):
            return "[X] Yes    [ ] No" + _rest(value, 3)
        if value.lower().startswith("no"):
            return "[ ] Yes    [X] No" + _rest(value, 2)
        return "[ ] Yes    [ ] No" + (f"    {value}" if value else "")
    return value


def _rest(value: str, skip: int) -> str:
    rest = value[skip:].strip(" :-")
    return f"    {rest}" if rest else ""


def _boxes(pdf: _Pdf, form: FilledForm) -> None:
    width = pdf.epw
    for field in form.fields:
        label = field.label
        if not field.value.strip() and field.filled_from in ("resolution", "business-team"):
            label += "  (to be completed)"
        value = latin1(_value_text(field))
        min_height = 22.0 if field.key in _LONG else 8.0
        # Keep a label with its box: start a new page if the pair would split.
        pdf.set_font("Helvetica", "", 10)
        lines = len(_wrap(pdf, width - 4, value or " "))
        needed = 7 + max(min_height, lines * 5 + 3)
        if pdf.get_y() + needed > pdf.h - pdf.b_margin:
            pdf.add_page()
        pdf.set_font("Helvetica", "B", 10)
        pdf.set_fill_color(*SHADE)
        _paragraph(pdf, width, 5.5, latin1(label), border="LTR", fill=True)
        pdf.set_font("Helvetica", "", 10)
        top = pdf.get_y()
        pdf.set_y(top + 1.5)
        for line in _wrap(pdf, width - 4, value) if value else []:
            pdf.set_x(pdf.l_margin + 2)
            pdf.cell(width - 4, 5, line, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        bottom = max(pdf.get_y() + 1.5, top + min_height)
        pdf.rect(pdf.l_margin, top, width, bottom - top)
        pdf.set_y(bottom + 3)


def _weights(form: FilledForm) -> list[int]:
    return [2 if f.key in ("date", "date-referred", "escalation-stage") else 3 for f in form.fields]


def _table_fits(pdf: _Pdf, form: FilledForm) -> bool:
    """Whether the one-row table fits in the rest of the page."""
    weights = _weights(form)
    total = sum(weights)
    tallest = 0.0
    for weight, field in zip(weights, form.fields, strict=True):
        width = pdf.epw * weight / total - 3
        for text, style in ((field.label, "B"), (field.value.strip() or " ", "")):
            pdf.set_font("Helvetica", style, 9)
            lines = len(_wrap(pdf, width, latin1(text)))
            tallest = max(tallest, lines * 4.8 + 3)
    return pdf.get_y() + 2 * tallest + 5 < pdf.h - pdf.b_margin


def _table(pdf: _Pdf, form: FilledForm) -> None:
    pdf.set_font("Helvetica", "", 9)
    weights = _weights(form)
    with pdf.table(
        col_widths=tuple(weights),
        text_align="LEFT",
        line_height=4.8,
        headings_style=FontFace(emphasis="BOLD", fill_color=SHADE),
        first_row_as_headings=True,
        padding=1.5,
    ) as table:
        header = table.row()
        for field in form.fields:
            header.cell(latin1(field.label))
        row = table.row()
        for field in form.fields:
            row.cell(latin1(field.value.strip() or " "))


def render_pdf(form: FilledForm) -> bytes:
    """The form as a PDF document."""
    if form.key in _TABLE_FORMS:
        pdf = _Pdf(form, orientation="landscape")
        pdf.alias_nb_pages()
        pdf.add_page()
        _header(pdf, form)
        if _table_fits(pdf, form):
            _table(pdf, form)
            return bytes(pdf.output())
        # A row too tall for the page: label/answer boxes instead, which flow.
    pdf = _Pdf(form, orientation="portrait")
    pdf.alias_nb_pages()
    pdf.add_page()
    _header(pdf, form)
    _boxes(pdf, form)
    return bytes(pdf.output())
