"""A small SQL migration runner: numbered `.sql` files, a `schema_migrations` table, an advisory lock.

- Files `NNN_name.sql` in a service's `migrations/` folder are applied in order, each in its own
  transaction together with its `schema_migrations` row, so a failed file leaves nothing behind.
- `pg_advisory_lock` serialises concurrent runners (two deploys, a retried trigger): the second
  waits, then finds everything applied. Re-running is a no-op.
- `migrate_database` is the whole migrate function: roles first (as master), then the files and
  the grants as the owner role (see functions/common/roles.py).
- Seeding is a migration like any other, whose file name contains `seed` (e.g.
  `002_seed_catalogue.sql`): it runs exactly once, on the first deploy, and never again even if
  the catalogue is later changed. `seeded` in the result says whether this run applied one.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pg8000.native

from functions.common import roles
from functions.common.db import connect, read_secret

if TYPE_CHECKING:
    from functions.common.settings import Settings

__all__ = ["ADVISORY_LOCK_KEY", "migrate_database", "migration_files", "run_migrations"]

# Arbitrary constant shared by every Valerix service (each has its own database anyway).
ADVISORY_LOCK_KEY = 0x56414C4552  # "VALER"

_NAME = re.compile(r"^(\d{3,})_[A-Za-z0-9_]+\.sql$")


def migration_files(directory: Path) -> list[Path]:
    files = []
    for path in sorted(Path(directory).glob("*.sql")):
        if not _NAME.match(path.name):
            raise ValueError(f"migration file {path.name} must be named NNN_description.sql")
        files.append(path)
    return files


def run_migrations(conn: pg8000.native.Connection, directory: Path) -> dict[str, Any]:
    """Apply pending migrations from `directory`. Returns {"applied": [...], "seeded": bool}."""
    files = migration_files(directory)
    conn.run("SELECT pg_advisory_lock(:key)", key=ADVISORY_LOCK_KEY)
    try:
        conn.run(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.run("SELECT version FROM schema_migrations")}
        applied: list[str] = []
        for path in files:
            version = path.stem
            if version in done:
                continue
            sql = path.read_text()
            conn.run("BEGIN")
            try:
                # Simple query protocol: a file may hold several statements.
                conn.execute_simple(sql)
                conn.run("INSERT INTO schema_migrations (version) VALUES (:v)", v=version)
                conn.run("COMMIT")
            except Exception:
                conn.run("ROLLBACK")
                raise
            applied.append(version)
        seeded = any("seed" in version for version in applied)
        return {"applied": applied, "seeded": seeded}
    finally:
        conn.run("SELECT pg_advisory_unlock(:key)", key=ADVISORY_LOCK_KEY)


def migrate_database(
    directory: Path, app_privileges: Mapping[str, Collection[str]], *, settings: Settings
) -> dict[str, Any]:
    """What a migrate function does (functions/common/roles.py has the role model):

    1. as master (DB_MASTER_SECRET_ARN), create/refresh the owner, app and reader roles with the
       passwords of their secrets (DB_SECRET_ARN = the owner's own, DB_APP_SECRET_ARN,
       DB_READER_SECRET_ARN) and lock the database down — a short connection, closed at once;
    2. as the owner, apply the migrations;
    3. as the owner, set the app's and the reader's table privileges.

    Both connections are closed before returning: a migrate function's environment keeps no
    privileged session open.

    Returns {"applied": [...], "seeded": bool, "roles": {"owner", "app", "reader"}}.
    """
    secret_of = {
        "master": settings.db_master_secret_arn,
        "owner": settings.db_secret_arn,
        "app": settings.db_app_secret_arn,
        "reader": settings.db_reader_secret_arn,
    }
    # force: a deploy must see passwords that changed since this environment last read them
    secrets = {label: read_secret(arn, max_age=0, force=True) for label, arn in secret_of.items()}
    dbnames = {label: secret.get("dbname") for label, secret in secrets.items()}
    if len(set(dbnames.values())) != 1:
        raise roles.RoleError(f"the four secrets must name the same database, got {dbnames}")
    logins = {label: roles.Login.from_secret(secrets[label], label) for label in ("owner", "app", "reader")}

    with _session(secrets["master"], settings, "valerix-bootstrap") as conn:
        names = roles.bootstrap(conn, **logins)
    with _session(secrets["owner"], settings, "valerix-migrate") as conn:
        result = run_migrations(conn, directory)
        roles.grant(conn, owner=names["owner"], app=names["app"], reader=names["reader"], app_privileges=app_privileges)
    return {**result, "roles": names}


@contextlib.contextmanager
def _session(
    secret: Mapping[str, Any], settings: Settings, application_name: str
) -> Iterator[pg8000.native.Connection]:
    conn = connect(secret, tls=settings.db_tls, timeout=30.0, application_name=application_name)
    try:
        yield conn
    finally:
        with contextlib.suppress(Exception):
            conn.close()
