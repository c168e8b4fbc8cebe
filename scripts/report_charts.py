"""Charts of `make verify` and `make bench`: SVG files next to the report's markdown, the
markdown lines that embed them, and an HTML page that shows them.

Used by scripts/verify.py and scripts/bench.py; both hand over the run's own measurements as
`Sample`s (one per order request) and `Mark`s (the gremlin switched on or off), so every
picture is drawn from that run's data.

matplotlib without pyplot: each chart is its own `Figure` (no global figure state, no display,
no backend switch), written as SVG with a fixed hash salt and no date, so the same data gives
the same bytes and different data gives different bytes. Each group of plotted data carries an
SVG id (`points-<phase>`, `mix-<phase>-<answer>`, `cdf-<phase>`): tests count what was drawn.
"""

from __future__ import annotations

import html
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullFormatter

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

BUDGET_MS = 2000.0  # order's synchronous budget for its inventory call
# First answers, in the order the mix chart stacks them, and their colours.
ANSWER_COLOURS = {
    "201": "#2e7d32",  # CONFIRMED on the synchronous path
    "202": "#f9a825",  # QUEUED (fallback)
    "409": "#757575",  # REJECTED
    "other": "#c62828",  # any other status, or no answer at all
}
BASELINE = "baseline"
_SVG: dict[RcKeyType, Any] = {"svg.hashsalt": "valerix-report", "svg.fonttype": "none", "font.size": 9}


@dataclass(frozen=True)
class Sample:
    """One order request: when it was sent (seconds since the run started), how long the first
    answer took, and what it was ("201", "202", "409", another status, or "error")."""

    phase: str
    t: float
    latency_ms: float
    answer: str


@dataclass(frozen=True)
class Mark:
    """The gremlin switched on or off at `t` (seconds since the run started), during `phase`."""

    phase: str
    t: float
    label: str
    on: bool


@dataclass(frozen=True)
class Chart:
    file: str  # relative to the report's folder, e.g. "verify-charts/latency-over-time.svg"
    title: str
    caption: str


def answer_group(answer: str) -> str:
    return answer if answer in ("201", "202", "409") else "other"


def phases_of(samples: list[Sample]) -> list[str]:
    """Phases in the order they ran."""
    seen: dict[str, float] = {}
    for sample in samples:
        seen[sample.phase] = min(seen.get(sample.phase, sample.t), sample.t)
    return sorted(seen, key=lambda phase: seen[phase])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _save(fig: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context(_SVG):
        fig.savefig(path, format="svg", metadata={"Date": None}, bbox_inches="tight")


# --- the three pictures -------------------------------------------------------------------


def latency_over_time(samples: list[Sample], marks: list[Mark], path: Path, budget_ms: float = BUDGET_MS) -> None:
    """One panel per phase: each order's latency (log scale) at the time it was sent, coloured by
    its first answer; the 2 s budget as a dashed line; the gremlin's on/off switches as
    vertical lines."""
    phases = phases_of(samples) or ["(no orders)"]
    with matplotlib.rc_context(_SVG):
        fig = Figure(figsize=(9, 2.3 * len(phases) + 0.6), layout="constrained")
        axes = fig.subplots(len(phases), 1, squeeze=False)[:, 0]
        for ax, phase in zip(axes, phases, strict=True):
            mine = [s for s in samples if s.phase == phase]
            for group, colour in ANSWER_COLOURS.items():
                points = [s for s in mine if answer_group(s.answer) == group]
                if not points:
                    continue
                scatter = ax.scatter(
                    [s.t for s in points],
                    [max(s.latency_ms, 0.1) for s in points],
                    s=9,
                    color=colour,
                    alpha=0.8,
                    linewidths=0,
                    label=group,
                    zorder=3,
                )
                scatter.set_gid(f"points-{phase}-{group}")
            ax.axhline(budget_ms, color="#c62828", linestyle="--", linewidth=1, zorder=1)
            ax.text(
                0.995,
                budget_ms,
                f" {budget_ms / 1000:g} s budget",
                color="#c62828",
                transform=ax.get_yaxis_transform(),
                ha="right",
                va="bottom",
            )
            for mark in (m for m in marks if m.phase == phase):
                colour = "#c62828" if mark.on else "#2e7d32"
                ax.axvline(mark.t, color=colour, linewidth=1, linestyle=":", gid=f"mark-{phase}-{mark.t:.3f}")
                ax.text(
                    mark.t,
                    0.02,
                    f" {mark.label}",
                    color=colour,
                    fontsize=7,
                    transform=ax.get_xaxis_transform(),
                    ha="left",
                    va="bottom",
                )
            ax.set_yscale("log")
            top = max([budget_ms] + [s.latency_ms for s in mine])
            ax.set_ylim(top=top * 1.8)
            ax.yaxis.set_major_formatter(lambda y, _pos: f"{y:g}")
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.set_ylabel("latency (ms)")
            latencies = [s.latency_ms for s in mine]
            summary = (
                (
                    f"{len(mine)} orders, p50 {percentile(latencies, 0.5):.0f} ms, "
                    f"p99 {percentile(latencies, 0.99):.0f} ms"
                )
                if mine
                else "no orders"
            )
            ax.set_title(f"{phase}: {summary}", loc="left")
            ax.grid(True, which="major", alpha=0.3)
        axes[-1].set_xlabel("seconds since the run started (when each order was sent)")
        handles = [
            Line2D([], [], marker="o", linestyle="", color=c, label=_answer_label(g)) for g, c in ANSWER_COLOURS.items()
        ]
        handles += [
            Line2D([], [], color="#c62828", linestyle=":", label="gremlin on"),
            Line2D([], [], color="#2e7d32", linestyle=":", label="gremlin off"),
        ]
        fig.legend(handles=handles, loc="outside lower center", ncols=6, frameon=False)
        _save(fig, path)


def _answer_label(group: str) -> str:
    return {"201": "201 confirmed", "202": "202 queued", "409": "409 rejected", "other": "other / no answer"}[group]


def answer_mix(samples: list[Sample], path: Path) -> None:
    """Per phase, the share of each first answer (stacked bar), with the counts written in."""
    phases = phases_of(samples) or ["(no orders)"]
    with matplotlib.rc_context(_SVG):
        fig = Figure(figsize=(9, 0.55 * len(phases) + 1.4), layout="constrained")
        ax = fig.add_subplot()
        for row, phase in enumerate(phases):
            counts = Counter(answer_group(s.answer) for s in samples if s.phase == phase)
            total = sum(counts.values())
            left = 0.0
            for group, colour in ANSWER_COLOURS.items():
                n = counts.get(group, 0)
                if not n:
                    continue
                share = n / total
                bar = ax.barh(row, share, left=left, color=colour, label=_answer_label(group))[0]
                bar.set_gid(f"mix-{phase}-{group}-{n}")
                if share >= 0.06:
                    ax.text(
                        left + share / 2,
                        row,
                        str(n),
                        ha="center",
                        va="center",
                        color="white",
                        fontsize=8,
                        fontweight="bold",
                    )
                left += share
        ax.set_yticks(range(len(phases)), phases)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.xaxis.set_major_formatter(lambda x, _pos: f"{x:.0%}")
        ax.set_xlabel("share of the phase's orders (count written in the bar)")
        ax.set_title("First answer per phase", loc="left")
        handles = [
            Line2D([], [], marker="s", linestyle="", color=c, label=_answer_label(g)) for g, c in ANSWER_COLOURS.items()
        ]
        fig.legend(handles=handles, loc="outside lower center", ncols=4, frameon=False)
        _save(fig, path)


def latency_cdf(
    samples: list[Sample], path: Path, baseline: str | None = BASELINE, budget_ms: float = BUDGET_MS
) -> None:
    """Cumulative distribution of latency per phase (log x); the baseline phase (the same apps
    without the emulation) as a thick black line to compare against."""
    phases = phases_of(samples)
    with matplotlib.rc_context(_SVG):
        fig = Figure(figsize=(9, 4.2), layout="constrained")
        ax = fig.add_subplot()
        for phase in phases:
            values = sorted(max(s.latency_ms, 0.1) for s in samples if s.phase == phase)
            if not values:
                continue
            ys = [(i + 1) / len(values) for i in range(len(values))]
            is_baseline = phase == baseline
            (line,) = ax.step(
                values,
                ys,
                where="post",
                linewidth=2.6 if is_baseline else 1.4,
                color="black" if is_baseline else None,
                label=f"{phase} (n={len(values)}, p50 {percentile(values, 0.5):.0f} ms, "
                f"p99 {percentile(values, 0.99):.0f} ms)",
            )
            line.set_gid(f"cdf-{phase}")
        ax.axvline(budget_ms, color="#c62828", linestyle="--", linewidth=1)
        ax.text(budget_ms, 0.6, f" {budget_ms / 1000:g} s budget", color="#c62828")
        for q in (0.5, 0.99):
            ax.axhline(q, color="#9e9e9e", linewidth=0.6)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(lambda x, _pos: f"{x:g}")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_ylim(0, 1.01)
        ax.yaxis.set_major_formatter(lambda y, _pos: f"{y:.0%}")
        ax.set_xlabel("latency (ms, log scale)")
        ax.set_ylabel("orders answered within")
        title = "Latency distribution per phase"
        if baseline and baseline in phases:
            title += f" against the {baseline} (same apps without the emulation)"
        ax.set_title(title, loc="left")
        ax.grid(True, which="major", alpha=0.3)
        if phases:
            ax.legend(loc="lower right", fontsize=7)
        _save(fig, path)


# --- writing them, and the page that shows them ------------------------------------------


def write_charts(samples: list[Sample], marks: list[Mark], report_md: Path, baseline: str | None = None) -> list[Chart]:
    """The three SVGs in `<report stem>-charts/` next to `report_md`; returns what was written."""
    stem = report_md.stem.removesuffix("-report")
    folder = report_md.parent / f"{stem}-charts"
    folder.mkdir(parents=True, exist_ok=True)
    cdf_caption = "Cumulative share of orders answered within a latency, one line per phase" + (
        f"; the thick black line is the {baseline} (the same apps served directly)."
        if baseline and any(s.phase == baseline for s in samples)
        else "."
    )
    charts = [
        Chart(
            f"{folder.name}/latency-over-time.svg",
            "Latency over time",
            "Each order's latency when it was sent, per phase, coloured by its first answer; "
            "dashed: the 2 s budget; dotted: the gremlin switched on (red) or off (green).",
        ),
        Chart(
            f"{folder.name}/answer-mix.svg",
            "First-answer mix",
            "Share of 201 (confirmed), 202 (queued), 409 (rejected) and anything else per phase.",
        ),
        Chart(f"{folder.name}/latency-cdf.svg", "Latency distribution (CDF)", cdf_caption),
    ]
    latency_over_time(samples, marks, report_md.parent / charts[0].file)
    answer_mix(samples, report_md.parent / charts[1].file)
    latency_cdf(samples, report_md.parent / charts[2].file, baseline=baseline)
    return charts


def markdown_lines(charts: list[Chart], html_page: Path | None = None) -> list[str]:
    lines = ["## Charts", ""]
    if html_page is not None:
        lines += [f"All on one page: [{html_page.name}]({html_page.name}).", ""]
    for chart in charts:
        lines += [f"### {chart.title}", "", f"![{chart.title}]({chart.file})", "", chart.caption, ""]
    return lines


def write_html(
    path: Path, title: str, charts: list[Chart], facts: list[tuple[str, str]], started_at: float | None = None
) -> Path:
    """A self-contained page (no script, no external resource) showing the charts."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started_at)) if started_at else ""
    rows = "\n".join(f'<tr><th scope="row">{html.escape(k)}</th><td>{html.escape(v)}</td></tr>' for k, v in facts)
    figures = "\n".join(
        f'<figure id="{html.escape(Path(c.file).stem)}">\n<h2>{html.escape(c.title)}</h2>\n'
        f'<img src="{html.escape(c.file)}" alt="{html.escape(c.title)}: {html.escape(c.caption)}">\n'
        f"<figcaption>{html.escape(c.caption)}</figcaption>\n</figure>"
        for c in charts
    )
    path.write_text(f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src 'self' file:; style-src 'unsafe-inline'">
<title>{html.escape(title)}</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; margin: 1.5rem auto; max-width: 62rem; padding: 0 1rem; color: #1b1b1b; }}
table {{ border-collapse: collapse; margin-bottom: 1.5rem; }}
th, td {{ text-align: left; padding: .2rem .8rem .2rem 0; border-bottom: 1px solid #e0e0e0; }}
figure {{ margin: 0 0 2rem; }}
img {{ max-width: 100%; height: auto; border: 1px solid #e0e0e0; }}
figcaption {{ color: #555; font-size: .9rem; }}
</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(when)}</p>
<table>
{rows}
</table>
{figures}
</body>
</html>
""")  # noqa: E501 -- an HTML page, its lines as the browser gets them
    return path
