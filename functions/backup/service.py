"""The backup strategy: frequent local restore points, one external call a day, verified restores.

* `create_point(service)` (every 4 h + on demand): consistent logical dump of the service's
  database (pgdump.py) -> gzip(tar) -> envelope encryption (envelope.py) -> local bucket
  (store.py). Returns the point with time, size and checksum.
* `sync()` (daily): every local point no sync record lists yet goes into ONE tar with a bundle
  manifest, delivered in ONE guarded call (store.ExternalTarget.deliver). The day's sync record
  is written locally only after the call succeeded; when today's record exists no call is made
  at all, and if some other caller already used today's call the external target refuses (412).
* `restore(ref)`: from a local point (`points/...`) or an external bundle member
  (`external:bundles/<day>.tar:points/...`): checksum -> AES-GCM/KMS -> payload manifest ->
  CREATE DATABASE `<db>_restore_<stamp>` -> migrations of the backup's schema version -> COPY ->
  verify row counts and checksums. Any failure after the CREATE drops the fresh database.
* `prune_local()` / `prune_external()`: retention (7 / 30 days) against an injectable clock.
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
from functions.common.observability import get_logger

logger = get_logger("backup")

Clock = Callable[[], dt.datetime]
BUNDLE_FORMAT = 1
EXTERNAL_PREFIX = "external:"


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


class BackupService:
    def __init__(self, settings: BackupSettings, *, s3: Any, kms: Any, clock: Clock = utc_now,
                 secrets_reader: Callable[[str], databases.ServerSecret] = databases.read_secret) -> None:
        self.settings = settings
        self.kms = kms
        self.clock = clock
        self.local = store.LocalStore(s3, settings.bucket)
        self.external = store.ExternalTarget(s3, settings.external_bucket)
        self._read_secret = secrets_reader

    def now(self) -> dt.datetime:
        moment = self.clock()
        if moment.tzinfo is None:
            raise ValueError("the clock must return timezone-aware datetimes")
        return moment.astimezone(dt.timezone.utc)

    def secret(self, service: str) -> databases.ServerSecret:
        if service not in SERVICES:
            raise BackupError(f"unknown service {service!r} (one of {sorted(SERVICES)})")
        return self._read_secret(self.settings.secret_arn(service))

    @staticmethod
    def encryption_context(service: str) -> dict[str, str]:
        return {"purpose": "valerix-backup", "service": service}

    # ------------------------------------------------------------------ backup
    def create_point(self, service: str) -> store.RestorePoint:
        secret = self.secret(service)
        with databases.connection(secret) as conn:
            catalogue, data = pgdump.dump_database(conn)
        created_at = self.now()
        manifest = {
            "format": pgdump.PAYLOAD_FORMAT,
            "kind": "valerix-restore-point",
            "service": service,
            "database": secret.dbname,
            "createdAt": _iso(created_at),
            "pointId": store.point_key(service, created_at),
            **catalogue,
        }
        payload = pgdump.pack(pgdump.Dump(manifest, data))
        blob = envelope.seal(payload, kms=self.kms, key_id=self.settings.kms_key_id,
                             context=self.encryption_context(service))
        point = self.local.put_point(service, secret.dbname, created_at, blob)
        logger.info("restore point created", extra={**point.to_dict(),
                                                     "tables": {t["name"]: t["rows"] for t in manifest["tables"]}})
        return point

    def backup_all(self, services: list[str] | None = None) -> dict[str, Any]:
        """A point per service; one failing database does not stop the other."""
        points, errors = [], {}
        for service in services or list(SERVICES):
            try:
                points.append(self.create_point(service).to_dict())
            except Exception as exc:  # noqa: BLE001 - reported per service, raised by the handler
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
        now = self.now()
        day = now.date()
        existing = self.local.sync_record(day)
        if existing is not None:
            logger.warning("external sync refused: today's call was already made", extra={"day": day.isoformat()})
            return {"status": "refused", "reason": "today's external call was already made",
                    "day": day.isoformat(), "bundle": existing["bundle"]}
        pending = self.unsynced_points()
        if not pending:
            return {"status": "nothing_to_sync", "day": day.isoformat(), "points": []}

        entries, members, skipped = [], [], []
        for point in pending:
            try:
                _, blob = self.local.get_point(point.key)  # checksum-verified before it leaves
            except IntegrityError as exc:  # a damaged point must not cost the day's call
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
        try:
            key = self.external.deliver(day, archive, {"sha256": checksum, "points": str(len(entries)),
                                                       "day": day.isoformat()})
        except store.DailyCallRefused as exc:
            logger.warning("external sync refused by the external target", extra={"day": day.isoformat()})
            return {"status": "refused", "reason": str(exc), "day": day.isoformat(),
                    "bundle": self.external.bundle_key(day)}
        record = {"day": day.isoformat(), "bundle": key, "syncedAt": _iso(now), "sha256": checksum,
                  "size": len(archive), "points": [e["point"] for e in entries]}
        self.local.put_sync_record(day, record)
        logger.info("external sync done", extra={k: v for k, v in record.items() if k != "points"}
                    | {"count": len(entries)})
        return {"status": "synced", **record, "skipped": skipped}

    # ------------------------------------------------------------------ retention
    def prune_local(self) -> dict[str, Any]:
        now = self.now()
        cutoff = now - dt.timedelta(days=self.settings.local_retention_days)
        old = [p.key for p in self.local.list_points() if p.created_at < cutoff]
        self.local.delete_points(old)
        record_cutoff = (now - dt.timedelta(days=self.settings.external_retention_days)).date()
        old_records = [k for k in self.local.sync_record_keys() if store.day_of(k) < record_cutoff]
        self.local.delete_keys(old_records)
        if old:
            logger.info("pruned local restore points", extra={"count": len(old), "cutoff": _iso(cutoff)})
        return {"deleted": old, "deletedSyncRecords": old_records}

    def prune_external(self) -> dict[str, Any]:
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
            ref = ref[len("local:"):]
        if not ref.startswith(EXTERNAL_PREFIX):
            point, blob = self.local.get_point(ref)
            return point.key, blob
        bundle_key, sep, member = ref[len(EXTERNAL_PREFIX):].partition(":")
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
        blob = files.get(member)
        if blob is None or store.sha256(blob) != entry["sha256"] or len(blob) != entry["size"]:
            raise IntegrityError(f"{member} in {bundle_key} does not match the bundle manifest checksum")
        return member, blob

    def open_point(self, ref: str) -> tuple[str, pgdump.Dump]:
        key, blob = self.fetch(ref)
        service, _ = store.parse_point_key(key)
        header, payload = envelope.unseal(blob, kms=self.kms, key_id=self.settings.kms_key_id)
        dump = pgdump.unpack(payload)
        if header.get("context", {}).get("service") != service or dump.manifest.get("service") != service:
            raise IntegrityError(f"{key}: the point's service does not match its location")
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
        fresh = databases.check_db_name(
            f"{source_db}_restore_{started:%Y%m%dt%H%M%S}_{secrets.token_hex(2)}"[:63]
        )
        databases.create_database(secret, fresh)
        try:
            with databases.connection(secret, fresh) as conn:
                pgdump.load(conn, dump, migrations_dir(service))
                tables = pgdump.verify(conn, dump)
        except Exception as exc:
            try:
                databases.drop_database(secret, fresh)
            except Exception:  # noqa: BLE001 - report the original failure; the drop error is logged
                logger.exception("could not drop the failed restore database", extra={"database": fresh})
                raise RestoreRefused(f"restore of {key} failed ({exc}) and dropping {fresh} failed too",
                                     database=fresh) from exc
            logger.error("restore refused; fresh database dropped",
                         extra={"point": key, "database": fresh, "error": str(exc)})
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
            return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise IntegrityError(f"corrupt external bundle: {exc}") from exc
