"""Environment of the backup functions (set by infra/constructs/local_backup.py).

| variable | meaning |
|---|---|
| `ORDER_DB_SECRET_ARN` / `INVENTORY_DB_SECRET_ARN` | RDS-shaped secrets of the two service databases |
| `BACKUP_BUCKET` | local backups bucket: `points/<service>/<stamp>.vbk`, `sync/<day>.json` |
| `EXTERNAL_BUCKET` | the "external" backup target: `bundles/<day>.tar`, one object (= one call) a day |
| `BACKUP_KMS_KEY_ID` | KMS key (ARN) for the per-point data keys |
| `BACKUP_LOCAL_RETENTION_DAYS` | default 7 |
| `BACKUP_EXTERNAL_RETENTION_DAYS` | default 30 |
| `BACKUP_PRUNE_MODE` | `delete` (default; the functions delete what is past retention: LocalStack runs no S3 lifecycle expiry) or `lifecycle` (target=aws: the functions never delete, the buckets' lifecycle rules expire old objects under Object Lock) |
"""  # noqa: E501 -- Markdown table rows

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

from functions.common.settings import SettingsError

FUNCTIONS_DIR = Path(__file__).resolve().parent.parent

# service -> (secret variable, migrations folder)
SERVICES: dict[str, tuple[str, Path]] = {
    "order": ("ORDER_DB_SECRET_ARN", FUNCTIONS_DIR / "order" / "migrations"),
    "inventory": ("INVENTORY_DB_SECRET_ARN", FUNCTIONS_DIR / "inventory" / "migrations"),
}


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name)
    if value is None or not value.strip():
        raise SettingsError(f"environment variable {name} is not set (required by the backup functions)")
    return value.strip()


def _days(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"environment variable {name} must be an integer, got {raw!r}") from exc
    if value < 1:
        raise SettingsError(f"environment variable {name} must be >= 1, got {value}")
    return value


PRUNE_MODES = ("delete", "lifecycle")


def _prune_mode(env: Mapping[str, str]) -> str:
    value = (env.get("BACKUP_PRUNE_MODE") or "delete").strip()
    if value not in PRUNE_MODES:
        raise SettingsError(f"environment variable BACKUP_PRUNE_MODE must be one of {PRUNE_MODES}, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class BackupSettings:
    secret_arns: dict[str, str]
    bucket: str
    external_bucket: str
    kms_key_id: str
    local_retention_days: int = 7
    external_retention_days: int = 30
    prune_mode: str = "delete"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BackupSettings:
        env = os.environ if env is None else env
        return cls(
            # optional at parse (the sync function needs no database), required at use
            secret_arns={service: env[var].strip() for service, (var, _) in SERVICES.items()
                         if (env.get(var) or "").strip()},
            bucket=_required(env, "BACKUP_BUCKET"),
            external_bucket=_required(env, "EXTERNAL_BUCKET"),
            kms_key_id=_required(env, "BACKUP_KMS_KEY_ID"),
            local_retention_days=_days(env, "BACKUP_LOCAL_RETENTION_DAYS", 7),
            external_retention_days=_days(env, "BACKUP_EXTERNAL_RETENTION_DAYS", 30),
            prune_mode=_prune_mode(env),
        )

    def secret_arn(self, service: str) -> str:
        if service not in SERVICES:
            raise SettingsError(f"unknown service {service!r} (one of {sorted(SERVICES)})")
        arn = self.secret_arns.get(service)
        if not arn:
            raise SettingsError(
                f"environment variable {SERVICES[service][0]} is not set (required to back up or restore {service})"
            )
        return arn


def migrations_dir(service: str) -> Path:
    return SERVICES[service][1]
