"""Typed view of the CDK context the Valerix app accepts.

Every knob is a context key (`-c key=value` on the command line or `context` in cdk.json).
Secrets have no business on a command line (any local user sees it in `ps`), so the three
secret knobs can also arrive through the environment of the `cdk` process, which only its
own user can read: `VALERIX_ADMIN_API_KEY`, `VALERIX_ORDER_DB_SECRET`,
`VALERIX_INVENTORY_DB_SECRET` (a context value, when given, wins). `make up` uses these.

| key | default | meaning |
|---|---|---|
| `target` | `local` | `local` (LocalStack + local Postgres) or `aws` (RDS, VPC, backups) |
| `stackName` | `Valerix` | CloudFormation stack name (also prefixes function names) |
| `stageName` | `prod` | API Gateway stage |
| `localstackEndpoint` | `http://127.0.0.1:4566` | local only: LocalStack edge URL (ApiUrl, website URL) |
| `adminApiKey` (env `VALERIX_ADMIN_API_KEY`) | a fixed dev value | local only: value of the admin API key (`make up` generates one) |
| `orderDbSecret` / `inventoryDbSecret` (env `VALERIX_ORDER_DB_SECRET` / `VALERIX_INVENTORY_DB_SECRET`) | local Postgres defaults | local only: JSON `{host, port, username, password, dbname, engine}` of the server's superuser (the master login: the migrate function creates the roles with it) |
| `hotReload` | `false` | local only: LocalStack hot-reload code (`hot-reload` bucket, repo root) |
| `lambdaDependencies` | `false` local, always on aws | bundle the Linux cp312 wheels of requirements.txt with the functions; the Docker path needs it (LocalStack's Docker executor runs functions in the bare AWS image, not in the project venv) |
| `metricsUrl` | `http://127.0.0.1:9108` local, empty on aws | written into the website's config.json |
| `corsOrigins` | the website origin | comma-separated extra origins allowed by CORS |
| `throttleRateLimit` / `throttleBurstLimit` | 50 / 100 | API stage throttling |
| `logRetentionDays` | 14 | retention of every function log group |
| `dbInstanceClass` | `t4g.micro` | RDS instance class on aws; on both targets it sets `max_connections` (the local Postgres servers run with the same number) |
| `dbMultiAz` | `false` | aws only: Multi-AZ RDS |
| `dbDeletionProtection` | `true` | aws only: RDS deletion protection |
| `natGateways` | 1 | aws only: NAT gateways (the order API reaches the public REST API through it) |
| `alarmEmail` | none | comma-separated e-mail addresses subscribed to the stack's alarm topic (each confirms by mail) |
| `dbMaxConnections` | 3/4 of what `dbInstanceClass`'s memory allows | the `max_connections` the stack sets in the instances' parameter group (and `make up` gives the local servers); the connection budget, the proxy and the alarms are computed from it (infra/constructs/db_limits.py) |
| `account` / `region` | none (environment-agnostic) | pin the stack environment |
| `nag` | `true` | apply cdk-nag AwsSolutions checks during synth |
| `fisExperiments` | `false` | aws only: the AWS FIS experiment templates (infra/constructs/fis.py); attaches the FIS Lambda extension to the inventory reservation function |
| `fisExtensionLayerArn` | none (required with `fisExperiments`) | aws only: the FIS Lambda extension layer version ARN of the region (`aws ssm get-parameter --name /aws/service/fis/lambda-extension/AWS-FIS-extension-x86_64/1.x.x`), pinned so a deploy never changes it silently |
"""  # noqa: E501 -- Markdown table rows

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from constructs import Node

from infra.constructs import db_limits

TARGETS = ("local", "aws")

DEFAULT_LOCAL_ADMIN_API_KEY = "valerix-local-admin-key-change-me"
DEFAULT_LOCALSTACK_ENDPOINT = "http://127.0.0.1:4566"

# Context key -> environment variable that may carry it instead (secrets: never on a command line).
SECRET_ENV = {
    "adminApiKey": "VALERIX_ADMIN_API_KEY",
    "orderDbSecret": "VALERIX_ORDER_DB_SECRET",
    "inventoryDbSecret": "VALERIX_INVENTORY_DB_SECRET",
}


def _default_db_secret(dbname: str, port: int) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": port,
        "username": "valerix",
        "password": "valerix",
        "dbname": dbname,
        "engine": "postgres",
    }


def _as_bool(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _as_int(value: Any, default: int) -> int:
    if value is None or value == "":
        return default
    return int(value)


def _as_optional_positive_int(value: Any, key: str) -> int | None:
    if value is None or value == "":
        return None
    number = int(value)
    if number < 1:
        raise ValueError(f"context {key} must be a positive integer, got {value!r}")
    return number


def _as_secret(value: Any, default: dict[str, Any], key: str) -> dict[str, Any]:
    if value is None or value == "":
        return dict(default)
    data = json.loads(value) if isinstance(value, str) else dict(value)
    if not isinstance(data, dict):
        raise ValueError(f"context {key} must be a JSON object")
    merged = {**default, **data}
    merged["port"] = int(merged["port"])
    missing = [k for k in ("host", "port", "username", "password", "dbname") if merged.get(k) in (None, "")]
    if missing:
        raise ValueError(f"context {key} lacks {', '.join(missing)}")
    return merged


_LAYER_VERSION_ARN = re.compile(r"arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:layer:[A-Za-z0-9_-]+:\d+")


def _as_layer_arn(value: Any, key: str) -> str | None:
    if value is None or value == "":
        return None
    if not _LAYER_VERSION_ARN.fullmatch(str(value).strip()):
        raise ValueError(
            f"context {key} must be a Lambda layer version ARN "
            f"(arn:aws:lambda:<region>:<account>:layer:<name>:<version>), got {value!r}"
        )
    return str(value).strip()


# Deliberately loose (SNS validates the address and sends the confirmation mail); it catches
# the mistakes a command line makes: an empty part, a missing @, a stray space or quote.
_EMAIL = re.compile(r"[^@\s'\",;]+@[^@\s'\",;]+\.[^@\s'\",;]+")


def _as_emails(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    emails = tuple(str(item).strip() for item in items)
    bad = [e for e in emails if not _EMAIL.fullmatch(e)]
    if bad:
        raise ValueError(f"context alarmEmail: not an e-mail address: {', '.join(repr(e) for e in bad)}")
    return emails


@dataclass(frozen=True)
class ValerixConfig:
    target: str = "local"
    stack_name: str = "Valerix"
    stage_name: str = "prod"
    localstack_endpoint: str = DEFAULT_LOCALSTACK_ENDPOINT
    admin_api_key: str = DEFAULT_LOCAL_ADMIN_API_KEY
    order_db_secret: dict[str, Any] = field(default_factory=lambda: _default_db_secret("order_db", 5433))
    inventory_db_secret: dict[str, Any] = field(default_factory=lambda: _default_db_secret("inventory_db", 5434))
    hot_reload: bool = False
    lambda_dependencies: bool = False
    metrics_url: str = ""
    cors_origins: tuple[str, ...] = ()
    throttle_rate_limit: int = 50
    throttle_burst_limit: int = 100
    log_retention_days: int = 14
    db_instance_class: str = db_limits.DEFAULT_INSTANCE_CLASS
    db_multi_az: bool = False
    db_deletion_protection: bool = True
    nat_gateways: int = 1
    alarm_emails: tuple[str, ...] = ()
    db_max_connections: int | None = None
    account: str | None = None
    region: str | None = None
    nag: bool = True
    fis_experiments: bool = False
    fis_extension_layer_arn: str | None = None

    @property
    def is_aws(self) -> bool:
        return self.target == "aws"

    @property
    def is_local(self) -> bool:
        return self.target == "local"

    @property
    def max_connections(self) -> int:
        """`max_connections` of both databases (db_limits: set by the stack, not RDS's default)."""
        return db_limits.max_connections(self.db_instance_class, self.db_max_connections)

    @classmethod
    def from_context(cls, ctx: Mapping[str, Any] | Node, environ: Mapping[str, str] | None = None) -> ValerixConfig:
        get_context = ctx.try_get_context if isinstance(ctx, Node) else ctx.get
        env = os.environ if environ is None else environ

        def get(key: str) -> Any:
            value = get_context(key)
            if value in (None, "") and key in SECRET_ENV:
                value = env.get(SECRET_ENV[key]) or None
            return value

        target = str(get("target") or "local").strip().lower()
        if target not in TARGETS:
            raise ValueError(f"context target must be one of {TARGETS}, got {target!r}")
        admin_key = str(get("adminApiKey") or DEFAULT_LOCAL_ADMIN_API_KEY)
        if len(admin_key) < 20:
            raise ValueError(
                "adminApiKey (context or VALERIX_ADMIN_API_KEY) must be at least 20 characters (API Gateway rule)"
            )
        origins = tuple(o.strip().rstrip("/") for o in str(get("corsOrigins") or "").split(",") if o.strip())
        fis_experiments = _as_bool(get("fisExperiments"), False)
        fis_layer = _as_layer_arn(get("fisExtensionLayerArn"), "fisExtensionLayerArn")
        if fis_experiments and target != "aws":
            raise ValueError("context fisExperiments: AWS FIS experiments exist on target=aws only")
        if fis_experiments and fis_layer is None:
            raise ValueError(
                "context fisExperiments needs fisExtensionLayerArn: the FIS Lambda extension layer "
                "ARN of the region (aws ssm get-parameter --name "
                "/aws/service/fis/lambda-extension/AWS-FIS-extension-x86_64/1.x.x)"
            )
        default_metrics = "http://127.0.0.1:9108" if target == "local" else ""
        metrics_url = get("metricsUrl")
        return cls(
            target=target,
            stack_name=str(get("stackName") or "Valerix"),
            stage_name=str(get("stageName") or "prod"),
            localstack_endpoint=str(get("localstackEndpoint") or DEFAULT_LOCALSTACK_ENDPOINT).rstrip("/"),
            admin_api_key=admin_key,
            order_db_secret=_as_secret(get("orderDbSecret"), _default_db_secret("order_db", 5433), "orderDbSecret"),
            inventory_db_secret=_as_secret(
                get("inventoryDbSecret"), _default_db_secret("inventory_db", 5434), "inventoryDbSecret"
            ),
            hot_reload=_as_bool(get("hotReload"), False),
            lambda_dependencies=target == "aws" or _as_bool(get("lambdaDependencies"), False),
            metrics_url=default_metrics if metrics_url is None else str(metrics_url),
            cors_origins=origins,
            throttle_rate_limit=_as_int(get("throttleRateLimit"), 50),
            throttle_burst_limit=_as_int(get("throttleBurstLimit"), 100),
            log_retention_days=_as_int(get("logRetentionDays"), 14),
            db_instance_class=str(get("dbInstanceClass") or db_limits.DEFAULT_INSTANCE_CLASS),
            db_multi_az=_as_bool(get("dbMultiAz"), False),
            db_deletion_protection=_as_bool(get("dbDeletionProtection"), True),
            nat_gateways=_as_int(get("natGateways"), 1),
            alarm_emails=_as_emails(get("alarmEmail")),
            db_max_connections=_as_optional_positive_int(get("dbMaxConnections"), "dbMaxConnections"),
            account=get("account") or None,
            region=get("region") or None,
            nag=_as_bool(get("nag"), True),
            fis_experiments=fis_experiments,
            fis_extension_layer_arn=fis_layer,
        )
