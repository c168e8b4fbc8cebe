"""Backup Lambda entry points (thin; logic in service.py).

- `backup_handler` (EventBridge every 4 h; on demand / `make backup`): a restore point per
  service database, then local retention. Event (all optional): `{"services": ["order"],
  "prune": true}`. Returns `{"points": [...], "errors": {}, "pruned": {...}}`; raises when a
  database could not be backed up (so the invocation counts as an error and alarms).
- `sync_handler` (EventBridge daily): the one external call of the day, then external
  retention. Returns `{"status": "synced" | "refused" | "in_doubt" | "nothing_to_sync", ...}`
  (`in_doubt`: an earlier run today attempted the call and recorded no outcome; no new call).
  Exactly one attempt: single-attempt S3 client, intent marker before the call, and no
  EventBridge / Lambda async retries (local_backup.py). A failed call raises (alarm) and is not
  retried that day.
- `restore_handler` (on demand / `make restore POINT=...`): `{"point": "<ref>"}` restores into a
  fresh database and returns its name and the verified tables; `{"list": true}` lists local
  points and external bundles instead. A refused restore raises (nothing is left behind).
"""

from __future__ import annotations

import functools
from typing import Any

from functions.backup.errors import BackupError
from functions.backup.service import BackupService
from functions.backup.settings import get_settings
from functions.common import aws
from functions.common.observability import get_logger, get_metrics, traced

SERVICE = "backup"
logger = get_logger(SERVICE)
metrics = get_metrics(SERVICE)


@functools.cache
def get_service() -> BackupService:
    """This environment's backup service, built on first use."""
    # The external target gets a client that never retries: one call a day means one attempt.
    return BackupService(
        get_settings(), s3=aws.client("s3"), kms=aws.client("kms"), external_s3=aws.single_attempt_client("s3")
    )


@traced
@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def backup_handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    event = event or {}
    service = get_service()
    result = service.backup_all(event.get("services"))
    if event.get("prune", True):
        result["pruned"] = service.prune_local()
    if result["errors"]:
        raise BackupError(f"backup failed for {sorted(result['errors'])}: {result['errors']}")
    return result


@traced
@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def sync_handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    event = event or {}
    service = get_service()
    result = service.sync()
    if event.get("prune", True):
        result["pruned"] = service.prune_external()
    return result


@traced
@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def restore_handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    event = event or {}
    service = get_service()
    if event.get("list"):
        return {"points": service.list_points(event.get("service")), "bundles": service.list_bundles()}
    point = event.get("point")
    if not isinstance(point, str) or not point.strip():
        raise BackupError(
            'restore needs {"point": "points/<service>/<stamp>.vbk"} or '
            '{"point": "external:bundles/<day>.tar:points/<service>/<stamp>.vbk"}'
        )
    return service.restore(point)
