"""Typed settings, parsed once per execution environment from the environment variables set by CDK.

Every variable is listed in docs/ARCHITECTURE.md. Values are parsed (and numbers validated) on
first use of `get_settings()`, never at import time. A variable a function does not need may be
absent; reading a required one that is missing raises `SettingsError` naming the variable.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Mapping
from pathlib import Path

__all__ = ["DbPool", "DbTls", "Settings", "SettingsError", "get_settings", "reset_settings"]

# The asset root of every function holds the `functions/` package (docs/ARCHITECTURE.md).
ASSET_ROOT = Path(__file__).resolve().parent.parent.parent
# Amazon RDS's CA certificates, shipped in every function bundle (see certs/README.md).
RDS_CA_BUNDLE = Path(__file__).resolve().parent / "certs" / "rds-ca-bundle.pem"


class SettingsError(RuntimeError):
    """A required environment variable is missing or malformed."""


def _required(env_name: str, value: str | None) -> str:
    if value is None or value.strip() == "":
        raise SettingsError(f"environment variable {env_name} is not set (required by this function)")
    return value


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"environment variable {name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise SettingsError(f"environment variable {name} must be >= {minimum}, got {value}")
    return value


@dataclasses.dataclass(frozen=True)
class DbTls:
    """How the functions protect their Postgres connections (`DB_TLS`, `DB_CA_BUNDLE`).

    - `verify-full` (the default, and what target=aws sets): TLS, the server certificate must
      chain to a CA in `ca_bundle` (the RDS CA bundle shipped with the code unless DB_CA_BUNDLE
      names another file) and match the host name in the secret.
    - `disable`: no TLS. Only target=local sets it (its Postgres servers listen on loopback and
      have no certificate); nothing falls back to it silently.
    """

    mode: str = "verify-full"
    ca_bundle: Path = RDS_CA_BUNDLE

    MODES = ("verify-full", "disable")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "DbTls":
        mode = (env.get("DB_TLS") or "verify-full").strip().lower()
        if mode not in cls.MODES:
            raise SettingsError(f"environment variable DB_TLS must be one of {', '.join(cls.MODES)}, got {mode!r}")
        raw = (env.get("DB_CA_BUNDLE") or "").strip()
        # A relative path is relative to the asset root (/var/task on Lambda), not the cwd.
        bundle = (ASSET_ROOT / raw) if raw and not Path(raw).is_absolute() else Path(raw) if raw else RDS_CA_BUNDLE
        return cls(mode=mode, ca_bundle=bundle)


@dataclasses.dataclass(frozen=True)
class DbPool:
    """How many connections one execution environment may hold, and where they go
    (`DB_POOL_MAX`, `DB_POOL_WAIT_SECONDS`, `DB_PROXY_ENDPOINT`).

    - `max_open`: open connections (idle + in use) per database per environment. The stack sets
      it per function so that reserved concurrency x max_open stays within the database's
      max_connections (infra/constructs/db_limits.py); a caller past it waits for a connection.
    - `wait_seconds`: how long such a caller waits before the database counts as unavailable.
    - `proxy_endpoint`: target=aws, run-time functions: the RDS Proxy endpoint, used instead of
      the host in the secret (the proxy logs in to the database with the same secret). Unset:
      connect to the secret's host (migrations, backups, target=local).
    """

    max_open: int = 10  # without DB_POOL_MAX: the queue consumers' worker threads (functions/common/queue.py)
    wait_seconds: float = 10.0
    proxy_endpoint: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "DbPool":
        return cls(
            max_open=_int(env, "DB_POOL_MAX", cls.max_open),
            wait_seconds=float(_int(env, "DB_POOL_WAIT_SECONDS", int(cls.wait_seconds), minimum=0)),
            proxy_endpoint=(env.get("DB_PROXY_ENDPOINT") or "").strip() or None,
        )


@dataclasses.dataclass(frozen=True)
class Settings:
    service_name: str
    metrics_namespace: str
    # optional-at-parse, required-at-use values (see properties below)
    _db_secret_arn: str | None
    _inventory_reserve_function: str | None
    _inventory_queue_url: str | None
    _completion_queue_url: str | None
    _idempotency_table: str | None
    _circuit_breaker_table: str | None
    gremlin_parameter_name: str | None
    gremlin_state_table: str | None
    inventory_call_budget_ms: int
    circuit_failure_threshold: int
    circuit_recovery_timeout_seconds: int
    circuit_success_threshold: int
    circuit_cache_seconds: int
    gremlin_cache_seconds: int
    secret_cache_seconds: int
    cors_allow_origins: tuple[str, ...] = ()
    _admin_key_secret_arn: str | None = None
    admin_key_cache_seconds: int = 60
    health_cache_seconds: int = 5
    db_tls: DbTls = DbTls()
    db_pool: DbPool = DbPool()
    # migrate functions only: the logins they create (their own, DB_SECRET_ARN, is the owner's)
    _db_master_secret_arn: str | None = None
    _db_app_secret_arn: str | None = None
    _db_reader_secret_arn: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        return cls(
            service_name=env.get("POWERTOOLS_SERVICE_NAME") or "valerix",
            metrics_namespace=env.get("POWERTOOLS_METRICS_NAMESPACE") or "Valerix",
            _db_secret_arn=env.get("DB_SECRET_ARN"),
            _inventory_reserve_function=(env.get("INVENTORY_RESERVE_FUNCTION") or "").strip() or None,
            _inventory_queue_url=env.get("INVENTORY_QUEUE_URL"),
            _completion_queue_url=env.get("COMPLETION_QUEUE_URL"),
            _idempotency_table=env.get("IDEMPOTENCY_TABLE"),
            _circuit_breaker_table=env.get("CIRCUIT_BREAKER_TABLE"),
            gremlin_parameter_name=env.get("GREMLIN_PARAMETER_NAME"),
            gremlin_state_table=env.get("GREMLIN_STATE_TABLE"),
            inventory_call_budget_ms=_int(env, "INVENTORY_CALL_BUDGET_MS", 2000),
            circuit_failure_threshold=_int(env, "CIRCUIT_FAILURE_THRESHOLD", 5),
            circuit_recovery_timeout_seconds=_int(env, "CIRCUIT_RECOVERY_TIMEOUT_SECONDS", 10),
            circuit_success_threshold=_int(env, "CIRCUIT_SUCCESS_THRESHOLD", 1),
            circuit_cache_seconds=_int(env, "CIRCUIT_CACHE_SECONDS", 2, minimum=0),
            gremlin_cache_seconds=_int(env, "GREMLIN_CACHE_SECONDS", 1, minimum=0),
            secret_cache_seconds=_int(env, "DB_SECRET_CACHE_SECONDS", 300, minimum=0),
            cors_allow_origins=tuple(
                o.strip().rstrip("/") for o in (env.get("CORS_ALLOW_ORIGINS") or "").split(",") if o.strip()
            ),
            _admin_key_secret_arn=env.get("ADMIN_KEY_SECRET_ARN"),
            admin_key_cache_seconds=_int(env, "ADMIN_KEY_CACHE_SECONDS", 60, minimum=0),
            health_cache_seconds=_int(env, "HEALTH_CACHE_SECONDS", 5, minimum=0),
            db_tls=DbTls.from_env(env),
            db_pool=DbPool.from_env(env),
            _db_master_secret_arn=env.get("DB_MASTER_SECRET_ARN"),
            _db_app_secret_arn=env.get("DB_APP_SECRET_ARN"),
            _db_reader_secret_arn=env.get("DB_READER_SECRET_ARN"),
        )

    @property
    def db_secret_arn(self) -> str:
        return _required("DB_SECRET_ARN", self._db_secret_arn)

    @property
    def db_master_secret_arn(self) -> str:
        return _required("DB_MASTER_SECRET_ARN", self._db_master_secret_arn)

    @property
    def db_app_secret_arn(self) -> str:
        return _required("DB_APP_SECRET_ARN", self._db_app_secret_arn)

    @property
    def db_reader_secret_arn(self) -> str:
        return _required("DB_READER_SECRET_ARN", self._db_reader_secret_arn)

    @property
    def inventory_reserve_function(self) -> str:
        """Name or ARN of the internal reserve function order invokes (Lambda Invoke API)."""
        return _required("INVENTORY_RESERVE_FUNCTION", self._inventory_reserve_function)

    @property
    def inventory_queue_url(self) -> str:
        return _required("INVENTORY_QUEUE_URL", self._inventory_queue_url)

    @property
    def completion_queue_url(self) -> str:
        return _required("COMPLETION_QUEUE_URL", self._completion_queue_url)

    @property
    def idempotency_table(self) -> str:
        return _required("IDEMPOTENCY_TABLE", self._idempotency_table)

    @property
    def circuit_breaker_table(self) -> str:
        return _required("CIRCUIT_BREAKER_TABLE", self._circuit_breaker_table)

    @property
    def admin_key_secret_arn(self) -> str:
        return _required("ADMIN_KEY_SECRET_ARN", self._admin_key_secret_arn)

    @property
    def inventory_call_budget_seconds(self) -> float:
        return self.inventory_call_budget_ms / 1000.0


_settings: Settings | None = None
_lock = threading.Lock()


def get_settings() -> Settings:
    """The settings of this execution environment, parsed once."""
    global _settings
    if _settings is None:
        with _lock:
            if _settings is None:
                _settings = Settings.from_env()
    return _settings


def reset_settings() -> None:
    """Forget the parsed settings (tests change the environment between cases)."""
    global _settings
    with _lock:
        _settings = None
