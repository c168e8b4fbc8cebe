"""One Lambda function with its own role, its own log group and the Powertools environment."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aws_cdk import Annotations, Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.nag import acknowledge

POWERTOOLS_METRICS_NAMESPACE = "Valerix"
RUNTIME = lambda_.Runtime.PYTHON_3_12
# Why not the newest Python runtime (cdk-nag L1 / LambdaLatestVersion).
_RUNTIME_REASON = (
    "python3.12 is a supported Lambda runtime and the one the AWS bundle is built for: its "
    "wheels are CPython 3.12 manylinux builds (infra/bundling.py LAMBDA_PYTHON_VERSION). A newer "
    "runtime needs the bundle, the code checks and the parity test moved with it (issue 15 item 4)."
)

_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
}


def retention_days(days: int) -> logs.RetentionDays:
    try:
        return _RETENTION[days]
    except KeyError:
        raise ValueError(f"logRetentionDays must be one of {sorted(_RETENTION)}, got {days}") from None


# Lambda SnapStart (python3.12+): INIT runs once when a version is published, and new execution
# environments of that version resume from a snapshot of it instead of importing FastAPI,
# pydantic and boto3 again (README, "aws_init_ms"). Only published versions use it ($LATEST
# never does), so a SnapStart function gets `current_version` and the alias `live`, which API
# Gateway invokes (routes.py). Checked against what AWS documents SnapStart cannot be combined
# with (CDK's own validation covers the first three at synth):
# - runtime: python3.12 is supported (3.12 and later);
# - EFS: none is mounted;
# - ephemeral storage: the default 512 MB (SnapStart refuses more);
# - provisioned concurrency: none (it cannot be combined with SnapStart); reserved concurrency
#   is a function setting and caps all versions together, so the connection budget
#   (db_limits.py) holds as before, and INIT opens no database connection to snapshot;
# - X-Ray active tracing, VPC attachment, x86_64: supported (X-Ray shows a Restore subsegment);
# - uniqueness: the snapshot holds `random`'s state; the handlers re-seed it after every restore
#   (functions/common/snapstart.py, which lists what else INIT creates and why it is safe).
# Old versions are deleted when a deploy publishes a new one (DESTROY): a snapshot is billed
# while its version is active, and the alias is the only thing that invokes a version.
SNAP_START = lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS
SNAP_START_ALIAS = "live"


@dataclass
class FunctionVpcPlacement:
    vpc: ec2.IVpc
    subnets: ec2.SubnetSelection
    security_group: ec2.ISecurityGroup


@dataclass
class ServiceFunctionProps:
    service: str  # POWERTOOLS_SERVICE_NAME: order | inventory | gremlin
    handler: str  # functions.<service>.handler.<name>
    function_name: str
    description: str
    code: lambda_.Code
    timeout: Duration
    memory_size: int = 512
    environment: dict[str, str] = field(default_factory=dict)
    log_retention_days: int = 14
    vpc: FunctionVpcPlacement | None = None
    # X-Ray active tracing (target=aws). Off: POWERTOOLS_TRACE_DISABLED=true, so the Powertools
    # Tracer is a no-op (LocalStack community has no X-Ray).
    tracing: bool = False
    # Lambda SnapStart (target=aws, the API functions): see SNAP_START below.
    snap_start: bool = False


class ServiceFunction(Construct):
    """A python3.12 Lambda function, least-privilege role, log group with retention.

    The role starts empty: it can only write to this function's own log group (and manage
    its VPC network interfaces when it runs in a VPC). Everything else is granted by the
    stack through the resources' own `grant*` methods.
    """

    def __init__(self, scope: Construct, construct_id: str, props: ServiceFunctionProps) -> None:
        super().__init__(scope, construct_id)
        self.service = props.service

        self.log_group = logs.LogGroup(
            self,
            "LogGroup",
            log_group_name=f"/aws/lambda/{props.function_name}",
            retention=retention_days(props.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )

        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Execution role of {props.function_name} (least privilege)",
        )
        self.log_group.grant_write(self.role)

        environment = {
            "POWERTOOLS_SERVICE_NAME": props.service,
            "POWERTOOLS_METRICS_NAMESPACE": POWERTOOLS_METRICS_NAMESPACE,
            "POWERTOOLS_LOG_LEVEL": "INFO",
            "POWERTOOLS_TRACE_DISABLED": "false" if props.tracing else "true",
            # No pydantic plugins are used: without this, the first model pydantic builds scans
            # the entry points of every distribution in the bundle (part of every cold start).
            "PYDANTIC_DISABLE_PLUGINS": "__all__",
            **props.environment,
        }

        vpc_kwargs: dict[str, Any] = {}
        if props.vpc is not None:
            vpc_kwargs = {
                "vpc": props.vpc.vpc,
                "vpc_subnets": props.vpc.subnets,
                "security_groups": [props.vpc.security_group],
            }
            # Lambda needs these EC2 actions to attach the function to the VPC; they do not
            # support resource-level permissions (AWS documents Resource "*").
            self.role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="LambdaVpcNetworkInterfaces",
                    actions=[
                        "ec2:CreateNetworkInterface",
                        "ec2:DescribeNetworkInterfaces",
                        "ec2:DescribeSubnets",
                        "ec2:DeleteNetworkInterface",
                        "ec2:AssignPrivateIpAddresses",
                        "ec2:UnassignPrivateIpAddresses",
                    ],
                    resources=["*"],
                )
            )

        snap_start_kwargs: dict[str, Any] = {}
        if props.snap_start:
            snap_start_kwargs = {
                "snap_start": SNAP_START,
                "current_version_options": lambda_.VersionOptions(removal_policy=RemovalPolicy.DESTROY),
            }

        self.function = lambda_.Function(
            self,
            "Function",
            function_name=props.function_name,
            description=props.description,
            runtime=RUNTIME,
            architecture=lambda_.Architecture.X86_64,
            handler=props.handler,
            code=props.code,
            timeout=props.timeout,
            memory_size=props.memory_size,
            environment=environment,
            role=self.role,
            log_group=self.log_group,
            tracing=lambda_.Tracing.ACTIVE if props.tracing else lambda_.Tracing.DISABLED,
            **vpc_kwargs,
            **snap_start_kwargs,
        )
        # The function must not start before its role can write logs.
        self.function.node.add_dependency(self.role)
        # What API Gateway invokes: the alias of the published version where SnapStart is on.
        self.alias: lambda_.Alias | None = None
        if props.snap_start:
            self.alias = lambda_.Alias(
                self, "Alias", alias_name=SNAP_START_ALIAS, version=self.function.current_version
            )
            Annotations.of(self.function).acknowledge_warning(
                "@aws-cdk/aws-lambda:snapStartRequirePublish",
                f"Published: current_version, invoked through the alias {SNAP_START_ALIAS!r}.",
            )

        for rule in ("AwsSolutions-L1", "Serverless-LambdaLatestVersion"):
            acknowledge(self.function, rule, _RUNTIME_REASON)
        # Both grants below are CDK's own (VPC attachment, Tracing.ACTIVE); one acknowledgment
        # per construct and rule, so the reasons are joined.
        wildcard_reasons = []
        if props.vpc is not None:
            wildcard_reasons.append(
                "The ec2 network-interface actions a VPC-attached Lambda needs do not support "
                "resource-level permissions; no data resource is involved."
            )
        if props.tracing:
            wildcard_reasons.append(
                "xray:PutTraceSegments and xray:PutTelemetryRecords (active tracing) do not support "
                "resource-level permissions; they only send this function's own trace data."
            )
        if wildcard_reasons:
            acknowledge(self.role, "AwsSolutions-IAM5[Resource::*]", " ".join(wildcard_reasons))

    @property
    def invoke_target(self) -> lambda_.IFunction:
        """What a caller (API Gateway) invokes: the SnapStart alias, else the function."""
        return self.alias if self.alias is not None else self.function

    @property
    def function_name(self) -> str:
        return self.function.function_name

    @property
    def log_group_name(self) -> str:
        return self.log_group.log_group_name
