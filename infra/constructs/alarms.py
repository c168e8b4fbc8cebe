"""The alarm topic and every CloudWatch alarm of the stack.

`StackAlarms` creates one SNS topic (KMS-encrypted with a key CloudWatch may use, TLS-only
publishing) and an optional e-mail subscription per `alarmEmail` context address. Every alarm
is made through `StackAlarms.alarm(...)` (or `adopt(...)` for one made elsewhere, such as a
QueuePair's DLQ alarm), which adds the topic as its alarm action: no alarm is silent.

What is covered, and the helper that adds it:

| helper | alarms |
|---|---|
| `functions(...)` | per function: Errors ≥ 1 and Throttles ≥ 1 in 5 minutes |
| `api(...)` | stage 5XXError ≥ 5 in 5 minutes; stage Latency p99 > 2.5 s in 3 of 5 minutes |
| `adopt(...)` | DLQ depth (QueuePair: ≥ 1 visible message) |
| `schedules(...)` | per EventBridge schedule: FailedInvocations ≥ 1 (the target could not be invoked) |
| `database_instance(...)` | per RDS instance: CPUUtilization ≥ 80 % for 15 minutes; DatabaseConnections ≥ 70 % of max_connections |
| `database_proxy(...)` | per RDS Proxy: DatabaseConnections ≥ 90 % of what the proxy may open; borrow latency |

Adding a metric (an RDS Proxy, a new queue) is one `alarm(...)` call or a helper like the ones
below; tests/infra/test_infra_alarms.py checks that every alarm in the template notifies the topic.
"""  # noqa: E501 -- Markdown table rows

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_rds as rds
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.constructs.service_function import ServiceFunction
from infra.nag import acknowledge

GTE = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
GT = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD

FIVE_MINUTES = Duration.minutes(5)
# The order route answers within its 2 s inventory budget (+ its own work); a p99 above this
# means callers wait past the budget, i.e. the fallback is not protecting them.
API_P99_LATENCY_MS = 2500
API_5XX_PER_5_MINUTES = 5
DB_CPU_PERCENT = 80
DB_CONNECTIONS_SHARE = 0.7  # of max_connections: room to react before connections are refused
PROXY_CONNECTIONS_SHARE = 0.9  # of what the proxy may open: clients start waiting for a borrow
PROXY_BORROW_LATENCY_US = 100_000  # 100 ms to get a pooled connection


class StackAlarms(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, name_prefix: str, emails: Sequence[str] = ()) -> None:
        super().__init__(scope, construct_id)
        self.name_prefix = name_prefix
        self.alarms: list[cloudwatch.Alarm] = []

        # SNS encrypts with this key; CloudWatch must be able to use it to publish (an AWS-managed
        # aws/sns key would make every alarm notification fail).
        self.key = kms.Key(
            self,
            "TopicKey",
            description=f"{name_prefix}: encrypts the alarm topic",
            enable_key_rotation=True,
            pending_window=Duration.days(7),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublishToTheEncryptedTopic",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],  # in a key policy, "*" is this key
            )
        )
        self.topic = sns.Topic(
            self,
            "Topic",
            display_name=f"{name_prefix} alarms",
            master_key=self.key,
            enforce_ssl=True,
        )
        # Notifications SNS cannot deliver (a bouncing address) land here rather than vanish.
        self.undelivered = (
            sqs.Queue(
                self,
                "UndeliveredNotifications",
                encryption=sqs.QueueEncryption.SQS_MANAGED,
                enforce_ssl=True,
                retention_period=Duration.days(14),
            )
            if emails
            else None
        )
        for email in emails:
            self.topic.add_subscription(subscriptions.EmailSubscription(email, dead_letter_queue=self.undelivered))
        self._action = cw_actions.SnsAction(self.topic)
        if self.undelivered is not None:
            acknowledge(
                self.undelivered,
                "AwsSolutions-SQS3",
                "This queue is the dead-letter queue of the alarm topic's e-mail subscriptions (their "
                "SNS redrive policy points here), a use cdk-nag's SQS3 check does not recognise.",
            )
            self.alarm(
                "UndeliveredNotificationsAlarm",
                name="undelivered-alarm-notifications",
                description="SNS could not deliver alarm notifications to a subscribed address (they "
                "wait in the UndeliveredNotifications queue for 14 days): check the addresses.",
                metric=self.undelivered.metric_approximate_number_of_messages_visible(
                    period=FIVE_MINUTES, statistic="Maximum"
                ),
                threshold=1,
            )

    # ------------------------------------------------------------------ the one way to add an alarm
    def alarm(
        self,
        construct_id: str,
        *,
        name: str,
        description: str,
        metric: cloudwatch.IMetric,
        threshold: float,
        comparison: cloudwatch.ComparisonOperator = GTE,
        evaluation_periods: int = 1,
        datapoints_to_alarm: int | None = None,
        treat_missing_data: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
    ) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            alarm_name=f"{self.name_prefix}-{name}",
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=datapoints_to_alarm,
            treat_missing_data=treat_missing_data,
        )
        return self.adopt(alarm)

    def adopt(self, *alarms: cloudwatch.Alarm) -> cloudwatch.Alarm:
        """Route alarms made elsewhere (e.g. QueuePair.dlq_alarm) to the topic; returns the last."""
        for alarm in alarms:
            alarm.add_alarm_action(self._action)
            self.alarms.append(alarm)
        return alarms[-1]

    # ------------------------------------------------------------------ helpers
    def functions(self, functions: Mapping[str, ServiceFunction]) -> None:
        # Lambda's metrics with the FunctionName dimension alone aggregate every version and alias,
        # so these also watch what a SnapStart function's alias `live` runs (a failed restore is
        # an invocation error).
        for key, service_function in functions.items():
            fn, label = service_function.function, service_function.node.id
            self.alarm(
                f"{key}Errors",
                name=f"{label}-errors",
                description=f"{label}: the function raised errors (unhandled exceptions, timeouts or "
                "crashes) in the last 5 minutes. Its log group has the details.",
                metric=fn.metric_errors(period=FIVE_MINUTES, statistic="Sum"),
                threshold=1,
            )
            self.alarm(
                f"{key}Throttles",
                name=f"{label}-throttles",
                description=f"{label}: Lambda refused invocations for lack of concurrency in the last "
                "5 minutes (callers got 429/5xx, queue messages were delayed).",
                metric=fn.metric_throttles(period=FIVE_MINUTES, statistic="Sum"),
                threshold=1,
            )

    def api(self, rest_api: apigw.RestApi) -> None:
        stage = rest_api.deployment_stage
        self.alarm(
            "Api5xx",
            name="api-5xx",
            description=f"API stage answered {API_5XX_PER_5_MINUTES}+ server errors in 5 minutes "
            "(integration failures, function errors, health checks DOWN).",
            metric=stage.metric_server_error(period=FIVE_MINUTES, statistic="Sum"),
            threshold=API_5XX_PER_5_MINUTES,
        )
        self.alarm(
            "ApiLatencyP99",
            name="api-p99-latency",
            description=f"API p99 latency above {API_P99_LATENCY_MS} ms in 3 of 5 minutes: the order "
            "route's 2 s inventory budget is not protecting callers.",
            metric=stage.metric_latency(period=Duration.minutes(1), statistic="p99"),
            threshold=API_P99_LATENCY_MS,
            comparison=GT,
            evaluation_periods=5,
            datapoints_to_alarm=3,
        )

    def schedules(self, rules: Iterable[events.Rule]) -> None:
        for rule in rules:
            label = rule.node.id
            self.alarm(
                f"{label}FailedInvocations",
                name=f"{label}-failed-invocations",
                description=f"{label}: EventBridge could not invoke the schedule's target "
                "(permissions, throttling, a deleted function); the scheduled job did not run.",
                metric=cloudwatch.Metric(
                    namespace="AWS/Events",
                    metric_name="FailedInvocations",
                    dimensions_map={"RuleName": rule.rule_name},
                    period=FIVE_MINUTES,
                    statistic="Sum",
                ),
                threshold=1,
            )

    def database_instance(self, label: str, instance: rds.DatabaseInstance, *, max_connections: int) -> None:
        self.alarm(
            f"{label}DbCpu",
            name=f"{label.lower()}-db-cpu",
            description=f"{label} database: CPU at {DB_CPU_PERCENT}%+ for 15 minutes (burstable classes "
            "also run out of CPU credits).",
            metric=instance.metric_cpu_utilization(period=FIVE_MINUTES, statistic="Average"),
            threshold=DB_CPU_PERCENT,
            evaluation_periods=3,
        )
        threshold = int(max_connections * DB_CONNECTIONS_SHARE)
        self.alarm(
            f"{label}DbConnections",
            name=f"{label.lower()}-db-connections",
            description=f"{label} database: {threshold}+ open connections "
            f"({int(DB_CONNECTIONS_SHARE * 100)}% of max_connections {max_connections}); past the "
            "limit new connections are refused.",
            metric=instance.metric_database_connections(period=Duration.minutes(1), statistic="Maximum"),
            threshold=threshold,
            evaluation_periods=3,
            datapoints_to_alarm=2,
        )

    def database_proxy(self, label: str, proxy_name: str, *, max_database_connections: int) -> None:
        """RDS Proxy (AWS/RDS, dimension ProxyName): the pool nearly exhausted, borrowing slow."""

        def proxy_metric(metric_name: str, statistic: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace="AWS/RDS",
                metric_name=metric_name,
                dimensions_map={"ProxyName": proxy_name},
                period=Duration.minutes(1),
                statistic=statistic,
            )

        threshold = int(max_database_connections * PROXY_CONNECTIONS_SHARE)
        self.alarm(
            f"{label}ProxyConnections",
            name=f"{label.lower()}-proxy-db-connections",
            description=f"{label} RDS Proxy: {threshold}+ connections to the database "
            f"({int(PROXY_CONNECTIONS_SHARE * 100)}% of the {max_database_connections} it may open); "
            "clients start waiting to borrow one.",
            metric=proxy_metric("DatabaseConnections", "Maximum"),
            threshold=threshold,
            evaluation_periods=3,
            datapoints_to_alarm=2,
        )
        self.alarm(
            f"{label}ProxyBorrowLatency",
            name=f"{label.lower()}-proxy-borrow-latency",
            description=f"{label} RDS Proxy: borrowing a pooled connection took over "
            f"{PROXY_BORROW_LATENCY_US // 1000} ms on average for 3 minutes.",
            metric=proxy_metric("DatabaseConnectionsBorrowLatency", "Average"),
            threshold=PROXY_BORROW_LATENCY_US,
            comparison=GT,
            evaluation_periods=3,
        )


def schedule_rules(scope: Construct) -> list[events.Rule]:
    """Every EventBridge rule with a schedule in the stack of `scope` (created so far)."""
    stack = Stack.of(scope)
    return [
        node
        for node in stack.node.find_all()
        if isinstance(node, events.Rule)
        and isinstance(node.node.default_child, events.CfnRule)
        and node.node.default_child.schedule_expression
    ]
