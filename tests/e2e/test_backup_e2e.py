"""Backups on the local cloud (issue 9): the deployed backup functions, LocalStack S3 + KMS, and
the local Postgres servers.

Needs the `LocalBackup` construct in the stack (outputs BackupFunctionName,
BackupSyncFunctionName, BackupRestoreFunctionName, BackupBucketName, ExternalBackupBucketName);
skipped until it is wired.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import tarfile

import pg8000.native
import pytest

from infra.outputs import (
    BACKUP_BUCKET_NAME,
    BACKUP_FUNCTION_NAME,
    BACKUP_RESTORE_FUNCTION_NAME,
    BACKUP_SYNC_FUNCTION_NAME,
    EXTERNAL_BACKUP_BUCKET_NAME,
)

pytestmark = pytest.mark.e2e

REQUIRED = (
    BACKUP_FUNCTION_NAME,
    BACKUP_SYNC_FUNCTION_NAME,
    BACKUP_RESTORE_FUNCTION_NAME,
    BACKUP_BUCKET_NAME,
    EXTERNAL_BACKUP_BUCKET_NAME,
)


@pytest.fixture(scope="module")
def cloud(localcloud):
    missing = [k for k in REQUIRED if k not in localcloud.stack]
    if missing:
        pytest.skip(f"backup construct not deployed (missing stack outputs {missing})")
    return localcloud


class Backups:
    def __init__(self, cloud) -> None:
        self.cloud = cloud
        self.stack = cloud.stack
        self.lambda_ = cloud.client("lambda", read_timeout=900)
        self.s3 = cloud.client("s3")
        self.bucket = self.stack[BACKUP_BUCKET_NAME]
        self.external = self.stack[EXTERNAL_BACKUP_BUCKET_NAME]

    def invoke(self, output: str, payload: dict) -> tuple[bool, dict]:
        response = self.lambda_.invoke(FunctionName=self.stack[output], Payload=json.dumps(payload).encode())
        body = json.loads(response["Payload"].read() or b"null")
        return "FunctionError" not in response, body

    def call(self, output: str, payload: dict) -> dict:
        ok, body = self.invoke(output, payload)
        assert ok, body
        return body

    def connect(self, service: str, database: str | None = None) -> pg8000.native.Connection:
        secret = self.cloud.outputs["databases"][service]
        return pg8000.native.Connection(
            user=secret["username"],
            password=secret["password"],
            host=secret["host"],
            port=int(secret["port"]),
            database=database or secret["dbname"],
            timeout=10,
        )

    def rows(self, service: str, table: str, database: str | None = None) -> list:
        conn = self.connect(service, database)
        try:
            return conn.run(f'SELECT * FROM "{table}" ORDER BY 1')
        finally:
            conn.close()

    def restore_databases(self, service: str) -> list[str]:
        conn = self.connect(service, "postgres")
        try:
            return [r[0] for r in conn.run("SELECT datname FROM pg_database WHERE datname LIKE '%\\_restore\\_%'")]
        finally:
            conn.close()

    def forget_today(self, today: str) -> None:
        """A fresh "day" for a test: forget an earlier run's sync of today (record, intent, bundle)."""
        for bucket, key in (
            (self.bucket, f"sync/{today}.json"),
            (self.bucket, f"sync/intents/{today}.json"),
            (self.external, f"bundles/{today}.tar"),
        ):
            self.s3.delete_object(Bucket=bucket, Key=key)

    def external_keys(self, today: str) -> list[str]:
        contents = self.s3.list_objects_v2(Bucket=self.external, Prefix="bundles/").get("Contents", [])
        return [o["Key"] for o in contents if today in o["Key"]]

    def drop(self, service: str, database: str) -> None:
        conn = self.connect(service, "postgres")
        try:
            conn.run(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            conn.close()


@pytest.fixture(scope="module")
def backups(cloud):
    b = Backups(cloud)
    before = {s: set(b.restore_databases(s)) for s in ("order", "inventory")}
    yield b
    for service in ("order", "inventory"):
        for name in set(b.restore_databases(service)) - before[service]:
            b.drop(service, name)


def test_points_daily_sync_and_restore_from_external(backups: Backups, api) -> None:
    today = dt.datetime.now(dt.UTC).date().isoformat()
    # a fresh "day" for this test: forget an earlier run's sync of today (record + bundle)
    backups.forget_today(today)

    product = api.new_product(stock=42, name="Backup e2e ✓")
    expected_products = backups.rows("inventory", "products")
    first = backups.call(BACKUP_FUNCTION_NAME, {})
    assert first["errors"] == {} and {p["service"] for p in first["points"]} == {"order", "inventory"}
    api.order(product, 2)
    second = backups.call(BACKUP_FUNCTION_NAME, {})
    made = [p["point"] for p in first["points"] + second["points"]]

    listing = backups.call(BACKUP_RESTORE_FUNCTION_NAME, {"list": True})
    listed = {p["point"]: p for p in listing["points"]}
    for key in made:
        assert listed[key]["size"] > 0 and len(listed[key]["sha256"]) == 64

    synced = backups.call(BACKUP_SYNC_FUNCTION_NAME, {})
    assert synced["status"] == "synced" and synced["bundle"] == f"bundles/{today}.tar"
    assert set(made) <= set(synced["points"])
    body = backups.s3.get_object(Bucket=backups.external, Key=synced["bundle"])["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        names = set(tar.getnames())
    assert set(made) <= names and "manifest.json" in names

    again = backups.call(BACKUP_SYNC_FUNCTION_NAME, {})
    assert again["status"] == "refused"
    assert backups.external_keys(today) == [f"bundles/{today}.tar"]
    # the day's intent marker was written (before the call), naming what the call carried
    intent = json.loads(backups.s3.get_object(Bucket=backups.bucket, Key=f"sync/intents/{today}.json")["Body"].read())
    assert intent["bundle"] == synced["bundle"] and set(made) <= set(intent["points"])

    inventory_point = next(p["point"] for p in first["points"] if p["service"] == "inventory")
    restored = backups.call(BACKUP_RESTORE_FUNCTION_NAME, {"point": f"external:bundles/{today}.tar:{inventory_point}"})
    assert restored["status"] == "restored"
    assert backups.rows("inventory", "products", restored["database"]) == expected_products


def _newer_key(point: str) -> str:
    """The point's service folder, a timestamp later than any point made so far."""
    folder = point.rsplit("/", 1)[0]
    return f"{folder}/{dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1):%Y%m%dT%H%M%S}.999Z.vbk"


def test_tampered_point_is_refused_and_nothing_left_behind(backups: Backups) -> None:
    point = backups.call(BACKUP_FUNCTION_NAME, {"services": ["order"]})["points"][0]["point"]
    blob = bytearray(backups.s3.get_object(Bucket=backups.bucket, Key=point)["Body"].read())
    blob[-20] ^= 0x01
    head = backups.s3.head_object(Bucket=backups.bucket, Key=point)["Metadata"]
    # tampered in place (a throwaway point), the checksum fixed up as an attacker would
    backups.s3.put_object(
        Bucket=backups.bucket,
        Key=point,
        Body=bytes(blob),
        Metadata={**head, "sha256": hashlib.sha256(blob).hexdigest(), "size": str(len(blob))},
    )
    before = backups.restore_databases("order")
    try:
        ok, body = backups.invoke(BACKUP_RESTORE_FUNCTION_NAME, {"point": point})
        assert not ok and "AES-GCM authentication failed" in body["errorMessage"]
        assert backups.restore_databases("order") == before
    finally:
        backups.s3.delete_object(Bucket=backups.bucket, Key=point)


def test_old_point_copied_under_a_newer_name_is_refused(backups: Backups) -> None:
    """Issue 13: the point's identity is bound into its encryption, so an old point cannot pose
    as a newer one (restoring yesterday's data while the operator thinks it is today's)."""
    old = backups.call(BACKUP_FUNCTION_NAME, {"services": ["inventory"]})["points"][0]["point"]
    newer = _newer_key(old)
    backups.s3.copy_object(Bucket=backups.bucket, Key=newer, CopySource={"Bucket": backups.bucket, "Key": old})
    before = backups.restore_databases("inventory")
    try:
        listed = [
            p["point"]
            for p in backups.call(BACKUP_RESTORE_FUNCTION_NAME, {"list": True, "service": "inventory"})["points"]
        ]
        assert newer in listed and old in listed  # it looks like the newest point ...
        ok, body = backups.invoke(BACKUP_RESTORE_FUNCTION_NAME, {"point": newer})
        assert not ok, body  # ... but does not restore
        assert "identity mismatch" in body["errorMessage"] and old in body["errorMessage"]
        assert "copied or renamed" in body["errorMessage"]
        assert backups.restore_databases("inventory") == before
        restored = backups.call(BACKUP_RESTORE_FUNCTION_NAME, {"point": old})  # the genuine one does
        assert restored["status"] == "restored"
    finally:
        backups.s3.delete_object(Bucket=backups.bucket, Key=newer)


def test_sync_rerun_after_an_unrecorded_attempt_makes_no_call(backups: Backups) -> None:
    """The intent marker outlives a lost sync record: a re-run reports `in_doubt`, no new call."""
    today = dt.datetime.now(dt.UTC).date().isoformat()
    backups.forget_today(today)
    backups.call(BACKUP_FUNCTION_NAME, {"services": ["order"]})
    first = backups.call(BACKUP_SYNC_FUNCTION_NAME, {})
    assert first["status"] == "synced"
    bundle = backups.s3.head_object(Bucket=backups.external, Key=first["bundle"])
    # the run "crashed" after the call: no sync record, only the intent
    backups.s3.delete_object(Bucket=backups.bucket, Key=f"sync/{today}.json")
    backups.call(BACKUP_FUNCTION_NAME, {"services": ["order"]})  # something new to ship
    again = backups.call(BACKUP_SYNC_FUNCTION_NAME, {})
    assert again["status"] == "in_doubt" and f"sync/intents/{today}.json" in again["reason"]
    assert backups.external_keys(today) == [first["bundle"]]
    assert backups.s3.head_object(Bucket=backups.external, Key=first["bundle"])["ETag"] == bundle["ETag"]
