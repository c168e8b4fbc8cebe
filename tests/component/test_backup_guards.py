"""Backups, issue 13 item 7: a point's identity is bound into its encryption, and the daily
external delivery makes exactly one attempt.

Same environment as test_backup.py (real Postgres + moto S3/KMS/Secrets Manager, fake clock);
the single-attempt test talks to a real HTTP server that plays a failing external target.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from functions.backup import envelope, store
from functions.backup.errors import IntegrityError
from functions.backup.service import BackupService
from tests.component.test_backup import (  # noqa: F401 -- env: the fixture these tests take
    BUCKET,
    DAY0,
    EXTERNAL,
    Env,
    _rewrite_point,
    bundle_contents,
    context,
    env,
)


def _point(env: Env, service: str = "order") -> str:
    return next(p["point"] for p in env.backup() if p["service"] == service)


def _newer_key(key: str, moment: dt.datetime, service: str | None = None) -> str:
    old_service, _ = store.parse_point_key(key)
    return store.point_key(service or old_service, moment)


# --------------------------------------------------------------------------- identity binding


def test_old_point_copied_under_a_newer_name_is_refused(env: Env) -> None:
    old = _point(env)  # DAY0: one order fewer than now
    env.clock.advance(hours=4)
    env.add_order()
    current = _point(env)
    # The attacker's copy keeps the object's metadata, so its checksum still matches.
    newer = _newer_key(old, env.clock() + dt.timedelta(minutes=5))
    env.s3.copy_object(Bucket=BUCKET, Key=newer, CopySource={"Bucket": BUCKET, "Key": old})
    assert [p["point"] for p in env.service.list_points("order")] == [old, current, newer]

    with pytest.raises(IntegrityError, match="identity mismatch") as refused:
        env.service.restore(newer)
    assert old in str(refused.value) and "copied or renamed" in str(refused.value)
    assert env.restore_databases() == []
    # the genuine points still restore
    assert env.service.restore(old)["status"] == env.service.restore(current)["status"] == "restored"

    # under another service's name: refused too
    foreign = _newer_key(old, env.clock() + dt.timedelta(minutes=6), service="inventory")
    env.s3.copy_object(Bucket=BUCKET, Key=foreign, CopySource={"Bucket": BUCKET, "Key": old})
    with pytest.raises(IntegrityError, match="identity mismatch"):
        env.service.restore(foreign)

    # and the daily sync does not ship the misnamed copies
    env.clock.advance(hours=1)
    synced = env.service.sync()
    assert synced["status"] == "synced" and sorted(synced["skipped"]) == sorted([newer, foreign])
    assert newer not in synced["points"] and old in synced["points"] and current in synced["points"]


def test_header_rewritten_to_the_new_name_is_refused_by_kms(env: Env) -> None:
    """An attacker who also edits the header's context to the new name: KMS will not decrypt the
    data key under a context it was not generated with (and the header is AES-GCM associated data)."""
    old = _point(env)
    blob = env.s3.get_object(Bucket=BUCKET, Key=old)["Body"].read()
    header, _, ciphertext = envelope.read_header(blob)
    newer = _newer_key(old, env.clock() + dt.timedelta(hours=1))
    header["context"] = {**header["context"], "point": newer}
    raw = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    forged = envelope.MAGIC + len(raw).to_bytes(4, "big") + raw + ciphertext
    env.s3.put_object(
        Bucket=BUCKET,
        Key=newer,
        Body=forged,
        Metadata={
            "service": "order",
            "database": "order_db",
            "created-at": "x",
            "sha256": store.sha256(forged),
            "size": str(len(forged)),
        },
    )
    with pytest.raises(IntegrityError, match=r"cannot be decrypted with KMS key|AES-GCM authentication failed"):
        env.service.restore(newer)
    assert env.restore_databases() == []


def test_point_sealed_without_an_identity_is_refused(env: Env) -> None:
    """A point sealed with the old context (purpose + service only) could be renamed freely."""
    key = store.point_key("order", env.clock())
    blob = envelope.seal(
        b"irrelevant", kms=env.kms, key_id=env.key_arn, context={"purpose": "valerix-backup", "service": "order"}
    )
    store.LocalStore(env.s3, BUCKET).put_point("order", "order_db", env.clock(), blob)
    with pytest.raises(IntegrityError, match=r"identity mismatch .*point: expected .*, sealed None"):
        env.service.restore(key)


def test_renamed_member_of_an_external_bundle_is_refused(env: Env) -> None:
    old = _point(env)
    env.clock.advance(hours=1)
    assert env.service.sync()["status"] == "synced"
    manifest, files = bundle_contents(env, "bundles/2025-03-10.tar")
    newer = _newer_key(old, env.clock() + dt.timedelta(hours=1))
    files[newer] = files.pop(old)
    for entry in manifest["points"]:
        if entry["point"] == old:
            entry["point"] = newer
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, content in [("manifest.json", json.dumps(manifest).encode()), *files.items()]:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    env.s3.put_object(Bucket=EXTERNAL, Key="bundles/2025-03-10.tar", Body=raw.getvalue())
    with pytest.raises(IntegrityError, match="identity mismatch"):
        env.service.restore(f"external:bundles/2025-03-10.tar:{newer}")
    assert env.restore_databases() == []


# --------------------------------------------------------------------------- one attempt a day


class CountingDeliver:
    """Wraps ExternalTarget.deliver: counts attempts and records whether the intent existed."""

    def __init__(self, env: Env, fail: Exception | None = None) -> None:
        self.env = env
        self.original = env.service.external.deliver
        self.fail = fail
        self.attempts = 0
        self.intent_seen: list[dict | None] = []
        env.service.external.deliver = self  # type: ignore[method-assign]  # the test's stand-in

    def __call__(self, day: dt.date, archive: bytes, metadata: dict[str, str]) -> str:
        self.attempts += 1
        self.intent_seen.append(self.env.service.local.intent(day))
        if self.fail is not None:
            raise self.fail
        return self.original(day, archive, metadata)


def test_intent_marker_is_written_before_the_external_call(env: Env) -> None:
    points = [p["point"] for p in env.backup()]
    env.clock.advance(hours=20)
    deliver = CountingDeliver(env)
    result = env.service.sync()
    assert result["status"] == "synced" and deliver.attempts == 1
    (intent,) = deliver.intent_seen
    assert intent is not None, "the intent must exist when the call is made"
    assert intent["bundle"] == "bundles/2025-03-10.tar" and sorted(intent["points"]) == sorted(points)
    assert intent["sha256"] == result["sha256"]


def test_failed_external_call_is_not_attempted_again_the_same_day(env: Env) -> None:
    points = [p["point"] for p in env.backup()]
    env.clock.advance(hours=20)
    deliver = CountingDeliver(env, fail=EndpointConnectionError(endpoint_url="https://external.example"))
    with pytest.raises(EndpointConnectionError):
        env.service.sync()
    assert deliver.attempts == 1
    assert env.service.local.sync_record(DAY0.date()) is None

    # a re-run the same day (by hand, or any retry that slipped through) sees the intent: no call
    env.clock.advance(minutes=5)
    again = env.service.sync()
    assert again["status"] == "in_doubt" and deliver.attempts == 1
    assert "sync/intents/2025-03-10.json" in again["reason"] and again["bundle"] == "bundles/2025-03-10.tar"
    assert env.external_calls.calls == []

    # the next day's single call carries the points that never got out
    deliver.fail = None
    env.clock.advance(days=1)
    next_day = env.service.sync()
    assert next_day["status"] == "synced" and deliver.attempts == 2
    assert set(points) <= set(next_day["points"])


def test_crash_after_the_call_does_not_call_again(env: Env, monkeypatch) -> None:
    """The call succeeded but the run died before recording it: a re-run must not call again."""
    env.backup()
    env.clock.advance(hours=20)
    deliver = CountingDeliver(env)

    def crash(day: dt.date, record: dict) -> None:
        raise RuntimeError("Lambda timed out")

    monkeypatch.setattr(env.service.local, "put_sync_record", crash)
    with pytest.raises(RuntimeError):
        env.service.sync()
    monkeypatch.undo()
    assert deliver.attempts == 1
    assert env.service.sync()["status"] == "in_doubt" and deliver.attempts == 1
    assert [o["Key"] for o in env.s3.list_objects_v2(Bucket=EXTERNAL)["Contents"]] == ["bundles/2025-03-10.tar"]


def test_concurrent_runs_claim_the_day_once(env: Env, monkeypatch) -> None:
    """Two runs pass the 'no intent yet' check together: the create-only claim lets one call."""
    env.backup()
    env.clock.advance(hours=20)
    deliver = CountingDeliver(env)
    env.service.local.claim_intent(
        DAY0.date(), {"day": "2025-03-10", "bundle": "bundles/2025-03-10.tar", "intendedAt": "2025-03-10T20:10:00Z"}
    )  # the other run
    monkeypatch.setattr(env.service.local, "intent", lambda day: None)  # we checked before it wrote
    result = env.service.sync()
    assert result["status"] == "in_doubt" and deliver.attempts == 0


def test_handler_gives_the_external_target_a_single_attempt_client(env: Env) -> None:
    from functions.backup import handler
    from functions.common import aws

    handler.get_service.cache_clear()
    service = handler.get_service()
    assert service.external.s3 is aws.single_attempt_client("s3")
    assert service.external.s3.meta.config.retries["total_max_attempts"] == 1
    assert service.local.s3 is not service.external.s3  # the local bucket keeps the SDK's retries


class _FailingTarget(BaseHTTPRequestHandler):
    """An external target that answers every upload with 500 (a retryable error for the SDK)."""

    puts: ClassVar[list[str]] = []

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        type(self).puts.append(self.path)
        body = b"<Error><Code>InternalError</Code><Message>boom</Message></Error>"
        self.send_response(500)
        self.send_header("content-type", "application/xml")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def failing_target(monkeypatch):
    _FailingTarget.puts = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FailingTarget)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{server.server_port}",
    }.items():
        monkeypatch.setenv(key, value)
    from functions.common import aws

    aws.client.cache_clear()
    yield _FailingTarget.puts
    aws.client.cache_clear()
    server.shutdown()
    server.server_close()


def test_single_attempt_client_calls_a_failing_target_exactly_once(failing_target: list[str]) -> None:
    from functions.common import aws

    day = dt.date(2025, 3, 10)
    with pytest.raises(ClientError):
        store.ExternalTarget(aws.single_attempt_client("s3"), "external").deliver(day, b"tar", {})
    assert failing_target == ["/external/bundles/2025-03-10.tar"]
    # the same call through the ordinary client is retried by the SDK: what the sync must avoid
    failing_target.clear()
    with pytest.raises(ClientError):
        store.ExternalTarget(aws.client("s3"), "external").deliver(day, b"tar", {})
    assert len(failing_target) > 1


# --------------------------------------------------------------------------- history lock (aws)


def test_lifecycle_mode_never_deletes(env: Env) -> None:
    """target=aws (BACKUP_PRUNE_MODE=lifecycle): the functions hold no delete permission, so the
    retention code deletes nothing and does not even list the external target."""
    import dataclasses

    service = BackupService(
        dataclasses.replace(env.settings, prune_mode="lifecycle"), s3=env.s3, kms=env.kms, clock=env.clock
    )
    old = [p["point"] for p in env.backup()]
    env.clock.advance(hours=1)
    assert service.sync()["status"] == "synced"
    deleted: list[str] = []
    env.s3.meta.events.register("before-call.s3.DeleteObjects", lambda **kw: deleted.append("DeleteObjects"))
    env.s3.meta.events.register("before-call.s3.DeleteObject", lambda **kw: deleted.append("DeleteObject"))
    env.clock.advance(days=40)
    local = service.prune_local()
    env.external_calls.clear()
    external = service.prune_external()
    assert local["deleted"] == [] and local["by"] == "lifecycle" and set(old) <= set(local["pastRetention"])
    assert external == {"deleted": [], "by": "lifecycle"} and env.external_calls.calls == []
    assert deleted == []
    assert {p["point"] for p in service.list_points()} == set(old)


def test_prune_mode_is_validated(monkeypatch) -> None:
    from functions.backup.settings import BackupSettings
    from functions.common.settings import SettingsError

    env = {"BACKUP_BUCKET": "b", "EXTERNAL_BUCKET": "e", "BACKUP_KMS_KEY_ID": "k"}
    assert BackupSettings.from_env(env).prune_mode == "delete"
    assert BackupSettings.from_env({**env, "BACKUP_PRUNE_MODE": "lifecycle"}).prune_mode == "lifecycle"
    with pytest.raises(SettingsError, match="BACKUP_PRUNE_MODE"):
        BackupSettings.from_env({**env, "BACKUP_PRUNE_MODE": "shred"})
