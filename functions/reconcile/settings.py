"""Environment of the reconcile function (set by infra/stack.py).

| variable | meaning |
|---|---|
| `ORDER_DB_SECRET_ARN` / `INVENTORY_DB_SECRET_ARN` | the two databases' **reader** secrets (SELECT only) |
| `DLQ_URLS` | `name=url,...` of the dead-letter queues whose depth is checked (`inventory=…,completion=…`) |
| `RECONCILE_STALE_MINUTES` | an order `PENDING`/`QUEUED` for longer than this is a problem (default 5) |
| `DB_TLS` / `DB_CA_BUNDLE`, `DB_POOL_MAX` | as every function (functions/common/settings.py) |
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Mapping

from functions.common.settings import DbPool, DbTls, Env, SettingsError

DEFAULT_STALE_MINUTES = 5


def _queues(raw: str) -> dict[str, str]:
    queues: dict[str, str] = {}
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        name, sep, url = part.partition("=")
        if not sep or not name.strip() or not url.strip():
            raise SettingsError(f"environment variable DLQ_URLS must be name=url,..., got {part!r}")
        queues[name.strip()] = url.strip()
    return queues


def stale_minutes(raw: object) -> int:
    """`RECONCILE_STALE_MINUTES` or an event's `staleMinutes`: a whole number of minutes >= 1."""
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise SettingsError(f"staleMinutes must be a whole number of minutes >= 1, got {raw!r}")
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"staleMinutes must be a whole number of minutes >= 1, got {raw!r}") from exc
    if value < 1:
        raise SettingsError(f"staleMinutes must be a whole number of minutes >= 1, got {value}")
    return value


def since(raw: object) -> dt.datetime:
    """An event's `since`: an ISO-8601 timestamp with its UTC offset (`2026-01-31T12:00:00+00:00`)."""
    if not isinstance(raw, str):
        raise SettingsError(f"since must be an ISO-8601 timestamp with a UTC offset, got {raw!r}")
    try:
        value = dt.datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise SettingsError(f"since must be an ISO-8601 timestamp with a UTC offset, got {raw!r}") from exc
    if value.tzinfo is None:
        raise SettingsError(f"since must carry a UTC offset (a bare time is ambiguous), got {raw!r}")
    return value


@dataclasses.dataclass(frozen=True)
class ReconcileSettings:
    order_secret_arn: str
    inventory_secret_arn: str
    dlq_urls: dict[str, str]
    stale_minutes: int = DEFAULT_STALE_MINUTES
    db_tls: DbTls = dataclasses.field(default_factory=DbTls)
    db_pool: DbPool = dataclasses.field(default_factory=DbPool)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ReconcileSettings:
        read = Env(env, needed_by="the reconcile function")
        raw_stale = read.text("RECONCILE_STALE_MINUTES")
        try:
            stale = stale_minutes(raw_stale) if raw_stale else DEFAULT_STALE_MINUTES
        except SettingsError as exc:
            raise SettingsError(f"environment variable RECONCILE_STALE_MINUTES: {exc}") from None
        return cls(
            order_secret_arn=read.required("ORDER_DB_SECRET_ARN"),
            inventory_secret_arn=read.required("INVENTORY_DB_SECRET_ARN"),
            # required: a check silently skipped would read as "DLQs empty"
            dlq_urls=_queues(read.required("DLQ_URLS")),
            stale_minutes=stale,
            db_tls=DbTls.from_env(read),
            db_pool=DbPool.from_env(read),
        )


@functools.cache
def get_settings() -> ReconcileSettings:
    """The reconcile function's settings, parsed once."""
    return ReconcileSettings.from_env()
