"""Connections to a service's Postgres server for backup and restore.

The backup function reads each service's RDS-shaped secret (`{host, port, username, password,
dbname}`) and opens short-lived, dedicated pg8000 connections (not the request pool of
functions/common/db.py: a dump changes session settings and holds a long snapshot). Restore
creates and drops databases on the same server, so it also connects to the maintenance
database `postgres`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import ssl
from collections.abc import Iterator
from typing import Any

import pg8000.native

from functions.backup.errors import BackupError
from functions.common import aws

MAINTENANCE_DB = "postgres"
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclasses.dataclass(frozen=True)
class ServerSecret:
    host: str
    port: int
    username: str
    password: str
    dbname: str
    sslmode: str = ""

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> "ServerSecret":
        try:
            return cls(
                host=str(value.get("host") or "127.0.0.1"),
                port=int(value.get("port") or 5432),
                username=str(value["username"]),
                password=str(value["password"]),
                dbname=str(value.get("dbname") or value.get("dbName")),
                sslmode=str(value.get("sslmode") or ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BackupError(f"database secret lacks a field: {exc}") from exc


def read_secret(secret_arn: str) -> ServerSecret:
    raw = aws.client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"]
    return ServerSecret.from_json(json.loads(raw))


def _ssl_context(secret: ServerSecret) -> ssl.SSLContext | None:
    """Same policy as functions/common/db.py: TLS unless local or `sslmode=disable`."""
    mode = secret.sslmode.lower() or ("disable" if secret.host in ("127.0.0.1", "localhost", "::1") else "require")
    if mode == "disable":
        return None
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def connect(secret: ServerSecret, database: str | None = None, *, timeout: float = 60.0) -> pg8000.native.Connection:
    try:
        return pg8000.native.Connection(
            user=secret.username,
            password=secret.password,
            host=secret.host,
            port=secret.port,
            database=database or secret.dbname,
            timeout=timeout,
            application_name="valerix-backup",
            ssl_context=_ssl_context(secret),
        )
    except Exception as exc:  # noqa: BLE001 - report which database could not be reached
        raise BackupError(f"cannot connect to {database or secret.dbname} on {secret.host}:{secret.port}: {exc}") from exc


@contextlib.contextmanager
def connection(secret: ServerSecret, database: str | None = None) -> Iterator[pg8000.native.Connection]:
    conn = connect(secret, database)
    try:
        yield conn
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def check_db_name(name: str) -> str:
    if not _DB_NAME.match(name):
        raise BackupError(f"invalid database name {name!r}")
    return name


def create_database(secret: ServerSecret, name: str) -> None:
    with connection(secret, MAINTENANCE_DB) as conn:
        conn.run(f'CREATE DATABASE "{check_db_name(name)}"')


def drop_database(secret: ServerSecret, name: str) -> None:
    with connection(secret, MAINTENANCE_DB) as conn:
        conn.run(f'DROP DATABASE IF EXISTS "{check_db_name(name)}" WITH (FORCE)')


def list_databases(secret: ServerSecret, prefix: str) -> list[str]:
    with connection(secret, MAINTENANCE_DB) as conn:
        rows = conn.run("SELECT datname FROM pg_database WHERE starts_with(datname, :p) ORDER BY datname", p=prefix)
    return [r[0] for r in rows]
