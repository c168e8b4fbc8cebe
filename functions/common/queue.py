"""SQS consumers, written once: Powertools partial batch failures + redelivery backoff.

A failed record is reported as a batch item failure, so SQS redelivers it (and moves it to
the DLQ after maxReceiveCount). A record that can never succeed (`PoisonMessage`: malformed,
or contradicting what is recorded) is not retried: it is sent to the queue's dead-letter queue
at once, with why, and deleted from the queue (see `_dead_letter`).

Left alone, a failed record's redelivery waits for the queue's whole visibility timeout (6x
the consumer timeout, i.e. minutes), which would keep a queued order waiting long after a
transient fault (database restarting, an idempotency record still "in progress"). So each
failed record's visibility is shortened to an exponential backoff on its receive count: 2, 4,
8, ... up to 60 s. This is SQS's own redelivery with visibility-timeout backoff; nothing
sleeps inside the function.

The records of one batch are processed concurrently (Powertools' AsyncBatchProcessor, each
record's synchronous handler on a worker thread): a record spends its time waiting on
DynamoDB, PostgreSQL and SQS, and one batch at a time is all an event-source poller gives a
function, so handling records one after another made a queue drain at the sum of their
round trips. Records are independent orders; nothing relies on their order within a batch
(a standard queue does not keep one anyway).

Each record is handled under its own correlation id (the `correlationId` message attribute,
else the SQS message id), bound on its worker thread for exactly that record: every log line
the record causes carries it, and a message the record produces passes it on
(docs/ARCHITECTURE.md, "Correlation id").
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache, lru_cache
from typing import Any, TypeVar

from aws_lambda_powertools.utilities.batch import AsyncBatchProcessor, EventType, async_process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import BaseModel, ValidationError

from functions.common import aws
from functions.common.contracts import CORRELATION_ID_ATTRIBUTE
from functions.common.observability import MetricUnit, correlation_scope, put_metric, valid_correlation_id

BACKOFF_BASE_SECONDS = 2
BACKOFF_MAX_SECONDS = 60
MAX_CONCURRENT_RECORDS = 10  # the largest batch size the stack configures
# What a record sent to the DLQ carries besides its own attributes (SQS allows 10 per message).
FAILURE_REASON_ATTRIBUTE = "failureReason"
SOURCE_QUEUE_ATTRIBUTE = "sourceQueueArn"
MAX_MESSAGE_ATTRIBUTES = 10
MAX_FAILURE_REASON_CHARS = 1000


@cache
def _record_workers() -> ThreadPoolExecutor:
    """One pool per execution environment, created on first use (never at import)."""
    return ThreadPoolExecutor(MAX_CONCURRENT_RECORDS, thread_name_prefix="queue-record")


class PoisonMessage(ValueError):
    """A record that can never succeed: retrying it only delays the DLQ alarm (the redelivery
    backoff made that ~30 s of failing receives), so it goes to the dead-letter queue at once."""


Message = TypeVar("Message", bound=BaseModel)


def parse_body(record: SQSRecord, model: type[Message], logger: Any) -> Message:
    try:
        return model.model_validate(json.loads(record.body))
    except (json.JSONDecodeError, ValidationError) as exc:
        logger.error("malformed queue message", extra={"message_id": record.message_id, "error": str(exc)})
        raise PoisonMessage(str(exc)) from exc


def record_correlation_id(record: SQSRecord) -> str:
    """The correlation id a record carries (its message attribute), else its SQS message id."""
    attribute = record.message_attributes[CORRELATION_ID_ATTRIBUTE]
    return valid_correlation_id(attribute.string_value if attribute is not None else None) or record.message_id


def _with_correlation_id(
    record_handler: Callable[[SQSRecord], Any], logger: Any, dead_lettered: list[str]
) -> Callable[[SQSRecord], Any]:
    """`record_handler` under the record's correlation id, bound and cleared around the record
    on the worker thread that runs it (pool threads are reused: nothing may linger). A poison
    record that reached the dead-letter queue counts as handled (SQS deletes it) and its id is
    appended to `dead_lettered`."""

    def handle(record: SQSRecord) -> Any:
        with correlation_scope(logger, record_correlation_id(record)):
            try:
                return record_handler(record)
            except PoisonMessage as exc:
                if not _dead_letter(record, exc, logger):
                    raise  # SQS's redrive policy moves it after maxReceiveCount instead
                dead_lettered.append(record.message_id)  # list.append: atomic across worker threads
                return None
            except Exception as exc:
                logger.warning(
                    "queue record failed",
                    extra={"message_id": record.message_id, "error_type": type(exc).__name__, "error": str(exc)},
                )
                raise

    return handle


def backoff_seconds(receive_count: int) -> int:
    # int(): typeshed types int ** int as Any (a negative exponent would make a float); ours is >= 1
    return min(BACKOFF_MAX_SECONDS, int(BACKOFF_BASE_SECONDS ** max(1, receive_count)))


@lru_cache(maxsize=16)
def _queue_url(queue_arn: str) -> str:
    _, _, _, _, account, name = queue_arn.split(":", 5)
    return str(aws.client("sqs").get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"])


@lru_cache(maxsize=16)
def _dead_letter_queue_url(queue_arn: str) -> str:
    """Where the queue's redrive policy sends failed messages: the same DLQ either way, and
    nothing to configure twice."""
    attributes = aws.client("sqs").get_queue_attributes(
        QueueUrl=_queue_url(queue_arn), AttributeNames=["RedrivePolicy"]
    )
    return _queue_url(json.loads(attributes["Attributes"]["RedrivePolicy"])["deadLetterTargetArn"])


def _message_attributes(record: SQSRecord) -> dict[str, dict[str, Any]]:
    """The record's message attributes as SendMessage takes them (the event spells them in
    camelCase, binary values base64-encoded)."""
    copied: dict[str, dict[str, Any]] = {}
    for name, value in (record.raw_event.get("messageAttributes") or {}).items():
        if value.get("stringValue") is not None:
            copied[name] = {"DataType": value["dataType"], "StringValue": value["stringValue"]}
        elif value.get("binaryValue") is not None:
            copied[name] = {"DataType": value["dataType"], "BinaryValue": base64.b64decode(value["binaryValue"])}
    return copied


def _dead_letter(record: SQSRecord, exc: PoisonMessage, logger: Any) -> bool:
    """Send `record` to its queue's dead-letter queue as it came (body, attributes, so the
    correlation id too), plus why it failed and where it came from (a redrive of a message SQS
    did not move itself needs the source named). False if that failed: the record then fails as
    any other, and SQS's redrive policy still moves it, later."""
    reason = f"{type(exc).__name__}: {exc}"[:MAX_FAILURE_REASON_CHARS]
    # ours take the last two of SQS's ten places (the producers here set one, the correlation id)
    attributes = dict(list(_message_attributes(record).items())[: MAX_MESSAGE_ATTRIBUTES - 2])
    attributes[FAILURE_REASON_ATTRIBUTE] = {"DataType": "String", "StringValue": reason}
    attributes[SOURCE_QUEUE_ATTRIBUTE] = {"DataType": "String", "StringValue": record.event_source_arn}
    try:
        aws.client("sqs").send_message(
            QueueUrl=_dead_letter_queue_url(record.event_source_arn),
            MessageBody=record.body,
            MessageAttributes=attributes,
        )
    except Exception as dead_letter_error:  # noqa: BLE001 -- any failure falls back to SQS's own redrive
        logger.warning(
            "could not send a poison record to the dead-letter queue; it fails until SQS moves it",
            extra={"message_id": record.message_id, "error": str(dead_letter_error)},
        )
        return False
    logger.warning(
        "poison record sent to the dead-letter queue (not retried)",
        extra={"message_id": record.message_id, "error": reason},
    )
    return True


def _back_off(records: list[dict[str, Any]], failed_ids: set[str], logger: Any) -> None:
    for record in records:
        if record.get("messageId") not in failed_ids:
            continue
        try:
            receive_count = int(record.get("attributes", {}).get("ApproximateReceiveCount", "1"))
            aws.client("sqs").change_message_visibility(
                QueueUrl=_queue_url(record["eventSourceARN"]),
                ReceiptHandle=record["receiptHandle"],
                VisibilityTimeout=backoff_seconds(receive_count),
            )
        except Exception as exc:  # noqa: BLE001 - the queue's own visibility timeout still applies
            logger.warning("could not shorten redelivery delay", extra={"error": str(exc)})


def process_batch(
    event: dict[str, Any], context: Any, record_handler: Callable[[SQSRecord], Any], service: str, logger: Any
) -> PartialItemFailureResponse:
    dead_lettered: list[str] = []
    handle = _with_correlation_id(record_handler, logger, dead_lettered)

    async def on_worker_thread(record: SQSRecord) -> Any:
        return await asyncio.get_running_loop().run_in_executor(_record_workers(), handle, record)

    processor = AsyncBatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response = async_process_partial_response(
        event=event, record_handler=on_worker_thread, processor=processor, context=context
    )
    failures = response.get("batchItemFailures", [])
    records = event.get("Records", [])
    processed = len(records) - len(failures) - len(dead_lettered)
    if processed:
        put_metric("QueueRecords", MetricUnit.Count, processed, service=service, outcome="processed")
    if dead_lettered:
        put_metric("QueueRecords", MetricUnit.Count, len(dead_lettered), service=service, outcome="dead_lettered")
    if failures:
        put_metric("QueueRecords", MetricUnit.Count, len(failures), service=service, outcome="failed")
        # An SQS failure is identified by its message id (a str; only Kafka's are dicts).
        failed_ids = {str(f["itemIdentifier"]) for f in failures}
        _back_off(records, failed_ids, logger)
    return response
