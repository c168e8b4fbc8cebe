"""`make gameday`: a scripted game day on the local cloud, then its scorecard.

The scenario is data (scripts/gameday.toml, or `--scenario FILE`): one steady stream of orders
runs through every phase in turn — steady load, then faults (inventory latency, a database
outage, a slow database, crashes after commit, errors), then recovery — each phase with its
gremlin document switched on for its `seconds` (times `--scale`: `--scale 0.1` is a short
rehearsal). Afterwards every accepted order is awaited to its final state and the SLOs are
checked:

  latency         at least `answer_share` (99 %) of order requests answered within
                  `answer_within_ms` (2200 ms)
  lost orders     at most `max_lost_orders` (0): requests without a valid answer (201/202/409),
                  accepted orders not stored or never final, queues not drained
  stock exact     stock moved by exactly the confirmed quantities, one reservation per confirmed
                  order, none for a rejected one, no negative stock
  reconciliation  the deployed reconcile function (`make reconcile`) finds no problem among the
                  orders created since the run started, DLQs empty

The scorecard (SLO pass/fail and per-phase numbers, from this run's own requests and the
databases) goes to .valerix/gameday-scorecard.md and .json, the run's orders to
.valerix/gameday-orders.json, charts to .valerix/gameday-scorecard-charts/; the JSON is published
to the dashboard's website bucket (gameday/scorecard.json), where the dashboard's "Game day"
panel shows it (the reconcile function's own report lands in .valerix/reconcile-report.md, as
with `make reconcile`). Load, gremlin switch, invariant checks and progress display are shared with
`make verify` (scripts/order_load.py, scripts/run_progress.py).

The gremlin is all off at the end, also when the run fails or is interrupted (ctrl-C, SIGTERM);
should the process be killed outright, each mode still switches itself off a minute after its
phase (`expiresInSeconds`). Exit status: 0 every SLO met; 1 an SLO failed (each is named);
2 the run could not be carried out (no local cloud, a bad scenario, the gremlin refused a
document); 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import random
import signal
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from functions.gremlin.document import MODES, GremlinDocumentError, parse_document
from infra.outputs import WEBSITE_BUCKET_NAME
from scripts import deployed_function, report_charts
from scripts import reconcile as reconcile_script
from scripts.order_load import (
    VALID_ANSWERS,
    InvariantResult,
    LoadDriver,
    OrderRecord,
    chart_samples,
    check_invariants,
    percentile,
    phase_stats,
    running_cloud_outputs,
)
from scripts.run_progress import Phase, RunProgress
from valerix_localcloud import cli
from valerix_localcloud.clients import local_client
from valerix_localcloud.private import private_dir, write_private

REPO = Path(__file__).resolve().parents[1]

SCENARIO_FILE = REPO / "scripts" / "gameday.toml"
SCORECARD_MD = cli.STATE / "gameday-scorecard.md"
SCORECARD_JSON = cli.STATE / "gameday-scorecard.json"
ORDERS_JSON = cli.STATE / "gameday-orders.json"
EXIT_PASS, EXIT_SLO_FAILED, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
# Every mode of a phase switches itself off this long after the phase should have ended.
EXPIRY_MARGIN_S = 60
LOST_KINDS = ("lost", "not_final")
STOCK_KINDS = ("stock", "reserved_twice", "rejected_reserved", "confirmed_unreserved")
DETAILS_SHOWN = 10


# --- the scenario: data, validated before anything runs --------------------------------------

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoadSpec(_Strict):
    rate: Annotated[float, Field(gt=0, le=200)] = 4
    clients: Annotated[int, Field(ge=1, le=64)] = 8
    products: Annotated[int, Field(ge=1, le=50)] = 3
    stock: Annotated[int, Field(ge=1)] = 1_000_000


class SloSpec(_Strict):
    answer_within_ms: Annotated[float, Field(gt=0)] = 2200
    answer_share: Annotated[float, Field(gt=0, le=1)] = 0.99
    max_lost_orders: Annotated[int, Field(ge=0)] = 0


class PhaseSpec(_Strict):
    name: Name
    seconds: Annotated[float, Field(gt=0, le=3600)]
    rate: Annotated[float | None, Field(gt=0, le=200)] = None
    gremlin: dict[str, Any] | None = None

    @field_validator("gremlin")
    @classmethod
    def _a_valid_gremlin_document(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        # the gremlin's own model: a document it would refuse stops the game day before it starts
        if value is not None:
            try:
                parse_document(value)
            except GremlinDocumentError as exc:
                raise ValueError(exc.message) from None
            if not value:
                raise ValueError("an empty gremlin document: leave `gremlin` out for a phase without faults")
        return value


class Scenario(_Strict):
    name: Name
    description: str = ""
    load: LoadSpec = Field(default_factory=LoadSpec)
    slo: SloSpec = Field(default_factory=SloSpec)
    phases: Annotated[list[PhaseSpec], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_phase_names(self) -> Scenario:
        names = [p.name for p in self.phases]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"phases: each name once (repeated: {', '.join(twice)})")
        return self


class ScenarioError(ValueError):
    pass


def load_scenario(path: Path) -> Scenario:
    """The scenario file, or a ScenarioError naming each wrong field (`phases.2.seconds: ...`)."""
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ScenarioError(f"cannot read the scenario {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path} is not valid TOML: {exc}") from None
    try:
        return Scenario.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'scenario'}: {str(e['msg']).removeprefix('Value error, ')}"
            for e in exc.errors(include_url=False)
        )
        raise ScenarioError(f"{path}: {problems}") from None


@dataclass(frozen=True)
class PlannedPhase:
    name: str
    seconds: float
    rate: float
    gremlin: dict[str, Any] | None  # as the scenario gives it

    def document(self) -> dict[str, Any] | None:
        """What is PUT: every mode without an expiry of its own switches itself off
        EXPIRY_MARGIN_S after the phase (the safety net should this process be killed)."""
        if self.gremlin is None:
            return None
        expires = math.ceil(self.seconds) + EXPIRY_MARGIN_S
        return {
            key: (
                {"expiresInSeconds": expires, **value}
                if key in MODES and isinstance(value, dict) and not {"expiresAt", "expiresInSeconds"} & value.keys()
                else value
            )
            for key, value in self.gremlin.items()
        }


def plan(scenario: Scenario, scale: float) -> list[PlannedPhase]:
    return [
        PlannedPhase(p.name, max(1.0, p.seconds * scale), p.rate or scenario.load.rate, p.gremlin)
        for p in scenario.phases
    ]


def describe_gremlin(document: dict[str, Any] | None) -> str:
    """`latency 3000 ms, every 3rd` / `database unreachable` / `error HTTP 500, 20 %` / `none`."""
    if not document:
        return "none"
    parts = []
    for mode, config in document.items():
        if mode not in MODES or not isinstance(config, dict) or config.get("enabled") is False:
            continue
        words = [mode]
        if mode == "database":
            words.append(str(config.get("fault", "unreachable")))
        if "when" in config:
            words.append(str(config["when"]))
        if "delayMs" in config:
            words.append(f"{config['delayMs']} ms")
        if "statusCode" in config:
            words.append(f"HTTP {config['statusCode']}")
        if "every" in config:
            words[-1] += f", every {config['every']}{_ordinal(int(config['every']))}"
        elif "percentage" in config:
            words[-1] += f", {config['percentage']} %"
        parts.append(" ".join(words))
    return "; ".join(parts) or "none"


def _ordinal(n: int) -> str:
    if 10 <= n % 100 <= 20:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


# --- the run --------------------------------------------------------------------------------


@dataclass
class Run:
    started_at: float
    orders: list[OrderRecord] = field(default_factory=list)
    initial_stock: dict[str, int] = field(default_factory=dict)
    windows: dict[str, tuple[float, float]] = field(default_factory=dict)  # phase -> (start, end), unix
    marks: list[dict[str, Any]] = field(default_factory=list)
    invariants: InvariantResult = field(default_factory=InvariantResult)
    reconcile: dict[str, Any] | None = None
    reconcile_error: str | None = None
    finished_at: float = 0.0


def play(
    driver: LoadDriver,
    phases: list[PlannedPhase],
    scenario: Scenario,
    run: Run,
    progress: RunProgress,
    stop: threading.Event,
) -> None:
    """Every phase in turn under one steady stream of orders; the gremlin is switched as the phase
    begins. Returns with the load stopped (the gremlin is the caller's to switch off)."""
    current: list[tuple[str, float, Phase | None] | None] = [None]
    placed: list[OrderRecord] = []
    rng = random.Random(f"gameday-{scenario.name}")  # noqa: S311 -- a repeatable order mix, not a secret
    loader = threading.Thread(
        target=lambda: placed.extend(driver.place_paced(lambda: current[0], list(run.initial_stock), rng, stop)),
        name="gameday-load",
        daemon=True,
    )
    on = False
    try:
        for phase in phases:
            document = phase.document()
            if document is not None or on:
                driver.gremlin(
                    document,
                    phase.name,
                    settle=False,
                    label=f"{phase.name}: {describe_gremlin(phase.gremlin)}" if document else "gremlin off",
                )
                on = document is not None
            progress.write(
                f"==> {phase.name}: {phase.seconds:.0f} s at {phase.rate:g} orders/s, "
                f"gremlin: {describe_gremlin(phase.gremlin)}"
            )
            started = time.time()
            with progress.phase(phase.name, seconds=phase.seconds) as bar:
                current[0] = (phase.name, phase.rate, bar)
                if not loader.is_alive():
                    loader.start()
                stop.wait(phase.seconds)
            run.windows[phase.name] = (started, time.time())
    except BaseException:
        stop.set()  # interrupted or failed: no waiting for answers, the caller switches the gremlin off now
        raise
    finally:
        current[0] = None  # the load threads finish what they sent, then stop
        if loader.is_alive() and not stop.is_set():
            loader.join()
        run.orders = placed
    if on:
        driver.gremlin(None, phases[-1].name, settle=False)


def check(driver: LoadDriver, run: Run, outputs: dict[str, Any], drain_timeout: float, progress: RunProgress) -> None:
    """Final states, queues, invariants, then the reconcile function over the run's window."""
    progress.write("==> load stopped, gremlin off; waiting for every accepted order to reach a final state")
    with progress.phase("final states", total=sum(1 for r in run.orders if r.order_id), unit="final") as bar:
        driver.wait_final(run.orders, drain_timeout, bar)
    depths = driver.wait_queues_drained(60)
    run.invariants = check_invariants(run.orders, run.initial_stock, outputs, depths)
    progress.write("==> reconciliation (the deployed reconcile function, as `make reconcile`)")
    since = dt.datetime.fromtimestamp(run.started_at - 5, dt.UTC).isoformat()
    try:
        client, stack = deployed_function.lambda_client_and_outputs(
            use_aws=False, stack_name=cli.STACK_NAME, config=reconcile_script.INVOKE_CONFIG
        )
        function_name = stack.get(reconcile_script.FUNCTION_OUTPUT)
        if not function_name:
            raise deployed_function.CliError("the reconcile function is not deployed: `make up` first")
        run.reconcile = reconcile_script.invoke(client, function_name, {"since": since})
        reconcile_script.write_reports(run.reconcile, cli.STATE)
    except deployed_function.CliError as exc:
        run.reconcile_error = str(exc)


# --- the scorecard ----------------------------------------------------------------------------


def lost_records(run: Run) -> list[OrderRecord]:
    """Requests without a valid answer, and accepted orders not stored or never final."""
    lost_ids = {v.subject for v in run.invariants.violations if v.kind in LOST_KINDS}
    return [
        r
        for r in run.orders
        if r.error or r.http_status not in VALID_ANSWERS or (r.order_id and r.order_id in lost_ids)
    ]


def within(record: OrderRecord, slo: SloSpec) -> bool:
    return record.error is None and record.http_status is not None and record.latency_ms <= slo.answer_within_ms


def _pct(share: float) -> str:
    return f"{share * 100:.1f} %"


def _slo(slo_id: str, name: str, target: str, actual: str, passed: bool, details: list[str]) -> dict[str, Any]:
    return {
        "id": slo_id,
        "name": name,
        "target": target,
        "actual": actual,
        "pass": passed,
        "details": details[:DETAILS_SHOWN],
        "moreDetails": max(0, len(details) - DETAILS_SHOWN),
    }


def evaluate(run: Run, slo: SloSpec) -> list[dict[str, Any]]:
    """The four SLOs, each with its target, what the run achieved and why it failed."""
    orders = run.orders
    fast = sum(1 for r in orders if within(r, slo))
    share = fast / len(orders) if orders else 0.0
    slow = [
        f"{r.phase}: {r.order_id or r.error or 'no order id'} answered {r.http_status} after {r.latency_ms:.0f} ms"
        for r in orders
        if not within(r, slo)
    ]
    seconds = f"{slo.answer_within_ms / 1000:g} s"
    results = [
        _slo(
            "latency",
            f"answers within {seconds}",
            f"≥ {_pct(slo.answer_share)} of order requests",
            f"{_pct(share)} ({fast} of {len(orders)})",
            bool(orders) and share >= slo.answer_share,
            slow if orders else ["no order was placed"],
        )
    ]

    lost = lost_records(run)
    stuck = [v.message for v in run.invariants.violations if v.kind == "queue_not_drained"]
    lost_details = [v.message for v in run.invariants.violations if v.kind in ("no_answer", *LOST_KINDS)] + stuck
    results.append(
        _slo(
            "lost",
            "lost orders",
            f"≤ {slo.max_lost_orders}",
            f"{len(lost)} of {len(orders)}",
            len(lost) <= slo.max_lost_orders and not stuck,
            lost_details,
        )
    )

    stock = [v.message for v in run.invariants.violations if v.kind in STOCK_KINDS]
    results.append(
        _slo(
            "stock",
            "stock exact",
            "moved by exactly the confirmed quantities, one reservation each",
            "exact" if not stock else f"{len(stock)} discrepancies",
            not stock,
            stock,
        )
    )

    dlq = [v.message for v in run.invariants.violations if v.kind == "dlq"]
    if run.reconcile is None:
        actual, passed, details = "could not run", False, [run.reconcile_error or "not run", *dlq]
    else:
        problems = run.reconcile.get("problems", [])
        counts = {k: v for k, v in run.reconcile.get("problemCounts", {}).items() if v}
        actual = (
            "clean"
            if run.reconcile.get("status") == "clean"
            else ", ".join(f"{kind} {count}" for kind, count in counts.items()) or "problems"
        )
        actual += f" ({run.reconcile['counts']['orders']} orders checked)"
        passed = run.reconcile.get("status") == "clean" and not dlq
        details = [reconcile_script.problem_line(p) for p in problems] + dlq
    results.append(
        _slo("reconcile", "reconciliation clean", "no problem (make reconcile), DLQs empty", actual, passed, details)
    )
    return results


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def scorecard(scenario: Scenario, phases: list[PlannedPhase], scale: float, run: Run) -> dict[str, Any]:
    """The scorecard's JSON (what the dashboard shows), from this run's records alone."""
    slos = evaluate(run, scenario.slo)
    lost = {id(r) for r in lost_records(run)}
    phase_rows = []
    for phase in phases:
        records = [r for r in run.orders if r.phase == phase.name]
        stats = phase_stats(records)
        start, end = run.windows.get(phase.name, (0.0, 0.0))
        phase_rows.append(
            {
                "name": phase.name,
                "seconds": round(phase.seconds, 1),
                "rate": phase.rate,
                "gremlin": phase.gremlin,
                "fault": describe_gremlin(phase.gremlin),
                "startedAt": _iso(start) if start else None,
                "endedAt": _iso(end) if end else None,
                "orders": stats["orders"],
                "answers": {"201": stats["201"], "202": stats["202"], "409": stats["409"], "other": stats["other"]},
                "withinTarget": sum(1 for r in records if within(r, scenario.slo)),
                "withinTargetShare": (
                    sum(1 for r in records if within(r, scenario.slo)) / len(records) if records else None
                ),
                "p50Ms": round(stats["p50_ms"], 1),
                "p99Ms": round(stats["p99_ms"], 1),
                "maxMs": round(max((r.latency_ms for r in records), default=0.0), 1),
                "confirmed": stats["confirmed"],
                "rejected": stats["rejected"],
                "lost": sum(1 for r in records if id(r) in lost),
            }
        )
    latencies = [r.latency_ms for r in run.orders]
    final_stock = run.invariants.final_stock
    return {
        "status": "pass" if all(s["pass"] for s in slos) else "fail",
        "scenario": scenario.name,
        "description": scenario.description,
        "scale": scale,
        "startedAt": _iso(run.started_at),
        "finishedAt": _iso(run.finished_at or time.time()),
        "slos": slos,
        "totals": {
            "orders": len(run.orders),
            "accepted": sum(1 for r in run.orders if r.http_status in (201, 202)),
            "confirmed": sum(1 for r in run.orders if r.final_status == "CONFIRMED"),
            "rejected": sum(1 for r in run.orders if r.final_status == "REJECTED"),
            "lost": len(lost),
            "withinTarget": sum(1 for r in run.orders if within(r, scenario.slo)),
            "p50Ms": round(percentile(latencies, 0.5), 1),
            "p99Ms": round(percentile(latencies, 0.99), 1),
        },
        "phases": phase_rows,
        "stock": {
            product: {
                "initial": initial,
                "final": final_stock.get(product),
                "confirmedQuantity": sum(
                    r.quantity for r in run.orders if r.product_id == product and r.final_status == "CONFIRMED"
                ),
            }
            for product, initial in run.initial_stock.items()
        },
        "reconcile": None
        if run.reconcile is None
        else {
            "status": run.reconcile.get("status"),
            "counts": run.reconcile.get("counts"),
            "problemCounts": run.reconcile.get("problemCounts"),
            "since": run.reconcile.get("since"),
        },
        "violations": [asdict(v) for v in run.invariants.violations][:50],
        "slo": scenario.slo.model_dump(),
    }


def markdown(card: dict[str, Any], charts: list[report_charts.Chart], page: Path | None) -> str:
    verdict = (
        "PASS: every SLO met"
        if card["status"] == "pass"
        else "FAIL: " + ", ".join(s["name"] for s in card["slos"] if not s["pass"])
    )
    lines = [
        f"# Valerix game day scorecard: {card['scenario']}",
        "",
        f"{card['description']}",
        "",
        f"Run {card['startedAt']} to {card['finishedAt']} (scale {card['scale']:g}), "
        f"{card['totals']['orders']} orders.",
        "",
        f"**{verdict}**",
        "",
        "## SLOs",
        "",
        "| SLO | target | actual | result |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {s['name']} | {s['target']} | {s['actual']} | {'PASS' if s['pass'] else '**FAIL**'} |" for s in card["slos"]
    ]
    for s in card["slos"]:
        if not s["pass"] and s["details"]:
            lines += ["", f"### Why {s['name']} failed", ""] + [f"- {d}" for d in s["details"]]
            if s["moreDetails"]:
                lines.append(f"- … and {s['moreDetails']} more")
    lines += [
        "",
        "## Phases",
        "",
        "| phase | gremlin | s | orders | 201 | 202 | 409 | other | within target | p50 ms | p99 ms "
        "| max ms | CONFIRMED | REJECTED | lost |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in card["phases"]:
        share = "—" if p["withinTargetShare"] is None else _pct(p["withinTargetShare"])
        a = p["answers"]
        lines.append(
            f"| {p['name']} | {p['fault']} | {p['seconds']:g} | {p['orders']} | {a['201']} | {a['202']} | "
            f"{a['409']} | {a['other']} | {share} | {p['p50Ms']:.0f} | {p['p99Ms']:.0f} | {p['maxMs']:.0f} | "
            f"{p['confirmed']} | {p['rejected']} | {p['lost']} |"
        )
    lines += ["", "## Stock", "", "| product | initial | final | confirmed quantity |", "|---|---|---|---|"]
    lines += [
        f"| {product} | {s['initial']} | {s['final']} | {s['confirmedQuantity']} |"
        for product, s in card["stock"].items()
    ]
    lines += ["", *report_charts.markdown_lines(charts, page)]
    return "\n".join(lines) + "\n"


def write_scorecard(card: dict[str, Any], run: Run) -> None:
    private_dir(cli.STATE)
    samples, marks = chart_samples(run.orders, run.marks, run.started_at)
    charts = report_charts.write_charts(samples, marks, SCORECARD_MD)
    facts = [("result", card["status"].upper())] + [
        (s["name"], f"{s['actual']} — {'PASS' if s['pass'] else 'FAIL'}") for s in card["slos"]
    ]
    page = report_charts.write_html(
        SCORECARD_MD.with_suffix(".html"), f"Valerix game day: {card['scenario']}", charts, facts, run.started_at
    )
    write_private(SCORECARD_JSON, json.dumps(card, indent=2) + "\n")
    write_private(SCORECARD_MD, markdown(card, charts, page))
    write_private(ORDERS_JSON, json.dumps([asdict(r) for r in run.orders], indent=1) + "\n")


def publish(card: dict[str, Any], outputs: dict[str, Any]) -> None:
    """The scorecard where the dashboard reads it: the website bucket's gameday/scorecard.json."""
    s3 = local_client("s3", outputs["endpoint_url"])
    s3.put_object(
        Bucket=outputs["stack"][WEBSITE_BUCKET_NAME],
        Key=cli.GAMEDAY_SCORECARD_KEY,
        Body=json.dumps(card).encode(),
        ContentType="application/json",
        CacheControl="no-store",
    )


# --- the command ------------------------------------------------------------------------------


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """ctrl-C / SIGTERM wait while the gremlin is being switched off (a second ctrl-C must not
    leave a fault on)."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def all_off(driver: LoadDriver) -> bool:
    for attempt in range(5):
        try:
            driver.gremlin(None, settle=False)
            return True
        except (httpx.HTTPError, RuntimeError) as exc:
            print(f"gremlin: switching off failed ({exc}); trying again", file=sys.stderr)
            time.sleep(1 + attempt)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", type=Path, default=SCENARIO_FILE, help="the scenario (TOML)")
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply every phase's duration (0.1: a short rehearsal; each phase lasts >= 1 s)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=240,
        help="seconds to wait for every accepted order to reach its final state",
    )
    args = parser.parse_args(argv)
    if not 0 < args.scale <= 10:
        parser.error(f"--scale must be > 0 and <= 10, got {args.scale}")
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    phases = plan(scenario, args.scale)

    outputs = running_cloud_outputs()
    if outputs is None:
        return EXIT_ERROR
    # SIGINT too, explicitly: Python installs its ctrl-C handler only when SIGINT is not ignored at
    # start, and a parent may hand it down ignored (nohup, some runners): the run would go on.
    previous_handlers = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    driver = LoadDriver(outputs, scenario.load.clients)
    run = Run(started_at=time.time())
    stop = threading.Event()
    total = sum(p.seconds for p in phases)
    print(f"game day '{scenario.name}': {len(phases)} phases, {total:.0f} s of load, then the SLOs")
    try:
        with RunProgress() as progress:
            driver.gremlin(None, settle=True)  # from a known state: all off
            run.initial_stock = driver.reset_products(scenario.load.products, scenario.load.stock, prefix="gameday")
            play(driver, phases, scenario, run, progress, stop)
            check(driver, run, outputs, args.drain_timeout, progress)
    except KeyboardInterrupt:
        stop.set()
        print("\ninterrupted: no scorecard written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (httpx.HTTPError, RuntimeError) as exc:
        stop.set()
        print(f"error: the game day could not be carried out: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        stop.set()
        with signals_deferred():
            print(
                "gremlin: all off"
                if all_off(driver)
                else "gremlin: COULD NOT SWITCH IT OFF; every mode expires by itself within a minute",
                file=sys.stderr,
            )
        run.marks = driver.marks
        driver.close()
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)

    run.finished_at = time.time()
    card = scorecard(scenario, phases, args.scale, run)
    write_scorecard(card, run)
    published = True
    try:
        publish(card, outputs)
    except Exception as exc:  # noqa: BLE001 - said below; the scorecard files are written anyway
        print(f"error: could not publish the scorecard to the dashboard: {exc}", file=sys.stderr)
        published = False

    for slo in card["slos"]:
        print(f"{'PASS' if slo['pass'] else 'FAIL'}  {slo['name']}: {slo['actual']} (target {slo['target']})")
    print(
        f"scorecard: {SCORECARD_MD.relative_to(REPO)} and {SCORECARD_JSON.name}"
        + (f"; on the dashboard: {outputs.get('web_url', '')}" if published else "")
    )
    failed = [slo for slo in card["slos"] if not slo["pass"]]
    for slo in failed:
        reason = f": {slo['details'][0]}" if slo["details"] else ""
        print(f"SLO failed: {slo['name']} — {slo['actual']}, target {slo['target']}{reason}")
    if failed:
        return EXIT_SLO_FAILED
    return EXIT_PASS if published else EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
