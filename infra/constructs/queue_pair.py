"""An SQS work queue with its dead-letter queue and a "DLQ not empty" alarm."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

# Lambda's guidance: visibility timeout >= 6x the consumer function's timeout.
VISIBILITY_TIMEOUT_FACTOR = 6


class QueuePair(Construct):
    """`queue` redrives to `dlq` after `max_receive_count` failed receives."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        alarm_name: str,
        consumer_timeout: Duration,
        max_receive_count: int = 5,
        retention: Duration = Duration.days(4),  # noqa: B008 -- a Duration is immutable
        dlq_retention: Duration = Duration.days(14),  # noqa: B008 -- a Duration is immutable
    ) -> None:
        super().__init__(scope, construct_id)

        self.dlq = sqs.Queue(
            self,
            "Dlq",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=dlq_retention,
        )
        self.max_receive_count = max_receive_count
        self.queue = sqs.Queue(
            self,
            "Queue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=retention,
            visibility_timeout=Duration.seconds(consumer_timeout.to_seconds() * VISIBILITY_TIMEOUT_FACTOR),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dlq, max_receive_count=max_receive_count),
        )

        self.dlq_alarm = cloudwatch.Alarm(
            self,
            "DlqNotEmpty",
            alarm_name=alarm_name,
            alarm_description="Messages reached the dead-letter queue: they failed "
            f"{max_receive_count} times, or can never succeed (their failureReason attribute says "
            "why), and need a look (redrive after fixing the cause).",
            metric=self.dlq.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(1), statistic="Maximum"
            ),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

    def consume_with(self, function: lambda_.IFunction, *, batch_size: int, max_concurrency: int) -> None:
        """`function` consumes `queue` (partial batch failures, functions/common/queue.py) and may
        send to `dlq`: a record that can never succeed goes there at once, found through the
        queue's redrive policy (the event source's grant already reads the queue's attributes)."""
        function.add_event_source(
            event_sources.SqsEventSource(
                self.queue, batch_size=batch_size, report_batch_item_failures=True, max_concurrency=max_concurrency
            )
        )
        self.dlq.grant_send_messages(function)
