"""Inventory logic: products, and the one reservation function behind both entry points.

`reserve()` is what the internal reserve function (`InventoryReserve`, invoked by Order through
the Lambda API; its adapter is reserve_api.py) and the inventory queue consumer (async path)
both call. It speaks no HTTP: it returns a `model.Reservation` or raises the exceptions of
model.py, DeadlineExceeded or DatabaseUnavailable.
Exactly-once per order id:

    BEGIN
      INSERT INTO reservations (order_id, ...) ON CONFLICT DO NOTHING      -- the guard
      -- already there, same product and quantity?  -> return the recorded outcome (a replay)
      -- already there, another product or quantity? -> ReservationConflict, nothing changes
      UPDATE products SET stock = stock - q WHERE product_id = p AND stock >= q
      -- no row?  -> insufficient stock: the reservation row records REJECTED
      --             unknown product: ROLLBACK, nothing is recorded (see below)
    COMMIT

Decisions:
- A refusal for insufficient stock is recorded, so any replay of that order id (a late queued
  copy of a sync call that timed out, a duplicate delivery) gets the same refusal even if stock
  was added meanwhile: one order id, one outcome.
- A replay must be the same reservation: an order id that already holds a reservation for
  another product or quantity is refused with a conflict naming the recorded one (409 on the
  sync path; on the queue path the record fails, is retried and ends in the DLQ, whose alarm
  calls a human: nothing is confirmed or rejected on a guess).
- An unknown product is bad input: nothing is stored in inventory_db (no stock row to guard),
  the caller gets the refusal, and a replay re-evaluates.
- A deadline (the sync path's caller's, issue 17 item 2) bounds the transaction: with less than
  MIN_RESERVATION_SECONDS left nothing is started, every statement is cut at the deadline and a
  transaction still open at the deadline is rolled back, not committed (functions/common/db.py).
  Either way DeadlineExceeded, nothing written: the caller, who has stopped waiting, queues the
  order and the queue path reserves it once. The queue path has no deadline: nobody waits for
  it, and a consumer killed at its own timeout leaves an uncommitted transaction, which
  Postgres rolls back with the connection.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any

from functions.common import aws
from functions.common.contracts import (
    CompletionMessage,
    InventoryQueueMessage,
    PingAnswer,
    ReservationStatus,
    correlation_attributes,
)
from functions.common.deadline import Deadline
from functions.common.errors import DeadlineExceeded
from functions.common.migrations import migrate_database
from functions.common.observability import MetricUnit, current_correlation_id, get_logger, put_metric
from functions.common.settings import get_settings
from functions.inventory import repository
from functions.inventory.model import ProductNotFound, Reservation, ReservationConflict

SERVICE = "inventory"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

RESERVED, REJECTED = ReservationStatus.RESERVED, ReservationStatus.REJECTED
INSUFFICIENT_STOCK = "insufficient stock"
UNKNOWN_PRODUCT = "unknown product"
# Less than this left of the caller's budget, a reservation is not started: a few statements on
# a warm connection take milliseconds, a fresh connection (login, TLS on AWS) tens of them.
MIN_RESERVATION_SECONDS = 0.1

logger = get_logger(SERVICE)


class _UnknownProduct(Exception):
    """Internal: roll the claim back, nothing is recorded for an unknown product."""


# ----------------------------------------------------------------------------- reservations


def reserve(order_id: str, product_id: str, quantity: int, deadline: Deadline | None = None) -> Reservation:
    """Reserve `quantity` of `product_id` for `order_id`, at most once per order id, and by
    `deadline` or not at all (DeadlineExceeded, nothing written)."""
    if deadline is not None and deadline.remaining() < MIN_RESERVATION_SECONDS:
        raise DeadlineExceeded(
            f"not started: {max(0, deadline.remaining_ms())} ms of the caller's budget left, "
            f"a reservation needs at least {int(MIN_RESERVATION_SECONDS * 1000)} ms"
        )
    try:
        with repository.database().transaction(deadline) as conn:
            if not repository.claim_reservation(conn, order_id, product_id, quantity):
                existing = repository.get_reservation(conn, order_id)
                if existing is None:  # pragma: no cover - the row was committed by the winner
                    raise RuntimeError(f"reservation for {order_id} vanished")
                if existing.product_id != product_id or existing.quantity != quantity:
                    raise ReservationConflict(existing, product_id, quantity)
                return existing
            remaining = repository.take_stock(conn, product_id, quantity)
            if remaining is not None:
                logger.info(
                    "stock reserved",
                    extra={
                        "order_id": order_id,
                        "product_id": product_id,
                        "quantity": quantity,
                        "remaining": remaining,
                    },
                )
                return Reservation(order_id, product_id, quantity, RESERVED)
            if not repository.product_exists(conn, product_id):
                raise _UnknownProduct()
            repository.reject_reservation(conn, order_id, INSUFFICIENT_STOCK)
            logger.info(
                "reservation refused",
                extra={
                    "order_id": order_id,
                    "product_id": product_id,
                    "quantity": quantity,
                    "reason": INSUFFICIENT_STOCK,
                },
            )
            return Reservation(order_id, product_id, quantity, REJECTED, INSUFFICIENT_STOCK)
    except _UnknownProduct:
        logger.info(
            "reservation refused", extra={"order_id": order_id, "product_id": product_id, "reason": UNKNOWN_PRODUCT}
        )
        return Reservation(order_id, product_id, quantity, REJECTED, UNKNOWN_PRODUCT)


def ping() -> PingAnswer:
    """Order's health probe of the internal path: this function runs and reaches its database."""
    try:
        repository.database().ping()
    except Exception as exc:  # noqa: BLE001 -- the detail goes to the log, not to the caller
        logger.warning("ping: database unreachable", extra={"error": str(exc)})
        return PingAnswer(status="DOWN", reason="database unreachable")
    return PingAnswer(status="UP")


# ----------------------------------------------------------------------------- queue path


_executed = threading.local()


def _process_queued_order(message: dict[str, Any]) -> dict[str, Any]:
    """Reserve, then publish the outcome to the completion queue. Wrapped by Powertools idempotency."""
    _executed.ran = True
    queued = InventoryQueueMessage.model_validate(message)
    try:
        outcome = reserve(queued.orderId, queued.productId, queued.quantity)
    except ReservationConflict as exc:
        # Not confirmed, not rejected on a guess: the record goes to the DLQ (the handler's
        # PoisonMessage; alarm); the order stays QUEUED and no stock moves for it.
        logger.error(
            "queued order conflicts with the recorded reservation; the record goes to the DLQ",
            extra={"order_id": exc.order_id, "error": str(exc)},
        )
        raise
    completion = CompletionMessage(orderId=outcome.order_id, status=outcome.status, reason=outcome.reason)
    aws.client("sqs").send_message(
        QueueUrl=get_settings().completion_queue_url,
        MessageBody=completion.model_dump_json(),
        # the queued order's id (bound per record by functions.common.queue) goes on to order
        MessageAttributes=correlation_attributes(current_correlation_id()),
    )
    published = completion.model_dump(mode="json")
    logger.info("completion published", extra={**published, "replay": outcome.replay})
    if outcome.replay:
        put_metric("IdempotentReplays", MetricUnit.Count, 1, service=SERVICE, source="queue")
    return published


@functools.cache
def _idempotency() -> tuple[Any, Any]:
    """(IdempotencyConfig, idempotent process function); built on first use, not at import."""
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )

    persistence = DynamoDBPersistenceLayer(
        table_name=get_settings().idempotency_table,
        boto3_client=aws.single_attempt_client("dynamodb"),
    )
    config = IdempotencyConfig(
        event_key_jmespath="orderId",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=24 * 3600,
    )
    function = idempotent_function(
        _process_queued_order,
        data_keyword_argument="message",
        persistence_store=persistence,
        config=config,
    )
    return config, function


def register_lambda_context(context: Any) -> None:
    config, _ = _idempotency()
    if context is not None:
        config.register_lambda_context(context)


def process_queued_order(message: dict[str, Any]) -> dict[str, Any]:
    """The queue path: idempotent by orderId (DynamoDB), exactly-once stock by the DB constraint.
    `message`: an `InventoryQueueMessage` as a dict (the idempotency key is its orderId)."""
    _, function = _idempotency()
    _executed.ran = False
    result: dict[str, Any] = function(message=message)
    if not getattr(_executed, "ran", False):
        put_metric("IdempotentReplays", MetricUnit.Count, 1, service=SERVICE, source="queue")
        logger.info("duplicate queued order skipped (idempotency record)", extra={"order_id": message["orderId"]})
    return result


# ----------------------------------------------------------------------------- products


def list_products() -> list[dict[str, Any]]:
    with repository.database().transaction() as conn:
        return repository.list_products(conn)


def get_product(product_id: str) -> dict[str, Any]:
    with repository.database().transaction() as conn:
        product = repository.get_product(conn, product_id)
    if product is None:
        raise ProductNotFound(product_id)
    return product


def upsert_product(product_id: str, name: str | None, stock: int) -> tuple[dict[str, Any], bool]:
    with repository.database().transaction() as conn:
        product, created = repository.upsert_product(conn, product_id, name, stock)
    logger.info("product upserted", extra={"product_id": product_id, "stock": stock, "product_created": created})
    return product, created


def migrate() -> dict[str, Any]:
    """Roles (as master), migrations and grants (as the owner): functions/common/roles.py."""
    result = migrate_database(MIGRATIONS_DIR, repository.APP_PRIVILEGES, settings=get_settings())
    logger.info("migrations", extra=result)
    return result
