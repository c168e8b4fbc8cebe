"""Typed settings, parsed once per execution environment from the environment variables set by CDK.

Every variable is listed in docs/ARCHITECTURE.md. This is the only place in `functions/` that
reads the environment (with the backup and reconcile functions' own `settings.py`, built from the
same `Env` reader); everything else gets a parsed, frozen model:

* `get_settings()` -> `Settings`: the order, inventory and gremlin functions (one model for the
  three services; its `gremlin` section configures the gremlin store and the injector);
* `runtime()` -> `Runtime`: what the Lambda runtime and Powertools' own variables say about the
  function (service name, metrics namespace, function name, tracing), which every function has.

Values are parsed (and numbers validated) on first use of the factory, never at import time,
and then kept for the life of the execution environment (`functools.cache`; tests that change
the environment call `get_settings.cache_clear()`). A variable a function does not need may be
absent; reading a required one that is missing raises `SettingsError` naming the variable.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

__all__ = [
    "DbPool",
    "DbTls",
    "Env",
    "GremlinSettings",
    "Runtime",
    "Settings",
    "SettingsError",
    "get_settings",
    "required",
    "runtime",
]

# The asset root of every function holds the `functions/` package (docs/ARCHITECTURE.md).
ASSET_ROOT = Path(__file__).resolve().parent.parent.parent
# Amazon RDS's CA certificates, shipped in every function bundle (see certs/README.md).
RDS_CA_BUNDLE = Path(__file__).resolve().parent / "certs" / "rds-ca-bundle.pem"


class SettingsError(RuntimeError):
    """A required environment variable is missing or malformed."""


def required(env_name: str, value: str | None, needed_by: str = "this function") -> str:
    """`value`, or SettingsError naming `env_name` when it is missing (required-at-use values)."""
    if value is None or value.strip() == "":
        raise SettingsError(f"environment variable {env_name} is not set (required by {needed_by})")
    return value


class Env:
    """Reads variables out of a mapping (the process environment by default); every error names
    the variable and what was wrong with it. `needed_by` words the "not set" error."""

    def __init__(self, env: Mapping[str, str] | None = None, *, needed_by: str = "this function") -> None:
        self._env = os.environ if env is None else env
        self.needed_by = needed_by

    def text(self, name: str) -> str | None:
        """The stripped value; None when unset or blank."""
        return (self._env.get(name) or "").strip() or None

    def required(self, name: str) -> str:
        return required(name, self.text(name), self.needed_by)

    def integer(self, name: str, default: int, minimum: int = 1) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError as exc:
            raise SettingsError(f"environment variable {name} must be an integer, got {raw!r}") from exc
        if value < minimum:
            raise SettingsError(f"environment variable {name} must be >= {minimum}, got {value}")
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = (self.text(name) or default).lower()
        if value not in choices:
            raise SettingsError(f"environment variable {name} must be one of {', '.join(choices)}, got {value!r}")
        return value

    _TRUE: ClassVar[tuple[str, ...]] = ("1", "y", "yes", "t", "true", "on")  # Powertools' truthy words
    _FALSE: ClassVar[tuple[str, ...]] = ("0", "n", "no", "f", "false", "off")

    def flag(self, name: str, default: bool) -> bool:
        return self.choice(name, self._TRUE + self._FALSE, str(default).lower()) in self._TRUE

    def items(self, name: str) -> tuple[str, ...]:
        """A comma-separated list, blanks dropped."""
        return tuple(part.strip() for part in (self.text(name) or "").split(",") if part.strip())


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

    MODES: ClassVar[tuple[str, ...]] = ("verify-full", "disable")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | Env) -> DbTls:
        reader = env if isinstance(env, Env) else Env(env)
        mode = reader.choice("DB_TLS", cls.MODES, "verify-full")
        raw = reader.text("DB_CA_BUNDLE")
        # A relative path is relative to the asset root (/var/task on Lambda), not the cwd.
        bundle = RDS_CA_BUNDLE if raw is None else Path(raw) if Path(raw).is_absolute() else ASSET_ROOT / raw
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
    def from_env(cls, env: Mapping[str, str] | Env) -> DbPool:
        reader = env if isinstance(env, Env) else Env(env)
        return cls(
            max_open=reader.integer("DB_POOL_MAX", cls.max_open),
            wait_seconds=float(reader.integer("DB_POOL_WAIT_SECONDS", int(cls.wait_seconds), minimum=0)),
            proxy_endpoint=reader.text("DB_PROXY_ENDPOINT"),
        )


@dataclasses.dataclass(frozen=True)
class GremlinSettings:
    """Where the gremlin keeps its document and counters (functions/gremlin).

    The gremlin API (store) and the functions that obey it (injector) share these. An injector
    without `parameter_name` injects nothing (a function the stack did not wire to the gremlin);
    the store refuses with the variable named.
    """

    parameter_name: str | None = None  # GREMLIN_PARAMETER_NAME: the SSM parameter of the document
    state_table: str | None = None  # GREMLIN_STATE_TABLE: `every: N` counters and stop markers
    stop_alarms: tuple[str, ...] = ()  # GREMLIN_STOP_ALARMS: the alarms a stop condition may name
    cache_seconds: int = 1  # GREMLIN_CACHE_SECONDS: how long the injector trusts its copy

    @classmethod
    def from_env(cls, env: Env) -> GremlinSettings:
        return cls(
            parameter_name=env.text("GREMLIN_PARAMETER_NAME"),
            state_table=env.text("GREMLIN_STATE_TABLE"),
            stop_alarms=env.items("GREMLIN_STOP_ALARMS"),
            cache_seconds=env.integer("GREMLIN_CACHE_SECONDS", 1, minimum=0),
        )


@dataclasses.dataclass(frozen=True)
class Settings:
    """The order, inventory and gremlin functions' variables. The `_`-prefixed ones are optional
    at parse time (one module serves several functions, each given only what it needs) and
    required at use: their properties raise SettingsError naming the variable."""

    _db_secret_arn: str | None = None
    _inventory_reserve_function: str | None = None
    _inventory_queue_url: str | None = None
    _completion_queue_url: str | None = None
    _idempotency_table: str | None = None
    _circuit_breaker_table: str | None = None
    inventory_call_budget_ms: int = 2000
    circuit_failure_threshold: int = 5
    circuit_recovery_timeout_seconds: int = 10
    circuit_success_threshold: int = 1
    circuit_cache_seconds: int = 2
    secret_cache_seconds: int = 300
    cors_allow_origins: tuple[str, ...] = ()
    _admin_key_secret_arn: str | None = None
    admin_key_cache_seconds: int = 60
    health_cache_seconds: int = 5
    db_tls: DbTls = DbTls()
    db_pool: DbPool = DbPool()
    gremlin: GremlinSettings = GremlinSettings()
    # migrate functions only: the logins they create (their own, DB_SECRET_ARN, is the owner's)
    _db_master_secret_arn: str | None = None
    _db_app_secret_arn: str | None = None
    _db_reader_secret_arn: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        read = Env(env)
        return cls(
            _db_secret_arn=read.text("DB_SECRET_ARN"),
            _inventory_reserve_function=read.text("INVENTORY_RESERVE_FUNCTION"),
            _inventory_queue_url=read.text("INVENTORY_QUEUE_URL"),
            _completion_queue_url=read.text("COMPLETION_QUEUE_URL"),
            _idempotency_table=read.text("IDEMPOTENCY_TABLE"),
            _circuit_breaker_table=read.text("CIRCUIT_BREAKER_TABLE"),
            inventory_call_budget_ms=read.integer("INVENTORY_CALL_BUDGET_MS", 2000),
            circuit_failure_threshold=read.integer("CIRCUIT_FAILURE_THRESHOLD", 5),
            circuit_recovery_timeout_seconds=read.integer("CIRCUIT_RECOVERY_TIMEOUT_SECONDS", 10),
            circuit_success_threshold=read.integer("CIRCUIT_SUCCESS_THRESHOLD", 1),
            circuit_cache_seconds=read.integer("CIRCUIT_CACHE_SECONDS", 2, minimum=0),
            secret_cache_seconds=read.integer("DB_SECRET_CACHE_SECONDS", 300, minimum=0),
            cors_allow_origins=tuple(origin.rstrip("/") for origin in read.items("CORS_ALLOW_ORIGINS")),
            _admin_key_secret_arn=read.text("ADMIN_KEY_SECRET_ARN"),
            admin_key_cache_seconds=read.integer("ADMIN_KEY_CACHE_SECONDS", 60, minimum=0),
            health_cache_seconds=read.integer("HEALTH_CACHE_SECONDS", 5, minimum=0),
            db_tls=DbTls.from_env(read),
            db_pool=DbPool.from_env(read),
            gremlin=GremlinSettings.from_env(read),
            _db_master_secret_arn=read.text("DB_MASTER_SECRET_ARN"),
            _db_app_secret_arn=read.text("DB_APP_SECRET_ARN"),
            _db_reader_secret_arn=read.text("DB_READER_SECRET_ARN"),
        )

    @property
    def db_secret_arn(self) -> str:
        return required("DB_SECRET_ARN", self._db_secret_arn)

    @property
    def db_master_secret_arn(self) -> str:
        return required("DB_MASTER_SECRET_ARN", self._db_master_secret_arn)

    @property
    def db_app_secret_arn(self) -> str:
        return required("DB_APP_SECRET_ARN", self._db_app_secret_arn)

    @property
    def db_reader_secret_arn(self) -> str:
        return required("DB_READER_SECRET_ARN", self._db_reader_secret_arn)

    @property
    def inventory_reserve_function(self) -> str:
        """Name or ARN of the internal reserve function order invokes (Lambda Invoke API)."""
        return required("INVENTORY_RESERVE_FUNCTION", self._inventory_reserve_function)

    @property
    def calls_inventory(self) -> bool:
        """Whether this function reserves stock synchronously (the order API)."""
        return self._inventory_reserve_function is not None

    @property
    def inventory_queue_url(self) -> str:
        return required("INVENTORY_QUEUE_URL", self._inventory_queue_url)

    @property
    def completion_queue_url(self) -> str:
        return required("COMPLETION_QUEUE_URL", self._completion_queue_url)

    @property
    def idempotency_table(self) -> str:
        return required("IDEMPOTENCY_TABLE", self._idempotency_table)

    @property
    def circuit_breaker_table(self) -> str:
        return required("CIRCUIT_BREAKER_TABLE", self._circuit_breaker_table)

    @property
    def admin_key_secret_arn(self) -> str:
        return required("ADMIN_KEY_SECRET_ARN", self._admin_key_secret_arn)

    @property
    def inventory_call_budget_seconds(self) -> float:
        return self.inventory_call_budget_ms / 1000.0


@dataclasses.dataclass(frozen=True)
class Runtime:
    """The variables the Lambda runtime and Powertools define, which every function has."""

    service_name: str = "valerix"  # POWERTOOLS_SERVICE_NAME (the stack sets it per function)
    metrics_namespace: str = "Valerix"  # POWERTOOLS_METRICS_NAMESPACE
    function_name: str | None = None  # AWS_LAMBDA_FUNCTION_NAME: None outside a Lambda environment
    # Powertools Tracer's own rule: on in a Lambda environment (LAMBDA_TASK_ROOT) unless
    # POWERTOOLS_TRACE_DISABLED or SAM local. The stack disables it for target=local (LocalStack
    # community has no X-Ray) and enables active tracing for target=aws.
    tracing: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Runtime:
        read = Env(env)
        in_lambda = read.text("LAMBDA_TASK_ROOT") is not None and read.text("AWS_SAM_LOCAL") is None
        return cls(
            service_name=read.text("POWERTOOLS_SERVICE_NAME") or "valerix",
            metrics_namespace=read.text("POWERTOOLS_METRICS_NAMESPACE") or "Valerix",
            function_name=read.text("AWS_LAMBDA_FUNCTION_NAME"),
            tracing=in_lambda and not read.flag("POWERTOOLS_TRACE_DISABLED", False),
        )


@functools.cache
def get_settings() -> Settings:
    """The settings of this execution environment, parsed once."""
    return Settings.from_env()


@functools.cache
def runtime() -> Runtime:
    """This function's runtime variables, parsed once."""
    return Runtime.from_env()
