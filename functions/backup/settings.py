"""Environment of the backup functions (set by infra/constructs/local_backup.py).

| variable | meaning |
|---|---|
| `ORDER_DB_SECRET_ARN` / `INVENTORY_DB_SECRET_ARN` | RDS-shaped secrets of the two service databases |
| `BACKUP_BUCKET` | local backups bucket: `points/<service>/<stamp>.vbk`, `sync/<day>.json` |
| `EXTERNAL_BUCKET` | the "external" backup target: `bundles/<day>.tar`, one object (= one call) a day |
| `BACKUP_KMS_KEY_ID` | KMS key (ARN) for the per-point data keys |
| `BACKUP_LOCAL_RETENTION_DAYS` | default 7 |
| `BACKUP_EXTERNAL_RETENTION_DAYS` | default 30 |
| `DB_TLS` / `DB_CA_BUNDLE` | as every function (functions/common/settings.py) |
| `BACKUP_PRUNE_MODE` | `delete` (default) or `lifecycle`, see below |

`BACKUP_PRUNE_MODE=delete`: the functions delete what is past retention (LocalStack runs no S3
lifecycle expiry). `lifecycle` (target=aws): the functions never delete, the buckets' lifecycle
rules expire old objects under Object Lock.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from pathlib import Path

from functions.common.settings import DbTls, Env, SettingsError

FUNCTIONS_DIR = Path(__file__).resolve().parent.parent

# service -> (secret variable, migrations folder)
SERVICES: dict[str, tuple[str, Path]] = {
    "order": ("ORDER_DB_SECRET_ARN", FUNCTIONS_DIR / "order" / "migrations"),
    "inventory": ("INVENTORY_DB_SECRET_ARN", FUNCTIONS_DIR / "inventory" / "migrations"),
}

PRUNE_MODES = ("delete", "lifecycle")


@dataclasses.dataclass(frozen=True)
class BackupSettings:
    secret_arns: dict[str, str]
    bucket: str
    external_bucket: str
    kms_key_id: str
    local_retention_days: int = 7
    external_retention_days: int = 30
    prune_mode: str = "delete"
    db_tls: DbTls = dataclasses.field(default_factory=DbTls)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BackupSettings:
        read = Env(env, needed_by="the backup functions")
        secret_arns = {service: arn for service, (var, _) in SERVICES.items() if (arn := read.text(var))}
        return cls(
            # optional at parse (the sync function needs no database), required at use
            secret_arns=secret_arns,
            bucket=read.required("BACKUP_BUCKET"),
            external_bucket=read.required("EXTERNAL_BUCKET"),
            kms_key_id=read.required("BACKUP_KMS_KEY_ID"),
            local_retention_days=read.integer("BACKUP_LOCAL_RETENTION_DAYS", 7),
            external_retention_days=read.integer("BACKUP_EXTERNAL_RETENTION_DAYS", 30),
            prune_mode=read.choice("BACKUP_PRUNE_MODE", PRUNE_MODES, "delete"),
            db_tls=DbTls.from_env(read),
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


@functools.cache
def get_settings() -> BackupSettings:
    """The backup functions' settings, parsed once."""
    return BackupSettings.from_env()


def migrations_dir(service: str) -> Path:
    return SERVICES[service][1]
