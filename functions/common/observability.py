"""Powertools logger, metrics, tracer and correlation id, shared by every function.

Metrics follow docs/ARCHITECTURE.md: namespace `Valerix` (POWERTOOLS_METRICS_NAMESPACE), the
`service` dimension always present, no high-cardinality dimensions. Each metric is emitted with
Powertools' `SingleMetric` so every data point carries exactly its own dimension set (one EMF line
each, written with a single write so concurrent threads cannot interleave inside it).

Every Lambda handler is decorated the same way (the order is Powertools' own recommendation):

    logger, metrics = get_logger(SERVICE), get_metrics(SERVICE)

    @traced                                               # X-Ray where tracing is on
    @logger.inject_lambda_context(log_event=False)        # function name, request id, cold_start
    @metrics.log_metrics(capture_cold_start_metric=True)  # `ColdStart`, once per environment
    def handler(event, context): ...
"""

from __future__ import annotations

import contextvars
import functools
import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import Metrics, MetricUnit
from aws_lambda_powertools.metrics.base import SingleMetric
from aws_lambda_powertools.metrics.functions import resolve_cold_start_function_name
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

from functions.common.settings import runtime

__all__ = [
    "CORRELATION_ID_PATTERN",
    "MetricUnit",
    "bind_correlation_id",
    "correlation_scope",
    "current_correlation_id",
    "get_logger",
    "get_metrics",
    "invocation_correlation_id",
    "namespace",
    "put_metric",
    "traced",
    "tracing_enabled",
    "valid_correlation_id",
]


def namespace() -> str:
    return runtime().metrics_namespace


@functools.cache
def get_logger(service: str) -> Logger:
    """One Powertools JSON logger per service name (cheap, no I/O)."""
    return Logger(service=service)


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
        # One write per line, unlike Powertools' own output (print: the text, then "\n"): queue
        # consumers handle records on several threads, and a log line written between the two
        # made both lines unreadable — for CloudWatch's EMF parser too.
        sys.stdout.write(document + "\n")
    except Exception:  # noqa: BLE001 - observability must not break business logic
        get_logger(service).warning("metric emission failed", extra={"metric": name}, exc_info=True)


class _WholeLineMetrics(AmazonCloudWatchEMFProvider):
    """Powertools Metrics whose two outputs go through `put_metric`'s single write.

    The functions emit every data point at once with `put_metric` (each its own dimension
    set), so this provider only runs `log_metrics`: it adds the `ColdStart` metric (dimensions
    `service`, `function_name`) after the first successful invocation of an environment, and
    flushes whatever was added with `add_metric`, if anything (no "no metrics" warning when
    nothing was: emitting nothing in between is the rule here, not a mistake).
    """

    def add_cold_start_metric(self, context: Any) -> None:
        function_name = resolve_cold_start_function_name(function_name=self.function_name, context=context)
        put_metric("ColdStart", MetricUnit.Count, 1, service=str(self.service), function_name=function_name)

    def flush_metrics(self, raise_on_empty_metrics: bool = False) -> None:
        if not self.metric_set and not raise_on_empty_metrics:
            return
        document = json.dumps(self.serialize_metric_set(), separators=(",", ":"))
        sys.stdout.write(document + "\n")
        self.clear_metrics()


@functools.cache
def get_metrics(service: str) -> Metrics:
    """The Powertools Metrics of `service` (for its handlers' `log_metrics` decorator)."""
    return Metrics(provider=_WholeLineMetrics(service=service, namespace=namespace()))


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
    """Whether the Powertools Tracer runs (`Runtime.tracing`, functions/common/settings.py)."""
    return runtime().tracing


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
    # Powertools types the wrapper loosely; it is functools.wraps of the handler, same signature.
    return cast(F, tracer.capture_lambda_handler(handler, capture_response=False))
