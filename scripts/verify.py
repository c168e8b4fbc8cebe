"""`make verify`: drive orders through the local cloud under a deterministic gremlin, then
check the invariants "nothing lost, nothing twice".

Phases (each with the gremlin pattern switched on before and the next one after):
  latency  - inventory sleeps on every Nth request (longer than the 2 s budget)
  crash    - inventory crashes after commit on every Nth request (the "Schrödinger" case)
  error    - inventory answers 500 on every Nth request
Orders never stop on an affected request; each is recorded (id, time, latency, first answer,
final status, reason) in .valerix/verify-report.md and .json, with charts drawn from those
records in .valerix/verify-charts/ and all of it on one page, .valerix/verify-report.html
(scripts/report_charts.py). While it runs it shows the phase, n/N orders, elapsed time and ETA
(scripts/run_progress.py). The load, the gremlin switch and the invariant checks are
scripts/order_load.py's, shared with `make gameday`. Exit status 1 on any violation, 2 when the
run itself could not be carried out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scripts import order_load, report_charts
from scripts.order_load import LoadDriver, OrderRecord, percentile
from scripts.run_progress import RunProgress
from valerix_localcloud import cli

REPO = Path(__file__).resolve().parents[1]

PHASES = {
    "latency": lambda n: {"latency": {"enabled": True, "delayMs": 3000, "every": n}},
    "crash": lambda n: {"crash": {"enabled": True, "when": "after-commit", "every": n}},
    "error": lambda n: {"error": {"enabled": True, "statusCode": 500, "every": n}},
}


@dataclass
class Report:
    started_at: float
    orders: list[OrderRecord] = field(default_factory=list)
    initial_stock: dict[str, int] = field(default_factory=dict)
    final_stock: dict[str, int | None] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The gremlin switched on/off: {"phase", "at" (unix time), "label", "on"}
    gremlin_marks: list[dict[str, Any]] = field(default_factory=list)


def run_phase(
    driver: LoadDriver, phase: str, every: int, count: int, products: list[str], progress: RunProgress
) -> list[OrderRecord]:
    driver.gremlin(PHASES[phase](every), phase)
    rng = random.Random(f"{phase}-{every}-{count}")  # noqa: S311 -- a repeatable order mix, not a secret
    records = [OrderRecord(phase, rng.choice(products), rng.randint(1, 3), time.time()) for _ in range(count)]
    with progress.phase(phase, total=count) as bar:
        done = driver.place_all(records, bar)
    driver.gremlin(None, phase)
    return done


def write_charts(report: Report, path_md: Path) -> tuple[list[report_charts.Chart], Path]:
    samples, marks = order_load.chart_samples(report.orders, report.gremlin_marks, report.started_at)
    charts = report_charts.write_charts(samples, marks, path_md)
    latencies = [r.latency_ms for r in report.orders]
    facts = [
        ("orders", str(len(report.orders))),
        ("invariants", "all hold" if not report.violations else f"{len(report.violations)} violated"),
        ("latency p50 / p99", f"{percentile(latencies, 0.5):.0f} ms / {percentile(latencies, 0.99):.0f} ms"),
        ("report", path_md.name),
    ]
    page = report_charts.write_html(
        path_md.with_suffix(".html"), "Valerix verify report", charts, facts, report.started_at
    )
    return charts, page


def write_report(report: Report, path_md: Path, path_json: Path) -> None:
    data = asdict(report)
    path_json.write_text(json.dumps(data, indent=2))
    charts, page = write_charts(report, path_md)
    lines = [
        "# Valerix verify report",
        "",
        f"Run at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(report.started_at))}, {len(report.orders)} orders.",
        "",
        "## Invariants",
        "",
    ]
    if report.violations:
        lines += [f"- **VIOLATION** {v}" for v in report.violations]
    else:
        lines += [
            "All invariants hold: every accepted order reached a final state, none lost, "
            "stock moved exactly by the confirmed quantities, no reservation twice, "
            "no negative stock, DLQs empty."
        ]
    lines += [
        "",
        *report_charts.markdown_lines(charts, page),
        "## Phases",
        "",
        "| phase | orders | 201 | 202 | 409 | other | p50 ms | p99 ms | final CONFIRMED | final REJECTED |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for phase, stats in report.phases.items():
        lines.append(
            f"| {phase} | {stats['orders']} | {stats['201']} | {stats['202']} | {stats['409']} | "
            f"{stats['other']} | {stats['p50_ms']:.0f} | {stats['p99_ms']:.0f} | "
            f"{stats['confirmed']} | {stats['rejected']} |"
        )
    lines += ["", "## Stock", "", "| product | initial | final |", "|---|---|---|"]
    for product, initial in report.initial_stock.items():
        lines.append(f"| {product} | {initial} | {report.final_stock.get(product)} |")
    lines += [
        "",
        "## Affected orders (first answer other than 201, or an error)",
        "",
        "| order id | phase | time | latency ms | first answer | final status | reason |",
        "|---|---|---|---|---|---|---|",
    ]
    for record in report.orders:
        if record.http_status != 201:
            lines.append(
                f"| {record.order_id} | {record.phase} | "
                f"{time.strftime('%H:%M:%S', time.localtime(record.sent_at))} | {record.latency_ms:.0f} | "
                f"{record.http_status} {record.first_status or record.error or ''} | "
                f"{record.final_status} | {record.reason or ''} |"
            )
    path_md.write_text("\n".join(lines) + "\n")


def summarize(report: Report) -> None:
    for phase in PHASES:
        report.phases[phase] = order_load.phase_stats(r for r in report.orders if r.phase == phase)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=300, help="total orders over the three phases")
    parser.add_argument("--clients", type=int, default=6, help="concurrent clients")
    parser.add_argument("--products", type=int, default=3)
    parser.add_argument("--stock", type=int, default=1000, help="initial stock of each product")
    parser.add_argument("--every", type=int, default=3, help="the gremlin affects every Nth request")
    parser.add_argument("--drain-timeout", type=float, default=240)
    args = parser.parse_args(argv)

    outputs = order_load.running_cloud_outputs()
    if outputs is None:
        return 2
    driver = LoadDriver(outputs, args.clients)
    report = Report(started_at=time.time())
    try:
        with RunProgress() as progress:
            report.initial_stock = driver.reset_products(args.products, args.stock)
            per_phase = [args.orders // 3 + (1 if i < args.orders % 3 else 0) for i in range(3)]
            for phase, count in zip(PHASES, per_phase, strict=True):
                progress.write(
                    f"==> phase {phase}: {count} orders from {args.clients} clients, "
                    f"every {args.every}th request affected"
                )
                report.orders += run_phase(driver, phase, args.every, count, list(report.initial_stock), progress)
            progress.write("==> gremlin off; waiting for every order to reach a final state")
            with progress.phase("final states", total=sum(1 for r in report.orders if r.order_id), unit="final") as bar:
                driver.wait_final(report.orders, args.drain_timeout, bar)
            depths = driver.wait_queues_drained(60)
    finally:
        report.gremlin_marks = driver.marks
        # the run's own outcome matters more than a failure of this cleanup
        with contextlib.suppress(Exception):
            driver.gremlin(None, settle=False)
    summarize(report)
    checked = order_load.check_invariants(report.orders, report.initial_stock, outputs, depths)
    report.final_stock = checked.final_stock
    report.violations = [v.message for v in checked.violations]
    md, js = cli.STATE / "verify-report.md", cli.STATE / "verify-report.json"
    write_report(report, md, js)
    latencies = [r.latency_ms for r in report.orders]
    print(
        f"orders: {len(report.orders)}  first answers: "
        + ", ".join(
            f"{k}={v}"
            for k, v in sorted(
                {
                    str(c): [r.http_status for r in report.orders].count(c)
                    for c in {r.http_status for r in report.orders}
                }.items()
            )
        )
        + f"  latency p50 {statistics.median(latencies):.0f} ms, max {max(latencies):.0f} ms"
    )
    print(
        f"report: {md.relative_to(REPO)} and {js.relative_to(REPO)}; charts in "
        f"{(cli.STATE / 'verify-charts').relative_to(REPO)}/, all on one page: "
        f"{md.with_suffix('.html').relative_to(REPO)}"
    )
    if report.violations:
        print(f"{len(report.violations)} invariant violation(s):")
        for violation in report.violations:
            print(f"  - {violation}")
        return 1
    print("all invariants hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
