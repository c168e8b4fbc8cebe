"""A small SQL migration runner: numbered `.sql` files, a `schema_migrations` table, an advisory lock.

- Files `NNN_name.sql` in a service's `migrations/` folder are applied in order, each in its own
  transaction together with its `schema_migrations` row, so a failed file leaves nothing behind.
- `pg_advisory_lock` serialises concurrent runners (two deploys, a retried trigger): the second
  waits, then finds everything applied. Re-running is a no-op.
- Seeding is a migration like any other, whose file name contains `seed` (e.g.
  `002_seed_catalogue.sql`): it runs exactly once, on the first deploy, and never again even if
  the catalogue is later changed. `seeded` in the result says whether this run applied one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pg8000.native

__all__ = ["run_migrations", "migration_files", "ADVISORY_LOCK_KEY"]

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
