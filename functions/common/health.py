"""Health checks that really probe: run named checks in parallel with a deadline.

A check is a callable returning a dict of details (merged into `{"status": "UP", ...}`) or
raising; its exception text becomes the failing check's `error`. The response is 200
`status: UP` or 503 `status: DOWN` with a `message` naming every failing check.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict

from functions.common import aws

__all__ = ["HealthOut", "run_checks", "queue_check", "database_check"]

_executor = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="health")


def run_checks(
    service: str, checks: dict[str, Callable[[], dict[str, Any] | None]], timeout: float = 3.0,
    extra: dict[str, Any] | None = None,
) -> tuple[int, dict[str, Any]]:
    started = time.perf_counter()
    futures = {name: _executor.submit(_timed, fn) for name, fn in checks.items()}
    results: dict[str, dict[str, Any]] = {}
    for name, future in futures.items():
        remaining = max(0.0, timeout - (time.perf_counter() - started))
        try:
            results[name] = future.result(timeout=remaining)
        except concurrent.futures.TimeoutError:
            results[name] = {"status": "DOWN", "error": f"no answer within {timeout:.1f} s"}
        except Exception as exc:  # noqa: BLE001 - each failing check says why
            results[name] = {"status": "DOWN", "error": _describe(exc)}
    failing = [name for name, result in results.items() if result.get("status") != "UP"]
    body: dict[str, Any] = {"service": service, "status": "DOWN" if failing else "UP"}
    if extra:
        body.update(extra)
    body["checks"] = results
    if failing:
        body["message"] = "unhealthy: " + "; ".join(f"{name}: {results[name].get('error')}" for name in failing)
        return 503, body
    return 200, body


def _timed(fn: Callable[[], dict[str, Any] | None]) -> dict[str, Any]:
    started = time.perf_counter()
    details = fn() or {}
    return {"status": "UP", "latencyMs": round((time.perf_counter() - started) * 1000.0, 1), **details}


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def database_check(database_factory: Callable[[], Any]) -> Callable[[], dict[str, Any]]:
    def check() -> dict[str, Any]:
        database_factory().ping()
        return {}

    return check


def queue_check(queue_url_factory: Callable[[], str]) -> Callable[[], dict[str, Any]]:
    def check() -> dict[str, Any]:
        url = queue_url_factory()
        attributes = aws.client("sqs").get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return {"depth": int(attributes.get("ApproximateNumberOfMessages", 0))}

    return check


class HealthOut(BaseModel):
    """Body of GET /health/<service>: 200 UP or 503 DOWN, one entry per check."""

    model_config = ConfigDict(extra="allow")

    service: str
    status: str
    checks: dict[str, Any]
    message: str | None = None
