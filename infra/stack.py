"""The Valerix stack: one definition for target=local (LocalStack + local Postgres) and
target=aws (VPC + RDS + AWS Backup), composed of the constructs under infra/constructs/.
See docs/ARCHITECTURE.md for handlers and env vars, infra/outputs.py for the outputs."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import Aws, CfnOutput, Fn, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

from infra import bundling
from infra import outputs as out
from infra.config import ValerixConfig
from infra.constructs.admin_key import AdminKey
from infra.constructs.alarms import StackAlarms, schedule_rules
from infra.constructs.api import ValerixApi
from infra.constructs.backup import DatabaseBackups
from infra.constructs.cdk_providers import acknowledge_cdk_providers
from infra.constructs.databases import Databases
from infra.constructs.fis import FisExperiments
from infra.constructs.local_backup import LocalBackup
from infra.constructs.migrations import migration_triggers
from infra.constructs.queue_pair import QueuePair
from infra.constructs.rds_instance import rds_instance
from infra.constructs.reconcile import Reconciler
from infra.constructs.routes import add_routes, method_throttles
from infra.constructs.service_function import ServiceFunction
from infra.constructs.service_functions import (
    INVENTORY_QUEUE_TIMEOUT,
    MAX_RECEIVE_COUNT,
    ORDER_COMPLETION_TIMEOUT,
    FunctionFactory,
    OrderFlowResources,
    ServiceFunctions,
)
from infra.constructs.state import StateStores
from infra.constructs.website import Website


class ValerixStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: ValerixConfig, **kwargs: Any) -> None:
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
        self.admin_key = AdminKey(
            self,
            "AdminKey",
            secret_name=f"{prefix}/admin-api-key",
            local_value=None if config.is_aws else config.admin_api_key,
        )

        # ---------------------------------------------------------------- api
        cors_origins = [*self.website.origins, *config.cors_origins]
        self.api = ValerixApi(
            self, "Api", api_name=f"{prefix}-api", stage_name=config.stage_name, cors_origins=cors_origins,
            throttle_rate_limit=config.throttle_rate_limit, throttle_burst_limit=config.throttle_burst_limit,
            log_retention_days=config.log_retention_days, admin_api_key_value=self.admin_key.api_key_value,
            method_throttles=method_throttles(config.throttle_rate_limit, config.throttle_burst_limit),
            tracing=config.is_aws,
        )  # fmt: skip
        # Built from the API id (not from the stage/deployment) so functions can reference it
        # without a dependency cycle through the methods that integrate them.
        if config.is_aws:
            self.api_url = (
                f"https://{self.api.rest_api_id}.execute-api.{Aws.REGION}.{Aws.URL_SUFFIX}/{config.stage_name}"
            )
        else:
            self.api_url = f"{config.localstack_endpoint}/_aws/execute-api/{self.api.rest_api_id}/{config.stage_name}"

        # ---------------------------------------------------------------- functions
        factory = FunctionFactory(self, config=config, databases=self.databases)
        self.code = factory.code
        self.service_functions = ServiceFunctions(
            self,
            factory,
            OrderFlowResources(
                databases=self.databases,
                state=self.state,
                inventory_queue=self.inventory_queue,
                completion_queue=self.completion_queue,
                admin_key=self.admin_key,
                cors_origins=cors_origins,
            ),
        )
        self.functions: dict[str, ServiceFunction] = dict(self.service_functions.functions)
        f = self.functions
        # Restore points every 4 h + one external call a day (issue 9), on both targets.
        self.local_backup = LocalBackup(
            self, "LocalBackup", code=self.code, order_db=self.databases.order,
            inventory_db=self.databases.inventory, name_prefix=prefix, tls_env=self.databases.tls_environment,
            log_retention_days=config.log_retention_days,
            removal_policy=RemovalPolicy.RETAIN if config.is_aws else RemovalPolicy.DESTROY, tracing=config.is_aws,
        )  # fmt: skip
        f.update(self.local_backup.functions)
        self.reconciler = Reconciler(
            self,
            factory,
            databases=self.databases,
            inventory_queue=self.inventory_queue,
            completion_queue=self.completion_queue,
        )
        f["Reconcile"] = self.reconciler.function
        # Reserved concurrency x DB_POOL_MAX within max_connections (infra/constructs/db_limits.py).
        self.databases.apply_connection_budget(f)
        add_routes(self.api, f)

        # ---------------------------------------------------------------- aws only
        self.triggers = migration_triggers(self, f, self.databases) if config.is_aws else []
        self.backups = None
        if config.is_aws:
            self.backups = DatabaseBackups(
                self, "Backups", instances=self.databases.instances, vault_name_prefix=prefix.lower()
            )
            self.website.deploy_content(web_dir=bundling.REPO_ROOT / "web", api_url=self.api_url,
                                        metrics_url=config.metrics_url)  # fmt: skip

        # ---------------------------------------------------------------- alarms
        # Every alarm notifies the stack's alarm topic (context alarmEmail subscribes addresses).
        self.alarms = StackAlarms(self, "Alarms", name_prefix=prefix, emails=config.alarm_emails)
        self.alarms.functions(f)
        self.alarms.api(self.api.rest_api)
        self.alarms.adopt(self.inventory_queue.dlq_alarm, self.completion_queue.dlq_alarm)
        self.alarms.schedules(schedule_rules(self))
        self.reconciler.add_alarm(self.alarms)
        if config.is_aws:
            for db in (self.databases.order, self.databases.inventory):
                assert db.proxy is not None
                self.alarms.database_instance(
                    db.name.capitalize(), rds_instance(db), max_connections=self.databases.max_connections
                )
                self.alarms.database_proxy(
                    db.name.capitalize(),
                    db.proxy.db_proxy_name,
                    max_database_connections=self.databases.budgets[db.name].proxy_connections,
                )

        # ---------------------------------------------------------------- AWS FIS (opt-in)
        self.fis: FisExperiments | None = None
        if config.fis_experiments and config.fis_extension_layer_arn:
            self.fis = FisExperiments(
                self, "Fis", name_prefix=prefix, extension_layer_arn=config.fis_extension_layer_arn,
                target=f["InventoryReserve"], database=rds_instance(self.databases.inventory),
                stop_alarms=self._alarms_named(self.service_functions.stop_alarm_names),
                log_retention_days=config.log_retention_days)  # fmt: skip

        if config.is_local and config.hot_reload:
            cdk.Annotations.of(self).acknowledge_warning(
                "@aws-cdk/aws-lambda:codeFromBucketObjectVersionNotSpecified",
                "LocalStack hot reload: the 'hot-reload' bucket is a host directory mount, read at every cold start.",
            )

        self._outputs()
        acknowledge_cdk_providers(self, website_bucket=self.website.bucket)

    def _alarms_named(self, names: list[str]) -> list[cloudwatch.Alarm]:
        by_name = {}
        for alarm in self.alarms.alarms:
            resource = alarm.node.default_child
            if isinstance(resource, cloudwatch.CfnAlarm) and resource.alarm_name:
                by_name[resource.alarm_name] = alarm
        missing = [name for name in names if name not in by_name]
        if missing:
            raise ValueError(f"stop-condition alarms that are not alarms of the stack: {missing}")
        return [by_name[name] for name in names]

    def _outputs(self) -> None:
        """Every output, under its name from infra/outputs.py (which the readers import too)."""
        cfg, state = self.config, self.state
        values = {
            out.TARGET: cfg.target,
            out.API_URL: self.api_url,
            out.API_ID: self.api.rest_api_id,
            out.API_STAGE_NAME: cfg.stage_name,
            out.WEBSITE_URL: self.website.website_url,
            out.WEBSITE_BUCKET_NAME: self.website.bucket.bucket_name,
            out.ADMIN_API_KEY_ID: self.api.admin_api_key.key_id,
            out.INVENTORY_QUEUE_URL: self.inventory_queue.queue.queue_url,
            out.INVENTORY_DLQ_URL: self.inventory_queue.dlq.queue_url,
            out.COMPLETION_QUEUE_URL: self.completion_queue.queue.queue_url,
            out.COMPLETION_DLQ_URL: self.completion_queue.dlq.queue_url,
            out.IDEMPOTENCY_TABLE_NAME: state.idempotency_table.table_name,
            out.CIRCUIT_BREAKER_TABLE_NAME: state.circuit_breaker_table.table_name,
            out.GREMLIN_STATE_TABLE_NAME: state.gremlin_state_table.table_name,
            out.GREMLIN_PARAMETER_NAME: state.gremlin_parameter.parameter_name,
            # the run-time (app role) logins; the master secret is not an output
            out.ORDER_DB_SECRET_ARN: self.databases.order.app_secret.secret_arn,
            out.INVENTORY_DB_SECRET_ARN: self.databases.inventory.app_secret.secret_arn,
            out.ADMIN_KEY_SECRET_ARN: self.admin_key.secret_arn,
            out.LOG_GROUP_NAMES: Fn.join(",", [fn.log_group_name for fn in self.functions.values()]),
        }
        for key, fn in self.functions.items():
            values[out.FUNCTION_NAME_OUTPUTS[key]] = fn.function_name
        values.update(self.local_backup.outputs())
        if cfg.is_local:
            values[out.ADMIN_API_KEY] = cfg.admin_api_key
        if self.fis is not None:
            for scenario, template in self.fis.templates.items():
                values[out.FIS_TEMPLATE_OUTPUTS[scenario]] = template.attr_id
            values[out.FIS_LOG_GROUP_NAME] = self.fis.log_group.log_group_name
        for key, value in values.items():
            CfnOutput(self, key, value=value)
        if cfg.is_aws:
            CfnOutput(
                self,
                out.ADMIN_API_KEY_VALUE_COMMAND,
                value=Fn.join(
                    "",
                    [
                        "aws secretsmanager get-secret-value --query SecretString --output text --secret-id ",
                        self.admin_key.secret_arn,
                    ],
                ),
                description="Prints the generated admin API key (the API key and the functions use this secret)",
            )
