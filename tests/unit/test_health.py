"""Health checks: public reasons only (the detail goes to the log), and a per-environment cache."""

from __future__ import annotations

import io
import json
import logging
import threading

import pytest

from functions.common.health import Check, HealthCache, run_checks
from functions.common.observability import get_logger

LEAKY = (
    "connection to 10.0.3.7 port 5432 failed: pg8000 InterfaceError "
    "(arn:aws:secretsmanager:eu-west-1:123456789012:secret:x)"
)


def _refused() -> None:
    raise ConnectionRefusedError(LEAKY)


@pytest.fixture
def log_lines():
    logger = get_logger("unit-health")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    logger.addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)


def test_a_failing_check_says_its_public_reason_and_logs_the_detail(log_lines):
    status, body = run_checks(
        "unit-health",
        {
            "database": Check(_refused, "database unreachable"),
            "queue": Check(lambda: {"depth": 3}, "queue unreachable"),
        },
    )
    assert status == 503 and body["status"] == "DOWN"
    assert body["checks"]["database"] == {"status": "DOWN", "error": "database unreachable"}
    assert body["checks"]["queue"]["status"] == "UP" and body["checks"]["queue"]["depth"] == 3
    assert body["message"] == "unhealthy: database: database unreachable"
    text = json.dumps(body)
    for internal in ("10.0.3.7", "5432", "pg8000", "InterfaceError", "arn:", "123456789012", "Refused"):
        assert internal not in text, internal
    logged = [r for r in log_lines() if r["message"] == "health check failed"]
    assert logged and logged[0]["check"] == "database" and "10.0.3.7" in logged[0]["error"]


def test_a_check_that_does_not_answer_in_time_is_down_with_its_reason():
    release = threading.Event()
    try:
        status, body = run_checks(
            "unit-health", {"inventory": Check(release.wait, "inventory unreachable")}, timeout=0.05
        )
    finally:
        release.set()
    assert status == 503
    assert body["checks"]["inventory"]["error"].startswith("inventory unreachable")


def test_all_up_is_200_with_a_timestamp():
    status, body = run_checks("unit-health", {"database": Check(lambda: None, "database unreachable")})
    assert status == 200 and body["status"] == "UP" and "message" not in body
    assert body["checkedAt"].endswith("Z")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_cache_answers_from_memory_within_the_ttl_and_probes_again_after():
    clock = FakeClock()
    cache = HealthCache(clock=clock)
    probes = []

    def compute():
        probes.append(clock.now)
        return 200, {"n": len(probes)}

    assert cache.get("order", 5, compute) == (200, {"n": 1})
    clock.now += 4.9
    assert cache.get("order", 5, compute) == (200, {"n": 1})
    assert len(probes) == 1
    clock.now += 0.2
    assert cache.get("order", 5, compute) == (200, {"n": 2})
    assert cache.get("inventory", 5, compute) == (200, {"n": 3})  # one entry per service
    assert cache.get("order", 0, compute) == (200, {"n": 4})  # ttl 0: no caching


def test_a_cached_body_cannot_be_changed_by_a_caller():
    cache = HealthCache(clock=FakeClock())
    _, body = cache.get("order", 5, lambda: (200, {"status": "UP"}))
    body["status"] = "tampered"
    assert cache.get("order", 5, lambda: (500, {}))[1] == {"status": "UP"}


def test_concurrent_callers_share_one_probe():
    cache = HealthCache(clock=FakeClock())
    started = threading.Event()
    release = threading.Event()
    calls = []

    def slow_compute():
        calls.append(1)
        started.set()
        release.wait(5)
        return 200, {"status": "UP"}

    results = []
    first = threading.Thread(target=lambda: results.append(cache.get("order", 5, slow_compute)))
    first.start()
    assert started.wait(5)
    others = [threading.Thread(target=lambda: results.append(cache.get("order", 5, slow_compute))) for _ in range(4)]
    for thread in others:
        thread.start()
    release.set()
    for thread in [first, *others]:
        thread.join(5)
    assert len(calls) == 1
    assert results == [(200, {"status": "UP"})] * 5


def test_a_cached_down_answer_carries_the_current_request_id_and_points_to_the_prober(log_lines):
    from functions.common import api, health

    health.health_cache().clear()

    def down():
        return run_checks("unit-health", {"database": Check(_refused, "database unreachable")})

    token = api._correlation_id.set("req-probe")
    try:
        status, first = health.cached_health("unit-health", down, ttl_seconds=60)
    finally:
        api._correlation_id.reset(token)
    token = api._correlation_id.set("req-later")
    try:
        _, second = health.cached_health("unit-health", down, ttl_seconds=60)
    finally:
        api._correlation_id.reset(token)
        health.health_cache().clear()
    assert status == 503 and first["requestId"] == "req-probe" and second["requestId"] == "req-later"
    assert second["checkedAt"] == first["checkedAt"]
    assert "_probedBy" not in json.dumps(first) + json.dumps(second)
    pointer = [r for r in log_lines() if r["message"] == "health DOWN (cached answer)"]
    assert len(pointer) == 1 and pointer[0]["probed_by"] == "req-probe"
