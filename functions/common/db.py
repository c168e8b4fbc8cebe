"""pg8000 connections to a service's own Postgres, credentials from Secrets Manager.

- The secret (RDS shape: host, port, username, password, dbname) is read through the Powertools
  parameters utility and cached for DB_SECRET_CACHE_SECONDS (default 300 s). A failed login
  re-reads it once (rotation).
- Connections are kept in a small per-environment pool and reused across invocations. In Lambda
  one request runs at a time, so this is one long-lived connection; tests and local servers with
  threads get one connection per concurrent caller.
- All data access goes through `transaction()`. Its `BEGIN` doubles as the liveness probe: a
  pooled connection that turns out to be broken is dropped and replaced before any statement of
  the transaction ran, so the retry is always safe.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import pg8000.native
from pg8000.exceptions import DatabaseError, InterfaceError

from functions.common import aws

__all__ = ["Database", "DatabaseUnavailable", "get_database", "reset_databases", "pg_error_code"]

_NETWORK_ERRORS = (InterfaceError, OSError, EOFError)


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached (connect failed or the connection broke)."""


def pg_error_code(exc: BaseException) -> str | None:
    """The SQLSTATE of a pg8000 DatabaseError (e.g. '23505'), if any."""
    if isinstance(exc, DatabaseError) and exc.args and isinstance(exc.args[0], dict):
        return exc.args[0].get("C")
    return None


class Database:
    def __init__(self, secret_arn: str, *, secret_max_age: int = 300, max_idle: int = 4,
                 connect_timeout: float = 5.0, application_name: str = "valerix") -> None:
        self.secret_arn = secret_arn
        self.secret_max_age = secret_max_age
        self.max_idle = max_idle
        self.connect_timeout = connect_timeout
        self.application_name = application_name
        self._idle: list[pg8000.native.Connection] = []
        self._lock = threading.Lock()
        self._provider: Any = None

    # ---------------------------------------------------------------- credentials

    def _secret(self, force: bool = False) -> dict:
        if self._provider is None:
            from aws_lambda_powertools.utilities.parameters import SecretsProvider

            self._provider = SecretsProvider(boto3_client=aws.client("secretsmanager"))
        secret = self._provider.get(
            self.secret_arn, transform="json", max_age=self.secret_max_age, force_fetch=force
        )
        if not isinstance(secret, dict):
            raise DatabaseUnavailable(f"secret {self.secret_arn} is not a JSON object")
        return secret

    def _open(self) -> pg8000.native.Connection:
        for attempt in (1, 2):
            secret = self._secret(force=attempt == 2)
            try:
                host = secret.get("host", "127.0.0.1")
                return pg8000.native.Connection(
                    user=secret["username"],
                    password=secret["password"],
                    host=host,
                    port=int(secret.get("port", 5432)),
                    database=secret.get("dbname") or secret.get("dbName") or "postgres",
                    timeout=self.connect_timeout,
                    application_name=self.application_name,
                    tcp_keepalive=True,
                    ssl_context=_ssl_context(secret, host),
                )
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
        conn, reused = self._acquire()
        if reused:
            try:
                conn.run("SELECT 1")
            except _NETWORK_ERRORS:
                _close_quietly(conn)
                conn = self._open()
        broken = False
        try:
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


_REQUIRE_SSL: ssl.SSLContext | None = None


def _ssl_context(secret: dict, host: str) -> ssl.SSLContext | bool:
    """TLS unless the server is local (pg8000: False = no TLS). RDS (PG 15+) forces SSL by default.

    `sslmode` in the secret overrides: `disable` or `require` (encrypted, server certificate not
    verified: the RDS CA bundle is not shipped with the functions).
    """
    global _REQUIRE_SSL
    mode = str(secret.get("sslmode") or "").lower()
    if not mode:
        mode = "disable" if host in ("127.0.0.1", "localhost", "::1") else "require"
    if mode == "disable":
        return False
    if _REQUIRE_SSL is None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        _REQUIRE_SSL = context
    return _REQUIRE_SSL


def _close_quietly(conn: pg8000.native.Connection) -> None:
    with contextlib.suppress(Exception):
        conn.close()


_databases: dict[str, Database] = {}
_databases_lock = threading.Lock()


def get_database(secret_arn: str, *, secret_max_age: int = 300, application_name: str = "valerix") -> Database:
    """The pooled Database for a secret, one per execution environment."""
    with _databases_lock:
        database = _databases.get(secret_arn)
        if database is None:
            database = Database(secret_arn, secret_max_age=secret_max_age, application_name=application_name)
            _databases[secret_arn] = database
        return database


def reset_databases() -> None:
    with _databases_lock:
        databases = list(_databases.values())
        _databases.clear()
    for database in databases:
        database.close()
