"""The gremlin's database faults at the driver layer (functions/common/db.py), real Postgres.

The injector is a stand-in that returns a programmed :class:`DatabaseMode` (what
``GremlinInjector.database_fault()`` returns once it has decided this transaction is hit); the
selection itself (every N, percentage, expiry, which services obey) is unit-tested in
tests/unit/test_chaos.py. Here: what each fault does to a real transaction.
"""

from __future__ import annotations

import pytest

from functions.common import db
from functions.common.db import Database, DatabaseUnavailable
from functions.common.settings import get_settings
from functions.gremlin import injector as gremlin_injector
from functions.gremlin.document import DatabaseMode


class FaultyInjector:
    def __init__(self, fault: DatabaseMode | None = None, broken: bool = False) -> None:
        self.fault = fault
        self.broken = broken
        self.calls = 0

    def database_fault(self) -> DatabaseMode | None:
        self.calls += 1
        if self.broken:
            raise RuntimeError("SSM is on fire")
        return self.fault


@pytest.fixture
def database(postgres_servers, monkeypatch):
    server = postgres_servers["inventory"]
    opened = []

    def _open(self):
        conn = server.connect()
        opened.append(conn)
        return conn

    monkeypatch.setattr(Database, "_open", _open)
    # a function wired to the gremlin (GREMLIN_PARAMETER_NAME), whose injector is whatever the
    # test programs (no fault until it does)
    monkeypatch.setattr(db, "_gremlin_wired", lambda: True)
    monkeypatch.setattr(gremlin_injector, "injector", lambda: _PROGRAMMED.get("injector") or FaultyInjector(None))
    database = Database("arn:aws:secretsmanager:us-east-1:123456789012:secret:unused")
    database.opened = opened
    yield database
    database.close()
    _PROGRAMMED.clear()


_PROGRAMMED: dict[str, FaultyInjector] = {}


def program(fault: DatabaseMode | None = None, **kwargs) -> FaultyInjector:
    injector = FaultyInjector(fault, **kwargs)
    _PROGRAMMED["injector"] = injector
    return injector


@pytest.mark.parametrize(("fault", "words"), [("unreachable", "connection refused"), ("exhausted", "too many clients")])
def test_refusing_faults_fail_before_any_connection_or_statement(database, fault, words):
    with database.transaction() as conn:  # a pooled connection exists: the fault must not use it
        conn.run("SELECT 1")
    pooled = len(database.opened)
    injector = program(DatabaseMode(fault=fault))
    ran = []
    with pytest.raises(DatabaseUnavailable, match=words), database.transaction() as conn:
        ran.append(conn)
    with pytest.raises(DatabaseUnavailable, match=words), database.connection() as conn:
        ran.append(conn)
    assert ran == [] and injector.calls == 2
    assert len(database.opened) == pooled  # nothing new was opened either

    program(None)  # the fault is gone: the pool still works
    with database.transaction() as conn:
        assert conn.run("SELECT 1") == [[1]]


def test_slow_fault_holds_the_transaction_on_the_server(database):
    program(DatabaseMode(fault="slow", delay_ms=300))
    with database.transaction() as conn:
        # Measured by the server inside the transaction: pg_sleep ran after BEGIN, so the
        # transaction (and its connection) really was held at least that long.
        [[held]] = conn.run("SELECT EXTRACT(EPOCH FROM clock_timestamp() - transaction_timestamp())")
    assert float(held) >= 0.3
    program(None)
    with database.transaction() as conn:
        [[held]] = conn.run("SELECT EXTRACT(EPOCH FROM clock_timestamp() - transaction_timestamp())")
    assert float(held) < 0.3


def test_slow_fault_keeps_the_transaction_atomic(database):
    with database.transaction() as conn:
        conn.run("CREATE TABLE IF NOT EXISTS gremlin_probe (id int PRIMARY KEY)")
        conn.run("DELETE FROM gremlin_probe")
    program(DatabaseMode(fault="slow", delay_ms=50))
    with database.transaction() as conn:
        conn.run("INSERT INTO gremlin_probe VALUES (1)")
    with pytest.raises(RuntimeError), database.transaction() as conn:
        conn.run("INSERT INTO gremlin_probe VALUES (2)")
        raise RuntimeError("the caller fails after the statement")
    program(None)
    with database.transaction() as conn:
        assert conn.run("SELECT id FROM gremlin_probe ORDER BY id") == [[1]]
        conn.run("DROP TABLE gremlin_probe")


def test_a_broken_injector_fails_open(database):
    injector = program(broken=True)
    with database.transaction() as conn:
        assert conn.run("SELECT 1") == [[1]]
    assert injector.calls == 1


def test_the_hook_asks_the_process_injector(monkeypatch):
    seen = []
    monkeypatch.setattr(db, "_gremlin_wired", lambda: True)
    monkeypatch.setattr(gremlin_injector, "injector", lambda: seen.append(1) or FaultyInjector(DatabaseMode()))
    assert db._gremlin_fault().fault == "unreachable" and seen == [1]


def test_a_function_not_wired_to_the_gremlin_never_asks_it(monkeypatch):
    """The APIs have no GREMLIN_PARAMETER_NAME: their transactions neither consult nor import
    the injector (its models would cost their INIT or their first request)."""
    monkeypatch.delenv("GREMLIN_PARAMETER_NAME", raising=False)
    get_settings.cache_clear()
    monkeypatch.setattr(gremlin_injector, "injector", lambda: pytest.fail("the injector was asked"))
    try:
        assert db._gremlin_fault() is None
    finally:
        get_settings.cache_clear()


def test_a_function_wired_to_the_gremlin_asks_it(monkeypatch):
    monkeypatch.setenv("GREMLIN_PARAMETER_NAME", "/valerix/gremlin")
    get_settings.cache_clear()
    monkeypatch.setattr(gremlin_injector, "injector", lambda: FaultyInjector(DatabaseMode()))
    try:
        assert db._gremlin_fault().fault == "unreachable"
    finally:
        get_settings.cache_clear()


def test_locked_fault_makes_hit_transactions_queue_for_one_held_lock(database, postgres_servers):
    import threading

    from functions.gremlin.injector import LOCK_KEY

    program(DatabaseMode(fault="locked", delay_ms=1500))
    held = []

    def hit() -> None:
        with database.transaction() as conn:
            [[seconds]] = conn.run("SELECT EXTRACT(EPOCH FROM clock_timestamp() - transaction_timestamp())")
            held.append(float(seconds))

    observer = postgres_servers["inventory"].connect()
    try:
        first = threading.Thread(target=hit)
        first.start()
        waiting = []
        second = None
        for _ in range(200):  # until the first holds the lock, then start the second
            granted = observer.run(
                "SELECT granted FROM pg_locks WHERE locktype = 'advisory' "
                "AND classid::bigint = :hi AND objid::bigint = :lo",
                hi=LOCK_KEY >> 32,
                lo=LOCK_KEY & 0xFFFFFFFF,
            )
            if second is None and [True] in granted:
                second = threading.Thread(target=hit)
                second.start()
            if [False] in granted:
                waiting.append(True)  # the second is queued behind the held lock
                break
            threading.Event().wait(0.02)
        first.join()
        assert second is not None
        second.join()
    finally:
        observer.close()
    assert waiting, "the second transaction never waited for the lock"
    assert len(held) == 2 and min(held) >= 1.5  # each one then held it for delayMs itself
    program(None)
    with database.transaction() as conn:  # released: nothing left behind
        assert conn.run("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == [[0]]
