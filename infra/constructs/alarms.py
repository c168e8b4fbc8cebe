"""CloudWatch alarms on the functions (DLQ alarms live with their QueuePair)."""

from __future__ import annotations

from typing import Iterable

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_sns as sns
from constructs import Construct

from infra.constructs.service_function import ServiceFunction


class FunctionAlarms(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name_prefix: str,
        functions: dict[str, ServiceFunction],
        latency_function: ServiceFunction,
        latency_p99_threshold_ms: int = 3000,
        extra_alarms: Iterable[cloudwatch.IAlarm] = (),
        alarm_topic_arn: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.alarms: list[cloudwatch.Alarm] = []

        for key, service_function in functions.items():
            self.alarms.append(
                cloudwatch.Alarm(
                    self,
                    f"{key}Errors",
                    alarm_name=f"{name_prefix}-{service_function.node.id}-errors",
                    alarm_description=f"{service_function.node.id}: the function raised errors "
                    "(unhandled exceptions, timeouts or crashes) in the last 5 minutes.",
                    metric=service_function.function.metric_errors(
                        period=Duration.minutes(5), statistic="Sum"
                    ),
                    threshold=1,
                    evaluation_periods=1,
                    comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                    treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                )
            )

        self.order_latency_alarm = cloudwatch.Alarm(
            self,
            "OrderApiLatencyP99",
            alarm_name=f"{name_prefix}-order-api-p99-latency",
            alarm_description=f"Order API p99 duration above {latency_p99_threshold_ms} ms "
            "(the sync inventory budget is 2 s; slower means the fallback is not protecting callers).",
            metric=latency_function.function.metric_duration(period=Duration.minutes(1), statistic="p99"),
            threshold=latency_p99_threshold_ms,
            evaluation_periods=5,
            datapoints_to_alarm=3,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.alarms.append(self.order_latency_alarm)

        if alarm_topic_arn:
            topic = sns.Topic.from_topic_arn(self, "AlarmTopic", alarm_topic_arn)
            for alarm in [*self.alarms, *extra_alarms]:
                alarm.add_alarm_action(cw_actions.SnsAction(topic))
