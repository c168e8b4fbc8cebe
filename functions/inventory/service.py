"""Inventory logic: products, and the one reservation function behind both entry points.

`reserve()` is what `POST /inventory/reservations` (sync path) and the inventory queue consumer
(async path) both call. Exactly-once per order id:

    BEGIN
      INSERT INTO reservations (order_id, ...) ON CONFLICT DO NOTHING      -- the guard
      -- already there?  -> return the recorded outcome (a replay), nothing else changes
      UPDATE products SET stock = stock - q WHERE product_id = p AND stock >= q
      -- no row?  -> insufficient stock: the reservation row records REJECTED
      --             unknown product: ROLLBACK, nothing is recorded (see below)
    COMMIT

Decisions:
- A refusal for insufficient stock is recorded, so any replay of that order id (a late queued
  copy of a sync call that timed out, a duplicate delivery) gets the same refusal even if stock
  was added meanwhile: one order id, one outcome.
- An unknown product is bad input: nothing is stored in inventory_db (no stock row to guard),
  the caller gets the refusal, and a replay re-evaluates.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path
from typing import Any

from functions.common import aws
from functions.common.migrations import migrate_database
from functions.common.observability import MetricUnit, get_logger, put_metric
from functions.common.settings import get_settings
from functions.inventory import repository

SERVICE = "inventory"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

RESERVED = "RESERVED"
REJECTED = "REJECTED"
INSUFFICIENT_STOCK = "insufficient stock"
UNKNOWN_PRODUCT = "unknown product"

logger = get_logger(SERVICE)


class ProductNotFound(LookupError):
    pass


@dataclasses.dataclass(frozen=True)
class ReservationOutcome:
    order_id: str
    product_id: str
    quantity: int
    status: str  # RESERVED | REJECTED
    reason: str | None = None
    replay: bool = False

    @property
    def reserved(self) -> bool:
        return self.status == RESERVED

    def body(self) -> dict[str, Any]:
        """The reply body; identical for the first answer and every replay."""
        body: dict[str, Any] = {
            "orderId": self.order_id,
            "productId": self.product_id,
            "quantity": self.quantity,
            "status": self.status,
        }
        if not self.reserved:
            body["reason"] = self.reason
            body["message"] = f"reservation refused: {self.reason} for product '{self.product_id}'"
        return body


class _UnknownProduct(Exception):
    """Internal: roll the claim back, nothing is recorded for an unknown product."""


# ----------------------------------------------------------------------------- reservations


def reserve(order_id: str, product_id: str, quantity: int) -> ReservationOutcome:
    """Reserve `quantity` of `product_id` for `order_id`, at most once per order id."""
    db = repository.database()
    try:
        with db.transaction() as conn:
            if not repository.claim_reservation(conn, order_id, product_id, quantity):
                existing = repository.get_reservation(conn, order_id)
                if existing is None:  # pragma: no cover - the row was committed by the winner
                    raise RuntimeError(f"reservation for {order_id} vanished")
                return ReservationOutcome(
                    order_id=existing["orderId"], product_id=existing["productId"],
                    quantity=existing["quantity"], status=existing["status"],
                    reason=existing["reason"], replay=True,
                )
            remaining = repository.take_stock(conn, product_id, quantity)
            if remaining is not None:
                outcome = ReservationOutcome(order_id, product_id, quantity, RESERVED)
                logger.info("stock reserved", extra={"order_id": order_id, "product_id": product_id,
                                                     "quantity": quantity, "remaining": remaining})
                return outcome
            if not repository.product_exists(conn, product_id):
                raise _UnknownProduct()
            repository.reject_reservation(conn, order_id, INSUFFICIENT_STOCK)
            logger.info("reservation refused", extra={"order_id": order_id, "product_id": product_id,
                                                      "quantity": quantity, "reason": INSUFFICIENT_STOCK})
            return ReservationOutcome(order_id, product_id, quantity, REJECTED, INSUFFICIENT_STOCK)
    except _UnknownProduct:
        logger.info("reservation refused", extra={"order_id": order_id, "product_id": product_id,
                                                  "reason": UNKNOWN_PRODUCT})
        return ReservationOutcome(order_id, product_id, quantity, REJECTED, UNKNOWN_PRODUCT)


# ----------------------------------------------------------------------------- queue path


_executed = threading.local()


def _process_queued_order(message: dict[str, Any]) -> dict[str, Any]:
    """Reserve, then publish the outcome to the completion queue. Wrapped by Powertools idempotency."""
    _executed.ran = True
    outcome = reserve(message["orderId"], message["productId"], message["quantity"])
    completion = {
        "orderId": outcome.order_id,
        "status": "CONFIRMED" if outcome.reserved else "REJECTED",
        "reason": outcome.reason,
    }
    aws.client("sqs").send_message(
        QueueUrl=get_settings().completion_queue_url, MessageBody=json.dumps(completion)
    )
    logger.info("completion published", extra={**completion, "replay": outcome.replay})
    if outcome.replay:
        put_metric("IdempotentReplays", MetricUnit.Count, 1, service=SERVICE, source="queue")
    return completion


_idempotent: tuple[Any, Any] | None = None
_idempotent_lock = threading.Lock()


def _idempotency() -> tuple[Any, Any]:
    """(IdempotencyConfig, idempotent process function); built on first use, not at import."""
    global _idempotent
    if _idempotent is None:
        with _idempotent_lock:
            if _idempotent is None:
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
                    _process_queued_order, data_keyword_argument="message",
                    persistence_store=persistence, config=config,
                )
                _idempotent = (config, function)
    return _idempotent


def register_lambda_context(context: Any) -> None:
    config, _ = _idempotency()
    if context is not None:
        config.register_lambda_context(context)


def process_queued_order(message: dict[str, Any]) -> dict[str, Any]:
    """The queue path: idempotent by orderId (DynamoDB), exactly-once stock by the DB constraint."""
    _, function = _idempotency()
    _executed.ran = False
    result = function(message=message)
    if not getattr(_executed, "ran", False):
        put_metric("IdempotentReplays", MetricUnit.Count, 1, service=SERVICE, source="queue")
        logger.info("duplicate queued order skipped (idempotency record)", extra={"order_id": message["orderId"]})
    return result


def reset_caches() -> None:
    global _idempotent
    with _idempotent_lock:
        _idempotent = None


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
