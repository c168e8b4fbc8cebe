"""The per-environment connection cap (DB_POOL_MAX, functions/common/db.py), real Postgres.

The stack's connection arithmetic (infra/constructs/db_limits.py) counts on each environment
never holding more than `DbPool.max_open` connections per database: these tests hold the pool
to it under concurrency, and check that a slot is never lost (a failed connect, a broken
connection) — a lost slot would shrink the pool for the rest of the environment's life.
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pg8000.native
import pytest

from functions.common.db import Database, DatabaseUnavailable
from functions.common.settings import DbPool
from valerix_localcloud.postgres import SUPERUSER


@pytest.fixture
def pool_factory(postgres_servers, monkeypatch):
    """Database(pool=...) whose connections go to the test server, tagged with a unique
    application_name so pg_stat_activity counts exactly this pool's connections."""
    server = postgres_servers["order"]
    tag = f"pool-test-{uuid.uuid4().hex[:8]}"
    opened: list[pg8000.native.Connection] = []
    failures = {"next": 0}

    def _open(self):
        if failures["next"]:
            failures["next"] -= 1
            raise DatabaseUnavailable("cannot connect to the database: refused (test)")
        conn = pg8000.native.Connection(
            user=SUPERUSER,
            password=server.password,
            host="127.0.0.1",
            port=server.port,
            database=server.dbname,
            application_name=tag,
        )
        opened.append(conn)
        return conn

    monkeypatch.setattr(Database, "_open", _open)
    made: list[Database] = []

    def make(max_open: int, wait_seconds: float = 30.0) -> Database:
        database = Database(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:unused",
            pool=DbPool(max_open=max_open, wait_seconds=wait_seconds),
        )
        made.append(database)
        return database

    make.tag, make.opened, make.failures, make.server = tag, opened, failures, server
    yield make
    for database in made:
        database.close()


def _open_connections(conn: pg8000.native.Connection, tag: str) -> int:
    return conn.run("SELECT count(*) FROM pg_stat_activity WHERE application_name = :tag", tag=tag)[0][0]


def test_concurrent_callers_never_hold_more_than_the_cap(pool_factory):
    database = pool_factory(max_open=2)
    seen: list[int] = []

    def work(_: int) -> None:
        with database.transaction() as conn:
            seen.append(_open_connections(conn, pool_factory.tag))
            conn.run("SELECT pg_sleep(0.02)")  # keep transactions overlapping

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(40)))  # raises if any caller failed
    assert len(seen) == 40
    assert max(seen) <= 2, f"the pool opened {max(seen)} connections with DB_POOL_MAX=2"
    assert len(pool_factory.opened) <= 2


def test_a_caller_past_the_cap_is_told_why_and_the_slot_comes_back(pool_factory):
    database = pool_factory(max_open=1, wait_seconds=0)
    with database.transaction() as held:
        held.run("SELECT 1")
        refused = pytest.raises(DatabaseUnavailable, match=r"all 1 database connections .* in use .*DB_POOL_MAX")
        with refused, database.transaction():
            pass  # pragma: no cover - never entered
    with database.transaction() as conn:  # the held connection went back to the pool
        assert conn is held
    assert len(pool_factory.opened) == 1


def test_a_waiting_caller_gets_the_connection_another_returns(pool_factory):
    database = pool_factory(max_open=1, wait_seconds=30)
    got: list[pg8000.native.Connection] = []
    with database.transaction() as held:
        waiter = threading.Thread(target=lambda: got.extend([_use(database)]))
        waiter.start()
    waiter.join(30)
    assert got == [held] and len(pool_factory.opened) == 1


def _use(database: Database) -> pg8000.native.Connection:
    with database.transaction() as conn:
        conn.run("SELECT 1")
        return conn


def test_a_failed_connect_gives_its_slot_back(pool_factory):
    database = pool_factory(max_open=1, wait_seconds=0)
    pool_factory.failures["next"] = 1
    with pytest.raises(DatabaseUnavailable, match="refused"):
        _use(database)
    _use(database)  # would be "all 1 ... in use" had the failed attempt kept the slot
    assert len(pool_factory.opened) == 1


def test_a_broken_pooled_connection_is_replaced_in_its_slot(pool_factory):
    database = pool_factory(max_open=1, wait_seconds=0)
    first = _use(database)
    with pool_factory.server.connect() as admin:
        pid = first.run("SELECT pg_backend_pid()")[0][0]
        admin.run("SELECT pg_terminate_backend(:pid)", pid=pid)
    second = _use(database)  # BEGIN on the dead connection fails; a new one takes its slot
    assert second is not first and len(pool_factory.opened) == 2
    with database.transaction() as conn:
        assert _open_connections(conn, pool_factory.tag) == 1


def test_a_connection_broken_inside_a_transaction_frees_its_slot(pool_factory):
    database = pool_factory(max_open=1, wait_seconds=0)
    with pytest.raises(DatabaseUnavailable, match="broke"), database.transaction() as conn:
        pid = conn.run("SELECT pg_backend_pid()")[0][0]
        with pool_factory.server.connect() as admin:
            admin.run("SELECT pg_terminate_backend(:pid)", pid=pid)
        conn.run("SELECT 1")
    _use(database)  # the broken connection's slot is free again
    assert len(pool_factory.opened) == 2
