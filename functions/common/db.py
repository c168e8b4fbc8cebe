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
- The gremlin's database faults (functions/common/chaos.py, mode `database`) are applied here,
  at the driver layer, so they work on both targets without touching RDS: `transaction()` and
  `connection()` ask the injector first; `unreachable` / `exhausted` raise DatabaseUnavailable
  before a connection is taken, `slow` runs `pg_sleep` right after BEGIN, `locked` takes one
  shared advisory lock first and then sleeps holding it.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import pg8000.native
from pg8000.exceptions import DatabaseError, InterfaceError

from functions.common import aws
from functions.common.errors import DatabaseUnavailable  # noqa: F401 - defined there, raised here
from functions.common.settings import DbTls

__all__ = [
    "Database", "DatabaseUnavailable", "connect", "get_database", "pg_error_code", "read_secret",
    "reset_databases", "ssl_context",
]

_NETWORK_ERRORS = (InterfaceError, OSError, EOFError)


def pg_error_code(exc: BaseException) -> str | None:
    """The SQLSTATE of a pg8000 DatabaseError (e.g. '23505'), if any."""
    if isinstance(exc, DatabaseError) and exc.args and isinstance(exc.args[0], dict):
        return exc.args[0].get("C")
    return None


# ---------------------------------------------------------------------- secrets

_provider: Any = None
_provider_lock = threading.Lock()


def read_secret(secret_arn: str, *, max_age: int = 300, force: bool = False) -> dict:
    """An RDS-shaped secret as a dict (Powertools SecretsProvider: cached for `max_age` s)."""
    global _provider
    with _provider_lock:
        if _provider is None:
            from aws_lambda_powertools.utilities.parameters import SecretsProvider

            _provider = SecretsProvider(boto3_client=aws.client("secretsmanager"))
        provider = _provider
    secret = provider.get(secret_arn, transform="json", max_age=max_age, force_fetch=force)
    if not isinstance(secret, dict):
        raise DatabaseUnavailable(f"secret {secret_arn} is not a JSON object")
    return secret


# ---------------------------------------------------------------------- TLS + connect

_contexts: dict[str, ssl.SSLContext] = {}


def ssl_context(tls: DbTls) -> ssl.SSLContext | Literal[False]:
    """pg8000's `ssl_context`: False = no TLS; else a context that verifies chain and host name.

    Only the CAs of `tls.ca_bundle` are trusted (not the system store): a certificate from any
    other CA, or for another host name, fails the handshake.
    """
    if tls.mode == "disable":
        return False
    key = str(tls.ca_bundle)
    context = _contexts.get(key)
    if context is None:
        if not tls.ca_bundle.is_file():
            raise DatabaseUnavailable(f"DB_CA_BUNDLE {tls.ca_bundle} does not exist: cannot verify the database")
        context = ssl.create_default_context(cafile=key)  # CERT_REQUIRED + check_hostname
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        _contexts[key] = context
    return context


def connect(secret: Mapping[str, Any], *, tls: DbTls, database: str | None = None, timeout: float = 5.0,
            application_name: str = "valerix") -> pg8000.native.Connection:
    """One new connection with a secret's login. pg8000's own errors (and KeyError for a
    secret without username/password/host) propagate: callers word them for their context."""
    host = secret["host"]
    return pg8000.native.Connection(
        user=secret["username"],
        password=secret["password"],
        host=host,
        port=int(secret.get("port") or 5432),
        database=database or secret.get("dbname") or secret.get("dbName") or "postgres",
        timeout=timeout,
        application_name=application_name,
        tcp_keepalive=True,
        ssl_context=ssl_context(tls),
    )


def _gremlin_fault() -> Any:
    """The gremlin's database fault for the next transaction, or None. Never raises: the
    gremlin fails open, it must not become the outage it simulates."""
    try:
        from functions.common import chaos  # lazy: pydantic + boto3 only when a DB is used

        return chaos.injector().database_fault()
    except Exception:  # noqa: BLE001
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
        from functions.common.chaos import LOCK_KEY

        conn.run("SELECT pg_advisory_xact_lock(:key)", key=LOCK_KEY)
    if fault.delay_ms:
        conn.run("SELECT pg_sleep(:seconds)", seconds=fault.delay_ms / 1000.0)


class Database:
    def __init__(self, secret_arn: str, *, tls: DbTls = DbTls(), secret_max_age: int = 300, max_idle: int = 4,
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

    def _secret(self, force: bool = False) -> dict:
        return read_secret(self.secret_arn, max_age=self.secret_max_age, force=force)

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
            except KeyError as exc:
                raise DatabaseUnavailable(f"secret {self.secret_arn} lacks field {exc}") from exc
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

    def ping(self) -> float:
        """Run `SELECT 1`; return the elapsed milliseconds. Raises on failure."""
        started = time.perf_counter()
        with self.transaction() as conn:
            conn.run("SELECT 1")
        return (time.perf_counter() - started) * 1000.0


def _close_quietly(conn: pg8000.native.Connection) -> None:
    with contextlib.suppress(Exception):
        conn.close()


_databases: dict[str, Database] = {}
_databases_lock = threading.Lock()


def get_database(secret_arn: str, *, tls: DbTls = DbTls(), secret_max_age: int = 300,
                 application_name: str = "valerix") -> Database:
    """The pooled Database for a secret, one per execution environment."""
    with _databases_lock:
        database = _databases.get(secret_arn)
        if database is None:
            database = Database(secret_arn, tls=tls, secret_max_age=secret_max_age,
                                application_name=application_name)
            _databases[secret_arn] = database
        return database


def reset_databases() -> None:
    """Close every pool and forget cached secrets (tests switch AWS mocks between cases)."""
    global _provider
    with _databases_lock:
        databases = list(_databases.values())
        _databases.clear()
    with _provider_lock:
        _provider = None
    for database in databases:
        database.close()
