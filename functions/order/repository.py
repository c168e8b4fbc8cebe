"""SQL of the order service (order_db: orders). pg8000 native, named parameters; rows come back
as `model.Order`.

State changes are only made through `update_status` (conditional on the current status) and
`delete_pending`, both called from service.transition_order / service._discard_pending_order.
The SQL text is built only from `_COLUMNS`, a constant: every value travels as a parameter.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from functions.common.db import Connection, Database, get_database
from functions.common.settings import get_settings
from functions.order.model import Order, OrderStatus

Conn = Connection

# What the order service's run-time role may do, table by table: exactly the statements below
# (DELETE: an order for an unknown product is discarded). functions/common/roles.py grants it.
APP_PRIVILEGES = {"orders": ("SELECT", "INSERT", "UPDATE", "DELETE")}

_COLUMNS = "order_id, status, reason, product_id, quantity, created_at, updated_at, idempotency_key"


def database() -> Database:
    """The order database of this environment (tests may replace this function)."""
    settings = get_settings()
    return get_database(
        settings.db_secret_arn,
        tls=settings.db_tls,
        pool=settings.db_pool,
        secret_max_age=settings.secret_cache_seconds,
        application_name="valerix-order",
    )


def _iso(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _order(row: list[Any]) -> Order:
    return Order(
        order_id=row[0],
        status=OrderStatus(row[1]),
        reason=row[2],
        product_id=row[3],
        quantity=row[4],
        created_at=_iso(row[5]),
        updated_at=_iso(row[6]),
        idempotency_key=row[7],
    )


def insert_order(
    conn: Conn, order_id: str, product_id: str, quantity: int, status: OrderStatus, idempotency_key: str | None
) -> Order | None:
    """Insert a new order; None when `idempotency_key` is already taken (nothing inserted)."""
    rows = conn.run(
        "INSERT INTO orders (order_id, product_id, quantity, status, idempotency_key) "  # noqa: S608 -- _COLUMNS is a constant
        f"VALUES (:o, :p, :q, :s, :k) ON CONFLICT (idempotency_key) DO NOTHING RETURNING {_COLUMNS}",
        o=order_id,
        p=product_id,
        q=quantity,
        s=status.value,
        k=idempotency_key,
    )
    return _order(rows[0]) if rows else None


def get_order(conn: Conn, order_id: str) -> Order | None:
    rows = conn.run(f"SELECT {_COLUMNS} FROM orders WHERE order_id = :o", o=order_id)  # noqa: S608 -- _COLUMNS is a constant
    return _order(rows[0]) if rows else None


def get_order_by_idempotency_key(conn: Conn, key: str) -> Order | None:
    rows = conn.run(f"SELECT {_COLUMNS} FROM orders WHERE idempotency_key = :k", k=key)  # noqa: S608 -- _COLUMNS is a constant
    return _order(rows[0]) if rows else None


def list_orders(conn: Conn, limit: int) -> list[Order]:
    rows = conn.run(
        f"SELECT {_COLUMNS} FROM orders ORDER BY created_at DESC, order_id DESC LIMIT :n",  # noqa: S608 -- _COLUMNS is a constant
        n=limit,
    )
    return [_order(r) for r in rows]


def update_status(
    conn: Conn, order_id: str, to_status: OrderStatus, reason: str | None, from_statuses: tuple[OrderStatus, ...]
) -> Order | None:
    """Conditional transition; None when the order is not in one of `from_statuses` (or unknown)."""
    rows = conn.run(
        "UPDATE orders SET status = :t, reason = :r, updated_at = clock_timestamp() "  # noqa: S608 -- _COLUMNS is a constant
        f"WHERE order_id = :o AND status = ANY(CAST(:f AS text[])) RETURNING {_COLUMNS}",
        o=order_id,
        t=to_status.value,
        r=reason,
        f=[s.value for s in from_statuses],
    )
    return _order(rows[0]) if rows else None


def delete_pending(conn: Conn, order_id: str) -> bool:
    rows = conn.run("DELETE FROM orders WHERE order_id = :o AND status = 'PENDING' RETURNING order_id", o=order_id)
    return bool(rows)


def stale_pending(conn: Conn, older_than_seconds: int, limit: int) -> list[Order]:
    """PENDING orders whose request died before an outcome was recorded (oldest first)."""
    rows = conn.run(
        f"SELECT {_COLUMNS} FROM orders WHERE status = 'PENDING' "  # noqa: S608 -- _COLUMNS is a constant
        f"AND created_at < clock_timestamp() - make_interval(secs => :s) ORDER BY created_at LIMIT :n",
        s=older_than_seconds,
        n=limit,
    )
    return [_order(r) for r in rows]
