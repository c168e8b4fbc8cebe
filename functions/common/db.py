"""pg8000 connections to a service's own Postgres, credentials from Secrets Manager.

- The secret (RDS shape: host, port, username, password, dbname) is read through the Powertools
  parameters utility and cached for DB_SECRET_CACHE_SECONDS (default 300 s). A failed login
  re-reads it once (rotation). Each function's secret is its own login: the service's `app`
  role at run time, its `owner` role for migrations (functions/common/roles.py).
- TLS follows `DbTls` (DB_TLS / DB_CA_BUNDLE, functions/common/settings.py): `verify-full` checks
  the server certificate against the RDS CA bundle and the host name; `disable` is set explicitly
  by target=local. Nothing is guessed from the host name.
- Connections are kept in a small per-environment pool and reused across invocations. In Lambda
  one request runs at a time, so this is one long-lived connection; tests and local servers with
  threads get one connection per concurrent caller.
- All data access goes through `transaction()`. Its `BEGIN` doubles as the liveness probe: a
  pooled connection that turns out to be broken is dropped and replaced before any statement of
  the transaction ran, so the retry is always safe.
- The gremlin's database faults (functions/gremlin/injector.py, mode `database`) are applied here,
  at the driver layer, so they work on both targets without touching RDS: `transaction()` and
  `connection()` ask the injector first; `unreachable` / `exhausted` raise DatabaseUnavailable
  before a connection is taken, `slow` runs `pg_sleep` right after BEGIN, `locked` takes one
  shared advisory lock first and then sleeps holding it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import pg8000.native
from pg8000.exceptions import DatabaseError, InterfaceError

from functions.common import aws
from functions.common.errors import DatabaseUnavailable  # defined there (the API maps it), raised here
from functions.common.settings import DbTls

__all__ = ["Database", "DatabaseUnavailable", "DbSecret", "connect", "get_database", "pg_error_code", "read_secret",
           "ssl_context"]

VERIFY_FULL = DbTls()  # the default: TLS, certificate chain and host name verified

_NETWORK_ERRORS = (InterfaceError, OSError, EOFError)


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


def connect(secret: DbSecret | Mapping[str, Any], *, tls: DbTls, database: str | None = None, timeout: float = 5.0,
            application_name: str = "valerix") -> pg8000.native.Connection:
    """One new connection with a secret's login. pg8000's own errors (and KeyError/ValueError for
    a secret without username/password/host) propagate: callers word them for their context."""
    login = secret if isinstance(secret, DbSecret) else DbSecret.from_json(secret)
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


def _gremlin_fault() -> Any:
    """The gremlin's database fault for the next transaction, or None. Never raises: the
    gremlin fails open, it must not become the outage it simulates."""
    try:
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
        raise DatabaseUnavailable("cannot connect to the database: 53300 sorry, too many clients already "
                                  "(injected by the gremlin)")
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
    def __init__(self, secret_arn: str, *, tls: DbTls = VERIFY_FULL, secret_max_age: int = 300, max_idle: int = 4,
                 connect_timeout: float = 5.0, application_name: str = "valerix") -> None:
        self.secret_arn = secret_arn
        self.tls = tls
        self.secret_max_age = secret_max_age
        self.max_idle = max_idle
        self.connect_timeout = connect_timeout
        self.application_name = application_name
        self._idle: list[pg8000.native.Connection] = []
        self._lock = threading.Lock()

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
                return connect(secret, tls=self.tls, timeout=self.connect_timeout,
                               application_name=self.application_name)
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
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self._open(), False

    def _release(self, conn: pg8000.native.Connection) -> None:
        with self._lock:
            if len(self._idle) < self.max_idle:
                self._idle.append(conn)
                return
        _close_quietly(conn)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            _close_quietly(conn)

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
                _close_quietly(conn)
                conn = self._open()
        broken = False
        try:
            _slow_down(conn, fault, in_transaction=False)
            yield conn
        except _NETWORK_ERRORS:
            broken = True
            raise
        finally:
            if broken:
                _close_quietly(conn)
            else:
                self._release(conn)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[pg8000.native.Connection]:
        """BEGIN ... COMMIT (ROLLBACK on any exception). Raises DatabaseUnavailable when unreachable."""
        fault = _gremlin_fault()
        _refuse_if_injected(fault)
        conn, reused = self._acquire()
        try:
            conn.run("BEGIN")
        except _NETWORK_ERRORS as exc:
            _close_quietly(conn)
            if not reused:
                raise DatabaseUnavailable(f"database connection failed: {exc}") from exc
            conn = self._open()  # the pooled connection was stale: replace it, nothing ran yet
            try:
                conn.run("BEGIN")
            except _NETWORK_ERRORS as exc2:
                _close_quietly(conn)
                raise DatabaseUnavailable(f"database connection failed: {exc2}") from exc2
        try:
            _slow_down(conn, fault, in_transaction=True)
            yield conn
        except BaseException as exc:
            if isinstance(exc, _NETWORK_ERRORS):
                _close_quietly(conn)
                raise DatabaseUnavailable(f"database connection broke: {exc}") from exc
            try:
                conn.run("ROLLBACK")
            except _NETWORK_ERRORS:
                _close_quietly(conn)
                raise
            self._release(conn)
            raise
        try:
            conn.run("COMMIT")
        except _NETWORK_ERRORS as exc:
            _close_quietly(conn)
            raise DatabaseUnavailable(f"database connection broke during COMMIT: {exc}") from exc
        except BaseException:
            with contextlib.suppress(Exception):
                conn.run("ROLLBACK")
            self._release(conn)
            raise
        self._release(conn)

    def ping(self, timeout_note: str = "") -> float:
        """Run `SELECT 1`; return the elapsed milliseconds. Raises on failure."""
        started = time.perf_counter()
        with self.transaction() as conn:
            conn.run("SELECT 1")
        return (time.perf_counter() - started) * 1000.0


def _close_quietly(conn: pg8000.native.Connection) -> None:
    with contextlib.suppress(Exception):
        conn.close()


@functools.cache
def get_database(secret_arn: str, *, tls: DbTls = VERIFY_FULL, secret_max_age: int = 300,
                 application_name: str = "valerix") -> Database:
    """The pooled Database for a secret (and connection options), one per execution environment."""
    return Database(secret_arn, tls=tls, secret_max_age=secret_max_age, application_name=application_name)
