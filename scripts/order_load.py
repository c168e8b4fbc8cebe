"""Orders through the local cloud's API, and the invariants checked on them afterwards —
shared by `make verify` (scripts/verify.py) and `make gameday` (scripts/gameday.py).

* `LoadDriver`: the gremlin switch (every switch recorded as a chart mark), fresh products,
  one order request recorded as an `OrderRecord` (it never raises: an error is recorded),
  a fixed batch of orders from N clients (`place_all`) or a paced stream while a phase lasts
  (`place_paced`), waiting for final states and for the queues to drain.
* `check_invariants`: against both databases — every request answered, no accepted order lost
  or left unfinished, stock moved exactly by the confirmed quantities, no reservation twice,
  none for a rejected order, no negative stock, queues drained, DLQs empty. Each violation has a
  `kind` (what `make gameday` maps onto its SLOs) and a message naming the order or product.
* `phase_stats` / `percentile` / `chart_samples`: the per-phase numbers and chart data both
  reports show.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from infra.outputs import COMPLETION_DLQ_URL, COMPLETION_QUEUE_URL, INVENTORY_DLQ_URL, INVENTORY_QUEUE_URL
from scripts import report_charts
from scripts.run_progress import Phase
from valerix_localcloud import cli
from valerix_localcloud.clients import local_client

FINAL = {"CONFIRMED", "REJECTED"}
VALID_ANSWERS = (201, 202, 409)
# inventory reads the gremlin document through a ~1 s cache: a switch applies within 2 s
GREMLIN_CACHE_WAIT_S = 2.2


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


@dataclass(frozen=True)
class Violation:
    """kind: no_answer, lost, not_final, queue_not_drained, dlq, reserved_twice,
    rejected_reserved, confirmed_unreserved, stock; subject: the order id, product or queue."""

    kind: str
    message: str
    subject: str = ""


@dataclass
class InvariantResult:
    final_stock: dict[str, int | None] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)


def running_cloud_outputs() -> dict[str, Any] | None:
    """`.valerix/outputs.json` of the running local cloud, brought up first when it is not
    running; None when that failed (`make up` said why)."""
    if not (cli.OUTPUTS_FILE.exists() and cli.localstack().pid()):
        print("local cloud not running: bringing it up (make up)")
        if cli.main(["up"]) != 0:
            return None
    outputs: dict[str, Any] = json.loads(cli.OUTPUTS_FILE.read_text())
    return outputs


class LoadDriver:
    def __init__(self, outputs: dict[str, Any], clients: int) -> None:
        self.outputs = outputs
        self.api = httpx.Client(
            base_url=outputs["api_url"], timeout=30.0, limits=httpx.Limits(max_connections=clients * 2)
        )
        self.admin = {"x-api-key": outputs["admin_api_key"]}
        self.clients = clients
        # The gremlin switched on/off: {"phase", "at" (unix time), "label", "on"}
        self.marks: list[dict[str, Any]] = []

    def gremlin(
        self,
        document: dict[str, Any] | None,
        phase: str | None = None,
        *,
        label: str | None = None,
        settle: bool = True,
    ) -> None:
        """PUT the document (None: DELETE, all off); then wait until inventory obeys it."""
        if document is None:
            response = self.api.delete("/gremlin", headers=self.admin)
        else:
            response = self.api.put("/gremlin", json=document, headers=self.admin)
        if response.status_code >= 400:
            raise RuntimeError(f"the gremlin refused {document}: HTTP {response.status_code} {response.text}")
        if phase is not None:
            text = label or ("gremlin off" if document is None else f"{phase} on")
            self.marks.append({"phase": phase, "at": time.time(), "label": text, "on": document is not None})
        if settle:
            time.sleep(GREMLIN_CACHE_WAIT_S)

    def reset_products(self, count: int, stock: int, prefix: str = "verify") -> dict[str, int]:
        run = uuid.uuid4().hex[:6]
        products = {}
        for index in range(count):
            product_id = f"{prefix}-{run}-{index}"
            response = self.api.put(
                f"/admin/products/{product_id}",
                headers=self.admin,
                json={"name": f"{prefix.capitalize()} {index}", "stock": stock},
            )
            response.raise_for_status()
            products[product_id] = stock
        return products

    def place(self, record: OrderRecord) -> OrderRecord:
        record.sent_at = time.time()
        started = time.monotonic()
        try:
            response = self.api.post("/orders", json={"productId": record.product_id, "quantity": record.quantity})
            record.http_status = response.status_code
            body = response.json()
            record.order_id = body.get("orderId")
            record.first_status = body.get("status")
            record.reason = body.get("reason")
        except Exception as exc:  # noqa: BLE001 - recorded, never stops the run
            record.error = repr(exc)
        record.latency_ms = (time.monotonic() - started) * 1000
        return record

    def place_all(self, records: list[OrderRecord], bar: Phase | None = None) -> list[OrderRecord]:
        """Every record placed, `self.clients` at a time."""

        def place(record: OrderRecord) -> OrderRecord:
            try:
                return self.place(record)
            finally:
                if bar is not None:
                    bar.advance()

        with ThreadPoolExecutor(self.clients) as pool:
            return list(pool.map(place, records))

    def place_paced(
        self,
        phase: Callable[[], tuple[str, float, Phase | None] | None],
        products: list[str],
        rng: random.Random,
        stop: threading.Event,
    ) -> list[OrderRecord]:
        """A steady stream of orders from `self.clients` threads until `stop` is set or `phase()`
        returns None. `phase()` says what the next order belongs to: (phase name, orders per second,
        its progress bar). Send times follow one shared schedule at that rate, so the load stays
        steady while answers are slow (up to `clients` in flight; late slots go out at once)."""
        lock = threading.Lock()
        records: list[OrderRecord] = []
        next_slot = [time.monotonic()]

        def worker() -> None:
            while not stop.is_set():
                current = phase()
                if current is None:
                    return
                with lock:
                    slot = next_slot[0]
                    # a backlog of at most one second: after a stall the rate resumes, no burst
                    next_slot[0] = max(slot, time.monotonic() - 1.0) + 1.0 / current[1]
                if stop.wait(max(0.0, slot - time.monotonic())):
                    return
                current = phase()  # the phase may have changed while this thread waited
                if current is None:
                    return
                name, _rate, bar = current
                with lock:
                    record = OrderRecord(name, rng.choice(products), rng.randint(1, 3), time.time())
                if bar is not None:
                    bar.advance()  # counted when sent: the phase's bar counts its own orders only
                self.place(record)
                with lock:
                    records.append(record)

        threads = [threading.Thread(target=worker, name=f"load-{i}", daemon=True) for i in range(self.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sorted(records, key=lambda r: r.sent_at)

    def wait_final(self, records: list[OrderRecord], timeout: float, bar: Phase | None = None) -> None:
        deadline = time.monotonic() + timeout
        pending = [r for r in records if r.order_id]
        while pending and time.monotonic() < deadline:
            still = []
            for record in pending:
                try:
                    body = self.api.get(f"/orders/{record.order_id}").json()
                except Exception:  # noqa: BLE001 - asked again on the next round
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
        urls = {
            name: stack[key]
            for name, key in (
                ("inventory", INVENTORY_QUEUE_URL),
                ("inventory-dlq", INVENTORY_DLQ_URL),
                ("completion", COMPLETION_QUEUE_URL),
                ("completion-dlq", COMPLETION_DLQ_URL),
            )
        }
        deadline = time.monotonic() + timeout
        while True:
            depths = {}
            for name, url in urls.items():
                attributes = sqs.get_queue_attributes(
                    QueueUrl=url,
                    AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
                )["Attributes"]
                depths[name] = int(attributes["ApproximateNumberOfMessages"]) + int(
                    attributes["ApproximateNumberOfMessagesNotVisible"]
                )
            if (depths["inventory"] == 0 and depths["completion"] == 0) or time.monotonic() > deadline:
                return depths
            time.sleep(1)

    def close(self) -> None:
        self.api.close()


def db(outputs: dict[str, Any], service: str) -> Any:
    import pg8000.native

    secret = outputs["databases"][service]
    return pg8000.native.Connection(
        user=secret["username"],
        password=secret["password"],
        host=secret["host"],
        port=int(secret["port"]),
        database=secret["dbname"],
    )


def check_invariants(
    orders: list[OrderRecord], initial_stock: dict[str, int], outputs: dict[str, Any], depths: dict[str, int]
) -> InvariantResult:
    """The run's orders and products against both databases (see the module's docstring)."""
    result = InvariantResult()
    violations = result.violations
    products = list(initial_stock)
    inventory = db(outputs, "inventory")
    orders_db = db(outputs, "order")
    try:
        stock_rows = dict(
            inventory.run("SELECT product_id, stock FROM products WHERE product_id = ANY(:p)", p=products)
        )
        result.final_stock = {p: stock_rows.get(p) for p in products}
        reservations = inventory.run(
            "SELECT order_id, product_id, status, quantity FROM reservations WHERE product_id = ANY(:p)", p=products
        )
        order_rows = {
            row[0]: row
            for row in orders_db.run(
                "SELECT order_id, product_id, quantity, status FROM orders WHERE product_id = ANY(:p)", p=products
            )
        }
    finally:
        inventory.close()
        orders_db.close()

    for record in orders:
        if record.error or record.http_status not in VALID_ANSWERS:
            violations.append(
                Violation("no_answer", f"order request got no valid answer: {record.http_status} {record.error}")
            )
            continue
        if record.order_id not in order_rows and record.reason != "unknown product":
            violations.append(
                Violation(
                    "lost",
                    f"order {record.order_id} answered {record.first_status} but is not stored (lost)",
                    str(record.order_id),
                )
            )
        if record.final_status not in FINAL:
            violations.append(
                Violation(
                    "not_final",
                    f"order {record.order_id} never reached a final state ({record.final_status})",
                    str(record.order_id),
                )
            )

    reserved: dict[str, int] = {}
    for order_id, _product_id, status, _quantity in reservations:
        if status == "RESERVED":
            reserved[order_id] = reserved.get(order_id, 0) + 1
    for order_id, count in reserved.items():
        if count > 1:
            violations.append(Violation("reserved_twice", f"order {order_id} reserved {count} times", order_id))
        if order_id in order_rows and order_rows[order_id][3] == "REJECTED":
            violations.append(
                Violation("rejected_reserved", f"order {order_id} is REJECTED but holds a reservation", order_id)
            )
    for product in products:
        confirmed = sum(row[2] for row in order_rows.values() if row[1] == product and row[3] == "CONFIRMED")
        final = result.final_stock[product]
        if final is None or final < 0:
            violations.append(Violation("stock", f"{product}: stock is {final}", product))
            continue
        moved = initial_stock[product] - final
        if moved != confirmed:
            violations.append(
                Violation(
                    "stock", f"{product}: stock moved by {moved} but confirmed quantities sum to {confirmed}", product
                )
            )
    for order_id, row in order_rows.items():
        if row[3] == "CONFIRMED" and order_id not in reserved:
            violations.append(
                Violation("confirmed_unreserved", f"order {order_id} is CONFIRMED without a reservation", order_id)
            )
    for name in ("inventory-dlq", "completion-dlq"):
        if depths.get(name):
            violations.append(Violation("dlq", f"DLQ {name} holds {depths[name]} message(s)", name))
    for name in ("inventory", "completion"):
        if depths.get(name):
            violations.append(Violation("queue_not_drained", f"queue {name} did not drain ({depths[name]} left)", name))
    return result


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def phase_stats(records: Iterable[OrderRecord]) -> dict[str, Any]:
    """Orders, first answers, latency p50/p99 and final states of one phase's records."""
    records = list(records)
    codes = [r.http_status for r in records]
    latencies = [r.latency_ms for r in records]
    return {
        "orders": len(records),
        "201": codes.count(201),
        "202": codes.count(202),
        "409": codes.count(409),
        "other": sum(1 for c in codes if c not in VALID_ANSWERS),
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
        "confirmed": sum(1 for r in records if r.final_status == "CONFIRMED"),
        "rejected": sum(1 for r in records if r.final_status == "REJECTED"),
    }


def chart_samples(
    orders: list[OrderRecord],
    marks: list[dict[str, Any]],
    started_at: float,
) -> tuple[list[report_charts.Sample], list[report_charts.Mark]]:
    """The run's own records as the charts' samples (time since the run started)."""
    samples = [
        report_charts.Sample(
            r.phase, r.sent_at - started_at, r.latency_ms, str(r.http_status) if r.http_status else "error"
        )
        for r in orders
    ]
    chart_marks = [report_charts.Mark(m["phase"], m["at"] - started_at, m["label"], m["on"]) for m in marks]
    return samples, chart_marks
