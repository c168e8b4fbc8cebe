"""S3 layout of the local backups bucket and of the external target.

Local backups bucket (`BACKUP_BUCKET`):

* `points/<service>/<YYYYmmddTHHMMSS.mmmZ>.vbk` — one encrypted restore point; user metadata
  `service`, `database`, `created-at`, `sha256` (of the object bytes), `size`.
* `sync/<YYYY-MM-DD>.json` — what the day's external call carried (`points`: the keys). A point
  is "unsynced" until some sync record lists it.
* `sync/intents/<YYYY-MM-DD>.json` — the day's intent marker, written (create-only) *before* the
  external call. A run that finds it makes no call: the day's one attempt was already spent,
  whatever its outcome (the sync reports `in_doubt` when no sync record confirms it).

Every write here is create-only (`If-None-Match: *`): nothing the functions write overwrites
history (and on target=aws the IAM grants require the header, see local_backup.py).

External target (`EXTERNAL_BUCKET`): `bundles/<YYYY-MM-DD>.tar`, written with
`If-None-Match: *`. The key is the day, so the conditional write *is* the one-call-a-day guard:
the service accepts the day's first call and answers 412 to any other (S3 conditional writes;
atomic, so a crash can never burn the day's call without a bundle, or deliver two).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
from typing import Any

from botocore.exceptions import ClientError

from functions.backup.errors import IntegrityError, PointNotFound

POINT_PREFIX = "points/"
SYNC_PREFIX = "sync/"
INTENT_PREFIX = "sync/intents/"
BUNDLE_PREFIX = "bundles/"

_POINT_KEY = re.compile(r"^points/([a-z][a-z0-9-]*)/(\d{8}T\d{6}\.\d{3}Z)\.vbk$")
_DAY_KEY = re.compile(r"^(?:bundles|sync)/(\d{4}-\d{2}-\d{2})\.(?:tar|json)$")
_INTENT_KEY = re.compile(r"^sync/intents/(\d{4}-\d{2}-\d{2})\.json$")


class DailyCallRefused(Exception):
    """The external target already accepted a call today (S3 412 PreconditionFailed)."""


def _is_precondition_failed(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return error.get("Code") in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412)


def stamp(moment: dt.datetime) -> str:
    moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y%m%dT%H%M%S") + f".{moment.microsecond // 1000:03d}Z"


def parse_stamp(value: str) -> dt.datetime:
    return dt.datetime.strptime(value, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=dt.UTC)


def point_key(service: str, created_at: dt.datetime) -> str:
    return f"{POINT_PREFIX}{service}/{stamp(created_at)}.vbk"


def parse_point_key(key: str) -> tuple[str, dt.datetime]:
    match = _POINT_KEY.match(key)
    if not match:
        raise PointNotFound(f"{key!r} is not a restore point key (points/<service>/<stamp>.vbk)")
    return match.group(1), parse_stamp(match.group(2))


def day_of(key: str) -> dt.date | None:
    match = _DAY_KEY.match(key) or _INTENT_KEY.match(key)
    return dt.date.fromisoformat(match.group(1)) if match else None


def intent_key(day: dt.date) -> str:
    return f"{INTENT_PREFIX}{day.isoformat()}.json"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _is_missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound")


def _list(s3: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        objects.extend(page.get("Contents", []))
    return objects


def _delete(s3: Any, bucket: str, keys: list[str]) -> None:
    for start in range(0, len(keys), 1000):
        batch = keys[start : start + 1000]
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})


@dataclasses.dataclass(frozen=True)
class RestorePoint:
    key: str
    service: str
    database: str
    created_at: dt.datetime
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "point": self.key,
            "service": self.service,
            "database": self.database,
            "createdAt": self.created_at.isoformat().replace("+00:00", "Z"),
            "size": self.size,
            "sha256": self.sha256,
        }

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> RestorePoint:
        return cls(
            key=value["point"],
            service=value["service"],
            database=value["database"],
            created_at=dt.datetime.fromisoformat(value["createdAt"].replace("Z", "+00:00")),
            size=int(value["size"]),
            sha256=value["sha256"],
        )


class LocalStore:
    """The local backups bucket."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    def put_point(self, service: str, database: str, created_at: dt.datetime, blob: bytes) -> RestorePoint:
        point = RestorePoint(point_key(service, created_at), service, database, created_at, len(blob), sha256(blob))
        self.s3.put_object(
            Bucket=self.bucket,
            Key=point.key,
            Body=blob,
            IfNoneMatch="*",  # never overwrite an existing point
            ContentType="application/octet-stream",
            Metadata={
                "service": service,
                "database": database,
                "created-at": point.to_dict()["createdAt"],
                "sha256": point.sha256,
                "size": str(point.size),
            },
        )
        return point

    def _point_from_head(self, key: str, head: dict[str, Any]) -> RestorePoint:
        service, created_at = parse_point_key(key)
        meta = head.get("Metadata", {})
        return RestorePoint(
            key=key,
            service=meta.get("service", service),
            database=meta.get("database", ""),
            created_at=created_at,
            size=int(head.get("ContentLength", meta.get("size", 0))),
            sha256=meta.get("sha256", ""),
        )

    def list_points(self, service: str | None = None) -> list[RestorePoint]:
        prefix = POINT_PREFIX + (f"{service}/" if service else "")
        points = []
        for obj in _list(self.s3, self.bucket, prefix):
            try:
                parse_point_key(obj["Key"])
            except PointNotFound:
                continue
            points.append(self._point_from_head(obj["Key"], self.s3.head_object(Bucket=self.bucket, Key=obj["Key"])))
        return sorted(points, key=lambda p: (p.created_at, p.key))

    def get_point(self, key: str) -> tuple[RestorePoint, bytes]:
        """The point and its bytes, checked against the stored checksum and size."""
        parse_point_key(key)
        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _is_missing(exc):
                raise PointNotFound(f"no restore point {key} in {self.bucket}") from exc
            raise
        blob = response["Body"].read()
        point = self._point_from_head(key, response)
        if not point.sha256 or sha256(blob) != point.sha256 or len(blob) != point.size:
            raise IntegrityError(f"restore point {key} does not match its recorded checksum/size")
        return point, blob

    def delete_points(self, keys: list[str]) -> None:
        _delete(self.s3, self.bucket, keys)

    # -- sync records
    def sync_record(self, day: dt.date) -> dict[str, Any] | None:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=f"{SYNC_PREFIX}{day.isoformat()}.json")["Body"].read()
        except ClientError as exc:
            if _is_missing(exc):
                return None
            raise
        marker: dict[str, Any] = json.loads(body)
        return marker

    def put_sync_record(self, day: dt.date, record: dict[str, Any]) -> None:
        self.s3.put_object(
            Bucket=self.bucket,
            Key=f"{SYNC_PREFIX}{day.isoformat()}.json",
            IfNoneMatch="*",
            Body=json.dumps(record, indent=1).encode(),
            ContentType="application/json",
        )

    def sync_records(self) -> list[dict[str, Any]]:
        records = []
        for obj in _list(self.s3, self.bucket, SYNC_PREFIX):
            if _DAY_KEY.match(obj["Key"]) is None:  # not the intents
                continue
            records.append(json.loads(self.s3.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read()))
        return sorted(records, key=lambda r: r["day"])

    def sync_record_keys(self) -> list[str]:
        """Sync records and intent markers (retention treats them alike)."""
        return [o["Key"] for o in _list(self.s3, self.bucket, SYNC_PREFIX) if day_of(o["Key"]) is not None]

    # -- the day's intent marker (written before the external call)
    def intent(self, day: dt.date) -> dict[str, Any] | None:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=intent_key(day))["Body"].read()
            intent: dict[str, Any] = json.loads(body)
            return intent
        except ClientError as exc:
            if _is_missing(exc):
                return None
            raise

    def claim_intent(self, day: dt.date, intent: dict[str, Any]) -> dict[str, Any] | None:
        """Write the day's intent marker; None when this run wrote it, else the marker that exists.

        Create-only, so of two concurrent runs exactly one gets to make the external call.
        """
        try:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=intent_key(day),
                IfNoneMatch="*",
                Body=json.dumps(intent, indent=1).encode(),
                ContentType="application/json",
            )
        except ClientError as exc:
            if not _is_precondition_failed(exc):
                raise
            return self.intent(day) or {"day": day.isoformat(), "note": "written concurrently"}
        return None

    def delete_keys(self, keys: list[str]) -> None:
        _delete(self.s3, self.bucket, keys)


class ExternalTarget:
    """The legacy external backup service: one call a day, modelled as a bucket."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    @staticmethod
    def bundle_key(day: dt.date) -> str:
        return f"{BUNDLE_PREFIX}{day.isoformat()}.tar"

    def deliver(self, day: dt.date, archive: bytes, metadata: dict[str, str]) -> str:
        """THE daily call. Raises DailyCallRefused when today's call was already made.

        `s3` must be a client that never retries by itself (aws.single_attempt_client): an SDK
        retry after a lost response would be a second call to the external service.
        """
        key = self.bundle_key(day)
        try:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=archive,
                IfNoneMatch="*",
                ContentType="application/x-tar",
                Metadata=metadata,
            )
        except ClientError as exc:
            if _is_precondition_failed(exc):
                raise DailyCallRefused(f"the external target already accepted today's call ({key})") from exc
            raise
        return key

    def list_bundles(self) -> list[dict[str, Any]]:
        bundles = []
        for obj in _list(self.s3, self.bucket, BUNDLE_PREFIX):
            day = day_of(obj["Key"])
            if day is not None:
                bundles.append({"bundle": obj["Key"], "day": day.isoformat(), "size": obj["Size"]})
        return sorted(bundles, key=lambda b: b["day"])

    def get_bundle(self, key: str) -> tuple[bytes, dict[str, str]]:
        if day_of(key) is None or not key.startswith(BUNDLE_PREFIX):
            raise PointNotFound(f"{key!r} is not an external bundle key (bundles/<YYYY-MM-DD>.tar)")
        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _is_missing(exc):
                raise PointNotFound(f"no external bundle {key}") from exc
            raise
        return response["Body"].read(), response.get("Metadata", {})

    def delete_bundles(self, keys: list[str]) -> None:
        _delete(self.s3, self.bucket, keys)
