"""The report's charts, drawn by matplotlib as SVG.

A suppressed figure is never drawn to scale: its bar or point is left out
and marked "<5" (or "withheld"), so a chart gives away no more than
the table beside it. Text is drawn as outlines, so an SVG looks the same in
a browser and inside the PDF.
"""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: the charts are files

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from reports.figures import FEWER_THAN_5  # noqa: E402

BLUE = "#1d5a8c"
GREY = "#6b7780"
plt.rcParams.update(
    {
        "svg.hashsalt": "escalation-report",  # the same figures draw the same file
        "font.family": "DejaVu Sans",
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
        # Not pure black: matplotlib then names the glyphs' fill, which fpdf2
        # needs to draw them solid in the PDF.
        "text.color": "#1b1f23",
        "axes.labelcolor": "#1b1f23",
        "xtick.labelcolor": "#1b1f23",
        "ytick.labelcolor": "#1b1f23",
    }
)


def _svg(fig: Any) -> str:
    out = io.StringIO()
    fig.savefig(out, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return out.getvalue()


def _mark(value: Any) -> str:
    return "<5" if value == FEWER_THAN_5 else "withheld"


def bars(title: str, rows: list[tuple[str, Any]], what: str = "cases") -> str | None:
    """Horizontal bars, largest first; None if there is nothing to draw."""
    if not any(isinstance(v, int) and v > 0 for _, v in rows):
        # Nothing to draw to scale: the table says it all.
        return None
    labels = [label for label, _ in rows][::-1]
    values = [v for _, v in rows][::-1]
    fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(rows) + 1.0))
    shown = [v if isinstance(v, int) else 0 for v in values]
    ax.barh(labels, shown, color=BLUE)
    top = max(shown + [1])
    for y, v in enumerate(values):
        text = str(v) if isinstance(v, int) else _mark(v)
        ax.text((v if isinstance(v, int) else 0) + top * 0.01, y, text, va="center", color=GREY)
    ax.set_xlim(0, top * 1.15)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(what)
    ax.set_title(title, loc="left")
    return _svg(fig)


def line(title: str, points: list[tuple[str, Any]]) -> str:
    """Cases per quarter; a suppressed quarter is a gap marked "<5"."""
    fig, ax = plt.subplots(figsize=(6.4, 2.6))
    xs = list(range(len(points)))
    ys = [v if isinstance(v, int) else float("nan") for _, v in points]
    ax.plot(xs, ys, marker="o", color=BLUE)
    finite = [y for y in ys if y == y]
    top = max(finite + [5])
    for x, (_, v) in zip(xs, points, strict=True):
        if not isinstance(v, int):
            ax.annotate(_mark(v), (x, 0), ha="center", va="bottom", color=GREY)
    ax.set_xticks(xs, [q for q, _ in points], rotation=0)
    ax.set_ylim(0, top * 1.2)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("cases raised")
    ax.set_title(title, loc="left")
    return _svg(fig)


def stage_times(title: str, rows: list[dict[str, Any]]) -> str | None:
    """Median and 90th percentile working days in each stage, where shown."""
    drawn = [r for r in rows if r["median_working_days"] is not None]
    if not drawn:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 0.55 * len(drawn) + 1.0))
    labels = [f"Stage {r['stage']}" for r in drawn][::-1]
    medians = [r["median_working_days"] for r in drawn][::-1]
    p90s = [r["p90_working_days"] for r in drawn][::-1]
    ys = list(range(len(drawn)))
    ax.barh([y + 0.2 for y in ys], p90s, height=0.4, color="#9fbcd6", label="90th percentile")
    ax.barh([y - 0.2 for y in ys], medians, height=0.4, color=BLUE, label="median")
    ax.set_yticks(ys, labels)
    ax.set_xlabel("working days in the stage")
    ax.legend(loc="lower right", frameon=False)
    ax.set_title(title, loc="left")
    return _svg(fig)


def all_charts(data: dict[str, Any]) -> dict[str, str]:
    """Every chart the report has, by name."""
    charts: dict[str, str | None] = {
        "per_quarter": line(
            "Cases raised per quarter", [(p["quarter"], p["raised"]) for p in data["per_quarter"]]
        ),
        "by_raising_agency": bars(
            "Cases by raising agency", [(r["name"], r["cases"]) for r in data["by_raising_agency"]]
        ),
        "by_receiving_agency": bars(
            "Cases by receiving agency",
            [(r["name"], r["cases"]) for r in data["by_receiving_agency"]],
        ),
        "by_category": bars(
            "Cases by theme", [(r["name"], r["cases"]) for r in data["by_category"]]
        ),
        "stage_times": stage_times("Time to resolve or escalate, by stage", data["timeliness"]),
    }
    return {name: svg for name, svg in charts.items() if svg is not None}
