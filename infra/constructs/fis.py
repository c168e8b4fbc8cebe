"""AWS FIS experiment templates equivalent to the gremlin's scenarios (issue 17 item 5, target=aws).

Context `fisExperiments=true` (with `fisExtensionLayerArn`) adds them; off by default, because
the Lambda fault actions need the AWS FIS Lambda extension inside the targeted function: a
layer plus `AWS_LAMBDA_EXEC_WRAPPER=/opt/aws-fis/bootstrap`, which wraps every invocation and
polls S3 for fault configurations even when no experiment runs. A production stack that never
runs experiments should not carry that wrapper; with the flag off the template is unchanged.

| template | gremlin scenario | FIS action (on the inventory reservation function) |
|---|---|---|
| `latency` | latency, 5 s, every request | `aws:lambda:invocation-add-delay` 5000 ms, 100 % |
| `errors` | error 500 | `aws:lambda:invocation-error`, code not run, 50 % |
| `crash` | crash `after-commit`, every 4th | `aws:lambda:invocation-error` after the code ran, 25 % |
| `database-outage` | database unreachable | `aws:rds:reboot-db-instances` (the inventory database) |

`crash` is the Schrödinger case: with `preventExecution=false` the reservation commits, then its
caller gets an error, and stock must still move exactly once.

The gremlin's faults target the inventory reservation (the synchronous call the order makes
under its 2 s budget), so the extension goes on that one function only. The HTTP-integration
action (`aws:lambda:invocation-http-integration-response`) is not used: no gremlin scenario
changes a public API answer, and every public 5xx would trip the `api-5xx` stop condition.

Every template stops on the alarms a gremlin setting may name as its stop condition
(GREMLIN_STOP_ALARMS: a DLQ not empty, API 5xx, API p99 latency): a fault the order flow does
not absorb ends the experiment, as it switches the gremlin off. Experiments log to their own
log group. The experiment role may write and delete fault configurations under one prefix of
the configuration bucket, read the targeted function's configuration, reboot the inventory
database, and set up the log delivery — nothing else; it trusts FIS for this account only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from aws_cdk import CfnElement, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_fis as fis
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.constructs.access_logs import access_logs_bucket
from infra.constructs.service_function import ServiceFunction, retention_days
from infra.nag import acknowledge

CONFIG_PREFIX = "FisConfigs"  # the S3 folder FIS writes fault configurations to, the extension reads
EXTENSION_WRAPPER = "/opt/aws-fis/bootstrap"
# The extension checks S3 for a new configuration before an invocation for up to this long: a
# fault applies from the next invocation instead of the next background poll (AWS recommends a
# non-zero value with preventExecution).
EXTENSION_POLL_MAX_WAIT_MS = "2000"
EXPERIMENT_DURATION = "PT5M"  # ISO 8601, as the FIS API takes it
LATENCY_MS = 5000  # the gremlin's default delayMs; under the reservation's 75 s timeout
# CloudWatch Logs log delivery (FIS experiment logging): no resource-level permissions.
LOG_DELIVERY_ACTIONS = [
    "logs:CreateLogDelivery",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
]


@dataclass(frozen=True)
class Scenario:
    name: str  # template key: infra.outputs.FIS_TEMPLATE_OUTPUTS[name]
    description: str
    action_id: str
    parameters: Mapping[str, str] = field(default_factory=dict)


LAMBDA_SCENARIOS = (
    Scenario(
        "latency",
        "Gremlin latency: every inventory reservation starts 5 s late (the order answers QUEUED within its 2 s budget)",
        "aws:lambda:invocation-add-delay",
        {"startupDelayMilliseconds": str(LATENCY_MS), "invocationPercentage": "100"},
    ),
    Scenario(
        "errors",
        "Gremlin error: half the inventory reservations fail without running (the order falls back to the queue)",
        "aws:lambda:invocation-error",
        {"preventExecution": "true", "invocationPercentage": "50"},
    ),
    Scenario(
        "crash",
        "Gremlin crash after-commit: a quarter of the reservations commit, then the caller "
        "gets an error (stock must still move once)",
        "aws:lambda:invocation-error",
        {"preventExecution": "false", "invocationPercentage": "25"},
    ),
)
DATABASE_OUTAGE = Scenario(
    "database-outage",
    "Gremlin database unreachable: the inventory database reboots (orders queue, then complete once it is back)",
    "aws:rds:reboot-db-instances",
    {"forceFailover": "false"},
)


class FisExperiments(Construct):
    """The configuration bucket, the extension on `target`, the role, the log group, the templates."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name_prefix: str,
        extension_layer_arn: str,
        target: ServiceFunction,
        database: rds.DatabaseInstance,
        stop_alarms: Sequence[cloudwatch.Alarm],
        log_retention_days: int,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        fn = target.function

        # ------------------------------------------------------------ configuration bucket
        # Kept on teardown (it is not empty: a bucket with objects cannot be deleted by CloudFormation).
        access_logs = access_logs_bucket(
            self, "ConfigAccessLogs", removal_policy=RemovalPolicy.RETAIN, serves="the FIS configuration bucket"
        )
        self.config_bucket = s3.Bucket(
            self, "ConfigBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="fis-config/",
            # FIS deletes a configuration when its experiment ends; a leftover (a stopped
            # experiment) is stale after minutes and the extension ignores it.
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(1))],
            removal_policy=RemovalPolicy.DESTROY,
        )  # fmt: skip
        self.config_location = f"arn:{stack.partition}:s3:::{self.config_bucket.bucket_name}/{CONFIG_PREFIX}/"

        # ------------------------------------------------------------ the extension in the target
        fn.add_layers(lambda_.LayerVersion.from_layer_version_arn(self, "ExtensionLayer", extension_layer_arn))
        fn.add_environment("AWS_LAMBDA_EXEC_WRAPPER", EXTENSION_WRAPPER)
        fn.add_environment("AWS_FIS_CONFIGURATION_LOCATION", self.config_location)
        fn.add_environment("AWS_FIS_POLL_MAX_WAIT_MILLISECONDS", EXTENSION_POLL_MAX_WAIT_MS)
        # The extension runs with the function's role: it lists and reads the configurations.
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="FisExtensionListsConfigurations",
                actions=["s3:ListBucket"],
                resources=[self.config_bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{CONFIG_PREFIX}/*"]}},
            )
        )
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="FisExtensionReadsConfigurations",
                actions=["s3:GetObject"],
                resources=[self.config_bucket.arn_for_objects(f"{CONFIG_PREFIX}/*")],
            )
        )

        # ------------------------------------------------------------ experiment log + role
        self.log_group = logs.LogGroup(
            self, "ExperimentLogs", retention=retention_days(log_retention_days), removal_policy=RemovalPolicy.DESTROY
        )
        self.role = iam.Role(
            self, "ExperimentRole",
            description=f"{name_prefix}: AWS FIS experiments (inventory reservation faults, inventory DB reboot)",
            assumed_by=iam.ServicePrincipal("fis.amazonaws.com", conditions={
                "StringEquals": {"aws:SourceAccount": stack.account},
                "ArnLike": {"aws:SourceArn": stack.format_arn(service="fis", resource="experiment",
                                                              resource_name="*")},
            }),
        )  # fmt: skip
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteFaultConfigurations",
                actions=["s3:PutObject", "s3:DeleteObject"],
                resources=[self.config_bucket.arn_for_objects(f"{CONFIG_PREFIX}/*")],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadTheTargetFunction", actions=["lambda:GetFunction"], resources=[fn.function_arn]
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="RebootTheInventoryDatabase",
                actions=["rds:RebootDBInstance", "rds:DescribeDBInstances"],
                resources=[database.instance_arn],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(sid="DeliverExperimentLogs", actions=LOG_DELIVERY_ACTIONS, resources=["*"])
        )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5[Resource::*]",
            "Only the CloudWatch Logs log-delivery actions FIS needs to write the experiment log "
            "(CreateLogDelivery, PutResourcePolicy, DescribeResourcePolicies, DescribeLogGroups) have "
            "Resource *: they do not support resource-level permissions.",
        )
        bucket_resource = self.config_bucket.node.default_child
        assert isinstance(bucket_resource, CfnElement)  # a typing guard: an s3.Bucket's is
        config_objects = (
            f"AwsSolutions-IAM5[Resource::<{stack.resolve(stack.get_logical_id(bucket_resource))}"
            f".Arn>/{CONFIG_PREFIX}/*]"
        )
        acknowledge(
            self.role,
            config_objects,
            "FIS writes and deletes one fault-configuration object per experiment under the "
            f"{CONFIG_PREFIX}/ prefix of its own configuration bucket; the object names are FIS's.",
        )
        acknowledge(
            target.role,
            config_objects,
            "The FIS Lambda extension reads the fault configurations (GetObject only) under the "
            f"{CONFIG_PREFIX}/ prefix of the FIS configuration bucket; the object names are FIS's.",
        )

        # ------------------------------------------------------------ templates
        stop_conditions = [
            fis.CfnExperimentTemplate.ExperimentTemplateStopConditionProperty(
                source="aws:cloudwatch:alarm", value=alarm.alarm_arn
            )
            for alarm in stop_alarms
        ]
        log_configuration = fis.CfnExperimentTemplate.ExperimentTemplateLogConfigurationProperty(
            log_schema_version=2,
            # typed Any in the L1 (a struct would be written with a camelCase key): CloudFormation's names
            cloud_watch_logs_configuration={"LogGroupArn": self.log_group.log_group_arn},
        )
        options = fis.CfnExperimentTemplate.ExperimentTemplateExperimentOptionsProperty(
            account_targeting="single-account", empty_target_resolution_mode="fail"
        )
        self.templates: dict[str, fis.CfnExperimentTemplate] = {}

        def template(
            scenario: Scenario, target_name: str, resource_type: str, arn: str, action_target: str, duration: str | None
        ) -> None:
            parameters = {**scenario.parameters, **({"duration": duration} if duration else {})}
            self.templates[scenario.name] = fis.CfnExperimentTemplate(
                self, f"Template-{scenario.name}",
                description=scenario.description,
                role_arn=self.role.role_arn,
                stop_conditions=stop_conditions,
                targets={target_name: fis.CfnExperimentTemplate.ExperimentTemplateTargetProperty(
                    resource_type=resource_type, selection_mode="ALL", resource_arns=[arn])},
                actions={scenario.name: fis.CfnExperimentTemplate.ExperimentTemplateActionProperty(
                    action_id=scenario.action_id, description=scenario.description, parameters=parameters,
                    targets={action_target: target_name})},
                log_configuration=log_configuration,
                experiment_options=options,
                tags={"Name": f"{name_prefix}-{scenario.name}"},
            )  # fmt: skip

        for scenario in LAMBDA_SCENARIOS:
            template(
                scenario, "InventoryReserve", "aws:lambda:function", fn.function_arn, "Functions", EXPERIMENT_DURATION
            )
        template(DATABASE_OUTAGE, "InventoryDatabase", "aws:rds:db", database.instance_arn, "DBInstances", None)
