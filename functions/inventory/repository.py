"""SQL of the inventory service (inventory_db: products, reservations). pg8000 native, named params."""

from __future__ import annotations

from typing import Any

from functions.common.contracts import ReservationStatus
from functions.common.db import Connection, Database, get_database
from functions.common.settings import get_settings
from functions.inventory.model import Reservation

Conn = Connection

# What the inventory service's run-time role may do, table by table: exactly the statements below
# (no DELETE anywhere). functions/common/roles.py grants it.
APP_PRIVILEGES = {
    "products": ("SELECT", "INSERT", "UPDATE"),
    "reservations": ("SELECT", "INSERT", "UPDATE"),
}


def database() -> Database:
    """The inventory database of this environment (tests may replace this function)."""
    settings = get_settings()
    return get_database(
        settings.db_secret_arn,
        tls=settings.db_tls,
        pool=settings.db_pool,
        secret_max_age=settings.secret_cache_seconds,
        application_name="valerix-inventory",
    )


def _product(row: list[Any]) -> dict[str, Any]:
    return {"productId": row[0], "name": row[1], "stock": row[2]}


def list_products(conn: Conn) -> list[dict[str, Any]]:
    return [_product(r) for r in conn.run("SELECT product_id, name, stock FROM products ORDER BY product_id")]


def get_product(conn: Conn, product_id: str) -> dict[str, Any] | None:
    rows = conn.run("SELECT product_id, name, stock FROM products WHERE product_id = :p", p=product_id)
    return _product(rows[0]) if rows else None


def upsert_product(conn: Conn, product_id: str, name: str | None, stock: int) -> tuple[dict[str, Any], bool]:
    """Insert or update; returns (product, created). A missing name keeps the old one (or the id)."""
    rows = conn.run(
        "INSERT INTO products (product_id, name, stock) VALUES (:p, COALESCE(:n, :p), :s) "
        "ON CONFLICT (product_id) DO UPDATE SET name = COALESCE(:n, products.name), stock = :s, "
        "updated_at = clock_timestamp() "
        "RETURNING product_id, name, stock, (xmax = 0) AS created",
        p=product_id,
        n=name,
        s=stock,
    )
    return _product(rows[0]), bool(rows[0][3])


def claim_reservation(conn: Conn, order_id: str, product_id: str, quantity: int) -> bool:
    """Insert the reservation row for `order_id`; False if the order id already has one.

    A concurrent transaction holding the same order id makes this wait until it commits (then
    False) or rolls back (then True): the primary key serialises same-order attempts.
    """
    rows = conn.run(
        "INSERT INTO reservations (order_id, product_id, quantity, status) "
        "VALUES (:o, :p, :q, 'RESERVED') ON CONFLICT (order_id) DO NOTHING RETURNING order_id",
        o=order_id,
        p=product_id,
        q=quantity,
    )
    return bool(rows)


def get_reservation(conn: Conn, order_id: str) -> Reservation | None:
    """The recorded reservation of `order_id` (as a replay: `replay=True`), if any."""
    rows = conn.run(
        "SELECT order_id, product_id, quantity, status, reason FROM reservations WHERE order_id = :o",
        o=order_id,
    )
    if not rows:
        return None
    r = rows[0]
    return Reservation(
        order_id=r[0], product_id=r[1], quantity=r[2], status=ReservationStatus(r[3]), reason=r[4], replay=True
    )


def take_stock(conn: Conn, product_id: str, quantity: int) -> int | None:
    """Conditional decrement; the remaining stock, or None if the product lacks enough (or is unknown)."""
    rows = conn.run(
        "UPDATE products SET stock = stock - :q, updated_at = clock_timestamp() "
        "WHERE product_id = :p AND stock >= :q RETURNING stock",
        p=product_id,
        q=quantity,
    )
    return int(rows[0][0]) if rows else None


def product_exists(conn: Conn, product_id: str) -> bool:
    return bool(conn.run("SELECT 1 FROM products WHERE product_id = :p", p=product_id))


def reject_reservation(conn: Conn, order_id: str, reason: str) -> None:
    conn.run(
        "UPDATE reservations SET status = 'REJECTED', reason = :r WHERE order_id = :o",
        o=order_id,
        r=reason,
    )
