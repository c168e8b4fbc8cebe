"""The two service databases (`order_db`, `inventory_db`) and their Secrets Manager secrets.

* target=aws: a VPC (public / private-with-egress "app" / private-isolated "data" subnets),
  two encrypted RDS PostgreSQL instances in the isolated subnets with generated credentials,
  automated backups, one security group per database that only admits its own service's
  functions, VPC endpoints for DynamoDB (gateway), SQS, SSM and Secrets Manager (interface),
  and VPC flow logs.
* target=local: no VPC and no RDS; the master secrets have the same JSON shape as RDS's
  (`{host, port, username, password, dbname, engine}`) and point at the local Postgres
  servers (context `orderDbSecret` / `inventoryDbSecret`, written by `make up`).

Least privilege (functions/common/roles.py): besides the master login, each database has three
role secrets in the same shape, with passwords Secrets Manager generates (never in the template,
the context or a log): `owner` (`<name>_owner`: migrations, restore), `app` (`<name>_app`: every
run-time function) and `reader` (`<name>_backup`: backup dumps). On aws they are
`rds.DatabaseSecret`s attached to the instance (host/port/engine filled in by the attachment);
locally their template carries the local server's host/port. The migrate function creates the
roles from them with the master login, which nothing else reads.

TLS (`tls_environment`): aws verifies the server certificate against the CA bundle shipped in
the function code (DB_TLS=verify-full, DB_CA_BUNDLE: the RDS CAs for the instances, Amazon Root
CA 1-4 for the proxies' ACM certificates); local says DB_TLS=disable explicitly.

Connections that hold under a burst (issue 15; the arithmetic is in db_limits.py):

* Both targets: `max_connections` is the stack's number (`config.max_connections`), set on aws
  in the instances' parameter group and given to the local servers by `make up`. Every function
  that connects gets its reserved concurrency and DB_POOL_MAX from `db_limits.BUDGET`
  (`apply_connection_budget`), and synth fails when they do not fit.
* aws: one RDS Proxy per database in the data subnets, TLS required, in front of its instance.
  It logs in to the database with the **app** role's secret only (Secrets Manager auth), and the
  run-time functions (API, reservation, queue consumers, sweeper) connect to it with that same
  login (DB_PROXY_ENDPOINT replaces the secret's host). Their security group reaches the proxy,
  not the instance. The migrate, backup, restore and reconcile functions still connect straight
  to the instance, through their own security groups: they log in as the master, owner or
  reader role, which the proxy deliberately cannot use; they hold session advisory locks or long
  snapshots, which would pin a proxy connection for their whole run anyway; and they run a few
  times a day with reserved concurrency 1, which the budget counts as direct connections.
* Why not IAM authentication from the functions to the proxy: it would take the password out
  of the run-time functions, but the same code must log in with a password locally (no proxy,
  no IAM database auth in LocalStack community), so the IAM path would run on AWS only, never in
  a test that connects; and the direct functions need their passwords anyway. Switching later
  is contained: `iam_auth=True` on the proxy, `proxy.grant_connect(fn, "<service>_app")`, and
  `rds.generate_db_auth_token(...)` as the password in functions/common/db.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aws_cdk import Duration, RemovalPolicy, SecretValue
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.config import ValerixConfig
from infra.constructs import db_limits
from infra.constructs.service_function import FunctionVpcPlacement, ServiceFunction, retention_days
from infra.nag import acknowledge

POSTGRES_PORT = 5432
POSTGRES_VERSION = rds.PostgresEngineVersion.VER_16_13
# Path inside every function bundle (relative to the asset root; see functions/common/certs/).
RDS_CA_BUNDLE_PATH = "functions/common/certs/rds-ca-bundle.pem"
# Role secrets per database: label -> role name suffix (functions/common/roles.py)
ROLE_SUFFIXES = {"owner": "owner", "app": "app", "reader": "backup"}
# Characters left out of generated passwords: the ones RDS forbids (and that trip URLs/shells).
_PASSWORD_EXCLUDE = " %+~`#$&*()|[]{}:;<>?!'/@\"\\"  # noqa: S105 -- characters, not a password
# How long a client waits for a pooled database connection before the proxy refuses it; below
# the run-time functions' timeouts, and with the budget in db_limits it should never be reached.
PROXY_BORROW_TIMEOUT = Duration.seconds(10)

_SERVER_ROTATION_REASON = (
    "Not rotated automatically yet: the functions already re-read the secret after a failed login "
    "(functions/common/db.py), but the hosted single-user rotation function (an application in the "
    "VPC that the database's security group admits) is not deployed. Until it is, rotate by hand: "
    "ALTER ROLE with a new password, then put the same password in this secret."
)
_ROLE_ROTATION_REASON = (
    "Role password generated by Secrets Manager (32 characters), read only by the functions granted "
    "this secret; the migrate function sets the role's password from it on every deploy. Rotation "
    "needs the multi-user rotation Lambda, which is not deployed yet."
)


@dataclass
class ServiceDatabase:
    """One service's database and its four logins (grant each function only the one it uses)."""

    name: str  # order | inventory
    dbname: str
    master_secret: secretsmanager.ISecret  # bootstrap only: the migrate function
    owner_secret: secretsmanager.ISecret  # migrations, restore
    app_secret: secretsmanager.ISecret  # API, queue consumers, sweeper
    reader_secret: secretsmanager.ISecret  # backup dumps
    instance: rds.DatabaseInstance | None = None
    function_placement: FunctionVpcPlacement | None = None  # direct to the instance (migrate)
    proxy: rds.DatabaseProxy | None = None
    app_placement: FunctionVpcPlacement | None = None  # run-time functions: reaches the proxy only

    @property
    def secret(self) -> secretsmanager.ISecret:
        """The run-time login (the app role): what a new service function should get."""
        return self.app_secret

    def placement(self, login: str) -> FunctionVpcPlacement | None:
        """Where a function logging in as `login` runs: app -> beside the proxy, else direct."""
        return self.app_placement if login == "app" else self.function_placement


class Databases(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: ValerixConfig) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        self.vpc: ec2.Vpc | None = None
        # Fails synth (ConnectionBudgetError) before anything is built when the budget does not fit.
        self.max_connections = config.max_connections
        self.budgets = db_limits.check_budget(self.max_connections)
        if config.is_aws:
            self._build_network()
            self.parameter_group = rds.ParameterGroup(
                self,
                "DbParameters",
                engine=rds.DatabaseInstanceEngine.postgres(version=POSTGRES_VERSION),
                description=f"{config.stack_name}: max_connections pinned for the connection budget "
                "(infra/constructs/db_limits.py)",
                parameters={"max_connections": str(self.max_connections)},
            )
            self.order = self._rds_database("order", "order_db")
            self.inventory = self._rds_database("inventory", "inventory_db")
        else:
            self.order = self._local_database("order", "order_db", config.order_db_secret)
            self.inventory = self._local_database("inventory", "inventory_db", config.inventory_db_secret)

    @property
    def tls_environment(self) -> dict[str, str]:
        """Environment of every function that connects to a database."""
        if self.config.is_aws:
            return {"DB_TLS": "verify-full", "DB_CA_BUNDLE": RDS_CA_BUNDLE_PATH}
        return {"DB_TLS": "disable"}  # the local Postgres servers listen on loopback, without TLS

    # ------------------------------------------------------------------ local
    def _local_database(self, name: str, dbname: str, value: dict[str, Any]) -> ServiceDatabase:
        master = secretsmanager.Secret(
            self,
            f"{name.capitalize()}DbSecret",
            secret_name=f"{self.config.stack_name}/{name}-db",
            description=f"Master login of the local Postgres server holding {dbname} (RDS secret shape): "
            "read by the migrate function only, to create the service's roles",
            secret_string_value=SecretValue.unsafe_plain_text(json.dumps(value)),
            removal_policy=RemovalPolicy.DESTROY,
        )
        acknowledge(
            master,
            "AwsSolutions-SMG4",
            "Local target: the value points at a local Postgres server that `make up` creates with "
            "these credentials on loopback; no rotation function could reach it, and the local cloud "
            "owns the password.",
        )
        roles = {}
        for label, suffix in ROLE_SUFFIXES.items():
            endpoint = {k: value[k] for k in ("host", "port", "dbname", "engine") if k in value}
            secret = secretsmanager.Secret(
                self,
                f"{name.capitalize()}Db{label.capitalize()}Secret",
                secret_name=f"{self.config.stack_name}/{name}-db-{label}",
                description=f"{label} role of {dbname} (RDS secret shape; password generated by Secrets Manager)",
                generate_secret_string=secretsmanager.SecretStringGenerator(
                    secret_string_template=json.dumps({**endpoint, "username": f"{name}_{suffix}"}),
                    generate_string_key="password",
                    password_length=32,
                    exclude_characters=_PASSWORD_EXCLUDE,
                ),
                removal_policy=RemovalPolicy.DESTROY,
            )
            acknowledge(secret, "AwsSolutions-SMG4", _ROLE_ROTATION_REASON)
            roles[label] = secret
        return ServiceDatabase(
            name=name,
            dbname=dbname,
            master_secret=master,
            owner_secret=roles["owner"],
            app_secret=roles["app"],
            reader_secret=roles["reader"],
        )

    # ------------------------------------------------------------------ aws
    def _build_network(self) -> None:
        if self.config.nat_gateways < 1:
            raise ValueError(
                "natGateways must be >= 1: functions in the VPC reach the Lambda, SQS, DynamoDB, SSM and "
                "Secrets Manager APIs through it"
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

    def _security_group(self, construct_id: str, description: str, *, outbound: bool) -> ec2.SecurityGroup:
        """A group in the stack's VPC; only the instance's and the proxy's are closed outbound
        (they answer, never call out), so a rule added later is the only path they get."""
        assert self.vpc is not None
        return ec2.SecurityGroup(self, construct_id, vpc=self.vpc, description=description, allow_all_outbound=outbound)

    def _rds_database(self, name: str, dbname: str) -> ServiceDatabase:
        assert self.vpc is not None
        label = name.capitalize()
        function_sg = self._security_group(
            f"{label}FunctionsSg",
            f"Functions of the {name} service that connect to the instance directly (migrate)",
            outbound=True,
        )
        db_sg = self._security_group(
            f"{label}DbSg",
            f"RDS {dbname}: Postgres from its proxy and the functions that connect directly",
            outbound=False,
        )
        db_sg.add_ingress_rule(function_sg, ec2.Port.tcp(POSTGRES_PORT), f"Postgres from the {name} migrate function")
        app_sg = self._security_group(
            f"{label}AppFunctionsSg",
            f"Run-time Lambda functions of the {name} service (reach the database through its proxy)",
            outbound=True,
        )
        proxy_sg = self._security_group(
            f"{label}ProxySg",
            f"RDS Proxy of {dbname}: Postgres from the {name} run-time functions, to the instance",
            outbound=False,
        )
        proxy_sg.add_ingress_rule(app_sg, ec2.Port.tcp(POSTGRES_PORT), f"Postgres from the {name} run-time functions")
        # proxy -> instance (egress here, ingress on db_sg): added by ProxyTarget.from_instance below

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
            parameter_group=self.parameter_group,
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
        acknowledge(instance.node.find_child("Secret"), "AwsSolutions-SMG4", _SERVER_ROTATION_REASON)
        roles = {}
        for label, suffix in ROLE_SUFFIXES.items():
            secret = rds.DatabaseSecret(
                self,
                f"{name.capitalize()}Db{label.capitalize()}Secret",
                username=f"{name}_{suffix}",
                dbname=dbname,
                secret_name=f"{self.config.stack_name}/{name}-db-{label}",
                exclude_characters=_PASSWORD_EXCLUDE,
            )
            acknowledge(secret, "AwsSolutions-SMG4", _ROLE_ROTATION_REASON)
            # The attachment adds host, port and engine of the instance: the full RDS shape.
            roles[label] = secret.attach(instance)
        budget = self.budgets[name]
        proxy = rds.DatabaseProxy(
            self,
            f"{name.capitalize()}Proxy",
            db_proxy_name=f"{self.config.stack_name}-{name}".lower(),
            proxy_target=rds.ProxyTarget.from_instance(instance),
            secrets=[roles["app"]],  # the only login it can use: the run-time role
            vpc=self.vpc,
            vpc_subnets=self.data_subnets,
            security_groups=[proxy_sg],
            require_tls=True,
            iam_auth=False,  # why: module docstring
            client_password_auth_type=rds.ClientPasswordAuthType.POSTGRES_SCRAM_SHA_256,
            max_connections_percent=budget.proxy_percent,
            borrow_timeout=PROXY_BORROW_TIMEOUT,
            debug_logging=False,
        )
        return ServiceDatabase(
            name=name,
            dbname=dbname,
            master_secret=instance.secret,
            owner_secret=roles["owner"],
            app_secret=roles["app"],
            reader_secret=roles["reader"],
            instance=instance,
            function_placement=FunctionVpcPlacement(vpc=self.vpc, subnets=self.app_subnets, security_group=function_sg),
            proxy=proxy,
            app_placement=FunctionVpcPlacement(vpc=self.vpc, subnets=self.app_subnets, security_group=app_sg),
        )

    @property
    def instances(self) -> list[rds.DatabaseInstance]:
        return [db.instance for db in (self.order, self.inventory) if db.instance is not None]

    def apply_connection_budget(self, functions: Mapping[str, ServiceFunction]) -> None:
        """Reserved concurrency, DB_POOL_MAX and (aws) DB_PROXY_ENDPOINT of every function in
        db_limits.BUDGET, on both targets (the local servers have the same max_connections)."""
        missing = sorted(set(db_limits.BUDGET) - set(functions))
        if missing:
            raise db_limits.ConnectionBudgetError(
                f"db_limits.BUDGET names functions the stack does not have: {missing}"
            )
        databases = {"order": self.order, "inventory": self.inventory}
        for key, use in db_limits.BUDGET.items():
            fn = functions[key].function
            cfn = fn.node.default_child
            assert isinstance(cfn, lambda_.CfnFunction)
            cfn.reserved_concurrent_executions = use.environments
            if use.pooled:
                fn.add_environment("DB_POOL_MAX", str(use.connections))
            if use.via_proxy:
                (db,) = (databases[name] for name in use.databases)
                if db.proxy is not None:
                    fn.add_environment("DB_PROXY_ENDPOINT", db.proxy.endpoint)
