"""The order: its states, its legal transitions and the exceptions of the order logic.

Pure domain, no I/O and no HTTP: service.py decides, repository.py stores, app.py maps the
exceptions below to HTTP answers (one place: `app._on_order_error`).

    PENDING --(inventory reserved)-----------------> CONFIRMED   (sync path)
    PENDING --(inventory refused: insufficient)----> REJECTED    (sync path)
    PENDING --(timeout/conn error/5xx/circuit open)-> QUEUED     + message on the inventory queue
    PENDING|QUEUED --(completion message)----------> CONFIRMED | REJECTED
    CONFIRMED, REJECTED: final

Every change goes through service.transition_order (a conditional UPDATE from `ALLOWED_FROM`).
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from functions.common.contracts import ReservationStatus

__all__ = [
    "ALLOWED_FROM",
    "FINAL",
    "IdempotencyKeyInUse",
    "IdempotencyKeyReused",
    "Order",
    "OrderError",
    "OrderNotFound",
    "OrderStatus",
    "OrderVanished",
    "QueueUnavailable",
]


class OrderStatus(enum.StrEnum):
    PENDING = "PENDING"
    QUEUED = "QUEUED"
    CONFIRMED = "CONFIRMED"
    REJECTED = "REJECTED"

    @classmethod
    def after_reservation(cls, reservation: ReservationStatus) -> OrderStatus:
        """The order state inventory's outcome leads to, on either path (the only place that
        translates inventory's vocabulary into the order's)."""
        return cls.CONFIRMED if reservation is ReservationStatus.RESERVED else cls.REJECTED

    @property
    def final(self) -> bool:
        return self in FINAL


FINAL = frozenset({OrderStatus.CONFIRMED, OrderStatus.REJECTED})

# to_status -> the statuses it may be reached from
ALLOWED_FROM: dict[OrderStatus, tuple[OrderStatus, ...]] = {
    OrderStatus.QUEUED: (OrderStatus.PENDING,),
    OrderStatus.CONFIRMED: (OrderStatus.PENDING, OrderStatus.QUEUED),
    OrderStatus.REJECTED: (OrderStatus.PENDING, OrderStatus.QUEUED),
}


@dataclasses.dataclass(frozen=True)
class Order:
    order_id: str
    status: OrderStatus
    reason: str | None
    product_id: str
    quantity: int
    created_at: str  # ISO 8601, UTC, milliseconds ("...Z")
    updated_at: str
    idempotency_key: str | None = None

    def public(self) -> dict[str, Any]:
        """What GET /orders shows (and every answer about an order carries)."""
        return {
            "orderId": self.order_id,
            "status": self.status.value,
            "reason": self.reason,
            "productId": self.product_id,
            "quantity": self.quantity,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }

    def shown_as(self, status: OrderStatus, reason: str | None) -> Order:
        """This order as an answer presents it, without a stored change (e.g. QUEUED while the
        row is still PENDING for the sweeper)."""
        return dataclasses.replace(self, status=status, reason=reason)


# ----------------------------------------------------------------------------- exceptions


class OrderError(Exception):
    """Base of the order logic's exceptions (each one is a refusal or a fault with a meaning)."""


class OrderNotFound(OrderError, LookupError):
    def __init__(self, order_id: str) -> None:
        super().__init__(order_id)
        self.order_id = order_id


class IdempotencyKeyReused(OrderError):
    """The Idempotency-Key already names an order for another product or quantity."""

    def __init__(self, existing: Order) -> None:
        super().__init__(existing.order_id)
        self.existing = existing


class IdempotencyKeyInUse(OrderError):
    """Another request holds the Idempotency-Key and its order is not readable (yet)."""


class OrderVanished(OrderError, RuntimeError):
    """An order this invocation wrote (or is completing) is gone: discarded meanwhile."""

    def __init__(self, order_id: str) -> None:
        super().__init__(order_id)
        self.order_id = order_id


class QueueUnavailable(OrderError, RuntimeError):
    """SQS did not take the inventory message; the order row is unchanged (still PENDING)."""
