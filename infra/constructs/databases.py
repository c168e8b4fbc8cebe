"""The two service databases (`order_db`, `inventory_db`) and their Secrets Manager secrets.

* target=aws: a VPC (public / private-with-egress "app" / private-isolated "data" subnets),
  two encrypted RDS PostgreSQL instances in the isolated subnets with generated credentials,
  automated backups, one security group per database that only admits its own service's
  functions, VPC endpoints for DynamoDB (gateway), SQS, SSM and Secrets Manager (interface),
  and VPC flow logs.
* target=local: no VPC and no RDS; two secrets with the same JSON shape as RDS's
  (`{host, port, username, password, dbname, engine}`) pointing at the local Postgres
  servers (context `orderDbSecret` / `inventoryDbSecret`, written by `make up`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aws_cdk import Duration, RemovalPolicy, SecretValue
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.config import ValerixConfig
from infra.constructs.service_function import FunctionVpcPlacement, retention_days
from infra.nag import acknowledge

POSTGRES_PORT = 5432
POSTGRES_VERSION = rds.PostgresEngineVersion.VER_16_13

_SECRET_ROTATION_REASON = (
    "Not rotated automatically yet: the functions already re-read the secret after a failed login "
    "(functions/common/db.py), but the hosted single-user rotation function (an application in the "
    "VPC that the database's security group admits) is not deployed. Until it is, rotate by hand: "
    "ALTER ROLE with a new password, then put the same password in this secret."
)


@dataclass
class ServiceDatabase:
    name: str  # order | inventory
    dbname: str
    secret: secretsmanager.ISecret
    instance: rds.DatabaseInstance | None = None
    function_placement: FunctionVpcPlacement | None = None


class Databases(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: ValerixConfig) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        self.vpc: ec2.Vpc | None = None
        if config.is_aws:
            self._build_network()
            self.order = self._rds_database("order", "order_db")
            self.inventory = self._rds_database("inventory", "inventory_db")
        else:
            self.order = self._local_database("order", "order_db", config.order_db_secret)
            self.inventory = self._local_database("inventory", "inventory_db", config.inventory_db_secret)

    # ------------------------------------------------------------------ local
    def _local_database(self, name: str, dbname: str, value: dict[str, Any]) -> ServiceDatabase:
        secret = secretsmanager.Secret(
            self,
            f"{name.capitalize()}DbSecret",
            secret_name=f"{self.config.stack_name}/{name}-db",
            description=f"Connection to the local Postgres server holding {dbname} (RDS secret shape)",
            secret_string_value=SecretValue.unsafe_plain_text(json.dumps(value)),
            removal_policy=RemovalPolicy.DESTROY,
        )
        acknowledge(
            secret,
            "AwsSolutions-SMG4",
            "Local target: the value points at a local Postgres server that `make up` creates with "
            "these credentials on loopback; no rotation function could reach it, and the local cloud "
            "owns the password.",
        )
        return ServiceDatabase(name=name, dbname=dbname, secret=secret)

    # ------------------------------------------------------------------ aws
    def _build_network(self) -> None:
        if self.config.nat_gateways < 1:
            raise ValueError(
                "natGateways must be >= 1: the order API calls the public REST API of inventory"
            )
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=self.config.nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="Public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(name="App", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=22),
                ec2.SubnetConfiguration(name="Data", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24),
            ],
        )
        flow_log_group = logs.LogGroup(
            self,
            "VpcFlowLogGroup",
            retention=retention_days(self.config.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_log_group),
            traffic_type=ec2.FlowLogTrafficType.REJECT,
        )
        self.app_subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        self.data_subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)

        # Keep AWS API traffic of the functions inside the VPC.
        self.vpc.add_gateway_endpoint("DynamoDbEndpoint", service=ec2.GatewayVpcEndpointAwsService.DYNAMODB)
        for endpoint_id, service in (
            ("SqsEndpoint", ec2.InterfaceVpcEndpointAwsService.SQS),
            ("SsmEndpoint", ec2.InterfaceVpcEndpointAwsService.SSM),
            ("SecretsManagerEndpoint", ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER),
        ):
            endpoint = self.vpc.add_interface_endpoint(
                endpoint_id, service=service, subnets=self.app_subnets, private_dns_enabled=True
            )
            acknowledge(
                endpoint,
                "AwsSolutions-EC23",
                "Interface endpoint security group: CDK admits HTTPS (443) from the VPC CIDR only "
                "(a token cdk-nag cannot resolve), never 0.0.0.0/0.",
            )

    def _rds_database(self, name: str, dbname: str) -> ServiceDatabase:
        assert self.vpc is not None
        label = name.capitalize()
        function_sg = ec2.SecurityGroup(
            self,
            f"{label}FunctionsSg",
            vpc=self.vpc,
            description=f"Lambda functions of the {name} service",
            allow_all_outbound=True,
        )
        db_sg = ec2.SecurityGroup(
            self,
            f"{label}DbSg",
            vpc=self.vpc,
            description=f"RDS {dbname}: Postgres from the {name} functions only",
            allow_all_outbound=False,
        )
        db_sg.add_ingress_rule(
            function_sg, ec2.Port.tcp(POSTGRES_PORT), f"Postgres from the {name} functions"
        )

        instance_identifier = f"{self.config.stack_name}-{name}-db".lower()
        # Pre-create the exported log groups so they get a retention (no LogRetention custom resource).
        log_groups = [
            logs.LogGroup(
                self,
                f"{label}DbLog{kind.capitalize()}",
                log_group_name=f"/aws/rds/instance/{instance_identifier}/{kind}",
                retention=retention_days(self.config.log_retention_days),
                removal_policy=RemovalPolicy.DESTROY,
            )
            for kind in ("postgresql", "upgrade")
        ]
        instance = rds.DatabaseInstance(
            self,
            f"{label}Db",
            instance_identifier=instance_identifier,
            engine=rds.DatabaseInstanceEngine.postgres(version=POSTGRES_VERSION),
            instance_type=ec2.InstanceType(self.config.db_instance_class),
            vpc=self.vpc,
            vpc_subnets=self.data_subnets,
            security_groups=[db_sg],
            port=POSTGRES_PORT,
            database_name=dbname,
            credentials=rds.Credentials.from_generated_secret(
                "valerix", secret_name=f"{self.config.stack_name}/{name}-db"
            ),
            storage_encrypted=True,
            storage_type=rds.StorageType.GP3,
            allocated_storage=20,
            max_allocated_storage=100,
            multi_az=self.config.db_multi_az,
            publicly_accessible=False,
            auto_minor_version_upgrade=True,
            backup_retention=Duration.days(7),
            preferred_backup_window="02:00-02:30",
            delete_automated_backups=False,
            copy_tags_to_snapshot=True,
            deletion_protection=self.config.db_deletion_protection,
            removal_policy=RemovalPolicy.SNAPSHOT,
            cloudwatch_logs_exports=["postgresql", "upgrade"],
        )
        for log_group in log_groups:
            instance.node.add_dependency(log_group)

        acknowledge(
            instance,
            "AwsSolutions-RDS11",
            "Standard Postgres port: the instance is in isolated subnets and its security group "
            "admits only the service's own functions; a custom port adds no protection here.",
        )
        if not self.config.db_multi_az:
            acknowledge(
                instance,
                "AwsSolutions-RDS3",
                "Single-AZ by default to keep the demo affordable; set context dbMultiAz=true for "
                "production. Backups every 4 h + a daily copy to a second vault cover recovery.",
            )
        if not self.config.db_deletion_protection:
            acknowledge(
                instance,
                "AwsSolutions-RDS10",
                "Deletion protection was switched off explicitly with context "
                "dbDeletionProtection=false (throwaway environment); a final snapshot is still taken.",
            )
        assert instance.secret is not None
        # instance.secret is the attachment; the generated DatabaseSecret is the "Secret" child.
        acknowledge(instance.node.find_child("Secret"), "AwsSolutions-SMG4", _SECRET_ROTATION_REASON)
        return ServiceDatabase(
            name=name,
            dbname=dbname,
            secret=instance.secret,
            instance=instance,
            function_placement=FunctionVpcPlacement(
                vpc=self.vpc, subnets=self.app_subnets, security_group=function_sg
            ),
        )

    @property
    def instances(self) -> list[rds.DatabaseInstance]:
        return [db.instance for db in (self.order, self.inventory) if db.instance is not None]
