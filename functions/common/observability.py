"""Powertools logger and metric helpers shared by every function.

Metrics follow docs/ARCHITECTURE.md: namespace `Valerix` (POWERTOOLS_METRICS_NAMESPACE), the
`service` dimension always present, no high-cardinality dimensions. Each metric is emitted with
`single_metric` so every data point carries exactly its own dimension set (one EMF line each).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit, single_metric

__all__ = ["MetricUnit", "get_logger", "put_metric", "record_cold_start", "namespace"]

_loggers: dict[str, Logger] = {}
_loggers_lock = threading.Lock()


def namespace() -> str:
    return os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "Valerix"


def get_logger(service: str) -> Logger:
    """One Powertools JSON logger per service name (cheap, no I/O)."""
    with _loggers_lock:
        logger = _loggers.get(service)
        if logger is None:
            logger = Logger(service=service)
            _loggers[service] = logger
        return logger


def put_metric(name: str, unit: MetricUnit, value: float, *, service: str, **dimensions: Any) -> None:
    """Emit one EMF data point with `service` plus the given dimensions.

    Metric emission never breaks the caller: a failure is logged and swallowed.
    """
    try:
        with single_metric(
            name=name,
            unit=unit,
            value=value,
            namespace=namespace(),
            default_dimensions={"service": service},
        ) as metric:
            for key, dim_value in dimensions.items():
                metric.add_dimension(name=key, value=str(dim_value))
    except Exception:  # noqa: BLE001 - observability must not break business logic
        get_logger(service).warning("metric emission failed", extra={"metric": name}, exc_info=True)


_cold_start = True
_cold_start_lock = threading.Lock()


def record_cold_start(service: str, context: Any) -> None:
    """Powertools-style `ColdStart` metric (dimension `function_name`), once per environment."""
    global _cold_start
    with _cold_start_lock:
        if not _cold_start:
            return
        _cold_start = False
    function_name = (
        getattr(context, "function_name", None) or os.environ.get("AWS_LAMBDA_FUNCTION_NAME") or service
    )
    put_metric("ColdStart", MetricUnit.Count, 1, service=service, function_name=function_name)
