"""Inventory Lambda entry points (thin): API, queue consumer, migrations.

- `api_handler`: API Gateway REST v1 proxy -> FastAPI app (app.py) via Mangum.
- `queue_handler`: SQS inventory queue. Powertools BatchProcessor with partial batch failures;
  each record `{orderId, productId, quantity}` goes through `service.process_queued_order`
  (Powertools idempotency keyed by orderId + the reservations primary key), which publishes
  `{orderId, status: CONFIRMED|REJECTED, reason}` to COMPLETION_QUEUE_URL. A failing record
  (database down, malformed body) is reported as a batch item failure: SQS redelivers it after
  the visibility timeout and moves it to the DLQ after maxReceiveCount.
- `migrate_handler`: applies migrations/ and seeds the catalogue on first run.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from functions.common.api import make_api_handler
from functions.common.observability import MetricUnit, get_logger, put_metric, record_cold_start
from functions.inventory import service
from functions.inventory.app import app

logger = get_logger(service.SERVICE)

api_handler = make_api_handler(app, service.SERVICE)


class QueuedOrder(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    orderId: str = Field(min_length=1, max_length=64)
    productId: str = Field(min_length=1, max_length=64)
    quantity: int = Field(ge=1, le=1000)


class PoisonMessage(ValueError):
    """A record that can never succeed; it fails until SQS moves it to the DLQ."""


def _record_handler(record: SQSRecord) -> dict[str, Any]:
    try:
        message = QueuedOrder.model_validate(json.loads(record.body))
    except (json.JSONDecodeError, ValidationError) as exc:
        logger.error("malformed inventory queue message", extra={"message_id": record.message_id, "error": str(exc)})
        raise PoisonMessage(str(exc)) from exc
    return service.process_queued_order(message=message.model_dump())


def queue_handler(event: dict, context: Any) -> dict:
    record_cold_start(service.SERVICE, context)
    service.register_lambda_context(context)
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response = process_partial_response(
        event=event, record_handler=_record_handler, processor=processor, context=context
    )
    failed = len(response.get("batchItemFailures", []))
    processed = len(event.get("Records", [])) - failed
    if processed:
        put_metric("QueueRecords", MetricUnit.Count, processed, service=service.SERVICE, outcome="processed")
    if failed:
        put_metric("QueueRecords", MetricUnit.Count, failed, service=service.SERVICE, outcome="failed")
        for exc_type, exc_value, _ in processor.exceptions:
            logger.warning("queue record failed", extra={"error_type": getattr(exc_type, "__name__", str(exc_type)),
                                                        "error": str(exc_value)})
    return response


def migrate_handler(event: Any = None, context: Any = None) -> dict:
    record_cold_start(service.SERVICE, context)
    return service.migrate()
