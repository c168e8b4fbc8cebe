"""pg8000 connections to a service's own Postgres, credentials from Secrets Manager.

- The secret (RDS shape: host, port, username, password, dbname) is read through the Powertools
  parameters utility and cached for DB_SECRET_CACHE_SECONDS (default 300 s). A failed login
  re-reads it once (rotation). Each function's secret is its own login: the service's `app`
  role at run time, its `owner` role for migrations (functions/common/roles.py).
- TLS follows `DbTls` (DB_TLS / DB_CA_BUNDLE, functions/common/settings.py): `verify-full` checks
  the server certificate against the RDS CA bundle and the host name; `disable` is set explicitly
  by target=local. Nothing is guessed from the host name.
- Connections are kept in a small per-environment pool and reused across invocations. The pool
  never holds more than `DbPool.max_open` connections (DB_POOL_MAX) open at once: a caller past
  it waits up to DB_POOL_WAIT_SECONDS for one to come back, then gets DatabaseUnavailable. The
  stack sets the cap per function so that reserved concurrency x cap fits the database's
  max_connections (infra/constructs/db_limits.py); in Lambda one request runs at a time, so an
  API environment needs one or two, a queue consumer one per concurrently handled record.
- On target=aws the run-time functions connect to the RDS Proxy endpoint (DB_PROXY_ENDPOINT)
  instead of the secret's host, with the same login: the proxy authenticates them against the
  same secret and pools the database connections.
- All data access goes through `transaction()`. Its `BEGIN` doubles as the liveness probe: a
  pooled connection that turns out to be broken is dropped and replaced before any statement of
  the transaction ran, so the retry is always safe.
- The gremlin's database faults (functions/gremlin/injector.py, mode `database`) are applied here,
  at the driver layer, so they work on both targets without touching RDS: `transaction()` and
  `connection()` ask the injector first; `unreachable` / `exhausted` raise DatabaseUnavailable
  before a connection is taken, `slow` runs `pg_sleep` right after BEGIN, `locked` takes one
  shared advisory lock first and then sleeps holding it.
- `transaction(deadline=...)` (issue 17, item 2): the caller's deadline bounds the transaction.
  Right after BEGIN, `statement_timeout` and `lock_timeout` are set (transaction-local) to the
  time left, so no statement -- the gremlin's slow `pg_sleep` and held lock included -- outlives
  it; a statement cancelled that way, or a deadline found passed just before COMMIT, rolls the
  transaction back and raises DeadlineExceeded. (COMMIT itself is not interruptible: it is
  only ever sent with time left.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, Literal, Protocol

import pg8000.native
from pg8000.exceptions import DatabaseError, InterfaceError

from functions.common import aws
from functions.common.deadline import Deadline
from functions.common.errors import DatabaseUnavailable, DeadlineExceeded
from functions.common.settings import DbPool, DbTls, get_settings

__all__ = [
    "Connection",
    "Database",
    "DatabaseUnavailable",
    "DbSecret",
    "DeadlineExceeded",
    "connect",
    "get_database",
    "pg_error_code",
    "read_secret",
    "ssl_context",
]


class Connection(Protocol):
    """What the repositories use of a pg8000 native connection (typed here: pg8000 has no stubs)."""

    def run(self, sql: str, stream: Any = None, types: Any = None, **params: Any) -> list[list[Any]]: ...


_NETWORK_ERRORS = (InterfaceError, OSError, EOFError)
VERIFY_FULL = DbTls()  # the default: TLS, certificate chain and host name verified
DEFAULT_POOL = DbPool()
# SQLSTATEs of a statement cut short by the timeouts a deadline sets: query_canceled
# (statement_timeout) and lock_not_available (lock_timeout).
_TIMED_OUT = ("57014", "55P03")


def pg_error_code(exc: BaseException) -> str | None:
    """The SQLSTATE of a pg8000 DatabaseError (e.g. '23505'), if any."""
    if isinstance(exc, DatabaseError) and exc.args and isinstance(exc.args[0], dict):
        return exc.args[0].get("C")
    return None


# ---------------------------------------------------------------------- secrets


def read_secret(secret_arn: str, *, max_age: int = 300, force: bool = False) -> dict[str, Any]:
    """An RDS-shaped secret as a dict (Powertools SecretsProvider: cached for `max_age` s)."""
    secret = aws.secrets_provider().get(secret_arn, transform="json", max_age=max_age, force_fetch=force)
    if not isinstance(secret, dict):
        raise DatabaseUnavailable(f"secret {secret_arn} is not a JSON object")
    return secret


# ---------------------------------------------------------------------- TLS + connect


@functools.cache
def ssl_context(tls: DbTls) -> ssl.SSLContext | Literal[False]:
    """pg8000's `ssl_context`: False = no TLS; else a context that verifies chain and host name
    (one per CA bundle and environment: loading the bundle is the expensive part).

    Only the CAs of `tls.ca_bundle` are trusted (not the system store): a certificate from any
    other CA, or for another host name, fails the handshake.
    """
    if tls.mode == "disable":
        return False
    if not tls.ca_bundle.is_file():
        raise DatabaseUnavailable(f"DB_CA_BUNDLE {tls.ca_bundle} does not exist: cannot verify the database")
    context = ssl.create_default_context(cafile=str(tls.ca_bundle))  # CERT_REQUIRED + check_hostname
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


@dataclasses.dataclass(frozen=True, repr=False)  # no repr: it holds a password
class DbSecret:
    """An RDS-shaped secret (`{host, port, username, password, dbname}`), the login every
    function connects with (the pool here, the migrate functions, backup and restore)."""

    host: str
    port: int
    username: str
    password: str
    dbname: str

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> DbSecret:
        """Raises KeyError naming a missing field, ValueError for a port that is not a number."""
        return cls(
            host=str(value["host"]),
            port=int(value.get("port") or 5432),
            username=str(value["username"]),
            password=str(value["password"]),
            dbname=str(value.get("dbname") or value.get("dbName") or "postgres"),
        )


def connect(
    secret: DbSecret | Mapping[str, Any],
    *,
    tls: DbTls,
    database: str | None = None,
    timeout: float = 5.0,
    application_name: str = "valerix",
    host: str | None = None,
) -> pg8000.native.Connection:
    """One new connection with a secret's login (to `host` instead of the secret's, when given:
    the RDS Proxy endpoint). pg8000's own errors (and KeyError/ValueError for a secret without
    username/password/host) propagate: callers word them for their context."""
    login = secret if isinstance(secret, DbSecret) else DbSecret.from_json(secret)
    if host:
        login = dataclasses.replace(login, host=host)
    return pg8000.native.Connection(
        user=login.username,
        password=login.password,
        host=login.host,
        port=login.port,
        database=database or login.dbname,
        timeout=timeout,
        application_name=application_name,
        tcp_keepalive=True,
        ssl_context=ssl_context(tls),
    )


def _gremlin_wired() -> bool:
    """Whether this function obeys the gremlin: the stack gives GREMLIN_PARAMETER_NAME to those
    that do (the reserve function, the inventory queue consumer), and the injector of any other
    answers "no fault" without reading anything."""
    return bool(get_settings().gremlin.parameter_name)


def _gremlin_fault() -> Any:
    """The gremlin's database fault for the next transaction, or None. Never raises: the
    gremlin fails open, it must not become the outage it simulates."""
    try:
        # A function not wired to the gremlin (the inventory and order APIs) never imports the
        # injector and its pydantic models (~20 ms): its INIT does not, nor its first request.
        if not _gremlin_wired():
            return None
        # Imported here, not at the top: the gremlin's pydantic models are built by the first
        # transaction, not at INIT (the backup functions import this module and never obey).
        from functions.gremlin.injector import injector

        return injector().database_fault()
    except Exception:  # noqa: BLE001 -- fail open, whatever went wrong
        return None


def _refuse_if_injected(fault: Any) -> None:
    if fault is None or fault.fault not in ("unreachable", "exhausted"):
        return
    if fault.fault == "exhausted":
        raise DatabaseUnavailable(
            "cannot connect to the database: 53300 sorry, too many clients already (injected by the gremlin)"
        )
    raise DatabaseUnavailable("cannot connect to the database: connection refused (injected by the gremlin)")


def _slow_down(conn: pg8000.native.Connection, fault: Any, *, in_transaction: bool) -> None:
    if fault is None or fault.fault not in ("slow", "locked"):
        return
    if fault.fault == "locked" and in_transaction:
        # A lock held: every hit transaction queues for the same advisory lock and keeps it for
        # delayMs (released by COMMIT/ROLLBACK). Raw connections just wait, like `slow`.
        from functions.gremlin.injector import LOCK_KEY

        conn.run("SELECT pg_advisory_xact_lock(:key)", key=LOCK_KEY)
    if fault.delay_ms:
        conn.run("SELECT pg_sleep(:seconds)", seconds=fault.delay_ms / 1000.0)


class Database:
    def __init__(
        self,
        secret_arn: str,
        *,
        tls: DbTls = VERIFY_FULL,
        pool: DbPool = DEFAULT_POOL,
        secret_max_age: int = 300,
        max_idle: int = 4,
        connect_timeout: float = 5.0,
        application_name: str = "valerix",
    ) -> None:
        self.secret_arn = secret_arn
        self.tls = tls
        self.pool = pool
        self.secret_max_age = secret_max_age
        self.max_idle = min(max_idle, pool.max_open)
        self.connect_timeout = connect_timeout
        self.application_name = application_name
        self._idle: list[pg8000.native.Connection] = []
        self._open_count = 0  # idle + in use: never above pool.max_open
        self._available = threading.Condition()

    # ---------------------------------------------------------------- credentials

    def _secret(self, force: bool = False) -> DbSecret:
        secret = read_secret(self.secret_arn, max_age=self.secret_max_age, force=force)
        try:
            return DbSecret.from_json(secret)
        except (KeyError, TypeError, ValueError) as exc:
            raise DatabaseUnavailable(f"secret {self.secret_arn} lacks field {exc}") from exc

    def _open(self) -> pg8000.native.Connection:
        for attempt in (1, 2):
            secret = self._secret(force=attempt == 2)
            try:
                return connect(
                    secret,
                    tls=self.tls,
                    timeout=self.connect_timeout,
                    application_name=self.application_name,
                    host=self.pool.proxy_endpoint,
                )
            except DatabaseError as exc:
                # 28P01 invalid password / 28000 invalid authorization: the secret may have rotated.
                if pg_error_code(exc) in ("28P01", "28000") and attempt == 1:
                    continue
                raise DatabaseUnavailable(f"cannot log in to the database: {exc}") from exc
            except _NETWORK_ERRORS as exc:
                raise DatabaseUnavailable(f"cannot connect to the database: {exc}") from exc
        raise DatabaseUnavailable("cannot log in to the database")  # pragma: no cover

    # ---------------------------------------------------------------- pool

    def _acquire(self) -> tuple[pg8000.native.Connection, bool]:
        """An idle connection (reused=True) or a new one in a free slot; waits for either while
        all `pool.max_open` slots are taken. Every connection handed out goes back through
        `_release` or `_discard` (or `_replace`, which keeps its slot)."""
        deadline = time.monotonic() + self.pool.wait_seconds
        with self._available:
            while not self._idle and self._open_count >= self.pool.max_open:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DatabaseUnavailable(
                        f"all {self.pool.max_open} database connections of this environment are in use "
                        f"(waited {self.pool.wait_seconds:g} s; DB_POOL_MAX caps them)"
                    )
                self._available.wait(remaining)
            if self._idle:
                return self._idle.pop(), True
            self._open_count += 1
        try:
            return self._open(), False
        except BaseException:
            self._forget_slot()
            raise

    def _forget_slot(self) -> None:
        with self._available:
            self._open_count -= 1
            self._available.notify()

    def _release(self, conn: pg8000.native.Connection) -> None:
        with self._available:
            if len(self._idle) < self.max_idle:
                self._idle.append(conn)
                self._available.notify()
                return
        self._discard(conn)

    def _discard(self, conn: pg8000.native.Connection) -> None:
        _close_quietly(conn)
        self._forget_slot()

    def _replace(self, conn: pg8000.native.Connection) -> pg8000.native.Connection:
        """Close a broken connection and open another in its slot."""
        _close_quietly(conn)
        try:
            return self._open()
        except BaseException:
            self._forget_slot()
            raise

    def close(self) -> None:
        with self._available:
            idle, self._idle = self._idle, []
        for conn in idle:
            self._discard(conn)

    @contextlib.contextmanager
    def connection(self) -> Iterator[pg8000.native.Connection]:
        """A raw connection outside any transaction (migrations, advisory locks, probes)."""
        fault = _gremlin_fault()
        _refuse_if_injected(fault)
        conn, reused = self._acquire()
        if reused:
            try:
                conn.run("SELECT 1")
            except _NETWORK_ERRORS:
                conn = self._replace(conn)
            except BaseException:
                self._discard(conn)
                raise
        broken = False
        try:
            _slow_down(conn, fault, in_transaction=False)
            yield conn
        except _NETWORK_ERRORS:
            broken = True
            raise
        finally:
            if broken:
                self._discard(conn)
            else:
                self._release(conn)

    @contextlib.contextmanager
    def transaction(self, deadline: Deadline | None = None) -> Iterator[pg8000.native.Connection]:
        """BEGIN ... COMMIT (ROLLBACK on any exception). Raises DatabaseUnavailable when unreachable,
        DeadlineExceeded (rolled back) when `deadline` passes first (see the module doc)."""
        if deadline is not None and deadline.passed():
            raise DeadlineExceeded("the deadline passed before the transaction began")
        fault = _gremlin_fault()
        _refuse_if_injected(fault)
        conn, reused = self._acquire()
        try:
            conn.run("BEGIN")
        except _NETWORK_ERRORS as exc:
            if not reused:
                self._discard(conn)
                raise DatabaseUnavailable(f"database connection failed: {exc}") from exc
            conn = self._replace(conn)  # the pooled connection was stale: replace it, nothing ran yet
            try:
                conn.run("BEGIN")
            except _NETWORK_ERRORS as exc2:
                self._discard(conn)
                raise DatabaseUnavailable(f"database connection failed: {exc2}") from exc2
            except BaseException:
                self._discard(conn)
                raise
        except BaseException:
            self._discard(conn)
            raise
        try:
            if deadline is not None:
                _bound_by(conn, deadline)
            _slow_down(conn, fault, in_transaction=True)
            yield conn
            if deadline is not None and deadline.passed():
                raise DeadlineExceeded("the deadline passed before COMMIT: rolled back")
        except BaseException as exc:
            if isinstance(exc, _NETWORK_ERRORS):
                self._discard(conn)
                raise DatabaseUnavailable(f"database connection broke: {exc}") from exc
            try:
                conn.run("ROLLBACK")
            except BaseException:
                self._discard(conn)
                raise
            self._release(conn)
            if deadline is not None and pg_error_code(exc) in _TIMED_OUT:
                raise DeadlineExceeded(
                    f"a statement ran into the deadline ({pg_error_code(exc)}): rolled back"
                ) from exc
            raise
        try:
            conn.run("COMMIT")
        except _NETWORK_ERRORS as exc:
            self._discard(conn)
            raise DatabaseUnavailable(f"database connection broke during COMMIT: {exc}") from exc
        except BaseException:
            with contextlib.suppress(Exception):
                conn.run("ROLLBACK")
            self._release(conn)
            raise
        self._release(conn)

    def ping(self) -> float:
        """Run `SELECT 1`; return the elapsed milliseconds. Raises on failure."""
        started = time.perf_counter()
        with self.transaction() as conn:
            conn.run("SELECT 1")
        return (time.perf_counter() - started) * 1000.0


def _bound_by(conn: pg8000.native.Connection, deadline: Deadline) -> None:
    """Transaction-local statement and lock timeouts: the time `deadline` leaves (at least 1 ms,
    as 0 would mean no timeout at all). set_config(..., true) is SET LOCAL with parameters."""
    remaining_ms = str(max(1, deadline.remaining_ms()))
    conn.run(
        "SELECT set_config('statement_timeout', :ms, true), set_config('lock_timeout', :ms, true)", ms=remaining_ms
    )


def _close_quietly(conn: pg8000.native.Connection) -> None:
    with contextlib.suppress(Exception):
        conn.close()


@functools.cache
def get_database(
    secret_arn: str,
    *,
    tls: DbTls = VERIFY_FULL,
    pool: DbPool = DEFAULT_POOL,
    secret_max_age: int = 300,
    application_name: str = "valerix",
) -> Database:
    """The pooled Database for a secret (and connection options), one per execution environment."""
    return Database(secret_arn, tls=tls, pool=pool, secret_max_age=secret_max_age, application_name=application_name)
