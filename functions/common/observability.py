"""Powertools logger, tracer, correlation id and metric helpers shared by every function.

Metrics follow docs/ARCHITECTURE.md: namespace `Valerix` (POWERTOOLS_METRICS_NAMESPACE), the
`service` dimension always present, no high-cardinality dimensions. Each metric is emitted with
Powertools' `SingleMetric` so every data point carries exactly its own dimension set (one EMF line
each, written with a single write so concurrent threads cannot interleave inside it).
"""

from __future__ import annotations

import contextvars
import json
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.base import SingleMetric
from aws_lambda_powertools.shared.functions import resolve_truthy_env_var_choice

__all__ = ["MetricUnit", "get_logger", "put_metric", "record_cold_start", "namespace", "traced",
           "tracing_enabled", "CORRELATION_ID_PATTERN", "valid_correlation_id", "current_correlation_id",
           "bind_correlation_id", "correlation_scope", "invocation_correlation_id"]

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
        metric = SingleMetric(namespace=namespace())
        metric.add_metric(name=name, unit=unit, value=value)
        metric.add_dimension(name="service", value=service)
        for key, dim_value in dimensions.items():
            metric.add_dimension(name=key, value=str(dim_value))
        document = json.dumps(metric.serialize_metric_set(), separators=(",", ":"))
        # One write per line, unlike Powertools' single_metric (print: the text, then "\n"):
        # queue consumers handle records on several threads, and a log line written between
        # the two made both lines unreadable — for CloudWatch's EMF parser too.
        sys.stdout.write(document + "\n")
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


# --------------------------------------------------------------------------- correlation id
#
# One id follows an order through every function it touches (docs/ARCHITECTURE.md): the API
# takes it from the request (functions.common.api), the reserve request carries it as a field
# (contracts.ReserveRequest.correlationId), SQS messages carry it as a message attribute
# (functions.common.queue). Wherever it arrives, `bind_correlation_id` makes it the current
# one: every Powertools log line of that thread/task gets `correlation_id`, and producers read
# it back with `current_correlation_id()` to pass it on.

# A caller-supplied id goes into logs, answers and messages: only short, plain tokens are taken.
CORRELATION_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_CORRELATION_KEY = "correlation_id"
_correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("valerix_correlation_id", default=None)


def valid_correlation_id(value: Any) -> str | None:
    """`value` if it is a well-formed correlation id, else None."""
    return value if isinstance(value, str) and CORRELATION_ID_PATTERN.fullmatch(value) else None


def current_correlation_id() -> str | None:
    """The correlation id bound to this thread/task (None when nothing is bound)."""
    return _correlation_id.get()


def bind_correlation_id(logger: Logger, correlation_id: str | None) -> Callable[[], None]:
    """Make `correlation_id` the current one and put it on every log line of this context;
    returns the function that restores what was bound before.

    Powertools' thread-safe keys live in a ContextVar, so concurrent records of one SQS batch
    (each on its own worker thread) never see each other's id.
    """
    token = _correlation_id.set(correlation_id)
    previous = logger.thread_safe_get_current_keys().get(_CORRELATION_KEY)
    if correlation_id:
        logger.thread_safe_append_keys(**{_CORRELATION_KEY: correlation_id})
    else:
        logger.thread_safe_remove_keys([_CORRELATION_KEY])

    def unbind() -> None:
        if previous is None:
            logger.thread_safe_remove_keys([_CORRELATION_KEY])
        else:
            logger.thread_safe_append_keys(**{_CORRELATION_KEY: previous})
        _correlation_id.reset(token)

    return unbind


def invocation_correlation_id(candidate: Any, context: Any) -> str | None:
    """An invocation's correlation id: `candidate` (what the caller sent) if well-formed, else
    the Lambda request id, so every invocation's log lines carry one."""
    return valid_correlation_id(candidate) or valid_correlation_id(getattr(context, "aws_request_id", None))


@contextmanager
def correlation_scope(logger: Logger, correlation_id: str | None) -> Iterator[str | None]:
    """`bind_correlation_id` for the duration of a block (one record, one invocation)."""
    unbind = bind_correlation_id(logger, correlation_id)
    try:
        yield correlation_id
    finally:
        unbind()


# --------------------------------------------------------------------------- tracing

F = TypeVar("F", bound=Callable[..., Any])


def tracing_enabled() -> bool:
    """Powertools Tracer's own rule: on in a Lambda environment unless POWERTOOLS_TRACE_DISABLED.

    The stack sets POWERTOOLS_TRACE_DISABLED=true for target=local (LocalStack community has no
    X-Ray) and enables active tracing for target=aws.
    """
    if resolve_truthy_env_var_choice(env=os.environ.get("POWERTOOLS_TRACE_DISABLED", "false")):
        return False
    return bool(os.environ.get("LAMBDA_TASK_ROOT")) and not os.environ.get("AWS_SAM_LOCAL")


def traced(handler: F) -> F:
    """Powertools Tracer around a Lambda handler (one subsegment per invocation, cold start and
    service annotations, errors captured; responses are not, they can be large or personal).

    Where tracing is off, the handler is returned as it is and the X-Ray SDK is never imported:
    importing it costs ~150 ms (it builds a botocore X-Ray client for its sampler), which a
    function that cannot trace must not pay at every cold start.
    """
    if not tracing_enabled():
        return handler
    from aws_lambda_powertools import Tracer

    # Only botocore calls become subsegments: pg8000's X-Ray patch wraps pg8000.connect, which
    # the functions do not use (pg8000.native), and patching everything imports every library.
    tracer = Tracer(patch_modules=["botocore"])
    return tracer.capture_lambda_handler(handler, capture_response=False)  # type: ignore[return-value]
