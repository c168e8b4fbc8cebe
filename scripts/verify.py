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
(scripts/run_progress.py). Exit status 1 on any violation, 2 when the run itself could not be
carried out.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "localcloud")]  # infra.outputs, valerix_localcloud

import report_charts  # noqa: E402  (scripts/, next to this file)
from run_progress import Phase, RunProgress  # noqa: E402

from infra.outputs import COMPLETION_DLQ_URL, COMPLETION_QUEUE_URL, INVENTORY_DLQ_URL, INVENTORY_QUEUE_URL  # noqa: E402
from valerix_localcloud import cli  # noqa: E402
from valerix_localcloud.clients import local_client  # noqa: E402

FINAL = {"CONFIRMED", "REJECTED"}
PHASES = {
    "latency": lambda n: {"latency": {"enabled": True, "delayMs": 3000, "every": n}},
    "crash": lambda n: {"crash": {"enabled": True, "when": "after-commit", "every": n}},
    "error": lambda n: {"error": {"enabled": True, "statusCode": 500, "every": n}},
}


@dataclass
class OrderRecord:
    phase: str
    product_id: str
    quantity: int
    sent_at: float
    latency_ms: float = 0.0
    http_status: int | None = None
    first_status: str | None = None
    order_id: str | None = None
    final_status: str | None = None
    reason: str | None = None
    error: str | None = None


@dataclass
class Report:
    started_at: float
    orders: list[OrderRecord] = field(default_factory=list)
    initial_stock: dict[str, int] = field(default_factory=dict)
    final_stock: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    phases: dict[str, dict] = field(default_factory=dict)
    # The gremlin switched on/off: {"phase", "at" (unix time), "label", "on"}
    gremlin_marks: list[dict] = field(default_factory=list)


class Verifier:
    def __init__(self, outputs: dict, clients: int) -> None:
        self.outputs = outputs
        self.api = httpx.Client(base_url=outputs["api_url"], timeout=30.0,
                                limits=httpx.Limits(max_connections=clients * 2))
        self.admin = {"x-api-key": outputs["admin_api_key"]}
        self.clients = clients
        self.lock = threading.Lock()
        self.marks: list[dict] = []

    def gremlin(self, document: dict | None, phase: str | None = None) -> None:
        if document is None:
            response = self.api.delete("/gremlin", headers=self.admin)
        else:
            response = self.api.put("/gremlin", json=document, headers=self.admin)
        response.raise_for_status()
        if phase is not None:
            label = "gremlin off" if document is None else f"{phase} on"
            self.marks.append({"phase": phase, "at": time.time(), "label": label, "on": document is not None})
        time.sleep(2.2)  # inventory's gremlin cache: a change applies within 2 s

    def reset_products(self, count: int, stock: int) -> dict[str, int]:
        run = uuid.uuid4().hex[:6]
        products = {}
        for index in range(count):
            product_id = f"verify-{run}-{index}"
            response = self.api.put(f"/admin/products/{product_id}", headers=self.admin,
                                    json={"name": f"Verify {index}", "stock": stock})
            response.raise_for_status()
            products[product_id] = stock
        return products

    def place(self, record: OrderRecord) -> OrderRecord:
        record.sent_at = time.time()
        started = time.monotonic()
        try:
            response = self.api.post("/orders", json={"productId": record.product_id,
                                                      "quantity": record.quantity})
            record.http_status = response.status_code
            body = response.json()
            record.order_id = body.get("orderId")
            record.first_status = body.get("status")
            record.reason = body.get("reason")
        except Exception as exc:  # noqa: BLE001 - recorded, never stops the run
            record.error = repr(exc)
        record.latency_ms = (time.monotonic() - started) * 1000
        return record

    def run_phase(self, phase: str, every: int, count: int, products: list[str],
                  progress: RunProgress) -> list[OrderRecord]:
        self.gremlin(PHASES[phase](every), phase)
        rng = random.Random(f"{phase}-{every}-{count}")
        records = [OrderRecord(phase, rng.choice(products), rng.randint(1, 3), time.time())
                   for _ in range(count)]
        with progress.phase(phase, total=count) as bar:
            def place(record: OrderRecord) -> OrderRecord:
                try:
                    return self.place(record)
                finally:
                    bar.advance()

            with ThreadPoolExecutor(self.clients) as pool:
                done = list(pool.map(place, records))
        self.gremlin(None, phase)
        return done

    def wait_final(self, records: list[OrderRecord], timeout: float, bar: Phase | None = None) -> None:
        deadline = time.monotonic() + timeout
        pending = [r for r in records if r.order_id]
        while pending and time.monotonic() < deadline:
            still = []
            for record in pending:
                try:
                    body = self.api.get(f"/orders/{record.order_id}").json()
                except Exception:  # noqa: BLE001
                    still.append(record)
                    continue
                record.final_status = body.get("status")
                record.reason = body.get("reason") or record.reason
                if record.final_status not in FINAL:
                    still.append(record)
            if bar is not None:
                bar.advance(len(pending) - len(still))
            pending = still
            if pending:
                time.sleep(1)

    def wait_queues_drained(self, timeout: float) -> dict[str, int]:
        sqs = local_client("sqs", self.outputs["endpoint_url"])
        stack = self.outputs["stack"]
        urls = {name: stack[key] for name, key in (
            ("inventory", INVENTORY_QUEUE_URL), ("inventory-dlq", INVENTORY_DLQ_URL),
            ("completion", COMPLETION_QUEUE_URL), ("completion-dlq", COMPLETION_DLQ_URL))}
        deadline = time.monotonic() + timeout
        while True:
            depths = {}
            for name, url in urls.items():
                attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
                    "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
                depths[name] = int(attributes["ApproximateNumberOfMessages"]) + int(
                    attributes["ApproximateNumberOfMessagesNotVisible"])
            if (depths["inventory"] == 0 and depths["completion"] == 0) or time.monotonic() > deadline:
                return depths
            time.sleep(1)


def db(outputs: dict, service: str):
    import pg8000.native

    secret = outputs["databases"][service]
    return pg8000.native.Connection(user=secret["username"], password=secret["password"],
                                    host=secret["host"], port=int(secret["port"]),
                                    database=secret["dbname"])


def check_invariants(report: Report, outputs: dict, depths: dict[str, int]) -> None:
    violations = report.violations
    products = list(report.initial_stock)
    inventory = db(outputs, "inventory")
    orders_db = db(outputs, "order")
    try:
        stock_rows = dict(inventory.run(
            "SELECT product_id, stock FROM products WHERE product_id = ANY(:p)", p=products))
        report.final_stock = {p: stock_rows.get(p) for p in products}
        reservations = inventory.run(
            "SELECT order_id, product_id, status, quantity FROM reservations WHERE product_id = ANY(:p)",
            p=products)
        order_rows = {row[0]: row for row in orders_db.run(
            "SELECT order_id, product_id, quantity, status FROM orders WHERE product_id = ANY(:p)",
            p=products)}
    finally:
        inventory.close()
        orders_db.close()

    for record in report.orders:
        if record.error or record.http_status not in (201, 202, 409):
            violations.append(f"order request got no valid answer: {record.http_status} {record.error}")
            continue
        if record.order_id not in order_rows and record.reason != "unknown product":
            violations.append(f"order {record.order_id} answered {record.first_status} but is not stored (lost)")
        if record.final_status not in FINAL:
            violations.append(f"order {record.order_id} never reached a final state ({record.final_status})")

    reserved = {}
    for order_id, product_id, status, quantity in reservations:
        if status == "RESERVED":
            reserved[order_id] = reserved.get(order_id, 0) + 1
    for order_id, count in reserved.items():
        if count > 1:
            violations.append(f"order {order_id} reserved {count} times")
        if order_id in order_rows and order_rows[order_id][3] == "REJECTED":
            violations.append(f"order {order_id} is REJECTED but holds a reservation")
    for product in products:
        confirmed = sum(row[2] for row in order_rows.values()
                        if row[1] == product and row[3] == "CONFIRMED")
        final = report.final_stock[product]
        if final is None or final < 0:
            violations.append(f"{product}: stock is {final}")
            continue
        moved = report.initial_stock[product] - final
        if moved != confirmed:
            violations.append(f"{product}: stock moved by {moved} but confirmed quantities sum to {confirmed}")
    for order_id, row in order_rows.items():
        if row[3] == "CONFIRMED" and order_id not in reserved:
            violations.append(f"order {order_id} is CONFIRMED without a reservation")
    for name in ("inventory-dlq", "completion-dlq"):
        if depths.get(name):
            violations.append(f"DLQ {name} holds {depths[name]} message(s)")
    for name in ("inventory", "completion"):
        if depths.get(name):
            violations.append(f"queue {name} did not drain ({depths[name]} left)")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def chart_data(report: Report) -> tuple[list[report_charts.Sample], list[report_charts.Mark]]:
    """The run's own records as the charts' samples (time since the run started)."""
    t0 = report.started_at
    samples = [report_charts.Sample(r.phase, r.sent_at - t0, r.latency_ms,
                                    str(r.http_status) if r.http_status else "error")
               for r in report.orders]
    marks = [report_charts.Mark(m["phase"], m["at"] - t0, m["label"], m["on"]) for m in report.gremlin_marks]
    return samples, marks


def write_charts(report: Report, path_md: Path) -> tuple[list[report_charts.Chart], Path]:
    samples, marks = chart_data(report)
    charts = report_charts.write_charts(samples, marks, path_md)
    latencies = [r.latency_ms for r in report.orders]
    facts = [("orders", str(len(report.orders))),
             ("invariants", "all hold" if not report.violations else f"{len(report.violations)} violated"),
             ("latency p50 / p99", f"{percentile(latencies, 0.5):.0f} ms / {percentile(latencies, 0.99):.0f} ms"),
             ("report", path_md.name)]
    page = report_charts.write_html(path_md.with_suffix(".html"), "Valerix verify report", charts, facts,
                                    report.started_at)
    return charts, page


def write_report(report: Report, path_md: Path, path_json: Path) -> None:
    data = asdict(report)
    path_json.write_text(json.dumps(data, indent=2))
    charts, page = write_charts(report, path_md)
    lines = ["# Valerix verify report", "",
             f"Run at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(report.started_at))}, "
             f"{len(report.orders)} orders.", "",
             "## Invariants", ""]
    if report.violations:
        lines += [f"- **VIOLATION** {v}" for v in report.violations]
    else:
        lines += ["All invariants hold: every accepted order reached a final state, none lost, "
                  "stock moved exactly by the confirmed quantities, no reservation twice, "
                  "no negative stock, DLQs empty."]
    lines += ["", *report_charts.markdown_lines(charts, page), "## Phases", "", "| phase | orders | 201 | 202 | 409 | other | p50 ms | p99 ms | final CONFIRMED | final REJECTED |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for phase, stats in report.phases.items():
        lines.append(f"| {phase} | {stats['orders']} | {stats['201']} | {stats['202']} | {stats['409']} | "
                     f"{stats['other']} | {stats['p50_ms']:.0f} | {stats['p99_ms']:.0f} | "
                     f"{stats['confirmed']} | {stats['rejected']} |")
    lines += ["", "## Stock", "", "| product | initial | final |", "|---|---|---|"]
    for product, initial in report.initial_stock.items():
        lines.append(f"| {product} | {initial} | {report.final_stock.get(product)} |")
    lines += ["", "## Affected orders (first answer other than 201, or an error)", "",
              "| order id | phase | time | latency ms | first answer | final status | reason |",
              "|---|---|---|---|---|---|---|"]
    for record in report.orders:
        if record.http_status != 201:
            lines.append(
                f"| {record.order_id} | {record.phase} | "
                f"{time.strftime('%H:%M:%S', time.localtime(record.sent_at))} | {record.latency_ms:.0f} | "
                f"{record.http_status} {record.first_status or record.error or ''} | "
                f"{record.final_status} | {record.reason or ''} |")
    path_md.write_text("\n".join(lines) + "\n")


def summarize(report: Report) -> None:
    for phase in PHASES:
        records = [r for r in report.orders if r.phase == phase]
        codes = [r.http_status for r in records]
        report.phases[phase] = {
            "orders": len(records),
            "201": codes.count(201), "202": codes.count(202), "409": codes.count(409),
            "other": sum(1 for c in codes if c not in (201, 202, 409)),
            "p50_ms": percentile([r.latency_ms for r in records], 0.5),
            "p99_ms": percentile([r.latency_ms for r in records], 0.99),
            "confirmed": sum(1 for r in records if r.final_status == "CONFIRMED"),
            "rejected": sum(1 for r in records if r.final_status == "REJECTED"),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=300, help="total orders over the three phases")
    parser.add_argument("--clients", type=int, default=6, help="concurrent clients")
    parser.add_argument("--products", type=int, default=3)
    parser.add_argument("--stock", type=int, default=1000, help="initial stock of each product")
    parser.add_argument("--every", type=int, default=3, help="the gremlin affects every Nth request")
    parser.add_argument("--drain-timeout", type=float, default=240)
    args = parser.parse_args(argv)

    if not (cli.OUTPUTS_FILE.exists() and cli.localstack().pid()):
        print("local cloud not running: bringing it up (make up)")
        if cli.main(["up"]) != 0:
            return 2
    outputs = json.loads(cli.OUTPUTS_FILE.read_text())
    verifier = Verifier(outputs, args.clients)
    report = Report(started_at=time.time())
    try:
        with RunProgress() as progress:
            report.initial_stock = verifier.reset_products(args.products, args.stock)
            per_phase = [args.orders // 3 + (1 if i < args.orders % 3 else 0) for i in range(3)]
            for phase, count in zip(PHASES, per_phase):
                progress.write(f"==> phase {phase}: {count} orders from {args.clients} clients, "
                               f"every {args.every}th request affected")
                report.orders += verifier.run_phase(phase, args.every, count, list(report.initial_stock),
                                                    progress)
            progress.write("==> gremlin off; waiting for every order to reach a final state")
            with progress.phase("final states", total=sum(1 for r in report.orders if r.order_id),
                                unit="final") as bar:
                verifier.wait_final(report.orders, args.drain_timeout, bar)
            depths = verifier.wait_queues_drained(60)
    finally:
        report.gremlin_marks = verifier.marks
        try:
            verifier.gremlin(None)
        except Exception:  # noqa: BLE001
            pass
    summarize(report)
    check_invariants(report, outputs, depths)
    md, js = cli.STATE / "verify-report.md", cli.STATE / "verify-report.json"
    write_report(report, md, js)
    latencies = [r.latency_ms for r in report.orders]
    print(f"orders: {len(report.orders)}  first answers: "
          + ", ".join(f"{k}={v}" for k, v in sorted(
              {str(c): [r.http_status for r in report.orders].count(c)
               for c in {r.http_status for r in report.orders}}.items()))
          + f"  latency p50 {statistics.median(latencies):.0f} ms, max {max(latencies):.0f} ms")
    print(f"report: {md.relative_to(REPO)} and {js.relative_to(REPO)}; charts in "
          f"{(cli.STATE / 'verify-charts').relative_to(REPO)}/, all on one page: "
          f"{md.with_suffix('.html').relative_to(REPO)}")
    if report.violations:
        print(f"{len(report.violations)} invariant violation(s):")
        for violation in report.violations:
            print(f"  - {violation}")
        return 1
    print("all invariants hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
