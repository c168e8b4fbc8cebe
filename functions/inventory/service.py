"""Inventory logic: products, and the one reservation function behind both entry points.

`reserve()` is what the internal reserve function (`InventoryReserve`, invoked by Order through
the Lambda API; see `answer_command`) and the inventory queue consumer (async path) both call.
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
"""

from __future__ import annotations

import dataclasses
import functools
import json
import threading
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from functions.common import aws
from functions.common.contracts import (
    CONFLICT,
    ERROR,
    INVALID,
    CompletionMessage,
    PingAnswer,
    PingRequest,
    ReservationAnswer,
    ReserveRequest,
    correlation_attributes,
    parse_inventory_command,
)
from functions.common.db import DatabaseUnavailable
from functions.common.migrations import migrate_database
from functions.common.observability import MetricUnit, current_correlation_id, get_logger, put_metric
from functions.common.settings import get_settings
from functions.gremlin import injector as gremlin
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


class ReservationConflict(Exception):
    """The order id already holds a reservation for another product or quantity."""

    def __init__(self, order_id: str, existing: dict[str, Any], product_id: str, quantity: int) -> None:
        self.order_id = order_id
        self.existing = existing
        if existing["status"] == RESERVED:
            recorded = f"already reserved {existing['quantity']} of '{existing['productId']}'"
        else:
            recorded = (f"was already refused {existing['quantity']} of '{existing['productId']}' "
                        f"({existing['reason']})")
        super().__init__(
            f"order '{order_id}' {recorded}; a replay asking for {quantity} of '{product_id}' "
            "is refused and changes nothing"
        )


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
                if existing["productId"] != product_id or existing["quantity"] != quantity:
                    raise ReservationConflict(order_id, existing, product_id, quantity)
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


# ----------------------------------------------------------------------------- sync path (Invoke)


def answer_command(payload: Any) -> dict[str, Any]:
    """The reserve function: validate the Invoke payload, then reserve (obeying the gremlin) or
    answer a ping. Always a structured answer; only a gremlin crash (a real process exit, which
    Invoke reports as a FunctionError) or a bug leaves without one."""
    try:
        command = parse_inventory_command(payload)
    except ValidationError as exc:
        message = "invalid reservation request: " + _describe(exc)
        logger.warning("invalid reserve command", extra={"error": message})
        answer = ReservationAnswer(statusCode=422, status=INVALID, message=message)
        _count(answer)
        return answer.model_dump(exclude_none=True)
    if isinstance(command, PingRequest):
        return ping().model_dump(exclude_none=True)
    answer = answer_reservation(command)
    _count(answer)
    return answer.model_dump(exclude_none=True)


def answer_reservation(request: ReserveRequest) -> ReservationAnswer:
    """The synchronous reservation, with the gremlin around it exactly as on the former HTTP
    route: latency / error / crash before the transaction, crash after the commit."""
    injector = gremlin.injector()
    fields = {"orderId": request.orderId, "productId": request.productId, "quantity": request.quantity}
    try:
        injector.before_reservation()  # latency / error / crash before-commit
        outcome = reserve(request.orderId, request.productId, request.quantity)
        injector.after_commit()  # crash after-commit: the "Schroedinger" case
    except gremlin.InjectedError as exc:
        return ReservationAnswer(statusCode=exc.status_code, status=ERROR, message=exc.message, **fields)
    except ReservationConflict as exc:
        logger.warning("conflicting reservation replay refused", extra={"order_id": request.orderId,
                                                                       "error": str(exc)})
        return ReservationAnswer(statusCode=409, status=CONFLICT, reason="reservation conflict",
                                 message=str(exc), **fields)
    except DatabaseUnavailable as exc:
        logger.warning("reservation failed: database unavailable", extra={"error": str(exc)})
        return ReservationAnswer(statusCode=503, status=ERROR, message="inventory database unavailable",
                                 **fields)
    if outcome.replay:
        put_metric("IdempotentReplays", MetricUnit.Count, 1, service=SERVICE, source="invoke")
        status_code = 200 if outcome.reserved else 409
    else:
        status_code = 201 if outcome.reserved else 409
    return ReservationAnswer(statusCode=status_code, replay=outcome.replay, **outcome.body())


def ping() -> PingAnswer:
    """Order's health probe of the internal path: this function runs and reaches its database."""
    try:
        repository.database().ping()
    except Exception as exc:  # noqa: BLE001 - the detail goes to the log, not to the caller
        logger.warning("ping: database unreachable", extra={"error": str(exc)})
        return PingAnswer(status="DOWN", reason="database unreachable")
    return PingAnswer(status="UP")


def _count(answer: ReservationAnswer) -> None:
    put_metric("ReservationRequests", MetricUnit.Count, 1, service=SERVICE, outcome=answer.status.lower())


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc_parts = [str(p) for p in err.get("loc", ())]
        if loc_parts and loc_parts[0] in ("reserve", "ping"):  # the union's tag, not a field
            loc_parts = loc_parts[1:]
        loc = ".".join(loc_parts)
        if err.get("type") == "extra_forbidden":
            parts.append(f"{loc}: unknown field is not allowed")
        else:
            parts.append(f"{loc or 'payload'}: {err.get('msg', 'invalid value')}")
    return "; ".join(parts)


# ----------------------------------------------------------------------------- queue path


_executed = threading.local()


def _process_queued_order(message: dict[str, Any]) -> dict[str, Any]:
    """Reserve, then publish the outcome to the completion queue. Wrapped by Powertools idempotency."""
    _executed.ran = True
    try:
        outcome = reserve(message["orderId"], message["productId"], message["quantity"])
    except ReservationConflict as exc:
        # Not confirmed, not rejected on a guess: the record fails, SQS retries it and moves it
        # to the DLQ (alarm); the order stays QUEUED and no stock moves for it.
        logger.error("queued order conflicts with the recorded reservation; failing the record",
                     extra={"order_id": exc.order_id, "error": str(exc)})
        raise
    completion = CompletionMessage(
        orderId=outcome.order_id,
        status="CONFIRMED" if outcome.reserved else "REJECTED",
        reason=outcome.reason,
    ).model_dump()
    aws.client("sqs").send_message(
        QueueUrl=get_settings().completion_queue_url, MessageBody=json.dumps(completion),
        # the queued order's id (bound per record by functions.common.queue) goes on to order
        MessageAttributes=correlation_attributes(current_correlation_id()),
    )
    logger.info("completion published", extra={**completion, "replay": outcome.replay})
    if outcome.replay:
        put_metric("IdempotentReplays", MetricUnit.Count, 1, service=SERVICE, source="queue")
    return completion


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
        _process_queued_order, data_keyword_argument="message",
        persistence_store=persistence, config=config,
    )
    return config, function


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
