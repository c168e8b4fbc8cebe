"""Connections to a service's Postgres server for backup and restore.

The backup function reads each service's RDS-shaped secret (`functions.common.db.DbSecret`) and
opens short-lived, dedicated pg8000 connections (not the request pool of functions/common/db.py:
a dump changes session settings and holds a long snapshot), through `functions.common.db.connect`,
so TLS is the same policy as every other function (`BackupSettings.db_tls`: DB_TLS, DB_CA_BUNDLE,
certificate and host name verified on target=aws). Restore creates and drops
databases on the same server, so it also connects to the maintenance database `postgres`.

Which login: the backup function gets each database's reader role (`<service>_backup`: SELECT
on every table and sequence, enough for the dump), the restore function the owner role
(`<service>_owner`: CREATEDB, owns what its migrations create, drops only databases it created).
Neither gets the master login (functions/common/roles.py).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import pg8000.native

from functions.backup.errors import BackupError
from functions.common import db
from functions.common.db import DbSecret
from functions.common.settings import DbTls

MAINTENANCE_DB = "postgres"
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def read_secret(secret_arn: str) -> DbSecret:
    # fresh each run (max_age=0): a backup runs every 4 h, a password may have changed since
    try:
        return DbSecret.from_json(db.read_secret(secret_arn, max_age=0, force=True))
    except (KeyError, TypeError, ValueError) as exc:
        raise BackupError(f"database secret lacks a field: {exc}") from exc


def connect(
    secret: DbSecret, database: str | None = None, *, tls: DbTls, timeout: float = 60.0
) -> pg8000.native.Connection:
    try:
        return db.connect(
            secret, tls=tls, database=database or secret.dbname, timeout=timeout, application_name="valerix-backup"
        )
    except Exception as exc:  # any driver or TLS failure: report which database could not be reached
        where = f"{database or secret.dbname} on {secret.host}:{secret.port}"
        raise BackupError(f"cannot connect to {where}: {exc}") from exc


@contextlib.contextmanager
def connection(secret: DbSecret, database: str | None = None, *, tls: DbTls) -> Iterator[pg8000.native.Connection]:
    conn = connect(secret, database, tls=tls)
    try:
        yield conn
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def check_db_name(name: str) -> str:
    if not _DB_NAME.match(name):
        raise BackupError(f"invalid database name {name!r}")
    return name


def create_database(secret: DbSecret, name: str, *, tls: DbTls) -> None:
    with connection(secret, MAINTENANCE_DB, tls=tls) as conn:
        conn.run(f'CREATE DATABASE "{check_db_name(name)}"')


def drop_database(secret: DbSecret, name: str, *, tls: DbTls) -> None:
    with connection(secret, MAINTENANCE_DB, tls=tls) as conn:
        conn.run(f'DROP DATABASE IF EXISTS "{check_db_name(name)}" WITH (FORCE)')
