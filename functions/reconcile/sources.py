"""Reads for the reconciliation: both databases (read-only, as their reader role) and the DLQs.

Each database is read in one `REPEATABLE READ, READ ONLY` transaction through a server-side
cursor (batches of FETCH_BATCH rows), sorted by order id in code-point order (`COLLATE "C"`,
the same on both servers whatever their default collation) for checks.compare's merge join.

Read order matters, because the two databases cannot share one snapshot. Orders are read
first, reservations second. An order is CONFIRMED only after its reservation committed, so a
CONFIRMED order seen in the first read has its reservation in the second: no false
`missing_reservation`. The reverse race — a reservation of an order written after the
orders were read — is why a reservation without an order is read again (`orders_by_id`, a
third read, after the reservations) before it is called an orphan.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any

import pg8000.native

from functions.common import aws, db
from functions.reconcile.checks import OrderRow, ReservationRow
from functions.reconcile.settings import ReconcileSettings

FETCH_BATCH = 2000
APPLICATION_NAME = "valerix-reconcile"
_ORDER_COLUMNS = "order_id, product_id, quantity, status, created_at"
_RESERVATION_COLUMNS = "order_id, product_id, quantity, status"


def database(secret_arn: str, settings: ReconcileSettings) -> db.Database:
    return db.get_database(secret_arn, tls=settings.db_tls, pool=settings.db_pool, application_name=APPLICATION_NAME)


@contextlib.contextmanager
def snapshot(database: db.Database) -> Iterator[pg8000.native.Connection]:
    """A read-only transaction with one snapshot for all of its statements."""
    with database.transaction() as conn:
        conn.run("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield conn


def _cursor(conn: pg8000.native.Connection, name: str, query: str, **params: object) -> Iterator[list[Any]]:
    conn.run(f"DECLARE {name} NO SCROLL CURSOR FOR {query}", **params)
    while rows := conn.run(f"FETCH FORWARD {FETCH_BATCH} FROM {name}"):
        yield from rows
    conn.run(f"CLOSE {name}")


def now(conn: pg8000.native.Connection) -> dt.datetime:
    """The order server's clock: order ages are measured against the clock that stamped them."""
    clock: dt.datetime = conn.run("SELECT clock_timestamp()")[0][0]
    return clock


def _window(since: dt.datetime | None) -> tuple[str, dict[str, dt.datetime]]:
    return ("WHERE created_at >= :since", {"since": since}) if since is not None else ("", {})


def orders(conn: pg8000.native.Connection, since: dt.datetime | None = None) -> Iterator[OrderRow]:
    where, params = _window(since)
    query = f'SELECT {_ORDER_COLUMNS} FROM orders {where} ORDER BY order_id COLLATE "C"'  # noqa: S608 -- fixed columns and WHERE; values are bound
    for row in _cursor(conn, "reconcile_orders", query, **params):
        yield OrderRow(*row)


def reservations(conn: pg8000.native.Connection, since: dt.datetime | None = None) -> Iterator[ReservationRow]:
    """With `since`: reservations created since then. One of an older order then has no order in
    the window; the re-read by id (`orders_by_id`, no window) finds it."""
    where, params = _window(since)
    query = f'SELECT {_RESERVATION_COLUMNS} FROM reservations {where} ORDER BY order_id COLLATE "C"'  # noqa: S608 -- fixed columns and WHERE; values are bound
    for row in _cursor(conn, "reconcile_reservations", query, **params):
        yield ReservationRow(*row)


def orders_by_id(database: db.Database, order_ids: Sequence[str]) -> dict[str, OrderRow]:
    found: dict[str, OrderRow] = {}
    if not order_ids:
        return found
    with snapshot(database) as conn:
        for start in range(0, len(order_ids), FETCH_BATCH):
            chunk = list(order_ids[start : start + FETCH_BATCH])
            query = f"SELECT {_ORDER_COLUMNS} FROM orders WHERE order_id = ANY(CAST(:ids AS text[]))"  # noqa: S608 -- fixed columns; ids are bound
            for row in conn.run(query, ids=chunk):
                found[row[0]] = OrderRow(*row)
    return found


def dlq_depths(dlq_urls: dict[str, str]) -> dict[str, int]:
    """Messages in each DLQ, visible or not (a message being inspected is still there)."""
    sqs = aws.client("sqs")
    depths = {}
    for name, url in dlq_urls.items():
        attributes = sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        depths[name] = int(attributes.get("ApproximateNumberOfMessages", 0)) + int(
            attributes.get("ApproximateNumberOfMessagesNotVisible", 0)
        )
    return depths
