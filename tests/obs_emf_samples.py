"""Real Powertools EMF output for tests: every line here is printed by aws_lambda_powertools."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

from aws_lambda_powertools import Metrics, single_metric
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.provider import cold_start

NAMESPACE = "Valerix"


def capture(fn) -> list[str]:
    """Run ``fn`` and return the lines it printed to stdout (Powertools prints one line per flush)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        fn()
    return [line for line in buf.getvalue().splitlines() if line.strip()]


def emit(
    service: str,
    metrics: list[tuple[str, MetricUnit, float]],
    dimensions: dict | None = None,
    extra_dimension_sets: list[dict] | None = None,
) -> None:
    """One flush (-> one EMF line) with several metrics; repeated names become list values."""
    m = Metrics(namespace=NAMESPACE, service=service)
    m.clear_metrics()
    for key, value in (dimensions or {}).items():
        m.add_dimension(key, value)
    for dims in extra_dimension_sets or []:
        m.add_dimensions(**dims)
    for name, unit, value in metrics:
        m.add_metric(name=name, unit=unit, value=value)
    m.flush_metrics()


def emit_single(service: str, name: str, unit: MetricUnit, value: float, **dimensions) -> None:
    with single_metric(name=name, unit=unit, value=value, namespace=NAMESPACE) as metric:
        metric.add_dimension("service", service)
        for key, val in dimensions.items():
            metric.add_dimension(key, val)


class FakeContext:
    memory_limit_in_mb = 256
    aws_request_id = "00000000-0000-0000-0000-000000000000"

    def __init__(self, function_name: str):
        self.function_name = function_name
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:000000000000:function:{function_name}"


def emit_cold_start(service: str, function_name: str) -> None:
    """A handler decorated like the real ones: ColdStart on the first invocation only."""
    cold_start.reset_cold_start_flag()
    m = Metrics(namespace=NAMESPACE, service=service)
    m.clear_metrics()

    @m.log_metrics(capture_cold_start_metric=True)
    def handler(event, context):
        m.add_metric(name="HttpRequests", unit=MetricUnit.Count, value=1)
        return {}

    handler({}, FakeContext(function_name))


def request(service: str, route: str, method: str, status_class: str, duration_ms: float) -> None:
    emit(
        service,
        [("HttpRequests", MetricUnit.Count, 1)],
        {"route": route, "method": method, "status_class": status_class},
    )
    emit(service, [("HttpRequestDuration", MetricUnit.Milliseconds, duration_ms)], {"route": route, "method": method})


@dataclass
class Traffic:
    """Expected totals of ``traffic_lines`` (what the exporter must report)."""

    lines: list[str]
    order_statuses: dict
    order_durations_ms: list[float]
    fallbacks: dict
    gremlin: dict


def traffic_lines(
    confirmed: int = 3, queued: int = 2, rejected: int = 1, order_ms: tuple = (20.0, 40.0, 60.0, 80.0, 1500.0, 2100.0)
) -> Traffic:
    """A realistic mix covering every metric in docs/ARCHITECTURE.md."""

    def run():
        emit_cold_start("order", "valerix-order-api")  # ColdStart + one HttpRequests (no route)
        for ms in order_ms:
            request("order", "/orders", "POST", "2xx", ms)
        request("order", "/orders/{orderId}", "GET", "4xx", 5.0)
        request("inventory", "/inventory/reservations", "POST", "2xx", 15.0)
        request("inventory", "/inventory/reservations", "POST", "5xx", 2500.0)
        request("gremlin", "/gremlin", "PUT", "2xx", 8.0)
        for status, path, n in (
            ("CONFIRMED", "sync", confirmed),
            ("QUEUED", "sync", queued),
            ("REJECTED", "sync", rejected),
        ):
            for _ in range(n):
                emit("order", [("OrderOutcomes", MetricUnit.Count, 1)], {"status": status, "path": path})
        emit(
            "order",
            [
                ("InventoryCallDuration", MetricUnit.Milliseconds, 12.0),
                ("InventoryCallDuration", MetricUnit.Milliseconds, 2000.0),
            ],
            {"outcome": "reserved"},
        )
        emit("order", [("InventoryCallDuration", MetricUnit.Milliseconds, 2001.0)], {"outcome": "timeout"})
        emit_single("order", "Fallbacks", MetricUnit.Count, 1, reason="timeout")
        emit_single("order", "Fallbacks", MetricUnit.Count, 1, reason="timeout")
        emit_single("order", "Fallbacks", MetricUnit.Count, 1, reason="circuit_open")
        emit("order", [("CircuitTransitions", MetricUnit.Count, 1)], {"to_state": "open"})
        emit("order", [("CircuitState", MetricUnit.NoUnit, 2)])
        emit(
            "inventory",
            [("GremlinInjections", MetricUnit.Count, 1), ("GremlinInjections", MetricUnit.Count, 1)],
            {"mode": "latency"},
        )
        emit("inventory", [("GremlinInjections", MetricUnit.Count, 1)], {"mode": "crash_after_commit"})
        emit("order", [("IdempotentReplays", MetricUnit.Count, 1)], {"source": "http"})
        emit("inventory", [("IdempotentReplays", MetricUnit.Count, 1)], {"source": "queue"})
        emit("inventory", [("QueueRecords", MetricUnit.Count, 1)], {"outcome": "processed"})
        emit("order", [("QueueRecords", MetricUnit.Count, 1)], {"outcome": "failed"})
        emit_single("reconcile", "ReconcileProblems", MetricUnit.NoUnit, 1, kind="missing_reservation")
        emit_single("reconcile", "ReconcileProblems", MetricUnit.NoUnit, 0, kind="stuck_order")
        emit_single("reconcile", "ReconcileRuns", MetricUnit.Count, 1, outcome="problems")

    statuses = {"CONFIRMED": confirmed, "QUEUED": queued, "REJECTED": rejected}
    return Traffic(
        capture(run),
        {k: v for k, v in statuses.items() if v},
        [*list(order_ms), 5.0],
        {"timeout": 2, "circuit_open": 1},
        {"latency": 2, "crash_after_commit": 1},
    )
