"""Issue 17: every 15 minutes, both databases checked against each other and the DLQs.

Least privilege: the reader login of each database (`<service>_backup`, SELECT only — the
reconciler can report, never repair), `sqs:GetQueueAttributes` on the two DLQs and nothing else.
On AWS it runs in the databases' VPC with its own security group, which both instances admit on
the Postgres port (each service's own group admits only its service's functions).

Built into the given scope, the stack, so its resources keep their logical ids.
"""

from __future__ import annotations

from aws_cdk import Duration, Fn
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as events_targets
from constructs import Construct

from infra.constructs.alarms import StackAlarms
from infra.constructs.databases import POSTGRES_PORT, Databases
from infra.constructs.queue_pair import QueuePair
from infra.constructs.rds_instance import rds_instance
from infra.constructs.service_function import FunctionVpcPlacement
from infra.constructs.service_functions import FunctionFactory

RECONCILE_EVERY = Duration.minutes(15)
RECONCILE_STALE_MINUTES = 5  # an order PENDING/QUEUED for longer is reported (the sweeper acts after 1)


class Reconciler:
    def __init__(
        self,
        scope: Construct,
        factory: FunctionFactory,
        *,
        databases: Databases,
        inventory_queue: QueuePair,
        completion_queue: QueuePair,
    ) -> None:
        order_db, inventory_db = databases.order, databases.inventory
        dlqs = {"inventory": inventory_queue.dlq, "completion": completion_queue.dlq}
        placement = None
        if order_db.function_placement is not None:
            security_group = ec2.SecurityGroup(
                scope,
                "ReconcileSg",
                vpc=order_db.function_placement.vpc,
                allow_all_outbound=True,
                description="Valerix reconcile function (Postgres to both databases, HTTPS to SQS/Secrets Manager)",
            )
            placement = FunctionVpcPlacement(
                vpc=order_db.function_placement.vpc,
                subnets=order_db.function_placement.subnets,
                security_group=security_group,
            )
            for db in (order_db, inventory_db):
                rds_instance(db).connections.allow_from(
                    security_group, ec2.Port.tcp(POSTGRES_PORT), f"Postgres from the reconcile function ({db.name})"
                )
        fn = self.function = factory.function(
            "Reconcile",
            {
                "ORDER_DB_SECRET_ARN": order_db.reader_secret.secret_arn,
                "INVENTORY_DB_SECRET_ARN": inventory_db.reader_secret.secret_arn,
                "DLQ_URLS": Fn.join(",", [f"{name}={dlq.queue_url}" for name, dlq in dlqs.items()]),
                "RECONCILE_STALE_MINUTES": str(RECONCILE_STALE_MINUTES),
                **databases.tls_environment,
            },
            placement,
        )
        for db in (order_db, inventory_db):
            db.reader_secret.grant_read(fn.function)
        for dlq in dlqs.values():
            dlq.grant(fn.function, "sqs:GetQueueAttributes")
        # Read-only, so EventBridge's and Lambda's retries are harmless; the event is only the time.
        events.Rule(
            scope,
            "ReconcileSchedule",
            schedule=events.Schedule.rate(RECONCILE_EVERY),
            description="Valerix: reconcile order_db, inventory_db and the DLQs",
            targets=[
                events_targets.LambdaFunction(
                    fn.function,
                    event=events.RuleTargetInput.from_object({"source": "schedule"}),
                    retry_attempts=2,
                    max_event_age=Duration.hours(1),
                )
            ],
        )

    @staticmethod
    def add_alarm(alarms: StackAlarms) -> cloudwatch.Alarm:
        """The reconciler's findings (functions/reconcile/service.py: ReconcileRuns{outcome}); on
        the local cloud the Prometheus rule ReconcileProblems says the same."""
        return alarms.alarm(
            "ReconcileProblems",
            name="reconcile-problems",
            description="A reconciliation run found problems between order_db, inventory_db and the DLQs "
            "(missing or mismatched reservations, stock reserved without a confirmed order, orders stuck "
            "PENDING/QUEUED, dead letters). Nothing was repaired: the reconcile function's log names each "
            "order and queue (`python scripts/reconcile.py --aws` prints the report).",
            metric=cloudwatch.Metric(
                namespace="Valerix",
                metric_name="ReconcileRuns",
                statistic="Sum",
                period=RECONCILE_EVERY,
                dimensions_map={"service": "reconcile", "outcome": "problems"},
            ),
            threshold=1,
        )
