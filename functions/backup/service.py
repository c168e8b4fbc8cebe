"""The backup strategy: frequent local restore points, one external call a day, verified restores.

* `create_point(service)` (every 4 h + on demand): consistent logical dump of the service's
  database (pgdump.py) -> gzip(tar) -> envelope encryption (envelope.py) -> local bucket
  (store.py). Returns the point with time, size and checksum.
* `sync()` (daily): every local point no sync record lists yet goes into ONE tar with a bundle
  manifest, delivered in ONE guarded call (store.ExternalTarget.deliver) with exactly one
  attempt: an intent marker is written (create-only) before the call, the client never retries,
  and the schedule has no EventBridge/Lambda retries. The day's sync record is written only after
  the call succeeded; when today's record or intent exists no call is made at all, and if some
  other caller already used today's call the external target refuses (412).
* `restore(ref)`: from a local point (`points/...`) or an external bundle member
  (`external:bundles/<day>.tar:points/...`): checksum -> AES-GCM/KMS -> payload manifest ->
  CREATE DATABASE `<db>_restore_<stamp>` -> migrations of the backup's schema version -> COPY ->
  verify row counts and checksums. Any failure after the CREATE drops the fresh database.
* `prune_local()` / `prune_external()`: retention (7 / 30 days) against an injectable clock; in
  `lifecycle` mode (target=aws, Object Lock) they delete nothing and S3 lifecycle rules expire.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import secrets
import tarfile
from collections.abc import Callable
from typing import Any

from functions.backup import databases, envelope, pgdump, store
from functions.backup.errors import BackupError, IntegrityError, PointNotFound, RestoreRefused
from functions.backup.settings import SERVICES, BackupSettings, migrations_dir
from functions.common.db import DbSecret
from functions.common.observability import get_logger

logger = get_logger("backup")

Clock = Callable[[], dt.datetime]
BUNDLE_FORMAT = 1
EXTERNAL_PREFIX = "external:"


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


class BackupService:
    def __init__(
        self,
        settings: BackupSettings,
        *,
        s3: Any,
        kms: Any,
        external_s3: Any = None,
        clock: Clock = utc_now,
        secrets_reader: Callable[[str], DbSecret] = databases.read_secret,
    ) -> None:
        """`external_s3`: the client for the external target (default `s3`). The handler passes a
        single-attempt client: the daily call must never be repeated by SDK retries."""
        self.settings = settings
        self.kms = kms
        self.clock = clock
        self.local = store.LocalStore(s3, settings.bucket)
        self.external = store.ExternalTarget(external_s3 or s3, settings.external_bucket)
        self._read_secret = secrets_reader

    def now(self) -> dt.datetime:
        moment = self.clock()
        if moment.tzinfo is None:
            raise ValueError("the clock must return timezone-aware datetimes")
        return moment.astimezone(dt.UTC)

    def secret(self, service: str) -> DbSecret:
        if service not in SERVICES:
            raise BackupError(f"unknown service {service!r} (one of {sorted(SERVICES)})")
        return self._read_secret(self.settings.secret_arn(service))

    @staticmethod
    def encryption_context(service: str, point_id: str) -> dict[str, str]:
        """KMS encryption context (and AES-GCM associated data) of a point: binds its identity.

        `point` is the point's key (service + timestamp): a point copied or renamed under another
        key no longer matches the context its restore derives from that key, and is refused.
        The IAM grants require `purpose` and a `point` (infra/constructs/local_backup.py).
        """
        return {"purpose": "valerix-backup", "service": service, "point": point_id}

    # ------------------------------------------------------------------ backup
    def create_point(self, service: str) -> store.RestorePoint:
        secret = self.secret(service)
        with databases.connection(secret, tls=self.settings.db_tls) as conn:
            catalogue, data = pgdump.dump_database(conn)
        created_at = self.now()
        point_id = store.point_key(service, created_at)
        manifest = {
            "format": pgdump.PAYLOAD_FORMAT,
            "kind": "valerix-restore-point",
            "service": service,
            "database": secret.dbname,
            "createdAt": _iso(created_at),
            "pointId": point_id,
            **catalogue,
        }
        payload = pgdump.pack(pgdump.Dump(manifest, data))
        blob = envelope.seal(
            payload, kms=self.kms, key_id=self.settings.kms_key_id, context=self.encryption_context(service, point_id)
        )
        point = self.local.put_point(service, secret.dbname, created_at, blob)
        if point.key != point_id:  # the key is the identity sealed above; they must never drift apart
            raise BackupError(f"restore point stored as {point.key}, sealed as {point_id}")
        logger.info(
            "restore point created",
            extra={**point.to_dict(), "tables": {t["name"]: t["rows"] for t in manifest["tables"]}},
        )
        return point

    def backup_all(self, services: list[str] | None = None) -> dict[str, Any]:
        """A point per service; one failing database does not stop the other."""
        points, errors = [], {}
        for service in services or list(SERVICES):
            try:
                points.append(self.create_point(service).to_dict())
            except Exception as exc:  # reported per service, raised by the handler
                logger.exception("backup failed", extra={"service": service})
                errors[service] = str(exc)
        return {"points": points, "errors": errors}

    def list_points(self, service: str | None = None) -> list[dict[str, Any]]:
        return [p.to_dict() for p in self.local.list_points(service)]

    # ------------------------------------------------------------------ daily sync
    def unsynced_points(self) -> list[store.RestorePoint]:
        synced = {key for record in self.local.sync_records() for key in record.get("points", [])}
        return [p for p in self.local.list_points() if p.key not in synced]

    def sync(self) -> dict[str, Any]:
        """The day's one external call: exactly one attempt, whatever happens.

        Order: sync record (done today?) -> intent marker (attempted today?) -> bundle -> claim the
        intent (create-only) -> ONE call with a client that never retries -> sync record. A crash
        or error after the claim leaves the intent: later runs that day report `in_doubt` and do
        not call (the points stay unsynced and go into the next day's bundle).
        """
        now = self.now()
        day = now.date()
        existing = self.local.sync_record(day)
        if existing is not None:
            logger.warning("external sync refused: today's call was already made", extra={"day": day.isoformat()})
            return {
                "status": "refused",
                "reason": "today's external call was already made",
                "day": day.isoformat(),
                "bundle": existing["bundle"],
            }
        intent = self.local.intent(day)
        if intent is not None:
            return self._in_doubt(day, intent)
        pending = self.unsynced_points()
        if not pending:
            return {"status": "nothing_to_sync", "day": day.isoformat(), "points": []}

        entries, members, skipped = [], [], []
        for point in pending:
            try:
                _, blob = self.local.get_point(point.key)  # checksum-verified before it leaves
                self._check_identity(point.key, blob)
            except IntegrityError as exc:  # a damaged or misnamed point must not cost the day's call
                logger.error("restore point skipped by the sync", extra={"point": point.key, "error": str(exc)})
                skipped.append(point.key)
                continue
            entries.append(point.to_dict())
            members.append((point.key, blob))
        if not entries:
            return {"status": "nothing_to_sync", "day": day.isoformat(), "points": [], "skipped": skipped}
        previous = self.local.sync_records()
        manifest = {
            "format": BUNDLE_FORMAT,
            "kind": "valerix-external-bundle",
            "day": day.isoformat(),
            "createdAt": _iso(now),
            "previousSync": previous[-1]["day"] if previous else None,
            "points": entries,
        }
        archive = _tar([("manifest.json", json.dumps(manifest, indent=1).encode()), *members])
        checksum = store.sha256(archive)
        bundle = self.external.bundle_key(day)
        claimed = self.local.claim_intent(
            day,
            {
                "day": day.isoformat(),
                "bundle": bundle,
                "intendedAt": _iso(now),
                "sha256": checksum,
                "points": [e["point"] for e in entries],
            },
        )
        if claimed is not None:  # another run claimed the day between our check and now
            return self._in_doubt(day, claimed)
        try:
            key = self.external.deliver(
                day, archive, {"sha256": checksum, "points": str(len(entries)), "day": day.isoformat()}
            )
        except store.DailyCallRefused as exc:
            logger.warning("external sync refused by the external target", extra={"day": day.isoformat()})
            return {"status": "refused", "reason": str(exc), "day": day.isoformat(), "bundle": bundle}
        except Exception:
            # The intent stays: no second attempt today (the handler's error alarms; see the runbook).
            logger.exception("the external call failed; today's one attempt is spent", extra={"day": day.isoformat()})
            raise
        record = {
            "day": day.isoformat(),
            "bundle": key,
            "syncedAt": _iso(now),
            "sha256": checksum,
            "size": len(archive),
            "points": [e["point"] for e in entries],
        }
        self.local.put_sync_record(day, record)
        logger.info(
            "external sync done", extra={k: v for k, v in record.items() if k != "points"} | {"count": len(entries)}
        )
        return {"status": "synced", **record, "skipped": skipped}

    def _in_doubt(self, day: dt.date, intent: dict[str, Any]) -> dict[str, Any]:
        """Today's attempt was made (or started) without a sync record: report, never call again."""
        logger.error(
            "external sync not attempted: today's one attempt was already made and its outcome is not recorded",
            extra={"day": day.isoformat(), "intent": intent},
        )
        return {
            "status": "in_doubt",
            "day": day.isoformat(),
            "bundle": intent.get("bundle"),
            "intendedAt": intent.get("intendedAt"),
            "reason": f"an earlier run attempted today's external call (intent {store.intent_key(day)}, "
            f"{intent.get('intendedAt', 'time unknown')}) and recorded no outcome; the day's one "
            "attempt is spent, so no call is made. Check the external bundle; points not "
            "recorded as synced go into the next day's bundle.",
        }

    @staticmethod
    def _check_identity(key: str, blob: bytes) -> None:
        """The point's sealed identity (header, no KMS needed) must be its key."""
        header, _, _ = envelope.read_header(blob)
        sealed = header.get("context", {}).get("point") if isinstance(header.get("context"), dict) else None
        if sealed != key:
            raise IntegrityError(f"{key} was sealed as {sealed!r} (copied or renamed)")

    # ------------------------------------------------------------------ retention
    def prune_local(self) -> dict[str, Any]:
        """Local retention. In `lifecycle` mode (target=aws) nothing is deleted here: the bucket's
        lifecycle rules expire old objects and the functions hold no delete permission."""
        now = self.now()
        cutoff = now - dt.timedelta(days=self.settings.local_retention_days)
        old = [p.key for p in self.local.list_points() if p.created_at < cutoff]
        record_cutoff = (now - dt.timedelta(days=self.settings.external_retention_days)).date()
        old_records = [
            k for k in self.local.sync_record_keys() if (day := store.day_of(k)) is not None and day < record_cutoff
        ]
        if self.settings.prune_mode == "lifecycle":
            return {"deleted": [], "deletedSyncRecords": [], "by": "lifecycle", "pastRetention": old + old_records}
        self.local.delete_points(old)
        self.local.delete_keys(old_records)
        if old:
            logger.info("pruned local restore points", extra={"count": len(old), "cutoff": _iso(cutoff)})
        return {"deleted": old, "deletedSyncRecords": old_records}

    def prune_external(self) -> dict[str, Any]:
        if self.settings.prune_mode == "lifecycle":  # not even a listing: no call to the external target
            return {"deleted": [], "by": "lifecycle"}
        cutoff = (self.now() - dt.timedelta(days=self.settings.external_retention_days)).date()
        old = [b["bundle"] for b in self.external.list_bundles() if dt.date.fromisoformat(b["day"]) < cutoff]
        self.external.delete_bundles(old)
        if old:
            logger.info("pruned external bundles", extra={"count": len(old), "cutoff": cutoff.isoformat()})
        return {"deleted": old}

    def list_bundles(self) -> list[dict[str, Any]]:
        return self.external.list_bundles()

    # ------------------------------------------------------------------ restore
    def fetch(self, ref: str) -> tuple[str, bytes]:
        """(point key, verified bytes) of a local point or of an external bundle member."""
        ref = ref.strip()
        if ref.startswith("local:"):
            ref = ref[len("local:") :]
        if not ref.startswith(EXTERNAL_PREFIX):
            point, blob = self.local.get_point(ref)
            return point.key, blob
        bundle_key, sep, member = ref[len(EXTERNAL_PREFIX) :].partition(":")
        if not sep or not member:
            raise PointNotFound("external restore points are `external:bundles/<day>.tar:points/<service>/<stamp>.vbk`")
        if not bundle_key.startswith(store.BUNDLE_PREFIX):
            bundle_key = store.BUNDLE_PREFIX + bundle_key
        archive, metadata = self.external.get_bundle(bundle_key)
        if metadata.get("sha256") and store.sha256(archive) != metadata["sha256"]:
            raise IntegrityError(f"external bundle {bundle_key} does not match its recorded checksum")
        files = _untar(archive)
        try:
            manifest = json.loads(files["manifest.json"])
            entry = next(p for p in manifest["points"] if p["point"] == member)
        except (KeyError, ValueError, StopIteration) as exc:
            raise PointNotFound(f"bundle {bundle_key} has no restore point {member}") from exc
        found = files.get(member)
        if found is None or store.sha256(found) != entry["sha256"] or len(found) != entry["size"]:
            raise IntegrityError(f"{member} in {bundle_key} does not match the bundle manifest checksum")
        return member, found

    def open_point(self, ref: str) -> tuple[str, pgdump.Dump]:
        key, blob = self.fetch(ref)
        service, _ = store.parse_point_key(key)
        # The expected identity comes from where the point was found, never from its header.
        try:
            _, payload = envelope.unseal(
                blob, kms=self.kms, key_id=self.settings.kms_key_id, context=self.encryption_context(service, key)
            )
        except IntegrityError as exc:
            raise IntegrityError(f"{key}: {exc}") from exc
        dump = pgdump.unpack(payload)
        if dump.manifest.get("service") != service or dump.manifest.get("pointId") != key:
            raise IntegrityError(
                f"{key}: the point's manifest names another point "
                f"({dump.manifest.get('pointId')!r}); refusing to restore it"
            )
        return key, dump

    def restore(self, ref: str) -> dict[str, Any]:
        """Restore into a fresh database; returns its name and the verified tables.

        Raises IntegrityError / RestoreRefused; never leaves a half-restored database.
        """
        started = self.now()
        try:
            key, dump = self.open_point(ref)
        except BackupError as exc:
            logger.error("restore refused before touching any database", extra={"point": ref, "error": str(exc)})
            raise
        service = dump.manifest["service"]
        secret = self.secret(service)
        source_db = dump.manifest["database"]
        fresh = databases.check_db_name(f"{source_db}_restore_{started:%Y%m%dt%H%M%S}_{secrets.token_hex(2)}"[:63])
        databases.create_database(secret, fresh, tls=self.settings.db_tls)
        try:
            with databases.connection(secret, fresh, tls=self.settings.db_tls) as conn:
                pgdump.load(conn, dump, migrations_dir(service))
                tables = pgdump.verify(conn, dump)
        except Exception as exc:
            try:
                databases.drop_database(secret, fresh, tls=self.settings.db_tls)
            except Exception:  # report the original failure; the drop error is logged
                logger.exception("could not drop the failed restore database", extra={"database": fresh})
                raise RestoreRefused(
                    f"restore of {key} failed ({exc}) and dropping {fresh} failed too", database=fresh
                ) from exc
            logger.error(
                "restore refused; fresh database dropped", extra={"point": key, "database": fresh, "error": str(exc)}
            )
            raise RestoreRefused(f"restore of {key} refused: {exc}; {fresh} was dropped", database=fresh) from exc
        result = {
            "status": "restored",
            "point": ref,
            "service": service,
            "sourceDatabase": source_db,
            "database": fresh,
            "createdAt": dump.manifest["createdAt"],
            "schemaMigrations": dump.manifest["schemaMigrations"],
            "tables": tables,
        }
        logger.info("restore verified", extra={"point": ref, "database": fresh})
        return result


def _tar(members: list[tuple[str, bytes]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o600
            tar.addfile(info, io.BytesIO(content))
    return raw.getvalue()


def _untar(archive: bytes) -> dict[str, bytes]:
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
            return {m.name: pgdump.member_bytes(tar, m) for m in tar.getmembers() if m.isfile()}
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise IntegrityError(f"corrupt external bundle: {exc}") from exc
