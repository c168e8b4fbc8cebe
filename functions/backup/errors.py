"""Errors of the backup package."""

from __future__ import annotations


class BackupError(RuntimeError):
    """A backup, sync or restore step failed."""


class IntegrityError(BackupError):
    """A restore point failed verification (checksum, AES-GCM authentication, KMS key, manifest).

    Raised before anything is written, or after a fresh database was restored and then dropped:
    a restore that raises this never leaves a half-restored database behind.
    """


class RestoreRefused(BackupError):
    """A restore was refused; `database` is the fresh database that was dropped (if one was made)."""

    def __init__(self, message: str, *, database: str | None = None) -> None:
        super().__init__(message)
        self.database = database


class PointNotFound(BackupError):
    """The restore point (or external bundle / bundle member) does not exist."""
