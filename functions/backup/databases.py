"""Connections to a service's Postgres server for backup and restore.

The backup function reads each service's RDS-shaped secret (`{host, port, username, password,
dbname}`) and opens short-lived, dedicated pg8000 connections (not the request pool of
functions/common/db.py: a dump changes session settings and holds a long snapshot), through
`functions.common.db.connect`, so TLS is the same policy as every other function (DB_TLS,
DB_CA_BUNDLE: certificate and host name verified on target=aws). Restore creates and drops
databases on the same server, so it also connects to the maintenance database `postgres`.

Which login: the backup function gets each database's reader role (`<service>_backup`: SELECT
on every table and sequence, enough for the dump), the restore function the owner role
(`<service>_owner`: CREATEDB, owns what its migrations create, drops only databases it created).
Neither gets the master login (functions/common/roles.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Iterator
from typing import Any

import pg8000.native

from functions.backup.errors import BackupError
from functions.common import db
from functions.common.settings import get_settings

MAINTENANCE_DB = "postgres"
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclasses.dataclass(frozen=True)
class ServerSecret:
    host: str
    port: int
    username: str
    password: str
    dbname: str

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> "ServerSecret":
        try:
            return cls(
                host=str(value.get("host") or "127.0.0.1"),
                port=int(value.get("port") or 5432),
                username=str(value["username"]),
                password=str(value["password"]),
                dbname=str(value.get("dbname") or value.get("dbName")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BackupError(f"database secret lacks a field: {exc}") from exc


def read_secret(secret_arn: str) -> ServerSecret:
    # fresh each run (max_age=0): a backup runs every 4 h, a password may have changed since
    return ServerSecret.from_json(db.read_secret(secret_arn, max_age=0, force=True))


def connect(secret: ServerSecret, database: str | None = None, *, timeout: float = 60.0) -> pg8000.native.Connection:
    try:
        return db.connect(dataclasses.asdict(secret), tls=get_settings().db_tls, database=database or secret.dbname,
                          timeout=timeout, application_name="valerix-backup")
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

