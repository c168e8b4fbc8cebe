"""Inventory Lambda entry points (thin): API, reserve, queue consumer, migrations.

- `api_handler`: API Gateway REST v1 proxy -> FastAPI app (app.py) via Mangum: products,
  admin, health. The reservation is not on the public API.
- `reserve_handler`: the internal reservation, invoked by the order API through the Lambda API
  (RequestResponse). Payload and answer: `functions.common.contracts` (`ReserveRequest` |
  `PingRequest` -> `ReservationAnswer` | `PingAnswer`); logic in `reserve_api.answer_command`.
  Obeys the gremlin; a gremlin crash is a real process exit (Invoke reports a FunctionError).
- `queue_handler`: SQS inventory queue. Powertools BatchProcessor with partial batch failures;
  each record `{orderId, productId, quantity}` goes through `service.process_queued_order`
  (Powertools idempotency keyed by orderId + the reservations primary key), which publishes
  `{orderId, status: CONFIRMED|REJECTED, reason}` to COMPLETION_QUEUE_URL. A failing record
  (database down) is reported as a batch item failure: SQS redelivers it after a backoff and
  moves it to the DLQ after maxReceiveCount. One that can never succeed (malformed body, a
  reservation conflicting with the one recorded for its orderId) goes to the DLQ at once
  (functions/common/queue.py).
- `migrate_handler`: applies migrations/ and seeds the catalogue on first run.

Every handler wears the same Powertools decorators (functions/common/observability.py: Tracer
where tracing is on, the Lambda context on every log line, `ColdStart` once) and logs under a
correlation id (docs/ARCHITECTURE.md): the reserve function's is the one the order
request sent in `correlationId`, the queue consumer's is each record's message attribute.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from functions.common.contracts import InventoryQueueMessage
from functions.common.lazy import lazy_attributes
from functions.common.observability import (
    correlation_scope,
    get_logger,
    get_metrics,
    invocation_correlation_id,
    traced,
)
from functions.inventory import service
from functions.inventory.model import ReservationConflict

if TYPE_CHECKING:
    from collections.abc import Callable

    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    # built on first lookup, by `__getattr__` below
    api_handler: Callable[[dict[str, Any], Any], dict[str, Any]]
    reserve_handler: Callable[[Any, Any], dict[str, Any]]
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
    from functions.inventory.app import app

    return traced(make_api_handler(app, service.SERVICE))


def _build_reserve_handler() -> Any:
    # The reservation's answers and the gremlin's injector (its pydantic models, ~20 ms) are the
    # reserve function's alone: the API is not wired to the gremlin (functions/common/db.py).
    from functions.inventory import reserve_api

    @traced
    @logger.inject_lambda_context(log_event=False)
    @metrics.log_metrics(capture_cold_start_metric=True)
    def reserve_handler(event: Any, context: Any) -> dict[str, Any]:
        sent = event.get("correlationId") if isinstance(event, dict) else None
        with correlation_scope(logger, invocation_correlation_id(sent, context)):
            return reserve_api.answer_command(event)

    return reserve_handler


# `api_handler` and `reserve_handler` are built when looked up (their function's INIT, so
# neither function's first request pays for it): the other functions never import FastAPI,
# the API never imports the reservation path (functions/common/lazy.py).
# The SQS batch utilities (functions/common/queue.py, ~0.1 s) load with the first batch.
__getattr__ = lazy_attributes(
    globals(),
    api_handler=_build_api_handler,
    reserve_handler=_build_reserve_handler,
    PoisonMessage=_poison_message,
)


__all__ = ["PoisonMessage", "api_handler", "migrate_handler", "queue_handler", "reserve_handler"]


def _record_handler(record: SQSRecord) -> dict[str, Any]:
    from functions.common.queue import PoisonMessage, parse_body

    message = parse_body(record, InventoryQueueMessage, logger)
    try:
        return service.process_queued_order(message=message.model_dump())
    except ReservationConflict as exc:
        # No delivery can ever succeed: the order id holds another reservation for good.
        raise PoisonMessage(str(exc)) from exc


@traced
@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def queue_handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    service.register_lambda_context(context)
    from functions.common.queue import process_batch

    return process_batch(event, context, _record_handler, service.SERVICE, logger)


@traced
@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def migrate_handler(event: Any, context: Any) -> dict[str, Any]:
    return service.migrate()
