"""Logical dump and restore of one Postgres database with pg8000 (Lambda has no pg_dump).

Dump: one `REPEATABLE READ READ ONLY` transaction (a single consistent snapshot), then for every
table of the `public` schema `COPY (SELECT <columns> FROM t ORDER BY <primary key>) TO STDOUT`.
The ordered COPY text is deterministic for the same data, so its SHA-256 is a content checksum
that a restored database must reproduce byte for byte. Session settings that change COPY's text
(TimeZone, DateStyle, IntervalStyle, extra_float_digits, bytea_output) are pinned.

Payload (the plaintext of a restore point): gzip of a tar holding `manifest.json` and
`tables/<table>.copy`.

Restore (into a fresh, empty database): apply the service's migrations that the backup had
(`schemaMigrations`: same schema as when it was taken, even if the code has newer migrations),
then in one transaction TRUNCATE every table (drops seed rows), COPY each table back in foreign-key
order, restore sequence positions, COMMIT; then re-dump and compare row counts and checksums.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import shutil
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pg8000.native

from functions.backup.errors import BackupError, IntegrityError
from functions.common.migrations import migration_files, run_migrations

PAYLOAD_FORMAT = 1
SCHEMA = "public"

_SESSION = (
    "SET LOCAL TimeZone TO 'UTC'",
    "SET LOCAL DateStyle TO 'ISO, YMD'",
    "SET LOCAL IntervalStyle TO 'postgres'",
    "SET LOCAL extra_float_digits TO 3",
    "SET LOCAL bytea_output TO 'hex'",
)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _qualified(table: str) -> str:
    return f"{quote_ident(SCHEMA)}.{quote_ident(table)}"


@dataclasses.dataclass
class Dump:
    manifest: dict[str, Any]
    data: dict[str, bytes]  # table name -> COPY text

    def table(self, name: str) -> dict[str, Any]:
        return next(t for t in self.manifest["tables"] if t["name"] == name)


# ------------------------------------------------------------------------- catalogue


def _tables(conn: pg8000.native.Connection) -> list[str]:
    rows = conn.run(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = :schema AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
        "ORDER BY c.relname",
        schema=SCHEMA,
    )
    return [r[0] for r in rows]


def _columns(conn: pg8000.native.Connection, table: str) -> list[str]:
    rows = conn.run(
        "SELECT attname FROM pg_attribute WHERE attrelid = CAST(:t AS regclass) AND attnum > 0 "
        "AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
        t=_qualified(table),
    )
    return [r[0] for r in rows]


def _primary_key(conn: pg8000.native.Connection, table: str) -> list[str]:
    rows = conn.run(
        "SELECT a.attname FROM pg_index i "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "WHERE i.indrelid = CAST(:t AS regclass) AND i.indisprimary "
        "ORDER BY array_position(CAST(i.indkey AS int2[]), a.attnum)",
        t=_qualified(table),
    )
    return [r[0] for r in rows]


def _foreign_keys(conn: pg8000.native.Connection) -> list[tuple[str, str]]:
    """(child, parent) pairs between tables of the schema."""
    rows = conn.run(
        "SELECT c.relname, p.relname FROM pg_constraint k "
        "JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class p ON p.oid = k.confrelid "
        "JOIN pg_namespace n ON n.oid = k.connamespace "
        "WHERE k.contype = 'f' AND n.nspname = :schema",
        schema=SCHEMA,
    )
    return [(r[0], r[1]) for r in rows]


def _sequences(conn: pg8000.native.Connection) -> list[dict[str, Any]]:
    names = [
        r[0]
        for r in conn.run(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = :schema AND c.relkind = 'S' ORDER BY c.relname",
            schema=SCHEMA,
        )
    ]
    result = []
    for name in names:
        query = f"SELECT last_value, is_called FROM {_qualified(name)}"  # noqa: S608 -- a quoted identifier
        last_value, is_called = conn.run(query)[0]
        result.append({"name": name, "lastValue": int(last_value), "isCalled": bool(is_called)})
    return result


def restore_order(tables: Iterable[str], foreign_keys: Iterable[tuple[str, str]]) -> list[str]:
    """Tables ordered parents first (a topological sort; cycles keep name order)."""
    tables = sorted(tables)
    parents = {t: {p for c, p in foreign_keys if c == t and p != t and p in tables} for t in tables}
    ordered: list[str] = []
    while len(ordered) < len(tables):
        ready = [t for t in tables if t not in ordered and parents[t] <= set(ordered)]
        if not ready:  # a cycle: append the rest in name order (COPY will fail loudly if it matters)
            ready = [t for t in tables if t not in ordered]
        ordered.extend(ready)
    return ordered


def _copy_out(conn: pg8000.native.Connection, table: str, columns: list[str], order_by: list[str]) -> bytes:
    cols = ", ".join(quote_ident(c) for c in columns)
    # no primary key: order by the whole row's text (deterministic, any column types)
    order = ", ".join(quote_ident(c) for c in order_by) if order_by else f"CAST({quote_ident(table)} AS text)"
    buffer = io.BytesIO()
    query = f"COPY (SELECT {cols} FROM {_qualified(table)} {quote_ident(table)} ORDER BY {order}) TO STDOUT"  # noqa: S608 -- quoted identifiers only
    conn.run(query, stream=buffer)
    return buffer.getvalue()


def _set_session(conn: pg8000.native.Connection) -> None:
    for statement in _SESSION:
        conn.run(statement)


def _snapshot(conn: pg8000.native.Connection) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Catalogue + data of the current transaction's snapshot."""
    _set_session(conn)
    tables = _tables(conn)
    data: dict[str, bytes] = {}
    entries = []
    for table in tables:
        columns = _columns(conn, table)
        order_by = _primary_key(conn, table)
        payload = _copy_out(conn, table, columns, order_by)
        data[table] = payload
        entries.append({
            "name": table,
            "columns": columns,
            "orderBy": order_by,
            "rows": payload.count(b"\n"),  # COPY text: one line per row (newlines in data are escaped)
            "bytes": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(),
        })  # fmt: skip
    migrations: list[str] = []
    if "schema_migrations" in tables:
        migrations = [r[0] for r in conn.run("SELECT version FROM schema_migrations ORDER BY version")]
    catalogue = {
        "tables": entries,
        "restoreOrder": restore_order(tables, _foreign_keys(conn)),
        "sequences": _sequences(conn),
        "schemaMigrations": migrations,
        "serverVersion": conn.run("SHOW server_version")[0][0],
        "snapshotAt": conn.run("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")[0][0],
    }
    return catalogue, data


def dump_database(conn: pg8000.native.Connection) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A consistent logical dump: (catalogue part of the manifest, table data)."""
    conn.run("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    try:
        return _snapshot(conn)
    finally:
        conn.run("ROLLBACK")  # read only: nothing to commit


# ------------------------------------------------------------------------- payload


def pack(dump: Dump) -> bytes:
    """gzip(tar(manifest.json, tables/<name>.copy ...)) with fixed metadata (reproducible)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "manifest.json", json.dumps(dump.manifest, indent=1, sort_keys=True).encode())
        for table in dump.manifest["tables"]:
            _add(tar, f"tables/{table['name']}.copy", dump.data[table["name"]])
    return gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)


def _add(tar: tarfile.TarFile, name: str, content: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    info.mode = 0o600
    tar.addfile(info, io.BytesIO(content))


def member_bytes(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    """The content of a regular-file member (IntegrityError for anything else: a link, a folder)."""
    handle = tar.extractfile(member)
    if handle is None or not member.isfile():
        raise IntegrityError(f"{member.name} is not a regular file")
    with handle:
        return handle.read()


def unpack(payload: bytes) -> Dump:
    """Parse a decrypted payload and check every table against the manifest (IntegrityError)."""
    try:
        raw = gzip.decompress(payload)
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile()}
            manifest = json.loads(member_bytes(tar, members["manifest.json"]))
            data = {}
            for table in manifest["tables"]:
                member = members.get(f"tables/{table['name']}.copy")
                if member is None:
                    raise IntegrityError(f"table {table['name']} is missing from the backup")
                data[table["name"]] = member_bytes(tar, member)
    except IntegrityError:
        raise
    except (OSError, EOFError, KeyError, ValueError, tarfile.TarError) as exc:
        raise IntegrityError(f"corrupt backup payload: {exc}") from exc
    if manifest.get("format") != PAYLOAD_FORMAT:
        raise IntegrityError(f"unsupported payload format {manifest.get('format')!r}")
    for table in manifest["tables"]:
        content = data[table["name"]]
        if hashlib.sha256(content).hexdigest() != table["sha256"] or content.count(b"\n") != table["rows"]:
            raise IntegrityError(f"table {table['name']} does not match its manifest checksum")
    return Dump(manifest, data)


# ------------------------------------------------------------------------- restore


def _migrations_subset(source: Path, versions: list[str], target: Path) -> None:
    available = {p.stem: p for p in migration_files(source)}
    missing = [v for v in versions if v not in available]
    if missing:
        raise BackupError(f"the backup's schema needs migrations this code does not have: {missing}")
    for version in versions:
        shutil.copy2(available[version], target / available[version].name)


def load(conn: pg8000.native.Connection, dump: Dump, migrations_dir: Path) -> None:
    """Build the backup's schema in an empty database and load its data (one transaction)."""
    with tempfile.TemporaryDirectory(prefix="valerix-restore-") as tmp:
        _migrations_subset(migrations_dir, dump.manifest["schemaMigrations"], Path(tmp))
        run_migrations(conn, Path(tmp))
    tables = [t["name"] for t in dump.manifest["tables"]]
    present = set(_tables(conn))
    unknown = [t for t in tables if t not in present]
    if unknown:
        raise BackupError(f"the migrations do not create tables the backup holds: {unknown}")
    conn.run("BEGIN")
    try:
        _set_session(conn)
        if tables:
            conn.run("TRUNCATE " + ", ".join(_qualified(t) for t in tables) + " CASCADE")
        for name in dump.manifest["restoreOrder"]:
            table = dump.table(name)
            cols = ", ".join(quote_ident(c) for c in table["columns"])
            conn.run(f"COPY {_qualified(name)} ({cols}) FROM STDIN", stream=io.BytesIO(dump.data[name]))
        for seq in dump.manifest["sequences"]:
            conn.run(
                "SELECT setval(CAST(:s AS regclass), :v, :c)",
                s=_qualified(seq["name"]),
                v=seq["lastValue"],
                c=seq["isCalled"],
            )
        conn.run("COMMIT")
    except BaseException:
        conn.run("ROLLBACK")
        raise


def verify(conn: pg8000.native.Connection, dump: Dump) -> dict[str, dict[str, Any]]:
    """Re-dump the restored database; IntegrityError unless every table matches the manifest."""
    catalogue, _ = dump_database(conn)
    actual = {t["name"]: t for t in catalogue["tables"]}
    expected = {t["name"]: t for t in dump.manifest["tables"]}
    if set(actual) != set(expected):
        raise IntegrityError(f"restored tables {sorted(actual)} differ from the backup's {sorted(expected)}")
    report = {}
    for name, want in expected.items():
        got = actual[name]
        if got["rows"] != want["rows"] or got["sha256"] != want["sha256"]:
            raise IntegrityError(
                f"table {name}: restored {got['rows']} rows sha256 {got['sha256'][:12]}…, "
                f"backup has {want['rows']} rows sha256 {want['sha256'][:12]}…"
            )
        count = conn.run(f"SELECT count(*) FROM {_qualified(name)}")[0][0]  # noqa: S608 -- a quoted identifier
        if count != want["rows"]:
            raise IntegrityError(f"table {name}: count(*) {count} != {want['rows']}")
        report[name] = {"rows": want["rows"], "sha256": want["sha256"]}
    return report
