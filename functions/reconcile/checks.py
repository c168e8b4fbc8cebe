"""The reconciliation rules, pure: rows in, problems out (no I/O; sources.py reads the rows).

Both inputs are iterables sorted by order id in code-point order (sources.py sorts with
`COLLATE "C"` on both servers, which for UTF-8 is the same order), so the two tables are
compared by a merge join: memory grows with the problems found, not with the orders.

| kind | when |
|---|---|
| `missing_reservation` | a `CONFIRMED` order has no reservation |
| `reservation_mismatch` | a `CONFIRMED` order's reservation is of another product or quantity, or not `RESERVED` |
| `reservation_without_confirmed_order` | a `RESERVED` reservation whose order is `REJECTED` (stock taken for an order the customer was told failed) |
| `orphan_reservation` | a reservation (any status) whose order does not exist |
| `stuck_order` | an order `PENDING` or `QUEUED` for longer than the stale limit |
| `dlq_not_empty` | a dead-letter queue holds messages |

Fine, not problems: a `REJECTED` reservation of a `REJECTED` order (insufficient stock is
recorded so a replay answers the same); any reservation of a `PENDING`/`QUEUED` order (in
flight: the completion message is on its way; should it never arrive, `stuck_order` says so).
"""  # noqa: E501 -- Markdown table rows

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Iterator
from typing import Any

PENDING, QUEUED, CONFIRMED, REJECTED = "PENDING", "QUEUED", "CONFIRMED", "REJECTED"
RESERVED = "RESERVED"

KINDS = (
    "missing_reservation",
    "reservation_mismatch",
    "reservation_without_confirmed_order",
    "orphan_reservation",
    "stuck_order",
    "dlq_not_empty",
)


@dataclasses.dataclass(frozen=True)
class OrderRow:
    order_id: str
    product_id: str
    quantity: int
    status: str
    created_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class ReservationRow:
    order_id: str
    product_id: str
    quantity: int
    status: str


@dataclasses.dataclass(frozen=True)
class Problem:
    kind: str
    message: str
    order_id: str | None = None
    queue: str | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "message": self.message}
        if self.order_id is not None:
            out["orderId"] = self.order_id
        if self.queue is not None:
            out["queue"] = self.queue
        if self.details:
            out["details"] = self.details
        return out


def check_pair(
    order: OrderRow | None, reservation: ReservationRow | None, *, now: dt.datetime, stale_after: dt.timedelta
) -> list[Problem]:
    """The problems of one order id, given its order row and its reservation (either may be None)."""
    problems: list[Problem] = []
    if order is None:
        if reservation is not None:
            problems.append(
                Problem(
                    "orphan_reservation",
                    f"reservation {reservation.order_id} ({reservation.status}, {reservation.quantity} x "
                    f"{reservation.product_id}) has no order",
                    reservation.order_id,
                    details={"reservation": _reservation(reservation)},
                )
            )
        return problems

    if order.status in (PENDING, QUEUED):
        age = now - order.created_at
        if age > stale_after:
            problems.append(
                Problem(
                    "stuck_order",
                    f"order {order.order_id} is {order.status} for {int(age.total_seconds() // 60)} min "
                    f"(limit {int(stale_after.total_seconds() // 60)} min)",
                    order.order_id,
                    details={"order": _order(order), "ageSeconds": int(age.total_seconds())},
                )
            )
    elif order.status == CONFIRMED:
        if reservation is None:
            problems.append(
                Problem(
                    "missing_reservation",
                    f"order {order.order_id} is CONFIRMED ({order.quantity} x {order.product_id}) "
                    "but has no reservation",
                    order.order_id,
                    details={"order": _order(order)},
                )
            )
        else:
            differences = [
                f"{name} {theirs!r} instead of {ours!r}"
                for name, ours, theirs in (
                    ("product", order.product_id, reservation.product_id),
                    ("quantity", order.quantity, reservation.quantity),
                    ("status", RESERVED, reservation.status),
                )
                if ours != theirs
            ]
            if differences:
                problems.append(
                    Problem(
                        "reservation_mismatch",
                        f"order {order.order_id} is CONFIRMED but its reservation has {', '.join(differences)}",
                        order.order_id,
                        details={"order": _order(order), "reservation": _reservation(reservation)},
                    )
                )
    elif order.status == REJECTED and reservation is not None and reservation.status == RESERVED:
        problems.append(
            Problem(
                "reservation_without_confirmed_order",
                f"order {order.order_id} is REJECTED but holds a RESERVED reservation "
                f"({reservation.quantity} x {reservation.product_id}): stock was taken for it",
                order.order_id,
                details={"order": _order(order), "reservation": _reservation(reservation)},
            )
        )
    return problems


@dataclasses.dataclass
class Comparison:
    problems: list[Problem] = dataclasses.field(default_factory=list)
    # reservations whose order was not in the orders read: re-checked after a second read
    unmatched: list[ReservationRow] = dataclasses.field(default_factory=list)
    orders: int = 0
    reservations: int = 0


def compare(
    orders: Iterable[OrderRow], reservations: Iterable[ReservationRow], *, now: dt.datetime, stale_after: dt.timedelta
) -> Comparison:
    """Merge-join both sorted streams. A reservation without an order is not reported here but
    kept in `unmatched`: its order may have been written after the orders were read."""
    result = Comparison()
    order_it: Iterator[OrderRow] = iter(orders)
    res_it: Iterator[ReservationRow] = iter(reservations)
    order, res = next(order_it, None), next(res_it, None)
    previous: dict[str, str] = {}
    while order is not None or res is not None:
        if order is not None and (res is None or order.order_id < res.order_id):
            _check_sorted(previous, "orders", order.order_id)
            result.orders += 1
            result.problems.extend(check_pair(order, None, now=now, stale_after=stale_after))
            order = next(order_it, None)
        elif res is not None and (order is None or res.order_id < order.order_id):
            _check_sorted(previous, "reservations", res.order_id)
            result.reservations += 1
            result.unmatched.append(res)
            res = next(res_it, None)
        else:
            if order is None or res is None:  # the two branches above took every such case
                raise AssertionError("merge-join: a side ended but was compared")
            _check_sorted(previous, "orders", order.order_id)
            _check_sorted(previous, "reservations", res.order_id)
            result.orders += 1
            result.reservations += 1
            result.problems.extend(check_pair(order, res, now=now, stale_after=stale_after))
            order, res = next(order_it, None), next(res_it, None)
    return result


def _check_sorted(previous: dict[str, str], stream: str, order_id: str) -> None:
    """A merge join over unsorted input would report nonsense: refuse it loudly instead."""
    last = previous.get(stream)
    if last is not None and order_id <= last:
        raise ValueError(f"{stream} are not sorted by order id ({order_id!r} after {last!r})")
    previous[stream] = order_id


def dlq_problems(depths: dict[str, int]) -> list[Problem]:
    return [
        Problem(
            "dlq_not_empty", f"dead-letter queue {name} holds {depth} message(s)", queue=name, details={"depth": depth}
        )
        for name, depth in sorted(depths.items())
        if depth > 0
    ]


def _order(order: OrderRow) -> dict[str, Any]:
    return {
        "status": order.status,
        "productId": order.product_id,
        "quantity": order.quantity,
        "createdAt": order.created_at.isoformat(),
    }


def _reservation(res: ReservationRow) -> dict[str, Any]:
    return {"status": res.status, "productId": res.product_id, "quantity": res.quantity}
