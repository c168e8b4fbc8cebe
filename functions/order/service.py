"""Order logic. Every order state change goes through `transition_order` (and the one deletion,
of an order for an unknown product, through `_discard_pending_order`).

States and transitions: functions/order/model.py (conditional UPDATEs, so a late or duplicate
message never flips a final state). This module speaks no HTTP: it returns `OrderResult`s and
raises the exceptions of model.py; app.py turns both into answers (CONFIRMED 201, QUEUED 202,
REJECTED 409, ...).

The order row is written (PENDING) before inventory is called, so a Lambda that dies mid-call
leaves a trace. An order for an unknown product is bad input: the client gets 409 REJECTED
(`reason: unknown product`) and nothing is kept in either database.

"503 means nothing happened": once the PENDING row is committed the order has a guaranteed
outcome, so every later failure (the queue cannot take the message, the order database fails
while recording the outcome) answers 202 QUEUED with a reason saying the order will be
completed automatically: the row stays PENDING and the sweeper hands it to the queue (a
reservation that did commit is replayed, never taken twice). A 503 is only ever answered when
nothing was stored (the order database is down before the row is written), so a client that
retries after a 503 never buys twice; with an `Idempotency-Key` any retry is safe.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.circuit_breaker import CircuitBreakerOpenError

from functions.common import aws
from functions.common.contracts import InventoryQueueMessage, ReservationStatus, correlation_attributes
from functions.common.deadline import Deadline
from functions.common.migrations import migrate_database
from functions.common.observability import MetricUnit, current_correlation_id, get_logger, put_metric
from functions.common.settings import get_settings
from functions.order import inventory_client, repository
from functions.order.model import (
    ALLOWED_FROM,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    Order,
    OrderNotFound,
    OrderStatus,
    OrderVanished,
    QueueUnavailable,
)

SERVICE = "order"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

PENDING, QUEUED, CONFIRMED, REJECTED = (
    OrderStatus.PENDING,
    OrderStatus.QUEUED,
    OrderStatus.CONFIRMED,
    OrderStatus.REJECTED,
)
UNKNOWN_PRODUCT = "unknown product"
FALLBACK_RESERVE = 0.1  # seconds of the budget kept for queueing the order after a timeout

QUEUED_REASONS = {
    "timeout": "inventory timeout",
    "connection_error": "inventory unreachable",
    "server_error": "inventory error",
    "circuit_open": "circuit open",
}

# Reasons of the QUEUED answer for an order that is stored but whose next step could not be
# recorded now.
QUEUE_DEFERRED = "queue unavailable: the order is stored and will be queued automatically"
RECORD_DEFERRED = "outcome not recorded yet: the order is stored and will be completed automatically"

logger = get_logger(SERVICE)


@dataclasses.dataclass(frozen=True)
class OrderResult:
    """What POST /orders decided: the order as the answer shows it, and whether it is a replay
    of an earlier request with the same Idempotency-Key."""

    order: Order
    replay: bool = False


# ----------------------------------------------------------------------------- state changes


def transition_order(order_id: str, to_status: OrderStatus, reason: str | None = None) -> tuple[bool, Order | None]:
    """The only way an order changes state. Returns (changed, current order or None if unknown)."""
    with repository.database().transaction() as conn:
        current = repository.update_status(conn, order_id, to_status, reason, ALLOWED_FROM[to_status])
        changed = current is not None
        if not changed:
            current = repository.get_order(conn, order_id)
    if changed:
        logger.info("order transition", extra={"order_id": order_id, "to_status": to_status.value, "reason": reason})
    else:
        logger.info(
            "order transition skipped",
            extra={
                "order_id": order_id,
                "to_status": to_status.value,
                "current_status": current.status.value if current else None,
            },
        )
    return changed, current


def _discard_pending_order(order_id: str) -> None:
    """Unknown product: the order never becomes a record (bad input leaves the database unchanged)."""
    with repository.database().transaction() as conn:
        repository.delete_pending(conn, order_id)
    logger.info("order discarded (unknown product)", extra={"order_id": order_id})


# ----------------------------------------------------------------------------- POST /orders


def call_deadline(budget: float, waited: float = 0.0, monotonic_now: float | None = None) -> float:
    """The time.monotonic() instant by which the inventory call must be over.

    The budget runs from when the request was received: `waited` (seconds before this function
    saw it: API Gateway queueing, a cold start; see api.gateway_wait_seconds), client setup and
    the order insert all come out of it, and FALLBACK_RESERVE is kept for the queue fallback, so
    a caller whose inventory call timed out has its QUEUED answer within about the budget of
    sending the request. Inventory is told this deadline (inventory_client.reserve) and does
    not commit after it.
    """
    monotonic_now = time.monotonic() if monotonic_now is None else monotonic_now
    return monotonic_now - waited + budget - FALLBACK_RESERVE


def place_order(product_id: str, quantity: int, idempotency_key: str | None = None, waited: float = 0.0) -> OrderResult:
    """Store the order (PENDING), then reserve or queue it. Raises IdempotencyKeyReused /
    IdempotencyKeyInUse for a key that names another order, DatabaseUnavailable when the order
    could not be stored (nothing happened)."""
    settings = get_settings()
    deadline = Deadline(call_deadline(settings.inventory_call_budget_seconds, waited))
    client = inventory_client.get_client()
    aws.client("sqs")  # created before the call, so the fallback path is fast
    order_id = str(uuid.uuid4())
    existing: Order | None = None
    with repository.database().transaction() as conn:
        order = repository.insert_order(conn, order_id, product_id, quantity, PENDING, idempotency_key)
        if order is None:
            existing = repository.get_order_by_idempotency_key(conn, idempotency_key or "")
    if order is None:
        return _replay(existing, product_id, quantity)

    # From here on the order is durable: whatever fails, it gets an outcome (see module doc).
    try:
        return _decide(order, client, deadline)
    except Exception:  # the PENDING row stays; the sweeper completes it
        logger.exception(
            "could not record the order's next step; the sweeper will complete it", extra={"order_id": order_id}
        )
        return _deferred(order, RECORD_DEFERRED)


def _decide(order: Order, client: inventory_client.InventoryClient, deadline: Deadline) -> OrderResult:
    order_id = order.order_id
    started = time.perf_counter()
    fallback: str | None = None
    reply: inventory_client.InventoryReply | None = None
    try:
        reply = client.reserve(
            order_id, order.product_id, order.quantity, deadline, correlation_id=current_correlation_id()
        )
    except inventory_client.InventoryUnavailable as exc:
        fallback = exc.kind
        logger.warning(
            "inventory call failed; queueing the order",
            extra={"order_id": order_id, "kind": exc.kind, "detail": exc.detail},
        )
    except CircuitBreakerOpenError:
        fallback = "circuit_open"
        logger.info("circuit open; queueing the order without calling inventory", extra={"order_id": order_id})
    except Exception:  # any other failure must not lose the order
        fallback = "server_error"
        logger.exception("unexpected error calling inventory; queueing the order", extra={"order_id": order_id})
    elapsed_ms = round((time.perf_counter() - started) * 1000.0, 3)

    if reply is not None:
        put_metric(
            "InventoryCallDuration",
            MetricUnit.Milliseconds,
            elapsed_ms,
            service=SERVICE,
            outcome="reserved" if reply.reserved else "rejected",
        )
        if not reply.reserved and reply.reason == UNKNOWN_PRODUCT:
            _discard_pending_order(order_id)
            put_metric("OrderOutcomes", MetricUnit.Count, 1, service=SERVICE, status=REJECTED.value, path="sync")
            return OrderResult(order.shown_as(REJECTED, UNKNOWN_PRODUCT))
        return _finish_sync(
            order_id, OrderStatus.after_reservation(reply.status), None if reply.reserved else reply.reason
        )

    fallback = fallback or "server_error"
    put_metric("InventoryCallDuration", MetricUnit.Milliseconds, elapsed_ms, service=SERVICE, outcome=fallback)
    put_metric("Fallbacks", MetricUnit.Count, 1, service=SERVICE, reason=fallback)
    try:
        return _queue(order, QUEUED_REASONS.get(fallback, fallback))
    except QueueUnavailable:
        return _deferred(order, QUEUE_DEFERRED)


def _deferred(order: Order, reason: str) -> OrderResult:
    """QUEUED for an order that is stored (PENDING) but not yet handed on: the sweeper
    re-queues PENDING orders older than a minute, so the outcome is guaranteed."""
    put_metric("DeferredOrders", MetricUnit.Count, 1, service=SERVICE)
    return OrderResult(order.shown_as(QUEUED, reason))


def _finish_sync(order_id: str, status: OrderStatus, reason: str | None) -> OrderResult:
    changed, current = transition_order(order_id, status, reason)
    if current is None:  # pragma: no cover - the row was inserted by this request
        raise OrderVanished(order_id)
    if changed:
        put_metric("OrderOutcomes", MetricUnit.Count, 1, service=SERVICE, status=status.value, path="sync")
    return OrderResult(current)


def _queue(order: Order, reason: str) -> OrderResult:
    """Hand the order to the inventory queue, then mark it QUEUED.

    The message goes first: if SQS cannot take it, QueueUnavailable is raised and the order
    stays PENDING (nothing claims it is queued when it is not), which is what the sweeper
    re-queues. The completion consumer accepts PENDING as well as QUEUED, so a completion that
    overtakes the QUEUED update is still applied. OrderVanished: the order was discarded meanwhile.
    """
    order_id = order.order_id
    message = InventoryQueueMessage(orderId=order_id, productId=order.product_id, quantity=order.quantity)
    try:
        aws.client("sqs").send_message(
            QueueUrl=get_settings().inventory_queue_url,
            MessageBody=message.model_dump_json(),
            MessageAttributes=correlation_attributes(current_correlation_id()),
        )
    except Exception as exc:
        logger.exception("could not queue the order; it stays PENDING for the sweeper", extra={"order_id": order_id})
        raise QueueUnavailable(str(exc)) from exc
    changed, current = transition_order(order_id, QUEUED, reason)
    if current is None:  # pragma: no cover
        raise OrderVanished(order_id)
    if changed:
        put_metric("OrderOutcomes", MetricUnit.Count, 1, service=SERVICE, status=QUEUED.value, path="sync")
    return OrderResult(current)


def _replay(existing: Order | None, product_id: str, quantity: int) -> OrderResult:
    if existing is None:  # pragma: no cover - the conflicting row was discarded meanwhile
        raise IdempotencyKeyInUse()
    if existing.product_id != product_id or existing.quantity != quantity:
        raise IdempotencyKeyReused(existing)
    put_metric("IdempotentReplays", MetricUnit.Count, 1, service=SERVICE, source="http")
    logger.info("idempotent replay", extra={"order_id": existing.order_id})
    return OrderResult(existing, replay=True)


# ----------------------------------------------------------------------------- reads


def get_order(order_id: str) -> Order:
    with repository.database().transaction() as conn:
        order = repository.get_order(conn, order_id)
    if order is None:
        raise OrderNotFound(order_id)
    return order


def list_orders(limit: int) -> list[Order]:
    with repository.database().transaction() as conn:
        return repository.list_orders(conn, limit)


# ----------------------------------------------------------------------------- completion consumer


def apply_completion(order_id: str, status: ReservationStatus, reason: str | None) -> str:
    """Apply one completion message (inventory's outcome for a queued order). Returns applied |
    duplicate | conflict_ignored | unknown_order.

    Idempotent: only PENDING/QUEUED orders move; a final state is never changed.
    """
    to_status = OrderStatus.after_reservation(ReservationStatus(status))
    changed, current = transition_order(order_id, to_status, reason if to_status is REJECTED else None)
    if changed:
        put_metric("OrderOutcomes", MetricUnit.Count, 1, service=SERVICE, status=to_status.value, path="queued")
        return "applied"
    if current is None:
        logger.error("completion for an unknown order ignored", extra={"order_id": order_id, "status": to_status.value})
        return "unknown_order"
    if current.status is to_status:
        put_metric("IdempotentReplays", MetricUnit.Count, 1, service=SERVICE, source="queue")
        return "duplicate"
    logger.warning(
        "conflicting completion ignored: the order is already final",
        extra={"order_id": order_id, "current_status": current.status.value, "completion_status": to_status.value},
    )
    return "conflict_ignored"


# ----------------------------------------------------------------------------- stale PENDING sweeper


STALE_REASON = "recovered after an interrupted request"


def requeue_stale_pending(older_than_seconds: int = 60, limit: int = 100) -> dict[str, Any]:
    """Safety net for an order API invocation that died between writing PENDING and recording an
    outcome (Lambda timeout, crash): queue such orders like any fallback. Safe to repeat: the
    inventory side is idempotent by orderId (a reservation that did commit is replayed), and
    the completion applies to PENDING as well as QUEUED orders.

    One order never stops the run: a vanished one (discarded meanwhile) is skipped; only the queue
    being down ends it early (every order stays PENDING for the next run)."""
    with repository.database().transaction() as conn:
        stale = repository.stale_pending(conn, older_than_seconds, limit)
    requeued = []
    unavailable = False
    for order in stale:
        try:
            result = _queue(order, STALE_REASON)
        except QueueUnavailable:
            unavailable = True
            break
        except OrderVanished:
            continue
        if result.order.status is QUEUED:
            requeued.append(order.order_id)
    if requeued:
        logger.warning("stale PENDING orders re-queued", extra={"count": len(requeued), "order_ids": requeued})
    if unavailable:
        logger.warning(
            "stale PENDING orders left for the next run (queue unavailable)",
            extra={"count": len(stale) - len(requeued)},
        )
    return {"requeued": requeued}


# ----------------------------------------------------------------------------- health, migrations


def circuit_state() -> str:
    """closed | half_open | open | unknown, as this environment sees the shared circuit (read
    fresh on every call, one cached DynamoDB read: tests and the dashboard watch it move)."""
    try:
        state = inventory_client.get_client().circuit_state().lower()
    except Exception as exc:  # noqa: BLE001 -- health must answer even when the state is unreadable
        logger.warning("circuit state unavailable", extra={"error": str(exc)})
        return "unknown"
    put_metric(
        "CircuitState", MetricUnit.NoUnit, {"closed": 0, "half_open": 1, "open": 2}.get(state, 0), service=SERVICE
    )
    return state


def probe_inventory() -> dict[str, Any]:
    """Health: ping the reserve function (raises with a short reason when it is not healthy)."""
    return inventory_client.get_client().probe()


def migrate() -> dict[str, Any]:
    """Roles (as master), migrations and grants (as the owner): functions/common/roles.py."""
    result = migrate_database(MIGRATIONS_DIR, repository.APP_PRIVILEGES, settings=get_settings())
    logger.info("migrations", extra=result)
    return result


__all__ = [
    "OrderResult",
    "apply_completion",
    "call_deadline",
    "circuit_state",
    "get_order",
    "list_orders",
    "migrate",
    "place_order",
    "probe_inventory",
    "requeue_stale_pending",
    "transition_order",
]
