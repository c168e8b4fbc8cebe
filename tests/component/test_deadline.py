"""Deadline propagation (issue 17, item 2), real Postgres: the order sends the instant it stops
waiting (`deadlineEpochMs`); inventory refuses work it cannot finish by then, bounds every
statement by it (statement_timeout / lock_timeout, transaction-local) and never commits after it.
Whatever cut the reservation short, nothing is written, and the queue path (no deadline) then
reserves the order exactly once.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from functions.common import db
from functions.common.db import Database, DeadlineExceeded
from functions.common.deadline import Deadline
from functions.gremlin import injector as chaos
from functions.gremlin.document import DatabaseMode
from functions.inventory.handler import reserve_handler
from tests.component.conftest import lambda_context

# ---------------------------------------------------------------------------- the database layer


@pytest.fixture
def database(postgres_servers, monkeypatch):
    """A pool on the inventory server's superuser, outside any service environment."""
    server = postgres_servers["inventory"]
    monkeypatch.setattr(Database, "_open", lambda self: server.connect())
    database = Database("arn:aws:secretsmanager:us-east-1:123456789012:secret:unused")
    with database.transaction() as conn:
        conn.run("CREATE TABLE IF NOT EXISTS deadline_probe (id int PRIMARY KEY)")
        conn.run("DELETE FROM deadline_probe")
    yield database
    with database.transaction() as conn:
        conn.run("DROP TABLE deadline_probe")
    database.close()


def _ms(setting: str) -> int:
    """A SHOW statement_timeout value ('850ms', '1s', '0') in milliseconds."""
    for unit, factor in (("ms", 1), ("s", 1000), ("min", 60_000)):
        if setting.endswith(unit) and setting[: -len(unit)].isdigit():
            return int(setting[: -len(unit)]) * factor
    return int(setting)


def _probe_rows(database: Database) -> list:
    with database.transaction() as conn:
        return conn.run("SELECT id FROM deadline_probe ORDER BY id")


def test_the_deadline_sets_transaction_local_statement_and_lock_timeouts(database):
    deadline = Deadline(time.monotonic() + 1.5)
    with database.transaction(deadline) as conn:
        [[statement_timeout]] = conn.run("SHOW statement_timeout")
        [[lock_timeout]] = conn.run("SHOW lock_timeout")
    for setting in (statement_timeout, lock_timeout):
        assert 0 < _ms(setting) <= 1500, setting
    # SET LOCAL: the pooled connection the next transaction gets carries no timeout of its own
    with database.transaction() as conn:
        assert conn.run("SHOW statement_timeout") == [["0"]]
        assert conn.run("SHOW lock_timeout") == [["0"]]


def test_a_statement_running_into_the_deadline_is_cancelled_and_rolled_back(database):
    with pytest.raises(DeadlineExceeded, match="57014"), database.transaction(Deadline(time.monotonic() + 0.4)) as conn:
        conn.run("INSERT INTO deadline_probe VALUES (1)")
        conn.run("SELECT pg_sleep(5)")
    assert _probe_rows(database) == []
    with database.transaction() as conn:  # the connection went back to the pool healthy
        assert conn.run("SELECT 1") == [[1]]


class _DatabaseGremlin:
    """Stands in for the gremlin injector: every transaction gets `fault` (see test_db_gremlin.py)."""

    def __init__(self, fault: DatabaseMode | None) -> None:
        self.fault = fault

    def database_fault(self) -> DatabaseMode | None:
        return self.fault


def test_the_gremlins_slow_statement_is_cut_at_the_deadline(database, monkeypatch):
    monkeypatch.setattr(db, "_gremlin_wired", lambda: True)  # as the reserve function is
    monkeypatch.setattr(chaos, "injector", lambda: _DatabaseGremlin(DatabaseMode(fault="slow", delay_ms=5000)))
    with pytest.raises(DeadlineExceeded, match="57014"), database.transaction(Deadline(time.monotonic() + 0.4)) as conn:
        conn.run("INSERT INTO deadline_probe VALUES (2)")
    monkeypatch.setattr(chaos, "injector", lambda: _DatabaseGremlin(None))
    assert _probe_rows(database) == []


def test_nothing_commits_once_the_deadline_has_passed(database):
    """The statements were quick, the caller's code was not: the deadline passed inside the
    transaction without any statement to cancel. COMMIT is not sent; it rolls back."""
    deadline = Deadline(time.monotonic() + 0.3)
    with pytest.raises(DeadlineExceeded, match="before COMMIT"), database.transaction(deadline) as conn:
        conn.run("INSERT INTO deadline_probe VALUES (3)")
        time.sleep(deadline.remaining() + 0.05)
    assert _probe_rows(database) == []
    with database.transaction(Deadline(time.monotonic() + 5)) as conn:  # with time left it commits
        conn.run("INSERT INTO deadline_probe VALUES (4)")
    assert _probe_rows(database) == [[4]]


def test_a_deadline_already_passed_takes_no_connection(database):
    database.close()  # nothing pooled either
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Database, "_open", lambda self: pytest.fail("a connection was opened"))
        with pytest.raises(DeadlineExceeded), database.transaction(Deadline(time.monotonic() - 0.01)):
            pytest.fail("the transaction body ran")


# ---------------------------------------------------------------------------- the reserve function


def _reserve(product_id: str, quantity: int, *, budget_ms: int | None, order_id: str | None = None) -> dict:
    payload = {
        "action": "reserve",
        "orderId": order_id or f"dl-{uuid.uuid4().hex[:12]}",
        "productId": product_id,
        "quantity": quantity,
    }
    if budget_ms is not None:
        payload["deadlineEpochMs"] = int(time.time() * 1000) + budget_ms
    return reserve_handler(payload, lambda_context("valerix-test-inventory-reserve"))


@pytest.mark.parametrize("budget_ms", [60, 0, -5000], ids=["too-little-left", "at-the-deadline", "long-past"])
def test_too_little_budget_is_refused_before_any_database_work(valerix, monkeypatch, budget_ms):
    from functions.inventory import repository

    before = valerix.snapshot()
    monkeypatch.setattr(repository, "database", lambda: pytest.fail("the database was used"))
    answer = _reserve("widget", 2, budget_ms=budget_ms)
    assert answer["statusCode"] == 504 and answer["status"] == "DEADLINE_EXCEEDED", answer
    assert answer["message"].startswith("reservation not made, nothing was written: not started")
    assert valerix.snapshot() == before


def test_enough_budget_reserves_as_before(valerix):
    answer = _reserve("widget", 2, budget_ms=1500)
    assert answer["statusCode"] == 201 and answer["status"] == "RESERVED", answer
    assert valerix.stock("widget") == 98


def test_a_held_row_lock_cannot_keep_the_reservation_past_the_deadline(valerix, postgres_servers):
    """Another transaction holds the product row: the stock update waits for it only until the
    deadline, then the reservation (claim included) rolls back. Without a deadline (the queue
    path) the same reservation waits for the lock and succeeds once it is released."""
    order_id = f"dl-lock-{uuid.uuid4().hex[:8]}"
    holder = postgres_servers["inventory"].connect()
    # Released after 5 s whatever happens: without the deadline the reservation would wait for
    # it and then succeed (and this test fail) instead of hanging.
    release = threading.Timer(5.0, lambda: holder.run("ROLLBACK"))
    try:
        holder.run("BEGIN")
        holder.run("SELECT stock FROM products WHERE product_id = 'gadget' FOR UPDATE")
        release.start()
        answer = _reserve("gadget", 3, budget_ms=700, order_id=order_id)
        assert answer["statusCode"] == 504 and answer["status"] == "DEADLINE_EXCEEDED", answer
    finally:
        release.cancel()
        release.join()
        holder.run("ROLLBACK")  # (a warning only, if the timer did it already)
        holder.close()
    assert valerix.stock("gadget") == 50
    assert valerix.count("inventory", "reservations") == 0
    answer = _reserve("gadget", 3, budget_ms=None, order_id=order_id)  # the order id is still free
    assert answer["statusCode"] == 201, answer
    assert valerix.stock("gadget") == 47


def test_a_reservation_finishing_after_the_deadline_is_rolled_back_not_committed(valerix, monkeypatch):
    """Every statement ran in time, but the transaction reached its end after the deadline:
    the stock update and the claim are rolled back and the caller is told so."""
    from functions.inventory import repository

    real_take_stock = repository.take_stock

    def slow_take_stock(conn, product_id, quantity):
        remaining = real_take_stock(conn, product_id, quantity)  # the UPDATE did run
        time.sleep(0.6)  # past the deadline below, outside any statement
        return remaining

    monkeypatch.setattr(repository, "take_stock", slow_take_stock)
    answer = _reserve("gizmo", 4, budget_ms=400)
    assert answer["statusCode"] == 504 and answer["status"] == "DEADLINE_EXCEEDED", answer
    assert "before COMMIT" in answer["message"]
    assert valerix.stock("gizmo") == 25
    assert valerix.count("inventory", "reservations") == 0


def test_the_queue_path_has_no_deadline(valerix, monkeypatch):
    """What the queue consumer reserves is bounded by nothing but its own Lambda timeout."""
    from functions.inventory import service

    seen = []
    real_reserve = service.reserve

    def reserve(order_id, product_id, quantity, deadline=None):
        seen.append(deadline)
        return real_reserve(order_id, product_id, quantity, deadline)

    monkeypatch.setattr(service, "reserve", reserve)
    assert valerix.order("widget", 1).status == 201  # the sync path: with the order's deadline
    valerix.chaos.before = lambda: (_ for _ in ()).throw(chaos.InjectedError(503, "injected"))
    reply = valerix.order("widget", 1)
    assert reply.status == 202, reply.body
    valerix.chaos.before = None
    valerix.drain()  # the queue path
    assert valerix.order_row(reply.body["orderId"])["status"] == "CONFIRMED"
    assert len(seen) == 2 and isinstance(seen[0], Deadline) and seen[1] is None
