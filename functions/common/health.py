"""Health checks that really probe: run named checks in parallel with a deadline, cache the answer.

A `Check` is a probe (a callable returning a dict of details, merged into `{"status": "UP", ...}`,
or raising) plus the public reason a caller is told when it fails ("database unreachable").
The answer is 200 `status: UP` or 503 `status: DOWN` with a `message` naming every failing check
and its reason. The probe's exception (hosts, ports, driver text, ARNs) goes to the log only,
with the request's correlation id; the caller quotes `requestId` to find it.

`cached_health(service, compute)` keeps a service's answer for HEALTH_CACHE_SECONDS (default 5 s)
per execution environment, and lets one caller at a time probe: however often the public
endpoint is called, the backends see at most one round of checks per environment per period.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from functions.common import aws
from functions.common.observability import get_logger

__all__ = [
    "Check",
    "HealthCache",
    "HealthOut",
    "cached_health",
    "database_check",
    "health_cache",
    "queue_check",
    "run_checks",
]


@functools.cache
def _executor() -> concurrent.futures.ThreadPoolExecutor:
    """The probes' worker threads, one pool per environment, created on first use."""
    return concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="health")


Probe = Callable[[], "dict[str, Any] | None"]


@dataclasses.dataclass(frozen=True)
class Check:
    """A health probe and what a caller is told when it fails (a few words, nothing internal)."""

    probe: Probe
    reason: str


def run_checks(
    service: str,
    checks: dict[str, Check],
    timeout: float = 3.0,
    extra: dict[str, Any] | None = None,
) -> tuple[int, dict[str, Any]]:
    logger = get_logger(service)
    started = time.perf_counter()
    futures = {name: _executor().submit(_timed, check.probe) for name, check in checks.items()}
    results: dict[str, dict[str, Any]] = {}
    for name, future in futures.items():
        reason = checks[name].reason
        remaining = max(0.0, timeout - (time.perf_counter() - started))
        try:
            results[name] = future.result(timeout=remaining)
        except concurrent.futures.TimeoutError:
            logger.warning("health check failed: no answer in time", extra={"check": name, "timeout_s": timeout})
            results[name] = {"status": "DOWN", "error": f"{reason} (no answer within {timeout:.0f} s)"}
        except Exception as exc:  # noqa: BLE001 - each failing check says why, in public words
            logger.warning("health check failed", extra={"check": name, "error": f"{type(exc).__name__}: {exc}"[:1000]})
            results[name] = {"status": "DOWN", "error": reason}
    failing = [name for name, result in results.items() if result.get("status") != "UP"]
    body: dict[str, Any] = {"service": service, "status": "DOWN" if failing else "UP"}
    if extra:
        body.update(extra)
    body["checks"] = results
    body["checkedAt"] = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if failing:
        body["message"] = "unhealthy: " + "; ".join(f"{name}: {results[name].get('error')}" for name in failing)
        return 503, body
    return 200, body


def _timed(fn: Probe) -> dict[str, Any]:
    started = time.perf_counter()
    details = fn() or {}
    return {"status": "UP", "latencyMs": round((time.perf_counter() - started) * 1000.0, 1), **details}


def database_check(database_factory: Callable[[], Any]) -> Check:
    def probe() -> dict[str, Any]:
        database_factory().ping()
        return {}

    return Check(probe, "database unreachable")


def queue_check(queue_url_factory: Callable[[], str]) -> Check:
    def probe() -> dict[str, Any]:
        url = queue_url_factory()
        attributes = aws.client("sqs").get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return {"depth": int(attributes.get("ApproximateNumberOfMessages", 0))}

    return Check(probe, "queue unreachable")


# --------------------------------------------------------------------------- cache


class HealthCache:
    """The last answer per key for `ttl_seconds`; one computation per key at a time (the others
    wait for it and share its answer). ttl 0 = no caching."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, tuple[float, tuple[int, dict[str, Any]]]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(
        self, key: str, ttl_seconds: float, compute: Callable[[], tuple[int, dict[str, Any]]]
    ) -> tuple[int, dict[str, Any]]:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            entry = self._entries.get(key)
            if entry is not None and ttl_seconds > 0 and self._clock() - entry[0] < ttl_seconds:
                return entry[1][0], dict(entry[1][1])
            result = compute()
            self._entries[key] = (self._clock(), result)
            return result[0], dict(result[1])

    def clear(self) -> None:
        with self._guard:
            self._entries.clear()


@functools.cache
def health_cache() -> HealthCache:
    """The answers of this environment (one per service)."""
    return HealthCache()


def cached_health(
    service: str, compute: Callable[[], tuple[int, dict[str, Any]]], ttl_seconds: float | None = None
) -> tuple[int, dict[str, Any]]:
    """`compute()` (normally `run_checks(...)`) at most once per HEALTH_CACHE_SECONDS per environment.

    A DOWN answer carries this request's `requestId` (added after the cache: it is per request),
    which finds the failing check's detail in the log of the request that probed."""
    from functions.common.api import current_correlation_id
    from functions.common.settings import get_settings

    if ttl_seconds is None:
        ttl_seconds = get_settings().health_cache_seconds

    def probe() -> tuple[int, dict[str, Any]]:
        status, body = compute()
        return status, {**body, _PROBED_BY: current_correlation_id()}

    status, body = health_cache().get(service, ttl_seconds, probe)
    probed_by = body.pop(_PROBED_BY, None)
    correlation_id = current_correlation_id()
    if status >= 400:
        if correlation_id:
            body["requestId"] = correlation_id
        if probed_by != correlation_id:
            # the failing checks' detail was logged by the request that probed: point to it
            get_logger(service).warning(
                "health DOWN (cached answer)", extra={"probed_by": probed_by, "reason": body.get("message")}
            )
    return status, body


_PROBED_BY = "_probedBy"  # kept with the cached answer, never sent


class HealthOut(BaseModel):
    """Body of GET /health/<service>: 200 UP or 503 DOWN, one entry per check."""

    model_config = ConfigDict(extra="allow")

    service: str
    status: str
    checks: dict[str, Any]
    checkedAt: str | None = None
    message: str | None = None
