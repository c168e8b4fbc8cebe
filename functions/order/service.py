"""Order logic. Every order state change goes through `transition_order` (and the one deletion,
of an order for an unknown product, through `_discard_pending_order`).

States and transitions (conditional UPDATEs, so a late or duplicate message never flips a final
state):

    PENDING --(inventory reserved)-----------------> CONFIRMED   (201, sync path)
    PENDING --(inventory refused: insufficient)----> REJECTED    (409, sync path)
    PENDING --(timeout/conn error/5xx/circuit open)-> QUEUED     (202) + message on the inventory queue
    PENDING|QUEUED --(completion message)----------> CONFIRMED | REJECTED
    CONFIRMED, REJECTED: final

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
from functions.common.errors import ApiError
from functions.common.contracts import InventoryQueueMessage, correlation_attributes
from functions.common.db import DatabaseUnavailable
from functions.common.migrations import migrate_database
from functions.common.observability import MetricUnit, current_correlation_id, get_logger, put_metric
from functions.common.settings import get_settings
from functions.order import inventory_client, repository

SERVICE = "order"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

PENDING, QUEUED, CONFIRMED, REJECTED = "PENDING", "QUEUED", "CONFIRMED", "REJECTED"
FINAL = frozenset({CONFIRMED, REJECTED})
UNKNOWN_PRODUCT = "unknown product"
FALLBACK_RESERVE = 0.1  # seconds of the budget kept for queueing the order after a timeout

# to_status -> statuses it may be reached from
ALLOWED_FROM: dict[str, list[str]] = {
    QUEUED: [PENDING],
    CONFIRMED: [PENDING, QUEUED],
    REJECTED: [PENDING, QUEUED],
}

STATUS_CODES = {CONFIRMED: 201, QUEUED: 202, PENDING: 202, REJECTED: 409}

QUEUED_REASONS = {
    "timeout": "inventory timeout",
    "connection_error": "inventory unreachable",
    "server_error": "inventory error",
    "circuit_open": "circuit open",
}

# 202 answers when the order is stored but its next step could not be recorded now.
QUEUE_DEFERRED = "queue unavailable: the order is stored and will be queued automatically"
RECORD_DEFERRED = "outcome not recorded yet: the order is stored and will be completed automatically"

logger = get_logger(SERVICE)


@dataclasses.dataclass(frozen=True)
class OrderResult:
    order: dict[str, Any]
    status_code: int
    replay: bool = False

    def body(self) -> dict[str, Any]:
        body = repository.public(self.order)
        if self.order["status"] == REJECTED:
            body["message"] = f"order rejected: {self.order.get('reason')}"
        elif self.order["status"] == QUEUED:
            body["message"] = f"order accepted and queued ({self.order.get('reason')})"
        elif self.order["status"] == PENDING:
            body["message"] = "order is being processed"
        return body


class OrderNotFound(LookupError):
    pass


class QueueUnavailable(RuntimeError):
    """SQS did not take the inventory message; the order row is unchanged (still PENDING)."""


# ----------------------------------------------------------------------------- state changes


def transition_order(order_id: str, to_status: str, reason: str | None = None) -> tuple[bool, dict[str, Any] | None]:
    """The only way an order changes state. Returns (changed, current order or None if unknown)."""
    allowed = ALLOWED_FROM[to_status]
    with repository.database().transaction() as conn:
        updated = repository.update_status(conn, order_id, to_status, reason, allowed)
        if updated is not None:
            current, changed = updated, True
        else:
            current, changed = repository.get_order(conn, order_id), False
    if changed:
        logger.info("order transition", extra={"order_id": order_id, "to_status": to_status, "reason": reason})
    else:
        logger.info(
            "order transition skipped",
            extra={"order_id": order_id, "to_status": to_status,
                   "current_status": current["status"] if current else None},
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
    sending the request.
    """
    monotonic_now = time.monotonic() if monotonic_now is None else monotonic_now
    return monotonic_now - waited + budget - FALLBACK_RESERVE


def place_order(product_id: str, quantity: int, idempotency_key: str | None = None,
                waited: float = 0.0) -> OrderResult:
    settings = get_settings()
    deadline = call_deadline(settings.inventory_call_budget_seconds, waited)
    client = inventory_client.get_client()
    aws.client("sqs")  # created before the call, so the fallback path is fast
    order_id = str(uuid.uuid4())
    with repository.database().transaction() as conn:
        order = repository.insert_order(conn, order_id, product_id, quantity, PENDING, idempotency_key)
        if order is None:
            existing = repository.get_order_by_idempotency_key(conn, idempotency_key or "")
    if order is None:
        return _replay(existing, product_id, quantity, idempotency_key)

    # From here on the order is durable: whatever fails, it gets an outcome (see module doc).
    try:
        return _decide(order, client, deadline)
    except Exception:  # noqa: BLE001 - the PENDING row stays; the sweeper completes it
        logger.exception("could not record the order's next step; the sweeper will complete it",
                         extra={"order_id": order_id})
        return _deferred(order, RECORD_DEFERRED)


def _decide(order: dict[str, Any], client: inventory_client.InventoryClient, deadline: float) -> OrderResult:
    order_id, product_id, quantity = order["orderId"], order["productId"], order["quantity"]
    started = time.perf_counter()
    fallback: str | None = None
    reply: inventory_client.InventoryReply | None = None
    try:
        reply = client.reserve(order_id, product_id, quantity, deadline, correlation_id=current_correlation_id())
    except inventory_client.InventoryUnavailable as exc:
        fallback = exc.kind
        logger.warning("inventory call failed; queueing the order",
                       extra={"order_id": order_id, "kind": exc.kind, "detail": exc.detail})
    except CircuitBreakerOpenError:
        fallback = "circuit_open"
        logger.info("circuit open; queueing the order without calling inventory", extra={"order_id": order_id})
    except Exception:  # noqa: BLE001 - any other failure must not lose the order
        fallback = "server_error"
        logger.exception("unexpected error calling inventory; queueing the order", extra={"order_id": order_id})
    elapsed_ms = (time.perf_counter() - started) * 1000.0

    if reply is not None:
        outcome = "reserved" if reply.reserved else "rejected"
        put_metric("InventoryCallDuration", MetricUnit.Milliseconds, round(elapsed_ms, 3), service=SERVICE, outcome=outcome)
        if reply.reserved:
            return _finish_sync(order_id, CONFIRMED, None)
        if reply.reason == UNKNOWN_PRODUCT:
            _discard_pending_order(order_id)
            put_metric("OrderOutcomes", MetricUnit.Count, 1, service=SERVICE, status=REJECTED, path="sync")
            gone = dict(order, status=REJECTED, reason=UNKNOWN_PRODUCT)
            return OrderResult(gone, 409)
        return _finish_sync(order_id, REJECTED, reply.reason)

    assert fallback is not None
    put_metric("InventoryCallDuration", MetricUnit.Milliseconds, round(elapsed_ms, 3), service=SERVICE, outcome=fallback)
    put_metric("Fallbacks", MetricUnit.Count, 1, service=SERVICE, reason=fallback)
    try:
        return _queue(order, QUEUED_REASONS.get(fallback, fallback))
    except QueueUnavailable:
        return _deferred(order, QUEUE_DEFERRED)


def _deferred(order: dict[str, Any], reason: str) -> OrderResult:
    """202 QUEUED for an order that is stored (PENDING) but not yet handed on: the sweeper
    re-queues PENDING orders older than a minute, so the outcome is guaranteed."""
    put_metric("DeferredOrders", MetricUnit.Count, 1, service=SERVICE)
    return OrderResult(dict(order, status=QUEUED, reason=reason), STATUS_CODES[QUEUED])


def _finish_sync(order_id: str, status: str, reason: str | None) -> OrderResult:
    changed, current = transition_order(order_id, status, reason)
    if current is None:  # pragma: no cover - the row was inserted by this request
        raise ApiError(500, "order vanished")
    if changed:
        put_metric("OrderOutcomes", MetricUnit.Count, 1, service=SERVICE, status=status, path="sync")
    return OrderResult(current, STATUS_CODES[current["status"]])


def _queue(order: dict[str, Any], reason: str) -> OrderResult:
    """Hand the order to the inventory queue, then mark it QUEUED.

    The message goes first: if SQS cannot take it, QueueUnavailable is raised and the order
    stays PENDING (nothing claims it is queued when it is not), which is what the sweeper
    re-queues. The completion consumer accepts PENDING as well as QUEUED, so a completion that
    overtakes the QUEUED update is still applied.
    """
    order_id = order["orderId"]
    message = InventoryQueueMessage(orderId=order_id, productId=order["productId"], quantity=order["quantity"])
    try:
        aws.client("sqs").send_message(QueueUrl=get_settings().inventory_queue_url,
                                       MessageBody=message.model_dump_json(),
                                       MessageAttributes=correlation_attributes(current_correlation_id()))
    except Exception as exc:  # noqa: BLE001
        logger.exception("could not queue the order; it stays PENDING for the sweeper", extra={"order_id": order_id})
        raise QueueUnavailable(str(exc)) from exc
    changed, current = transition_order(order_id, QUEUED, reason)
    if current is None:  # pragma: no cover
        raise ApiError(500, "order vanished")
    if changed:
        put_metric("OrderOutcomes", MetricUnit.Count, 1, service=SERVICE, status=QUEUED, path="sync")
    return OrderResult(current, STATUS_CODES[current["status"]])


def _replay(existing: dict[str, Any] | None, product_id: str, quantity: int, key: str | None) -> OrderResult:
    if existing is None:  # pragma: no cover - the conflicting row was discarded meanwhile
        raise ApiError(409, "a request with this Idempotency-Key is being processed, retry shortly")
    if existing["productId"] != product_id or existing["quantity"] != quantity:
        raise ApiError(
            422,
            "Idempotency-Key was already used for a different order "
            f"(productId '{existing['productId']}', quantity {existing['quantity']})",
            orderId=existing["orderId"],
        )
    put_metric("IdempotentReplays", MetricUnit.Count, 1, service=SERVICE, source="http")
    logger.info("idempotent replay", extra={"order_id": existing["orderId"]})
    return OrderResult(existing, STATUS_CODES[existing["status"]], replay=True)


# ----------------------------------------------------------------------------- reads


def get_order(order_id: str) -> dict[str, Any]:
    with repository.database().transaction() as conn:
        order = repository.get_order(conn, order_id)
    if order is None:
        raise OrderNotFound(order_id)
    return repository.public(order)


def list_orders(limit: int) -> list[dict[str, Any]]:
    with repository.database().transaction() as conn:
        return [repository.public(o) for o in repository.list_orders(conn, limit)]


# ----------------------------------------------------------------------------- completion consumer


def apply_completion(order_id: str, status: str, reason: str | None) -> str:
    """Apply one completion message. Returns applied | duplicate | conflict_ignored | unknown_order.

    Idempotent: only PENDING/QUEUED orders move; a final state is never changed.
    """
    if status not in FINAL:
        raise ValueError(f"completion status must be CONFIRMED or REJECTED, got {status!r}")
    changed, current = transition_order(order_id, status, reason if status == REJECTED else None)
    if changed:
        put_metric("OrderOutcomes", MetricUnit.Count, 1, service=SERVICE, status=status, path="queued")
        return "applied"
    if current is None:
        logger.error("completion for an unknown order ignored", extra={"order_id": order_id, "status": status})
        return "unknown_order"
    if current["status"] == status:
        put_metric("IdempotentReplays", MetricUnit.Count, 1, service=SERVICE, source="queue")
        return "duplicate"
    logger.warning(
        "conflicting completion ignored: the order is already final",
        extra={"order_id": order_id, "current_status": current["status"], "completion_status": status},
    )
    return "conflict_ignored"


# ----------------------------------------------------------------------------- stale PENDING sweeper


STALE_REASON = "recovered after an interrupted request"


def requeue_stale_pending(older_than_seconds: int = 60, limit: int = 100) -> dict[str, Any]:
    """Safety net for an order API invocation that died between writing PENDING and recording an
    outcome (Lambda timeout, crash): queue such orders like any fallback. Safe to repeat: the
    inventory side is idempotent by orderId (a reservation that did commit is replayed), and
    the completion applies to PENDING as well as QUEUED orders."""
    with repository.database().transaction() as conn:
        stale = repository.stale_pending(conn, older_than_seconds, limit)
    requeued = []
    for order in stale:
        try:
            result = _queue(order, STALE_REASON)
        except QueueUnavailable:
            break  # still down: every order stays PENDING for the next run
        if result.order["status"] == QUEUED:
            requeued.append(order["orderId"])
    if requeued:
        logger.warning("stale PENDING orders re-queued", extra={"count": len(requeued), "order_ids": requeued})
    if len(requeued) < len(stale):
        logger.warning("stale PENDING orders left for the next run (queue unavailable)",
                       extra={"count": len(stale) - len(requeued)})
    return {"requeued": requeued}


# ----------------------------------------------------------------------------- health, migrations


def health() -> tuple[int, dict[str, Any]]:
    from functions.common.health import Check, cached_health, database_check, queue_check, run_checks

    settings = get_settings()
    # Read fresh on every call (one cached DynamoDB read): tests and the dashboard watch it move.
    circuit_state = "unknown"
    try:
        circuit_state = inventory_client.get_client().circuit_state().lower()
        put_metric("CircuitState", MetricUnit.NoUnit,
                   {"closed": 0, "half_open": 1, "open": 2}.get(circuit_state, 0), service=SERVICE)
    except Exception as exc:  # noqa: BLE001
        logger.warning("circuit state unavailable", extra={"error": str(exc)})

    checks = {
        "database": database_check(repository.database),
        "inventoryQueue": queue_check(lambda: settings.inventory_queue_url),
        "completionQueue": queue_check(lambda: settings.completion_queue_url),
        "inventory": Check(lambda: inventory_client.get_client().probe(), "inventory unreachable"),
    }
    status, body = cached_health(SERVICE, lambda: run_checks(SERVICE, checks))
    return status, {**body, "circuitState": circuit_state}


def migrate() -> dict[str, Any]:
    """Roles (as master), migrations and grants (as the owner): functions/common/roles.py."""
    result = migrate_database(MIGRATIONS_DIR, repository.APP_PRIVILEGES, settings=get_settings())
    logger.info("migrations", extra=result)
    return result


__all__ = [
    "place_order", "get_order", "list_orders", "apply_completion", "transition_order", "health", "migrate",
    "OrderResult", "OrderNotFound", "DatabaseUnavailable",
]
