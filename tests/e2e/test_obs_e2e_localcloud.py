"""End to end on the local cloud: orders placed through API Gateway reach a real Prometheus
through Powertools EMF -> CloudWatch Logs (LocalStack) -> the exporter started by `make up`."""

from __future__ import annotations

import time
import uuid
import warnings
from urllib.parse import urlparse

import httpx
import pytest

pytestmark = pytest.mark.e2e

STATUS_OF = {201: "CONFIRMED", 202: "QUEUED", 409: "REJECTED"}
BY_STATUS = 'sum by (status) (valerix_order_outcomes_total{path="sync"})'
POSTS = 'sum(valerix_http_request_duration_seconds_count{service="order",route="/orders",method="POST"})'


def by_status(prom) -> dict[str, float]:
    return {r["metric"].get("status", ""): float(r["value"][1]) for r in prom.query(BY_STATUS)}


def settled(prom, read, quiet: float = 3.0, timeout: float = 30.0):
    """(value, True) once it has not changed for `quiet` seconds (the exporter has caught up);
    (value, False) if other traffic kept changing it until `timeout`."""
    last, since = read(prom), time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(1)
        now = read(prom)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return last, True
    return last, False


def test_prometheus_counts_orders_and_latency_from_the_local_cloud(localcloud, prometheus_factory):
    prom = prometheus_factory([urlparse(localcloud.metrics_url).netloc])
    prom.wait_for_target_up()
    http = httpx.Client(base_url=localcloud.api_url, timeout=30.0)
    product = f"obs-{uuid.uuid4().hex[:10]}"
    r = http.put(
        f"/admin/products/{product}",
        json={"name": "Observability e2e", "stock": 3},
        headers={"x-api-key": localcloud.admin_api_key},
    )
    assert r.status_code in (200, 201), r.text

    base_status, quiet = settled(prom, by_status)
    base_posts = prom.value(POSTS) or 0.0
    responses = [http.post("/orders", json={"productId": product, "quantity": 1}) for _ in range(5)]
    placed: dict[str, int] = {}
    for resp in responses:
        assert resp.status_code in STATUS_OF, resp.text
        placed[STATUS_OF[resp.status_code]] = placed.get(STATUS_OF[resp.status_code], 0) + 1
    expected = {s: base_status.get(s, 0.0) + n for s, n in placed.items()}

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        current = by_status(prom)
        if all(current.get(s, 0.0) >= v for s, v in expected.items()):
            break
        time.sleep(1)
    posts = prom.wait_for_value(POSTS, lambda v: v >= base_posts + 5, timeout=30)
    if quiet:
        # nobody else placed orders meanwhile: the counts must be exact (nothing lost, nothing twice)
        current, _ = settled(prom, by_status)
        others = prom.value(POSTS) - base_posts - 5
        if others == 0:
            assert {s: current.get(s, 0.0) for s in expected} == expected, (placed, base_status, current)
            assert prom.value(POSTS) == base_posts + 5
            others = None
    if not quiet or others is not None:  # other tests use the same cloud right now: lower bounds only
        assert all(current.get(s, 0.0) >= v for s, v in expected.items()), (placed, base_status, current)
        assert posts >= base_posts + 5
        warnings.warn(
            "other traffic on the local cloud during the test: order counts checked as lower bounds", stacklevel=1
        )

    # the latency histogram of POST /orders is there and usable
    buckets = prom.query('valerix_http_request_duration_seconds_bucket{service="order",route="/orders",method="POST"}')
    assert {b["metric"]["le"] for b in buckets} >= {"0.1", "1.0", "2.0", "+Inf"}
    p95 = prom.value(
        "histogram_quantile(0.95, sum by (le) (rate(valerix_http_request_duration_seconds_bucket"
        '{service="order",route="/orders",method="POST"}[1m])))'
    )
    assert p95 is not None and 0 < p95 < 60

    summary = httpx.get(f"{localcloud.metrics_url}/api/summary", timeout=10).json()
    assert summary["orderLatency"]["samples"] >= 5
    assert summary["functions"]["order"]["invocations"] >= 5
