"""Order Lambda entry points (thin): API, completion consumer, migrations.

- `api_handler`: API Gateway REST v1 proxy -> FastAPI app (app.py) via Mangum.
- `completion_handler`: SQS order-completion queue, `{orderId, status: CONFIRMED|REJECTED,
  reason}` per record. Powertools BatchProcessor with partial batch failures; applying a
  completion is idempotent (conditional UPDATE from PENDING/QUEUED only), so duplicates and
  late messages never flip a final state. A failing record (database down) is
  retried by SQS and ends in the DLQ after maxReceiveCount; a malformed one goes there at once.
- `migrate_handler`: applies migrations/ (returns {"applied": [...], "seeded": false}).
- `sweeper_handler` (optional, e.g. an EventBridge rule every minute): re-queues orders left
  PENDING for over a minute by an invocation that died mid-request.

Every handler wears the same Powertools decorators (functions/common/observability.py: Tracer
where tracing is on, the Lambda context on every log line, `ColdStart` once) and logs under a
correlation id (docs/ARCHITECTURE.md): the API's from the request, the completion
consumer's per record from the message, the sweeper's its own invocation's (the orders it
re-queues carry that id on to inventory).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from functions.common import aws
from functions.common.contracts import CompletionMessage
from functions.common.lazy import lazy_attributes
from functions.common.observability import (
    correlation_scope,
    get_logger,
    get_metrics,
    invocation_correlation_id,
    traced,
)
from functions.common.settings import get_settings, runtime
from functions.order import inventory_client, service

if TYPE_CHECKING:
    from collections.abc import Callable

    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    # built on first lookup, by `__getattr__` below
    api_handler: Callable[[dict[str, Any], Any], dict[str, Any]]
    PoisonMessage: type[Exception]

logger = get_logger(service.SERVICE)
metrics = get_metrics(service.SERVICE)


def _poison_message() -> type:
    from functions.common.queue import PoisonMessage

    return PoisonMessage


def _build_api_handler() -> Any:
    from functions.common.fastapi_import import import_fastapi

    import_fastapi()  # first: without building its OpenAPI models
    from functions.common.api import make_api_handler
    from functions.order.app import app

    return traced(make_api_handler(app, service.SERVICE))


# `api_handler` is built when looked up (the API function's INIT): this module's other
# functions never import FastAPI (functions/common/lazy.py).
# The SQS batch utilities (functions/common/queue.py, ~0.1 s) load with the first batch.
__getattr__ = lazy_attributes(globals(), api_handler=_build_api_handler, PoisonMessage=_poison_message)


def _prewarm() -> None:
    """Best effort, in a Lambda environment only: build the boto3 clients of the hot path during
    INIT (no network: this loads botocore's service models), so the first order's 2 s budget is
    not spent on it."""
    # Only the order API has a budget to protect (INVENTORY_RESERVE_FUNCTION is its variable);
    # the completion, sweeper and migrate functions build their clients when they need them.
    try:
        if runtime().function_name is None or not get_settings().calls_inventory:
            return
        aws.client("sqs")
        aws.fast_client("dynamodb")
        inventory_client.get_client()
    except Exception:  # noqa: BLE001 -- e.g. no region configured: created on first use instead
        return


_prewarm()


__all__ = ["PoisonMessage", "api_handler", "completion_handler", "migrate_handler", "sweeper_handler"]


def _record_handler(record: SQSRecord) -> str:
    from functions.common.queue import parse_body

    completion = parse_body(record, CompletionMessage, logger)
    return service.apply_completion(completion.orderId, completion.status, completion.reason)


@traced
@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def completion_handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    from functions.common.queue import process_batch

    return process_batch(event, context, _record_handler, service.SERVICE, logger)


@traced
@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def migrate_handler(event: Any, context: Any) -> dict[str, Any]:
    return service.migrate()


@traced
@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def sweeper_handler(event: Any, context: Any) -> dict[str, Any]:
    older_than = int((event or {}).get("olderThanSeconds", 60)) if isinstance(event, dict) else 60
    with correlation_scope(logger, invocation_correlation_id(None, context)):
        return service.requeue_stale_pending(older_than_seconds=older_than)
