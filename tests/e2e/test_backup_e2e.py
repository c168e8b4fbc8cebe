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

pytestmark = pytest.mark.e2e

REQUIRED = ("BackupFunctionName", "BackupSyncFunctionName", "BackupRestoreFunctionName",
            "BackupBucketName", "ExternalBackupBucketName")


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
        self.bucket = self.stack["BackupBucketName"]
        self.external = self.stack["ExternalBackupBucketName"]

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
        return pg8000.native.Connection(user=secret["username"], password=secret["password"], host=secret["host"],
                                        port=int(secret["port"]), database=database or secret["dbname"], timeout=10)

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
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    # a fresh "day" for this test: forget an earlier run's sync of today (record + bundle)
    backups.s3.delete_object(Bucket=backups.bucket, Key=f"sync/{today}.json")
    backups.s3.delete_object(Bucket=backups.external, Key=f"bundles/{today}.tar")

    product = api.new_product(stock=42, name="Backup e2e ✓")
    expected_products = backups.rows("inventory", "products")
    first = backups.call("BackupFunctionName", {})
    assert first["errors"] == {} and {p["service"] for p in first["points"]} == {"order", "inventory"}
    api.order(product, 2)
    second = backups.call("BackupFunctionName", {})
    made = [p["point"] for p in first["points"] + second["points"]]

    listing = backups.call("BackupRestoreFunctionName", {"list": True})
    listed = {p["point"]: p for p in listing["points"]}
    for key in made:
        assert listed[key]["size"] > 0 and len(listed[key]["sha256"]) == 64

    synced = backups.call("BackupSyncFunctionName", {})
    assert synced["status"] == "synced" and synced["bundle"] == f"bundles/{today}.tar"
    assert set(made) <= set(synced["points"])
    body = backups.s3.get_object(Bucket=backups.external, Key=synced["bundle"])["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        names = set(tar.getnames())
    assert set(made) <= names and "manifest.json" in names

    again = backups.call("BackupSyncFunctionName", {})
    assert again["status"] == "refused"
    bundles_today = [o["Key"] for o in backups.s3.list_objects_v2(Bucket=backups.external, Prefix="bundles/")
                     .get("Contents", []) if today in o["Key"]]
    assert bundles_today == [f"bundles/{today}.tar"]

    inventory_point = next(p["point"] for p in first["points"] if p["service"] == "inventory")
    restored = backups.call("BackupRestoreFunctionName",
                            {"point": f"external:bundles/{today}.tar:{inventory_point}"})
    assert restored["status"] == "restored"
    assert backups.rows("inventory", "products", restored["database"]) == expected_products


def test_tampered_point_is_refused_and_nothing_left_behind(backups: Backups) -> None:
    point = backups.call("BackupFunctionName", {"services": ["order"]})["points"][0]["point"]
    blob = bytearray(backups.s3.get_object(Bucket=backups.bucket, Key=point)["Body"].read())
    blob[-20] ^= 0x01
    forged = point.replace(".vbk", "").rsplit("/", 1)
    forged_key = f"{forged[0]}/{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}.999Z.vbk"
    head = backups.s3.head_object(Bucket=backups.bucket, Key=point)["Metadata"]
    backups.s3.put_object(Bucket=backups.bucket, Key=forged_key, Body=bytes(blob),
                          Metadata={**head, "sha256": hashlib.sha256(blob).hexdigest(), "size": str(len(blob))})
    before = backups.restore_databases("order")
    try:
        ok, body = backups.invoke("BackupRestoreFunctionName", {"point": forged_key})
        assert not ok and "AES-GCM authentication failed" in body["errorMessage"]
        assert backups.restore_databases("order") == before
    finally:
        backups.s3.delete_object(Bucket=backups.bucket, Key=forged_key)
