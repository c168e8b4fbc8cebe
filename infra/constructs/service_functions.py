"""The service functions (order, inventory, gremlin), their environment and what each may touch.

`FUNCTION_SPECS` names every service function once (handler, timeout, memory); `FunctionFactory`
is the one place a spec becomes a `ServiceFunction` (same naming, code asset, logging and, on
aws, active tracing for every function of the stack, the backup and reconcile ones included);
`ServiceFunctions` creates the nine order-flow functions with their least-privilege grants,
queue triggers and the sweeper's schedule.

Both build into the scope they are given — the stack — rather than under a child construct of
their own: a resource's logical id comes from its construct path, and moving the functions one
level down would make CloudFormation replace each of them on the next deploy (a replacement of a
function with a fixed name fails, the new one being created before the old one is deleted).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import AssetHashType, Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as events_targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra import bundling
from infra.config import ValerixConfig
from infra.constructs.admin_key import AdminKey
from infra.constructs.databases import Databases, ServiceDatabase
from infra.constructs.db_limits import BUDGET
from infra.constructs.queue_pair import QueuePair
from infra.constructs.service_function import FunctionVpcPlacement, ServiceFunction, ServiceFunctionProps
from infra.constructs.state import StateStores

# DynamoDB actions the Powertools idempotency and circuit-breaker persistence layers use.
IDEMPOTENCY_TABLE_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem")
CIRCUIT_BREAKER_TABLE_ACTIONS = IDEMPOTENCY_TABLE_ACTIONS
GREMLIN_COUNTER_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
QUEUE_HEALTH_ACTIONS = ("sqs:GetQueueAttributes", "sqs:GetQueueUrl")

# Timeouts. The inventory consumer outlives the gremlin's longest latency (60 s) with headroom,
# should a queued reservation ever go through the injector; its queue's visibility is 6x that.
ORDER_API_TIMEOUT = Duration.seconds(15)
ORDER_COMPLETION_TIMEOUT = Duration.seconds(30)
INVENTORY_API_TIMEOUT = Duration.seconds(29)
# Outlives the gremlin's longest latency (60 s), so an injected delay is a delay, not a timeout.
INVENTORY_RESERVE_TIMEOUT = Duration.seconds(75)
INVENTORY_QUEUE_TIMEOUT = Duration.seconds(90)
MIGRATE_TIMEOUT = Duration.minutes(5)
GREMLIN_TIMEOUT = Duration.seconds(10)
RECONCILE_TIMEOUT = Duration.minutes(5)
MAX_RECEIVE_COUNT = 5
ORDER_SWEEPER_EVERY = Duration.minutes(1)
# Alarms a gremlin setting may name as a stop condition (issue 17), without the stack prefix.
# A synth test checks each is an alarm of the stack; the gremlin refuses any other name.
GREMLIN_STOP_ALARMS = ("inventory-dlq-not-empty", "completion-dlq-not-empty", "api-5xx", "api-p99-latency")


@dataclass(frozen=True)
class FunctionSpec:
    key: str  # construct id; its output is infra.outputs.FUNCTION_NAME_OUTPUTS[key]
    service: str
    handler: str
    name_suffix: str
    description: str
    timeout: Duration
    memory_size: int
    # Lambda SnapStart on target=aws (service_function.SNAP_START): the public APIs, whose INIT
    # (FastAPI, pydantic, boto3: README "aws_init_ms") a caller would otherwise wait for.
    snap_start: bool = False


FUNCTION_SPECS = {
    "OrderApi": FunctionSpec("OrderApi", "order", "functions.order.handler.api_handler", "order-api",
                             "Order REST API (FastAPI + Mangum)", ORDER_API_TIMEOUT, 512, snap_start=True),
    "OrderCompletion": FunctionSpec("OrderCompletion", "order", "functions.order.handler.completion_handler",
                                    "order-completion", "Applies queued order outcomes (SQS)",
                                    ORDER_COMPLETION_TIMEOUT, 256),
    "OrderMigrate": FunctionSpec("OrderMigrate", "order", "functions.order.handler.migrate_handler",
                                 "order-migrate", "order_db migrations (run after deploy)", MIGRATE_TIMEOUT, 256),
    "InventoryApi": FunctionSpec("InventoryApi", "inventory", "functions.inventory.handler.api_handler",
                                 "inventory-api", "Inventory REST API (FastAPI + Mangum)", INVENTORY_API_TIMEOUT, 512,
                                 snap_start=True),
    "InventoryReserve": FunctionSpec("InventoryReserve", "inventory", "functions.inventory.handler.reserve_handler",
                                     "inventory-reserve", "Internal stock reservation (invoked by the order API only)",
                                     INVENTORY_RESERVE_TIMEOUT, 512),
    "InventoryQueue": FunctionSpec("InventoryQueue", "inventory", "functions.inventory.handler.queue_handler",
                                   "inventory-queue", "Reserves stock for queued orders (SQS)",
                                   INVENTORY_QUEUE_TIMEOUT, 512),
    "InventoryMigrate": FunctionSpec("InventoryMigrate", "inventory", "functions.inventory.handler.migrate_handler",
                                     "inventory-migrate", "inventory_db migrations + seed (run after deploy)",
                                     MIGRATE_TIMEOUT, 256),
    "OrderSweeper": FunctionSpec("OrderSweeper", "order", "functions.order.handler.sweeper_handler",
                                 "order-sweeper", "Re-queues orders left PENDING by a request that died",
                                 ORDER_COMPLETION_TIMEOUT, 256),
    "Gremlin": FunctionSpec("Gremlin", "gremlin", "functions.gremlin.handler.api_handler", "gremlin",
                            "Gremlin chaos control API", GREMLIN_TIMEOUT, 256, snap_start=True),
    "Reconcile": FunctionSpec("Reconcile", "reconcile", "functions.reconcile.handler.reconcile_handler",
                              "reconcile", "Checks order_db against inventory_db and the DLQs (read-only, reports)",
                              RECONCILE_TIMEOUT, 512),
}  # fmt: skip


def function_code(scope: Construct, config: ValerixConfig) -> lambda_.Code:
    """The one code asset every function of the stack shares."""
    if config.is_local and config.hot_reload:
        # LocalStack hot reload: the "hot-reload" bucket + an absolute host path. The path
        # is the repo root so handlers stay `functions.<service>.handler.<name>`.
        return lambda_.Code.from_bucket(
            s3.Bucket.from_bucket_name(scope, "HotReloadBucket", "hot-reload"),
            str(bundling.REPO_ROOT),
        )
    # The "aws" bundle is functions/ + Linux wheels; the local executor needs only functions/.
    path, asset_hash = bundling.stage_function_bundle("aws" if config.lambda_dependencies else "local")
    return lambda_.Code.from_asset(
        str(path),
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=asset_hash,
        exclude=[".valerix-complete"],
    )


class FunctionFactory:
    """Turns a FUNCTION_SPECS entry into a `ServiceFunction` in `scope` (see the module doc)."""

    def __init__(self, scope: Construct, *, config: ValerixConfig, databases: Databases) -> None:
        self.scope = scope
        self.config = config
        self.databases = databases
        self.code = function_code(scope, config)

    def function(self, key: str, environment: Mapping[str, str], vpc: FunctionVpcPlacement | None) -> ServiceFunction:
        spec = FUNCTION_SPECS[key]
        return ServiceFunction(
            self.scope,
            key,
            ServiceFunctionProps(
                service=spec.service,
                handler=spec.handler,
                function_name=f"{self.config.stack_name}-{spec.name_suffix}",
                description=spec.description,
                code=self.code,
                timeout=spec.timeout,
                memory_size=spec.memory_size,
                environment=dict(environment),
                log_retention_days=self.config.log_retention_days,
                vpc=vpc,
                tracing=self.config.is_aws,
                snap_start=spec.snap_start and self.config.is_aws,  # LocalStack community has none
            ),
        )

    def database_function(
        self, key: str, db: ServiceDatabase | None, environment: Mapping[str, str], login: str = "app"
    ) -> ServiceFunction:
        """`login`: the database role the function connects as — `app` at run time; `owner` for a
        migrate function, which also reads the master secret (to create the roles) and the app and
        reader secrets (their passwords). Each function can read only the secrets named here."""
        env = dict(environment)
        secrets: dict[str, secretsmanager.ISecret] = {}
        if db is not None:
            secrets["DB_SECRET_ARN"] = db.owner_secret if login == "owner" else db.app_secret
            if login == "owner":
                secrets.update(
                    DB_MASTER_SECRET_ARN=db.master_secret,
                    DB_APP_SECRET_ARN=db.app_secret,
                    DB_READER_SECRET_ARN=db.reader_secret,
                )
            env.update({name: secret.secret_arn for name, secret in secrets.items()})
            env.update(self.databases.tls_environment)
        fn = self.function(key, env, db.placement(login) if db is not None else None)
        for secret in secrets.values():
            secret.grant_read(fn.function)
        return fn


@dataclass(frozen=True)
class OrderFlowResources:
    """What the order-flow functions use, made elsewhere in the stack."""

    databases: Databases
    state: StateStores
    inventory_queue: QueuePair
    completion_queue: QueuePair
    admin_key: AdminKey
    cors_origins: list[str]


class ServiceFunctions:
    """The order API, inventory API/reservation/consumer, both migrations, the sweeper and the
    gremlin API, each granted exactly what its code uses (`functions` keeps creation order)."""

    def __init__(self, scope: Construct, factory: FunctionFactory, r: OrderFlowResources) -> None:
        stack = Stack.of(scope)
        prefix = factory.config.stack_name
        order_db, inventory_db = r.databases.order, r.databases.inventory
        iq, cq = r.inventory_queue.queue, r.completion_queue.queue
        tables = r.state
        cors_env = {"CORS_ALLOW_ORIGINS": cdk.Fn.join(",", r.cors_origins)}
        self.stop_alarm_names = [f"{prefix}-{name}" for name in GREMLIN_STOP_ALARMS]  # literal names: no cycle
        gremlin_env = {
            "GREMLIN_PARAMETER_NAME": tables.gremlin_parameter.parameter_name,
            "GREMLIN_STATE_TABLE": tables.gremlin_state_table.table_name,
            "GREMLIN_STOP_ALARMS": ",".join(self.stop_alarm_names),
        }
        read_stop_alarms = iam.PolicyStatement(
            sid="ReadGremlinStopAlarms",
            actions=["cloudwatch:DescribeAlarms"],
            resources=[
                stack.format_arn(
                    service="cloudwatch",
                    resource="alarm",
                    resource_name=name,
                    arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
                )
                for name in self.stop_alarm_names
            ],
        )

        f: dict[str, ServiceFunction] = {}
        self.functions = f
        build = factory.database_function
        # The reservation is internal: not on the API, invoked by the order API only (IAM below).
        f["InventoryReserve"] = build("InventoryReserve", inventory_db, {
            **gremlin_env,
            "GREMLIN_CACHE_SECONDS": "1",
        })  # fmt: skip
        f["OrderApi"] = build("OrderApi", order_db, {
            "INVENTORY_RESERVE_FUNCTION": f["InventoryReserve"].function_name,
            "INVENTORY_QUEUE_URL": iq.queue_url,
            "COMPLETION_QUEUE_URL": cq.queue_url,
            "IDEMPOTENCY_TABLE": tables.idempotency_table.table_name,
            "CIRCUIT_BREAKER_TABLE": tables.circuit_breaker_table.table_name,
            "INVENTORY_CALL_BUDGET_MS": "2000",
            "CIRCUIT_FAILURE_THRESHOLD": "5",
            "CIRCUIT_RECOVERY_TIMEOUT_SECONDS": "10",
            **cors_env,
        })  # fmt: skip
        f["OrderCompletion"] = build("OrderCompletion", order_db, {"COMPLETION_QUEUE_URL": cq.queue_url})
        f["OrderMigrate"] = build("OrderMigrate", order_db, {}, login="owner")
        # An order API process killed between writing PENDING and answering (crash, timeout)
        # would leave the order behind: the sweeper hands such orders to the queue.
        f["OrderSweeper"] = build("OrderSweeper", order_db, {"INVENTORY_QUEUE_URL": iq.queue_url})
        iq.grant_send_messages(f["OrderSweeper"].function)
        events.Rule(
            scope,
            "OrderSweeperSchedule",
            schedule=events.Schedule.rate(ORDER_SWEEPER_EVERY),
            targets=[events_targets.LambdaFunction(f["OrderSweeper"].function)],
        )
        admin_env = {"ADMIN_KEY_SECRET_ARN": r.admin_key.secret_arn}
        f["InventoryApi"] = build("InventoryApi", inventory_db, {
            "INVENTORY_QUEUE_URL": iq.queue_url,
            **admin_env,
            **cors_env,
        })  # fmt: skip
        f["InventoryQueue"] = build("InventoryQueue", inventory_db, {
            **gremlin_env,  # obeys the gremlin's database faults (functions/common/db.py)
            "GREMLIN_CACHE_SECONDS": "1",
            "INVENTORY_QUEUE_URL": iq.queue_url,
            "COMPLETION_QUEUE_URL": cq.queue_url,
            "IDEMPOTENCY_TABLE": tables.idempotency_table.table_name,
        })  # fmt: skip
        f["InventoryMigrate"] = build("InventoryMigrate", inventory_db, {}, login="owner")
        f["Gremlin"] = build("Gremlin", None, {**gremlin_env, **admin_env, **cors_env})

        # ---------------------------------------------------------------- grants (least privilege)
        order_api = f["OrderApi"].function
        iq.grant_send_messages(order_api)
        cq.grant(order_api, *QUEUE_HEALTH_ACTIONS)
        tables.idempotency_table.grant(order_api, *IDEMPOTENCY_TABLE_ACTIONS)
        tables.circuit_breaker_table.grant(order_api, *CIRCUIT_BREAKER_TABLE_ACTIONS)
        inventory_reserve = f["InventoryReserve"].function
        # Only the order API may invoke the reservation: exactly this function's ARN (no
        # versions/aliases wildcard), and no resource-based permission for anyone else.
        order_api.add_to_role_policy(
            iam.PolicyStatement(
                sid="InvokeInventoryReserve",
                actions=["lambda:InvokeFunction"],
                resources=[inventory_reserve.function_arn],
            )
        )
        tables.gremlin_parameter.grant_read(inventory_reserve)
        tables.gremlin_state_table.grant(inventory_reserve, *GREMLIN_COUNTER_ACTIONS)

        inventory_api = f["InventoryApi"].function
        iq.grant(inventory_api, *QUEUE_HEALTH_ACTIONS)
        r.admin_key.grant_read_to(inventory_api)

        inventory_consumer = f["InventoryQueue"].function
        cq.grant_send_messages(inventory_consumer)
        tables.idempotency_table.grant(inventory_consumer, *IDEMPOTENCY_TABLE_ACTIONS)
        tables.gremlin_parameter.grant_read(inventory_consumer)
        tables.gremlin_state_table.grant(inventory_consumer, *GREMLIN_COUNTER_ACTIONS)
        for reader in (inventory_reserve, inventory_consumer):
            reader.add_to_role_policy(read_stop_alarms)

        gremlin = f["Gremlin"].function
        tables.gremlin_parameter.grant_read(gremlin)
        tables.gremlin_parameter.grant_write(gremlin)
        tables.gremlin_state_table.grant_read_write_data(gremlin)
        gremlin.add_to_role_policy(read_stop_alarms)
        r.admin_key.grant_read_to(gremlin)

        # ---------------------------------------------------------------- queue consumers
        r.inventory_queue.consume_with(
            inventory_consumer, batch_size=5, max_concurrency=BUDGET["InventoryQueue"].environments
        )
        r.completion_queue.consume_with(
            f["OrderCompletion"].function, batch_size=10, max_concurrency=BUDGET["OrderCompletion"].environments
        )
