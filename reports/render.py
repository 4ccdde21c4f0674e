"""The report as JSON, CSV, HTML (charts inline as SVG) and PDF (fpdf2, text
selectable, charts as vector drawings).

Every format is laid out from the same sections (``sections``), so the PDF
the business team is mailed and the CSV beside it hold the same figures.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from dataclasses import dataclass
from typing import Any

from fpdf import FPDF, FontFace
from fpdf.enums import XPos, YPos

from reports.charts import all_charts
from reports.figures import Figures

FORMATS = ("html", "pdf", "csv", "json")
NOT_SHOWN = "-"
# fpdf2 draws the chart and ignores its RDF metadata, noisily.
_METADATA = re.compile(r"<metadata>.*?</metadata>", re.S)


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    columns: list[str]
    rows: list[list[Any]]
    chart: str | None = None
    note: str | None = None
    empty: str = "None in the period."


def _value(v: Any) -> str:
    if v is None:
        return NOT_SHOWN
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def sections(data: dict[str, Any]) -> list[Section]:
    out = [
        Section(
            "headline",
            "Cases in the period",
            ["", "This period", "Previous period", "Same period a year before"],
            [
                [r["measure"], r["this_period"], r["previous_period"], r["year_before"]]
                for r in data["headline"]
            ],
        ),
        Section(
            "per_quarter",
            "Cases raised in each of the last eight quarters",
            ["Quarter", "Cases raised"],
            [[p["quarter"], p["raised"]] for p in data["per_quarter"]],
            chart="per_quarter",
        ),
        Section(
            "by_raising_agency",
            "By the agency raising the concern",
            ["Agency", "Cases"],
            [[r["name"], r["cases"]] for r in data["by_raising_agency"]],
            chart="by_raising_agency",
        ),
        Section(
            "by_raising_kind",
            "By the kind of agency raising",
            ["Kind of agency", "Cases"],
            [[r["name"], r["cases"]] for r in data["by_raising_kind"]],
        ),
        Section(
            "by_receiving_agency",
            "By the agency the concern was raised with",
            ["Agency", "Cases"],
            [[r["name"], r["cases"]] for r in data["by_receiving_agency"]],
            chart="by_receiving_agency",
        ),
        Section(
            "by_receiving_kind",
            "By the kind of agency receiving",
            ["Kind of agency", "Cases"],
            [[r["name"], r["cases"]] for r in data["by_receiving_kind"]],
        ),
        Section(
            "pairs",
            "The agencies that disagree most",
            ["Raising agency", "Receiving agency", "Cases"],
            [[p["raising"], p["receiving"], p["cases"]] for p in data["pairs"]],
            empty="No pair of agencies had 5 or more cases in the period.",
        ),
        Section(
            "by_category",
            "By theme (a case may have more than one)",
            ["Theme", "Cases"],
            [[r["name"], r["cases"]] for r in data["by_category"]],
            chart="by_category",
        ),
        Section(
            "by_highest_stage",
            "By the highest stage reached",
            ["Stage", "Cases"],
            [[r["name"], r["cases"]] for r in data["by_highest_stage"]],
        ),
        Section(
            "timeliness",
            "Timeliness: stages that ended in the period",
            [
                "Stage",
                "Timescale",
                "Ended",
                "Within timescale",
                "Median working days",
                "90th percentile",
                "Escalated by the deadline",
            ],
            [
                [
                    r["name"],
                    r["timescale"],
                    r["ended"],
                    r["within_timescale"],
                    r["median_working_days"],
                    r["p90_working_days"],
                    r["automatic_escalations"],
                ]
                for r in data["timeliness"]
            ],
            chart="stage_times",
            note="A stage ends when it is resolved or escalated (by a manager, or "
            "automatically when its deadline passed and nobody acted). '-': fewer than 5 "
            "stages ended, too few for a share or a median.",
        ),
        Section(
            "follow_up",
            "Written confirmations and forms",
            ["", "Number"],
            [
                ["Written confirmations overdue", data["confirmations_overdue"]],
                ["Forms due to the business team", data["forms"]["due"]],
                ["Forms received by the business team", data["forms"]["received"]],
            ],
        ),
        Section(
            "immediate_risk",
            "Immediate risk",
            ["", "Value"],
            [
                ["Cases where immediate risk was declared", data["immediate_risk"]["cases"]],
                ["Of which the urgent contacts were told", data["immediate_risk"]["told"]],
                [
                    "Median minutes until the urgent contacts were told",
                    data["immediate_risk"]["median_minutes_to_tell"],
                ],
                [
                    "90th percentile (minutes)",
                    data["immediate_risk"]["p90_minutes_to_tell"],
                ],
            ],
        ),
        Section(
            "agencies_raising_nothing",
            "Agencies that raised no concern in the period",
            ["Agency"],
            [[name] for name in data["agencies_raising_nothing"]],
            note="For the partnership to ask about: national reviews keep finding that "
            "escalation is under-used by some agencies.",
            empty="Every agency known to the register raised at least one concern.",
        ),
    ]
    return out


def title(data: dict[str, Any]) -> str:
    return f"Escalation report: {data['partnership']['name']}"


def empty_text(data: dict[str, Any]) -> str:
    return f"No concerns were raised in {data['period']['description']}."


def as_json(figures: Figures) -> str:
    return json.dumps(figures.data, indent=2, ensure_ascii=False) + "\n"


def as_csv(figures: Figures) -> str:
    """One row a figure: section, row, column, value."""
    data = figures.data
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["partnership", "period", "section", "row", "column", "value"])
    who, when = data["partnership"]["id"], data["period"]["label"]
    for section in sections(data):
        for row in section.rows:
            label = _value(row[0])
            values = row[1:] if len(row) > 1 else [""]
            columns = section.columns[1:] if len(row) > 1 else [section.columns[0]]
            for column, value in zip(columns, values, strict=True):
                writer.writerow([who, when, section.key, label, column, _value(value)])
    return out.getvalue()


def as_html(figures: Figures) -> str:
    data = figures.data
    charts = all_charts(data)
    esc = html.escape
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title(data))}, {esc(data['period']['label'])}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;"
        "color:#1b1f23}table{border-collapse:collapse;margin:.5rem 0 1rem}"
        "th,td{border:1px solid #c8d0d6;padding:.25rem .6rem;text-align:left}"
        "td.n{text-align:right}.note{color:#4a5560;font-size:.9rem}"
        ".anon{border-left:4px solid #1d5a8c;padding:.5rem 1rem;background:#eef4f9}</style>",
        "</head><body>",
        f"<h1>{esc(title(data))}</h1>",
        f"<p><strong>{esc(data['period']['description'])}</strong> · for "
        f"{esc(data['partnership']['business_team'])} · generated {esc(data['generated_at'])}"
        "</p>",
        f'<p class="anon">{esc(data["anonymity"])}</p>',
    ]
    if figures.empty:
        parts.append(f"<p><strong>{esc(empty_text(data))}</strong></p>")
    for section in sections(data):
        parts.append(f"<h2>{esc(section.title)}</h2>")
        if section.note:
            parts.append(f'<p class="note">{esc(section.note)}</p>')
        if section.chart and section.chart in charts:
            parts.append(f'<figure class="chart">{_inline_svg(charts[section.chart])}</figure>')
        if not section.rows:
            parts.append(f"<p>{esc(section.empty)}</p>")
            continue
        head = "".join(f"<th>{esc(c)}</th>" for c in section.columns)
        parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>")
        for row in section.rows:
            cells = "".join(
                f'<td class="n">{esc(_value(v))}</td>' if i else f"<td>{esc(_value(v))}</td>"
                for i, v in enumerate(row)
            )
            parts.append(f"<tr>{cells}</tr>")
        parts.append("</tbody></table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _inline_svg(svg: str) -> str:
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


_FOLD = str.maketrans({"\u2019": "'", "\u2018": "'", "\u2013": "-", "\u2014": "-", "·": "-"})


def _latin(text: str) -> str:
    # fpdf2's core fonts cover Latin-1 only.
    return text.translate(_FOLD).encode("latin-1", "replace").decode("latin-1")


def as_pdf(figures: Figures) -> bytes:
    data = figures.data
    charts = all_charts(data)
    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_title(_latin(f"{title(data)}, {data['period']['label']}"))
    pdf.set_author(_latin(data["partnership"]["name"]))
    pdf.set_creator("escalation report")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.set_margins(15, 15, 15)
    pdf.add_page()
    width = pdf.w - pdf.l_margin - pdf.r_margin

    def para(text: str, size: float = 10, style: str = "", gap: float = 2) -> None:
        pdf.set_font("Helvetica", style, size)
        pdf.multi_cell(width, size * 0.5, _latin(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(gap)

    para(title(data), 18, "B")
    para(data["period"]["description"], 13, "B")
    para(
        f"For {data['partnership']['business_team']}. Generated {data['generated_at']}.",
        9,
    )
    pdf.set_fill_color(238, 244, 249)
    pdf.set_font("Helvetica", "", 10)
    pdf.multi_cell(
        width, 5, _latin(data["anonymity"]), fill=True, new_x=XPos.LMARGIN, new_y=YPos.NEXT
    )
    pdf.ln(4)
    if figures.empty:
        para(empty_text(data), 12, "B", 4)
    for section in sections(data):
        charted = bool(section.chart and section.chart in charts)
        # A heading stays on the page of what it heads, chart included.
        if pdf.get_y() > pdf.h - (110 if charted else 60):
            pdf.add_page()
        para(section.title, 13, "B", 1)
        if section.note:
            para(section.note, 8.5, "I", 1)
        if charted:
            svg = _METADATA.sub("", charts[section.chart])
            pdf.image(io.BytesIO(svg.encode("utf-8")), w=width * 0.85)
            pdf.ln(2)
        if not section.rows:
            para(section.empty, 10, "", 4)
            continue
        pdf.set_font("Helvetica", "", 9)
        first = 2.2 if len(section.columns) > 3 else 3.0
        widths = [first] + [1.0] * (len(section.columns) - 1)
        with pdf.table(
            col_widths=widths,
            text_align=["LEFT"] + ["RIGHT"] * (len(section.columns) - 1),
            headings_style=FontFace(emphasis="BOLD", fill_color=(226, 234, 240)),
            line_height=5,
            width=width,
        ) as table:
            table.row([_latin(c) for c in section.columns])
            for row in section.rows:
                table.row([_latin(_value(v)) for v in row])
        pdf.ln(4)
    return bytes(pdf.output())


def render(figures: Figures, fmt: str) -> bytes:
    if fmt == "pdf":
        return as_pdf(figures)
    text = {"html": as_html, "csv": as_csv, "json": as_json}[fmt](figures)
    return text.encode("utf-8")
