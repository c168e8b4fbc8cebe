"""Backups under a one-call-a-day limit (issue 9): real Postgres + moto S3/KMS/Secrets Manager.

A fake clock drives the schedule: several restore points a day, one external call a day, and
retention, without waiting.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import io
import json
import tarfile
import uuid
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from moto import mock_aws

from functions.backup import envelope, pgdump, store
from functions.backup.errors import IntegrityError, RestoreRefused
from functions.backup.service import BackupService
from functions.backup.settings import BackupSettings, migrations_dir
from functions.common.migrations import run_migrations

REGION = "us-east-1"
BUCKET = "valerix-test-backups"
EXTERNAL = "valerix-test-external-backups"
DAY0 = dt.datetime(2025, 3, 10, 0, 10, tzinfo=dt.UTC)

TRICKY = "tab\there, newline\nthere, back\\slash, quote ' \" , ünïcødé 🎉, \\N not null"


class FakeClock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def set(self, now: dt.datetime) -> None:
        self.now = now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


def context(name: str = "valerix-backup") -> SimpleNamespace:
    return SimpleNamespace(
        function_name=name,
        function_version="$LATEST",
        memory_limit_in_mb=512,
        invoked_function_arn=f"arn:aws:lambda:{REGION}:123456789012:function:{name}",
        aws_request_id=str(uuid.uuid4()),
        get_remaining_time_in_millis=lambda: 300_000,
    )


class ExternalCalls:
    """Counts every API call the S3 client makes against the external bucket."""

    def __init__(self, s3: Any) -> None:
        self.calls: list[str] = []
        s3.meta.events.register("provide-client-params.s3.*", self._hook)

    def _hook(self, params: dict, event_name: str, **_: Any) -> None:
        if params.get("Bucket") == EXTERNAL:
            self.calls.append(event_name.rsplit(".", 1)[-1])

    def clear(self) -> None:
        self.calls.clear()


@dataclasses.dataclass
class Env:
    servers: dict
    s3: Any
    kms: Any
    key_arn: str
    other_key_arn: str
    settings: BackupSettings
    clock: FakeClock
    service: BackupService
    external_calls: ExternalCalls

    def conn(self, service: str, database: str | None = None):
        return self.servers[service].connect(database)

    def run(self, service: str, sql: str, **params: Any) -> list:
        conn = self.conn(service)
        try:
            return conn.run(sql, **params)
        finally:
            conn.close()

    def rows(self, service: str, database: str | None = None) -> dict[str, list]:
        """Every row of every table, ordered (for exact comparisons)."""
        conn = self.conn(service, database)
        try:
            tables = [
                r[0] for r in conn.run("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
            ]
            return {t: conn.run(f'SELECT * FROM "{t}" ORDER BY 1') for t in tables}
        finally:
            conn.close()

    def restore_databases(self) -> list[str]:
        found = []
        for server in self.servers.values():
            conn = server.connect("postgres")
            try:
                found += [
                    r[0] for r in conn.run("SELECT datname FROM pg_database WHERE datname LIKE '%\\_restore\\_%'")
                ]
            finally:
                conn.close()
        return sorted(found)

    def backup(self) -> list[dict]:
        result = self.service.backup_all()
        assert result["errors"] == {}
        return result["points"]

    def add_order(self, quantity: int = 1, reason: str | None = TRICKY) -> str:
        order_id = f"o-{uuid.uuid4().hex[:12]}"
        self.run(
            "order",
            "INSERT INTO orders (order_id, product_id, quantity, status, reason, idempotency_key) "
            "VALUES (:o, 'widget', :q, 'CONFIRMED', :r, :k)",
            o=order_id,
            q=quantity,
            r=reason,
            k=None if reason is None else f"key-{order_id}",
        )
        self.run(
            "inventory",
            "INSERT INTO reservations (order_id, product_id, quantity, status) VALUES (:o, 'widget', :q, 'RESERVED')",
            o=order_id,
            q=quantity,
        )
        self.run("inventory", "UPDATE products SET stock = stock - :q WHERE product_id = 'widget'", q=quantity)
        return order_id


def _reset_database(server: Any, service: str) -> None:
    conn = server.connect()
    try:
        conn.execute_simple("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        run_migrations(conn, migrations_dir(service))
    finally:
        conn.close()
    _drop_restore_databases(server)


def _drop_restore_databases(server: Any) -> None:
    conn = server.connect("postgres")
    try:
        for (name,) in conn.run("SELECT datname FROM pg_database WHERE datname LIKE '%\\_restore\\_%'"):
            conn.run(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        conn.close()


@pytest.fixture
def env(postgres_servers, monkeypatch):
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_METRICS_NAMESPACE": "Valerix",
        "DB_TLS": "disable",
    }.items():  # as target=local sets it (local servers have no TLS)
        monkeypatch.setenv(key, value)
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    from functions.backup import handler
    from functions.backup import settings as backup_settings
    from functions.common import aws

    def fresh_environment() -> None:
        for factory in (backup_settings.get_settings, aws.client, aws.secrets_provider, handler.get_service):
            if hasattr(factory, "cache_clear"):  # not while a test's stand-in replaces it
                factory.cache_clear()

    fresh_environment()
    for service, server in postgres_servers.items():
        _reset_database(server, service)

    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        s3.create_bucket(Bucket=EXTERNAL)
        kms = boto3.client("kms", region_name=REGION)
        key_arn = kms.create_key(Description="backups")["KeyMetadata"]["Arn"]
        other_key_arn = kms.create_key(Description="someone else's")["KeyMetadata"]["Arn"]
        secrets = boto3.client("secretsmanager", region_name=REGION)
        for service, server in postgres_servers.items():
            arn = secrets.create_secret(Name=f"valerix-test/{service}-db", SecretString=json.dumps(server.secret()))[
                "ARN"
            ]
            monkeypatch.setenv(f"{service.upper()}_DB_SECRET_ARN", arn)
        monkeypatch.setenv("BACKUP_BUCKET", BUCKET)
        monkeypatch.setenv("EXTERNAL_BUCKET", EXTERNAL)
        monkeypatch.setenv("BACKUP_KMS_KEY_ID", key_arn)
        settings = BackupSettings.from_env()
        clock = FakeClock(DAY0)
        service = BackupService(settings, s3=s3, kms=kms, clock=clock)
        yield Env(postgres_servers, s3, kms, key_arn, other_key_arn, settings, clock, service, ExternalCalls(s3))
        fresh_environment()
    for server in postgres_servers.values():
        _drop_restore_databases(server)


def bundle_contents(env: Env, key: str) -> tuple[dict, dict[str, bytes]]:
    body = env.s3.get_object(Bucket=EXTERNAL, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        files = {m.name: member.read() for m in tar.getmembers() if (member := tar.extractfile(m)) is not None}
    return json.loads(files.pop("manifest.json")), files


def external_keys(env: Env) -> list[str]:
    return [o["Key"] for o in env.s3.list_objects_v2(Bucket=EXTERNAL).get("Contents", [])]


# --------------------------------------------------------------------------- backup + daily sync


def test_several_points_a_day_and_exactly_one_external_call(env: Env) -> None:
    created = []
    for hour in (0, 4, 8, 12, 16, 20):  # the 4-hour schedule
        env.clock.set(DAY0.replace(hour=hour))
        env.add_order()
        created += env.backup()
    points = env.service.list_points()
    assert len(points) == 12 and {p["service"] for p in points} == {"order", "inventory"}
    assert sorted(p["point"] for p in points) == sorted(p["point"] for p in created)
    for point in points:
        assert point["size"] > 0 and len(point["sha256"]) == 64 and point["createdAt"].startswith("2025-03-10T")
        head = env.s3.head_object(Bucket=BUCKET, Key=point["point"])
        assert head["Metadata"]["sha256"] == point["sha256"] and head["ContentLength"] == point["size"]

    env.clock.set(DAY0.replace(hour=23, minute=30))
    env.external_calls.clear()
    result = env.service.sync()
    assert result["status"] == "synced"
    assert env.external_calls.calls == ["PutObject"], "the daily sync makes exactly one external call"
    assert external_keys(env) == ["bundles/2025-03-10.tar"]
    manifest, files = bundle_contents(env, "bundles/2025-03-10.tar")
    assert manifest["day"] == "2025-03-10" and manifest["previousSync"] is None
    assert sorted(p["point"] for p in manifest["points"]) == sorted(p["point"] for p in points)
    assert sorted(files) == sorted(p["point"] for p in points)
    for entry in manifest["points"]:
        assert store.sha256(files[entry["point"]]) == entry["sha256"]

    # a second sync the same day: refused without calling the external target again
    env.external_calls.clear()
    again = env.service.sync()
    assert again["status"] == "refused" and env.external_calls.calls == []
    # ... if the local record were lost, the intent marker still stops it (no call) ...
    env.s3.delete_object(Bucket=BUCKET, Key="sync/2025-03-10.json")
    env.add_order()
    env.backup()
    in_doubt = env.service.sync()
    assert in_doubt["status"] == "in_doubt" and env.external_calls.calls == []
    # ... and if the intent were lost too, the external guard itself refuses the second call
    env.s3.delete_object(Bucket=BUCKET, Key="sync/intents/2025-03-10.json")
    third = env.service.sync()
    assert third["status"] == "refused" and "already accepted" in third["reason"]
    assert env.external_calls.calls == ["PutObject"]  # the attempt the guard refused
    assert external_keys(env) == ["bundles/2025-03-10.tar"]
    assert bundle_contents(env, "bundles/2025-03-10.tar")[0] == manifest  # untouched


def test_next_day_bundle_carries_only_points_since_last_sync(env: Env) -> None:
    first = env.backup()
    env.clock.set(DAY0.replace(hour=22))
    assert env.service.sync()["status"] == "synced"
    env.clock.set(DAY0 + dt.timedelta(days=1, hours=4))
    second = env.backup()
    env.clock.advance(hours=4)
    second += env.backup()
    env.clock.advance(hours=12)
    result = env.service.sync()
    assert result["status"] == "synced" and result["bundle"] == "bundles/2025-03-11.tar"
    manifest, files = bundle_contents(env, "bundles/2025-03-11.tar")
    assert sorted(files) == sorted(p["point"] for p in second)
    assert not set(files) & {p["point"] for p in first}
    assert manifest["previousSync"] == "2025-03-10"
    # nothing new the day after: no call at all
    env.clock.advance(days=1)
    env.external_calls.clear()
    assert env.service.sync()["status"] == "nothing_to_sync"
    assert env.external_calls.calls == []


# --------------------------------------------------------------------------- restore


def test_restore_from_external_bundle_reproduces_data_exactly(env: Env) -> None:
    for quantity in (1, 2, 3):
        env.add_order(quantity)
    env.add_order(4, reason=None)
    env.run("inventory", "INSERT INTO products (product_id, name, stock) VALUES ('odd', :n, 0)", n=TRICKY)
    expected = {service: env.rows(service) for service in ("order", "inventory")}
    points = {p["service"]: p["point"] for p in env.backup()}
    env.clock.advance(hours=20)
    assert env.service.sync()["status"] == "synced"
    # the live databases move on after the backup
    env.add_order(7)
    env.run("inventory", "DELETE FROM products WHERE product_id = 'odd'")

    for service, point in points.items():
        result = env.service.restore(f"external:bundles/2025-03-10.tar:{point}")
        assert result["status"] == "restored" and result["service"] == service
        fresh = result["database"]
        assert fresh.startswith(f"{service}_db_restore_")
        assert env.rows(service, fresh) == expected[service]
        assert set(result["tables"]) == set(expected[service])
        for table, rows in expected[service].items():
            assert result["tables"][table]["rows"] == len(rows)
    assert len(expected["order"]["orders"]) == 4 and len(expected["inventory"]["reservations"]) == 4
    assert len(env.rows("order")["orders"]) == 5, "the live database is never touched"


def test_restore_local_point_and_list_via_handlers(env: Env, monkeypatch) -> None:
    from functions.backup import handler

    monkeypatch.setattr(handler, "get_service", lambda: env.service)
    env.add_order(2)
    expected = env.rows("inventory")
    result = handler.backup_handler({}, context())
    assert len(result["points"]) == 2 and result["errors"] == {}
    listing = handler.restore_handler({"list": True}, context())
    assert [p["point"] for p in listing["points"]] == sorted(p["point"] for p in result["points"])
    point = next(p["point"] for p in result["points"] if p["service"] == "inventory")
    restored = handler.restore_handler({"point": point}, context())
    assert env.rows("inventory", restored["database"]) == expected
    env.clock.advance(hours=12)
    assert handler.sync_handler({}, context())["status"] == "synced"
    assert handler.sync_handler({}, context())["status"] == "refused"
    assert handler.restore_handler({"list": True}, context())["bundles"][0]["bundle"] == "bundles/2025-03-10.tar"


def test_handlers_build_their_service_from_the_environment(env: Env) -> None:
    from functions.backup import handler

    handler.get_service.cache_clear()
    result = handler.backup_handler({"services": ["order"]}, context())
    assert [p["service"] for p in result["points"]] == ["order"]


def test_restore_uses_the_backups_schema_version(env: Env) -> None:
    """The manifest records schema_migrations; the restore applies exactly those (and the seed
    migration's rows are replaced by the backup's own products)."""
    env.run("inventory", "DELETE FROM products WHERE product_id = 'gizmo'")
    point = next(p["point"] for p in env.backup() if p["service"] == "inventory")
    result = env.service.restore(point)
    assert result["schemaMigrations"] == ["001_products_reservations", "002_seed_catalogue"]
    products = [r[0] for r in env.rows("inventory", result["database"])["products"]]
    assert "gizmo" not in products and "widget" in products


# --------------------------------------------------------------------------- refusals


def _rewrite_point(env: Env, key: str, blob: bytes, *, fix_checksum: bool = True) -> None:
    head = env.s3.head_object(Bucket=BUCKET, Key=key)
    metadata = dict(head["Metadata"])
    if fix_checksum:
        metadata["sha256"] = store.sha256(blob)
        metadata["size"] = str(len(blob))
    env.s3.put_object(Bucket=BUCKET, Key=key, Body=blob, Metadata=metadata)


def test_corrupted_point_is_refused_and_nothing_restored(env: Env) -> None:
    env.add_order()
    point = next(p["point"] for p in env.backup() if p["service"] == "order")
    blob = env.s3.get_object(Bucket=BUCKET, Key=point)["Body"].read()
    flipped = bytearray(blob)
    flipped[-40] ^= 0x01

    _rewrite_point(env, point, bytes(flipped), fix_checksum=False)
    with pytest.raises(IntegrityError, match="checksum"):
        env.service.restore(point)

    _rewrite_point(env, point, bytes(flipped))  # an attacker who also fixes the checksum
    with pytest.raises(IntegrityError, match="AES-GCM authentication failed"):
        env.service.restore(point)
    assert env.restore_databases() == []

    # the daily sync leaves a damaged point out instead of failing (or shipping it)
    _rewrite_point(env, point, blob[:-1] + b"x", fix_checksum=False)
    env.clock.advance(hours=1)
    synced = env.service.sync()
    assert synced["status"] == "synced" and synced["skipped"] == [point]
    assert point not in synced["points"] and len(synced["points"]) == 1


def test_corrupted_external_bundle_member_is_refused(env: Env) -> None:
    point = next(p["point"] for p in env.backup() if p["service"] == "order")
    env.clock.advance(hours=1)
    env.service.sync()
    body = bytearray(env.s3.get_object(Bucket=EXTERNAL, Key="bundles/2025-03-10.tar")["Body"].read())
    body[len(body) // 2] ^= 0xFF
    env.s3.put_object(Bucket=EXTERNAL, Key="bundles/2025-03-10.tar", Body=bytes(body))  # metadata lost too
    with pytest.raises(IntegrityError):
        env.service.restore(f"external:bundles/2025-03-10.tar:{point}")
    assert env.restore_databases() == []


def test_wrongly_keyed_points_are_refused(env: Env) -> None:
    env.add_order()
    order_point, inventory_point = (p["point"] for p in sorted(env.backup(), key=lambda p: p["service"] != "order"))

    # 1. made under another KMS key (e.g. another account's / a rotated-out key)
    foreign = BackupService(
        dataclasses.replace(env.settings, kms_key_id=env.other_key_arn), s3=env.s3, kms=env.kms, clock=env.clock
    )
    env.clock.advance(seconds=1)
    foreign_point = foreign.create_point("order").key
    with pytest.raises(IntegrityError, match="cannot be decrypted with KMS key"):
        env.service.restore(foreign_point)

    # 2. the restorer is configured with the wrong key
    with pytest.raises(IntegrityError, match="KMS key"):
        foreign.restore(order_point)

    # 3. another point's (valid) data key spliced into the header, with its context
    order_blob = env.s3.get_object(Bucket=BUCKET, Key=order_point)["Body"].read()
    other_blob = env.s3.get_object(Bucket=BUCKET, Key=inventory_point)["Body"].read()
    header, _, ciphertext = envelope.read_header(order_blob)
    other_header, _, _ = envelope.read_header(other_blob)

    def splice(data_key: bytes, context: dict) -> bytes:
        raw = json.dumps(
            {**header, "dataKey": base64.b64encode(data_key).decode(), "context": context},
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        return envelope.MAGIC + len(raw).to_bytes(4, "big") + raw + ciphertext

    _rewrite_point(env, order_point, splice(base64.b64decode(other_header["dataKey"]), other_header["context"]))
    with pytest.raises(IntegrityError, match="identity mismatch"):
        env.service.restore(order_point)
    # 4. a valid data key for this very identity (anyone allowed to GenerateDataKey can make one)
    fresh = env.kms.generate_data_key(KeyId=env.key_arn, KeySpec="AES_256", EncryptionContext=header["context"])
    _rewrite_point(env, order_point, splice(fresh["CiphertextBlob"], header["context"]))
    with pytest.raises(IntegrityError, match="AES-GCM authentication failed"):
        env.service.restore(order_point)
    assert env.restore_databases() == []


def _forge_point(env: Env, service: str, mutate) -> str:
    """A validly encrypted point whose content is wrong in a way only the database can detect."""
    conn = env.conn(service)
    try:
        catalogue, data = pgdump.dump_database(conn)
    finally:
        conn.close()
    env.clock.advance(seconds=1)
    key = store.point_key(service, env.clock())
    manifest = {
        "format": 1,
        "kind": "valerix-restore-point",
        "service": service,
        "database": f"{service}_db",
        "createdAt": env.clock().isoformat(),
        "pointId": key,
        **catalogue,
    }
    mutate(manifest, data)
    for table in manifest["tables"]:
        table["sha256"] = store.sha256(data[table["name"]])
        table["rows"] = data[table["name"]].count(b"\n")
    blob = envelope.seal(
        pgdump.pack(pgdump.Dump(manifest, data)),
        kms=env.kms,
        key_id=env.key_arn,
        context=BackupService.encryption_context(service, key),
    )
    store.LocalStore(env.s3, BUCKET).put_point(service, f"{service}_db", env.clock(), blob)
    return key


def test_failure_after_create_drops_the_fresh_database(env: Env) -> None:
    env.add_order()

    def violate_check(manifest: dict, data: dict) -> None:  # quantity 5000 breaks the CHECK constraint
        data["orders"] = data["orders"].replace(b"\t1\tCONFIRMED", b"\t5000\tCONFIRMED")

    point = _forge_point(env, "order", violate_check)
    with pytest.raises(RestoreRefused) as refused:
        env.service.restore(point)
    assert refused.value.database and refused.value.database.startswith("order_db_restore_")
    assert env.restore_databases() == []

    def unknown_migration(manifest: dict, data: dict) -> None:
        manifest["schemaMigrations"].append("999_from_the_future")

    point = _forge_point(env, "order", unknown_migration)
    with pytest.raises(RestoreRefused, match="999_from_the_future"):
        env.service.restore(point)
    assert env.restore_databases() == []


def test_verification_mismatch_drops_the_fresh_database(env: Env, monkeypatch) -> None:
    env.add_order()
    point = next(p["point"] for p in env.backup() if p["service"] == "inventory")
    original_load = pgdump.load

    def lossy_load(conn, dump, migrations):  # a restore that silently loses a row
        original_load(conn, dump, migrations)
        conn.run("DELETE FROM reservations")

    monkeypatch.setattr(pgdump, "load", lossy_load)
    with pytest.raises(RestoreRefused, match="reservations"):
        env.service.restore(point)
    assert env.restore_databases() == []


# --------------------------------------------------------------------------- retention


def test_retention_prunes_old_local_points_and_external_bundles(env: Env) -> None:
    days = [0, 3, 6, 8]
    made = {}
    for day in days:
        env.clock.set(DAY0 + dt.timedelta(days=day))
        made[day] = [p["point"] for p in env.backup()]
        env.clock.advance(hours=12)
        assert env.service.sync()["status"] == "synced"
    env.clock.set(DAY0 + dt.timedelta(days=8, hours=13))
    pruned = env.service.prune_local()
    assert sorted(pruned["deleted"]) == sorted(made[0])  # only the day-0 points are > 7 days old
    remaining = {p["point"] for p in env.service.list_points()}
    assert remaining == set(made[3] + made[6] + made[8])

    # external bundles: 30 days
    env.clock.set(DAY0 + dt.timedelta(days=31))
    env.backup()
    assert env.service.sync()["status"] == "synced"
    env.clock.set(DAY0 + dt.timedelta(days=34, hours=13))
    assert env.service.prune_external()["deleted"] == ["bundles/2025-03-10.tar", "bundles/2025-03-13.tar"]
    assert external_keys(env) == ["bundles/2025-03-16.tar", "bundles/2025-03-18.tar", "bundles/2025-04-10.tar"]
    # local points are all older than 7 days except day 31's
    assert len(env.service.prune_local()["deleted"]) == 6
    assert [p["createdAt"][:10] for p in env.service.list_points()] == ["2025-04-10", "2025-04-10"]
