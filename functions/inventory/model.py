"""Inventory's domain: a reservation (what was done for one order id) and the exceptions of the
inventory logic. No I/O, no HTTP: service.py decides, repository.py stores, and the two
adapters map the exceptions to answers in one place each -- app.py for the public HTTP API,
reserve_api.py for the internal reserve function's `ReservationAnswer`.
"""

from __future__ import annotations

import dataclasses

from functions.common.contracts import ReservationStatus

__all__ = ["InventoryError", "ProductNotFound", "Reservation", "ReservationConflict"]


@dataclasses.dataclass(frozen=True)
class Reservation:
    """One order id's reservation: RESERVED (stock taken) or REJECTED (`reason`), recorded so
    every replay gets the same outcome. `replay`: this call found it recorded already."""

    order_id: str
    product_id: str
    quantity: int
    status: ReservationStatus
    reason: str | None = None
    replay: bool = False

    @property
    def reserved(self) -> bool:
        return self.status is ReservationStatus.RESERVED


class InventoryError(Exception):
    """Base of the inventory logic's exceptions."""


class ProductNotFound(InventoryError, LookupError):
    def __init__(self, product_id: str) -> None:
        super().__init__(product_id)
        self.product_id = product_id


class ReservationConflict(InventoryError):
    """The order id already holds a reservation for another product or quantity."""

    def __init__(self, existing: Reservation, product_id: str, quantity: int) -> None:
        self.order_id = existing.order_id
        self.existing = existing
        if existing.reserved:
            recorded = f"already reserved {existing.quantity} of '{existing.product_id}'"
        else:
            recorded = f"was already refused {existing.quantity} of '{existing.product_id}' ({existing.reason})"
        super().__init__(
            f"order '{existing.order_id}' {recorded}; a replay asking for {quantity} of '{product_id}' "
            "is refused and changes nothing"
        )
