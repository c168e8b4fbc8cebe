"""The Valerix stack: one definition for target=local (LocalStack + local Postgres) and
target=aws (VPC + RDS + AWS Backup). See docs/ARCHITECTURE.md for handlers and env vars."""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import AssetHashType, Aws, CfnOutput, Duration, Fn, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as events_targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_s3 as s3
from aws_cdk import triggers
from constructs import Construct

from infra import bundling
from infra.config import ValerixConfig
from infra.constructs.admin_key import AdminKey
from infra.constructs.alarms import StackAlarms, schedule_rules
from infra.constructs.api import ValerixApi
from infra.constructs.backup import DatabaseBackups
from infra.constructs.databases import POSTGRES_PORT, Databases, ServiceDatabase
from infra.constructs.db_limits import BUDGET
from infra.constructs.local_backup import LocalBackup
from infra.constructs.queue_pair import QueuePair
from infra.constructs.service_function import FunctionVpcPlacement, ServiceFunction, ServiceFunctionProps
from infra.constructs.state import StateStores
from infra.constructs.website import Website
from infra.nag import acknowledge_all

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
RECONCILE_EVERY = Duration.minutes(15)
RECONCILE_STALE_MINUTES = 5  # an order PENDING/QUEUED for longer is reported (the sweeper acts after 1)
MAX_RECEIVE_COUNT = 5
# Alarms a gremlin setting may name as a stop condition (issue 17), without the stack prefix.
# A synth test checks each is an alarm of the stack; the gremlin refuses any other name.
GREMLIN_STOP_ALARMS = ("inventory-dlq-not-empty", "completion-dlq-not-empty", "api-5xx", "api-p99-latency")


@dataclass(frozen=True)
class FunctionSpec:
    key: str  # output prefix, e.g. OrderApi -> OrderApiFunctionName
    service: str
    handler: str
    name_suffix: str
    description: str
    timeout: Duration
    memory_size: int


FUNCTION_SPECS = {
    "OrderApi": FunctionSpec("OrderApi", "order", "functions.order.handler.api_handler", "order-api",
                             "Order REST API (FastAPI + Mangum)", ORDER_API_TIMEOUT, 512),
    "OrderCompletion": FunctionSpec("OrderCompletion", "order", "functions.order.handler.completion_handler",
                                    "order-completion", "Applies queued order outcomes (SQS)",
                                    ORDER_COMPLETION_TIMEOUT, 256),
    "OrderMigrate": FunctionSpec("OrderMigrate", "order", "functions.order.handler.migrate_handler",
                                 "order-migrate", "order_db migrations (run after deploy)", MIGRATE_TIMEOUT, 256),
    "InventoryApi": FunctionSpec("InventoryApi", "inventory", "functions.inventory.handler.api_handler",
                                 "inventory-api", "Inventory REST API (FastAPI + Mangum)", INVENTORY_API_TIMEOUT, 512),
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
                            "Gremlin chaos control API", GREMLIN_TIMEOUT, 256),
    "Reconcile": FunctionSpec("Reconcile", "reconcile", "functions.reconcile.handler.reconcile_handler",
                              "reconcile", "Checks order_db against inventory_db and the DLQs (read-only, reports)",
                              RECONCILE_TIMEOUT, 512),
}  # fmt: skip


class ValerixStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: ValerixConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        prefix = config.stack_name

        # ---------------------------------------------------------------- data
        self.databases = Databases(self, "Databases", config=config)
        self.state = StateStores(self, "State", parameter_prefix=f"/{prefix.lower()}")
        self.inventory_queue = QueuePair(
            self, "InventoryQueues", alarm_name=f"{prefix}-inventory-dlq-not-empty",
            consumer_timeout=INVENTORY_QUEUE_TIMEOUT, max_receive_count=MAX_RECEIVE_COUNT,
        )  # fmt: skip
        self.completion_queue = QueuePair(
            self, "CompletionQueues", alarm_name=f"{prefix}-completion-dlq-not-empty",
            consumer_timeout=ORDER_COMPLETION_TIMEOUT, max_receive_count=MAX_RECEIVE_COUNT,
        )  # fmt: skip
        self.website = Website(self, "Website", config=config)

        # Admin key: checked by API Gateway (usage plan) and again by the admin functions.
        self.admin_key = AdminKey(self, "AdminKey", secret_name=f"{prefix}/admin-api-key",
                                  local_value=None if config.is_aws else config.admin_api_key)

        # ---------------------------------------------------------------- api
        cors_origins = [*self.website.origins, *config.cors_origins]
        self.api = ValerixApi(
            self,
            "Api",
            api_name=f"{prefix}-api",
            stage_name=config.stage_name,
            cors_origins=cors_origins,
            throttle_rate_limit=config.throttle_rate_limit,
            throttle_burst_limit=config.throttle_burst_limit,
            log_retention_days=config.log_retention_days,
            admin_api_key_value=self.admin_key.api_key_value,
            tracing=config.is_aws,
        )
        # Built from the API id (not from the stage/deployment) so functions can reference it
        # without a dependency cycle through the methods that integrate them.
        if config.is_aws:
            self.api_url = f"https://{self.api.rest_api_id}.execute-api.{Aws.REGION}.{Aws.URL_SUFFIX}/{config.stage_name}"
        else:
            self.api_url = f"{config.localstack_endpoint}/_aws/execute-api/{self.api.rest_api_id}/{config.stage_name}"
        cors_env = {"CORS_ALLOW_ORIGINS": Fn.join(",", cors_origins)}

        # ---------------------------------------------------------------- functions
        self.code = self._function_code()
        order_db, inventory_db = self.databases.order, self.databases.inventory
        iq, cq = self.inventory_queue.queue, self.completion_queue.queue
        tables = self.state
        stop_alarms = [f"{prefix}-{name}" for name in GREMLIN_STOP_ALARMS]  # literal names: no cycle
        gremlin_env = {
            "GREMLIN_PARAMETER_NAME": tables.gremlin_parameter.parameter_name,
            "GREMLIN_STATE_TABLE": tables.gremlin_state_table.table_name,
            "GREMLIN_STOP_ALARMS": ",".join(stop_alarms),
        }
        read_stop_alarms = iam.PolicyStatement(
            sid="ReadGremlinStopAlarms", actions=["cloudwatch:DescribeAlarms"],
            resources=[self.format_arn(service="cloudwatch", resource="alarm", resource_name=name,
                                       arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME) for name in stop_alarms])

        f = self.functions = {}
        # The reservation is internal: not on the API, invoked by the order API only (IAM below).
        f["InventoryReserve"] = self._function("InventoryReserve", inventory_db, {
            **gremlin_env,
            "GREMLIN_CACHE_SECONDS": "1",
        })  # fmt: skip
        f["OrderApi"] = self._function("OrderApi", order_db, {
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
        f["OrderCompletion"] = self._function("OrderCompletion", order_db, {"COMPLETION_QUEUE_URL": cq.queue_url})
        f["OrderMigrate"] = self._function("OrderMigrate", order_db, {}, login="owner")
        # An order API process killed between writing PENDING and answering (crash, timeout)
        # would leave the order behind: the sweeper hands such orders to the queue.
        f["OrderSweeper"] = self._function("OrderSweeper", order_db, {"INVENTORY_QUEUE_URL": iq.queue_url})
        iq.grant_send_messages(f["OrderSweeper"].function)
        events.Rule(self, "OrderSweeperSchedule", schedule=events.Schedule.rate(Duration.minutes(1)),
                    targets=[events_targets.LambdaFunction(f["OrderSweeper"].function)])
        admin_env = {"ADMIN_KEY_SECRET_ARN": self.admin_key.secret_arn}
        f["InventoryApi"] = self._function("InventoryApi", inventory_db, {
            "INVENTORY_QUEUE_URL": iq.queue_url,
            **admin_env,
            **cors_env,
        })  # fmt: skip
        f["InventoryQueue"] = self._function("InventoryQueue", inventory_db, {
            **gremlin_env,  # obeys the gremlin's database faults (functions/common/db.py)
            "GREMLIN_CACHE_SECONDS": "1",
            "INVENTORY_QUEUE_URL": iq.queue_url,
            "COMPLETION_QUEUE_URL": cq.queue_url,
            "IDEMPOTENCY_TABLE": tables.idempotency_table.table_name,
        })  # fmt: skip
        f["InventoryMigrate"] = self._function("InventoryMigrate", inventory_db, {}, login="owner")
        f["Gremlin"] = self._function("Gremlin", None, {**gremlin_env, **admin_env, **cors_env})

        # Restore points every 4 h + one external call a day (issue 9), on both targets.
        self.local_backup = LocalBackup(
            self, "LocalBackup",
            code=self.code,
            order_db=self.databases.order,
            inventory_db=self.databases.inventory,
            name_prefix=prefix,
            tls_env=self.databases.tls_environment,
            log_retention_days=config.log_retention_days,
            removal_policy=RemovalPolicy.RETAIN if config.is_aws else RemovalPolicy.DESTROY,
            tracing=config.is_aws,
        )
        f.update(self.local_backup.functions)
        f["Reconcile"] = self._reconcile_function()
        # Reserved concurrency x DB_POOL_MAX within max_connections (infra/constructs/db_limits.py).
        self.databases.apply_connection_budget(f)

        # ---------------------------------------------------------------- grants (least privilege)
        order_api = f["OrderApi"].function
        iq.grant_send_messages(order_api)
        cq.grant(order_api, *QUEUE_HEALTH_ACTIONS)
        tables.idempotency_table.grant(order_api, *IDEMPOTENCY_TABLE_ACTIONS)
        tables.circuit_breaker_table.grant(order_api, *CIRCUIT_BREAKER_TABLE_ACTIONS)
        inventory_reserve = f["InventoryReserve"].function
        # Only the order API may invoke the reservation: exactly this function's ARN (no
        # versions/aliases wildcard), and no resource-based permission for anyone else.
        order_api.add_to_role_policy(iam.PolicyStatement(
            sid="InvokeInventoryReserve", actions=["lambda:InvokeFunction"],
            resources=[inventory_reserve.function_arn]))
        tables.gremlin_parameter.grant_read(inventory_reserve)
        tables.gremlin_state_table.grant(inventory_reserve, *GREMLIN_COUNTER_ACTIONS)

        inventory_api = f["InventoryApi"].function
        iq.grant(inventory_api, *QUEUE_HEALTH_ACTIONS)
        self.admin_key.grant_read_to(inventory_api)

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
        self.admin_key.grant_read_to(gremlin)

        # ---------------------------------------------------------------- queue consumers
        inventory_consumer.add_event_source(
            event_sources.SqsEventSource(iq, batch_size=5, report_batch_item_failures=True,
                                         max_concurrency=BUDGET["InventoryQueue"].environments)
        )
        f["OrderCompletion"].function.add_event_source(
            event_sources.SqsEventSource(cq, batch_size=10, report_batch_item_failures=True,
                                         max_concurrency=BUDGET["OrderCompletion"].environments)
        )

        # ---------------------------------------------------------------- routes
        api = self.api
        api.route("/orders", "POST", order_api)
        api.route("/orders", "GET", order_api)
        api.route("/orders/{orderId}", "GET", order_api)
        api.route("/health/order", "GET", order_api)
        api.route("/products", "GET", inventory_api)
        api.route("/products/{productId}", "GET", inventory_api)
        api.route("/admin/products/{productId}", "PUT", inventory_api, api_key_required=True)
        api.route("/health/inventory", "GET", inventory_api)
        api.route("/gremlin", "GET", gremlin)
        api.route("/gremlin", "PUT", gremlin, api_key_required=True)
        api.route("/gremlin", "DELETE", gremlin, api_key_required=True)

        # ---------------------------------------------------------------- migrations on deploy
        self.triggers: list[triggers.Trigger] = []
        if config.is_aws:
            for key, db in (("OrderMigrate", order_db), ("InventoryMigrate", inventory_db)):
                assert db.instance is not None and self.databases.vpc is not None
                self.triggers.append(
                    triggers.Trigger(
                        self,
                        f"{key}Trigger",
                        handler=f[key].function,
                        execute_after=[db.instance, self.databases.vpc],
                        execute_on_handler_change=True,
                        invocation_type=triggers.InvocationType.REQUEST_RESPONSE,
                        timeout=MIGRATE_TIMEOUT,
                    )
                )

        # ---------------------------------------------------------------- backups (aws)
        self.backups = None
        if config.is_aws:
            self.backups = DatabaseBackups(
                self, "Backups", instances=self.databases.instances, vault_name_prefix=prefix.lower()
            )

        # ---------------------------------------------------------------- website content
        if config.is_aws:
            self.website.deploy_content(web_dir=bundling.REPO_ROOT / "web", api_url=self.api_url,
                                        metrics_url=config.metrics_url)  # fmt: skip

        # ---------------------------------------------------------------- alarms
        # Every alarm notifies the stack's alarm topic (context alarmEmail subscribes addresses).
        self.alarms = StackAlarms(self, "Alarms", name_prefix=prefix, emails=config.alarm_emails)
        self.alarms.functions(f)
        self.alarms.api(self.api.rest_api)
        self.alarms.adopt(self.inventory_queue.dlq_alarm, self.completion_queue.dlq_alarm)
        self.alarms.schedules(schedule_rules(self))
        # The reconciler's findings (functions/reconcile/service.py: ReconcileRuns{outcome}); on
        # the local cloud the Prometheus rule ReconcileProblems says the same.
        self.alarms.alarm(
            "ReconcileProblems", name="reconcile-problems",
            description="A reconciliation run found problems between order_db, inventory_db and the DLQs "
            "(missing or mismatched reservations, stock reserved without a confirmed order, orders stuck "
            "PENDING/QUEUED, dead letters). Nothing was repaired: the reconcile function's log names each "
            "order and queue (`python scripts/reconcile.py --aws` prints the report).",
            metric=cloudwatch.Metric(namespace="Valerix", metric_name="ReconcileRuns", statistic="Sum",
                                     period=RECONCILE_EVERY,
                                     dimensions_map={"service": "reconcile", "outcome": "problems"}),
            threshold=1,
        )
        if config.is_aws:
            for db in (self.databases.order, self.databases.inventory):
                assert db.instance is not None and db.proxy is not None
                self.alarms.database_instance(db.name.capitalize(), db.instance,
                                              max_connections=self.databases.max_connections)
                self.alarms.database_proxy(db.name.capitalize(), db.proxy.db_proxy_name,
                                           max_database_connections=self.databases.budgets[db.name].proxy_connections)

        if config.is_local and config.hot_reload:
            cdk.Annotations.of(self).acknowledge_warning(
                "@aws-cdk/aws-lambda:codeFromBucketObjectVersionNotSpecified",
                "LocalStack hot reload: the 'hot-reload' bucket is a host directory mount, read at every cold start.",
            )

        self._outputs()
        self._suppress_cdk_internals()

    # ------------------------------------------------------------------ helpers
    def _function_code(self) -> lambda_.Code:
        if self.config.is_local and self.config.hot_reload:
            # LocalStack hot reload: the "hot-reload" bucket + an absolute host path. The path
            # is the repo root so handlers stay `functions.<service>.handler.<name>`.
            return lambda_.Code.from_bucket(
                s3.Bucket.from_bucket_name(self, "HotReloadBucket", "hot-reload"),
                str(bundling.REPO_ROOT),
            )
        # The "aws" bundle is functions/ + Linux wheels; the local executor needs only functions/.
        path, asset_hash = bundling.stage_function_bundle("aws" if self.config.lambda_dependencies else "local")
        return lambda_.Code.from_asset(
            str(path),
            asset_hash_type=AssetHashType.CUSTOM,
            asset_hash=asset_hash,
            exclude=[".valerix-complete"],
        )

    def _function(self, key: str, db: ServiceDatabase | None, environment: dict[str, str],
                  login: str = "app") -> ServiceFunction:
        """`login`: the database role the function connects as — `app` at run time; `owner` for a
        migrate function, which also reads the master secret (to create the roles) and the app and
        reader secrets (their passwords). Each function can read only the secrets named here."""
        env = dict(environment)
        secrets = {}
        if db is not None:
            secrets["DB_SECRET_ARN"] = db.owner_secret if login == "owner" else db.app_secret
            if login == "owner":
                secrets.update(DB_MASTER_SECRET_ARN=db.master_secret, DB_APP_SECRET_ARN=db.app_secret,
                               DB_READER_SECRET_ARN=db.reader_secret)
            env.update({name: secret.secret_arn for name, secret in secrets.items()})
            env.update(self.databases.tls_environment)
        fn = self._service_function(key, env, db.placement(login) if db is not None else None)
        for secret in secrets.values():
            secret.grant_read(fn.function)
        return fn

    def _service_function(self, key: str, environment: dict[str, str],
                          vpc: FunctionVpcPlacement | None) -> ServiceFunction:
        """The one place a FUNCTION_SPECS entry becomes a function: same naming, code, logging and
        (aws) active tracing for every function of the stack."""
        spec = FUNCTION_SPECS[key]
        return ServiceFunction(self, key, ServiceFunctionProps(
            service=spec.service,
            handler=spec.handler,
            function_name=f"{self.config.stack_name}-{spec.name_suffix}",
            description=spec.description,
            code=self.code,
            timeout=spec.timeout,
            memory_size=spec.memory_size,
            environment=environment,
            log_retention_days=self.config.log_retention_days,
            vpc=vpc,
            tracing=self.config.is_aws,
        ))

    def _reconcile_function(self) -> ServiceFunction:
        """Issue 17: every 15 minutes, both databases checked against each other and the DLQs.

        Least privilege: the reader login of each database (`<service>_backup`, SELECT only —
        the reconciler can report, never repair), `sqs:GetQueueAttributes` on the two DLQs and
        nothing else. On AWS it runs in the databases' VPC with its own security group, which
        both instances admit on the Postgres port (each service's own group admits only its
        service's functions)."""
        order_db, inventory_db = self.databases.order, self.databases.inventory
        dlqs = {"inventory": self.inventory_queue.dlq, "completion": self.completion_queue.dlq}
        placement = None
        if order_db.function_placement is not None:
            security_group = ec2.SecurityGroup(
                self, "ReconcileSg", vpc=order_db.function_placement.vpc, allow_all_outbound=True,
                description="Valerix reconcile function (Postgres to both databases, HTTPS to SQS/Secrets Manager)")
            placement = FunctionVpcPlacement(vpc=order_db.function_placement.vpc,
                                             subnets=order_db.function_placement.subnets,
                                             security_group=security_group)
            for db in (order_db, inventory_db):
                assert db.instance is not None
                db.instance.connections.allow_from(security_group, ec2.Port.tcp(POSTGRES_PORT),
                                                   f"Postgres from the reconcile function ({db.name})")
        fn = self._service_function("Reconcile", {
            "ORDER_DB_SECRET_ARN": order_db.reader_secret.secret_arn,
            "INVENTORY_DB_SECRET_ARN": inventory_db.reader_secret.secret_arn,
            "DLQ_URLS": Fn.join(",", [f"{name}={dlq.queue_url}" for name, dlq in dlqs.items()]),
            "RECONCILE_STALE_MINUTES": str(RECONCILE_STALE_MINUTES),
            **self.databases.tls_environment,
        }, placement)
        for db in (order_db, inventory_db):
            db.reader_secret.grant_read(fn.function)
        for dlq in dlqs.values():
            dlq.grant(fn.function, "sqs:GetQueueAttributes")
        # Read-only, so EventBridge's and Lambda's retries are harmless; the event is only the time.
        events.Rule(self, "ReconcileSchedule", schedule=events.Schedule.rate(RECONCILE_EVERY),
                    description="Valerix: reconcile order_db, inventory_db and the DLQs",
                    targets=[events_targets.LambdaFunction(fn.function, event=events.RuleTargetInput.from_object(
                        {"source": "schedule"}), retry_attempts=2, max_event_age=Duration.hours(1))])
        return fn

    def _outputs(self) -> None:
        cfg = self.config
        state = self.state
        outputs = {
            "Target": cfg.target,
            "ApiUrl": self.api_url,
            "ApiId": self.api.rest_api_id,
            "ApiStageName": cfg.stage_name,
            "WebsiteUrl": self.website.website_url,
            "WebsiteBucketName": self.website.bucket.bucket_name,
            "AdminApiKeyId": self.api.admin_api_key.key_id,
            "InventoryQueueUrl": self.inventory_queue.queue.queue_url,
            "InventoryDlqUrl": self.inventory_queue.dlq.queue_url,
            "CompletionQueueUrl": self.completion_queue.queue.queue_url,
            "CompletionDlqUrl": self.completion_queue.dlq.queue_url,
            "IdempotencyTableName": state.idempotency_table.table_name,
            "CircuitBreakerTableName": state.circuit_breaker_table.table_name,
            "GremlinStateTableName": state.gremlin_state_table.table_name,
            "GremlinParameterName": state.gremlin_parameter.parameter_name,
            # the run-time (app role) logins; the master secret is not an output
            "OrderDbSecretArn": self.databases.order.app_secret.secret_arn,
            "InventoryDbSecretArn": self.databases.inventory.app_secret.secret_arn,
            "AdminKeySecretArn": self.admin_key.secret_arn,
            "LogGroupNames": Fn.join(",", [fn.log_group_name for fn in self.functions.values()]),
        }
        for key, fn in self.functions.items():
            outputs[f"{key}FunctionName"] = fn.function_name
        outputs.update(self.local_backup.outputs())
        if cfg.is_local:
            outputs["AdminApiKey"] = cfg.admin_api_key
        for key, value in outputs.items():
            CfnOutput(self, key, value=value)
        if cfg.is_aws:
            CfnOutput(
                self,
                "AdminApiKeyValueCommand",
                value=Fn.join("", ["aws secretsmanager get-secret-value --query SecretString --output text --secret-id ",
                                   self.admin_key.secret_arn]),
                description="Prints the generated admin API key (the API key and the functions use this secret)",
            )

    def _suppress_cdk_internals(self) -> None:
        """Reasoned acknowledgments for the Lambda-backed providers CDK itself adds."""
        basic_role = (
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]"
        )
        for child in self.node.children:
            if child.node.id.startswith("Custom::CDKBucketDeployment"):
                label = "CDK BucketDeployment provider (uploads web/ + config.json, AWS only)"
                website_bucket = self.resolve(self.get_logical_id(self.website.bucket.node.default_child))
                rules = {
                    basic_role: f"{label}: CDK-managed role that writes its own logs; not application code.",
                    "AwsSolutions-L1": f"{label}: runtime chosen by CDK and updated with aws-cdk-lib.",
                    "Serverless-LambdaLatestVersion": f"{label}: runtime chosen by CDK and updated with aws-cdk-lib.",
                    "Serverless-LambdaDLQ": f"{label}: CloudFormation invokes it for the custom resource and "
                    "waits for its answer; a failed upload fails (and rolls back) the deployment itself.",
                    "Serverless-LambdaTracing": f"{label}: runs only during a deployment, whose events "
                    "CloudFormation already records; not application code.",
                }
                for finding in (
                    "Action::s3:GetObject*",
                    "Action::s3:GetBucket*",
                    "Action::s3:List*",
                    "Action::s3:DeleteObject*",
                    "Action::s3:Abort*",
                    "Resource::arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-<AWS::AccountId>-<AWS::Region>/*",
                    f"Resource::<{website_bucket}.Arn>/*",
                ):
                    rules[f"AwsSolutions-IAM5[{finding}]"] = (
                        f"{label}: CDK's own grant, scoped to the CDK asset bucket (read) and the "
                        "website bucket (sync with prune); functions never get these."
                    )
                acknowledge_all(child, rules)
