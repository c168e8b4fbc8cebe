"""cdk-nag (v3) helpers: the rule packs the app runs, and reasoned acknowledgments.

cdk-nag 3 runs as CDK policy-validation plugins (`Validations.of(app).add_plugins(...)`); a
violation that is not acknowledged interrupts synthesis. Two packs run on every synth:
`AwsSolutions` (security and operational best practice) and `Serverless` (Lambda, API Gateway,
SQS, EventBridge best practice). Acknowledgments are CDK's native
`Validations.of(construct).acknowledge(...)`, one per finding (`AwsSolutions-IAM5[Resource::*]`),
and every one of them carries a written reason.

A reason is a claim about the stack, and claims rot: tests/infra/nag_claims.py holds one
check per acknowledged rule that proves the claim on the synthesized template (an
acknowledgment whose rule has no check there fails the tests, and so does one that no longer
suppresses anything). Adding an acknowledgment means adding its check.

`acknowledge_serverless_findings(stack)` acknowledges the Serverless findings that follow from
the design rather than from one construct (which functions can have a Lambda DLQ, SQS event
sources, schedules); it runs after the stack is built, and acknowledges a finding only where its
premise holds (a function that gets active tracing is no longer acknowledged for tracing).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_events as events
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from cdk_nag import AwsSolutionsChecks, ServerlessChecks
from constructs import IConstruct

MIN_REASON_LENGTH = 40
PLUGIN_PREFIXES = {"AwsSolutions": "AwsSolutions::", "Serverless": "Serverless::"}


def nag_plugins(scope: IConstruct, *, verbose: bool = True) -> list:
    """The rule packs every synth runs (app.py and the tests use the same list)."""
    return [AwsSolutionsChecks(scope, verbose=verbose), ServerlessChecks(scope, verbose=verbose)]


def qualified_rule_id(rule_id: str) -> str:
    """`AwsSolutions-L1` -> `AwsSolutions::AwsSolutions-L1` (the id cdk-nag reports)."""
    if "::" in rule_id.split("[", 1)[0]:
        return rule_id
    pack = rule_id.split("-", 1)[0]
    if pack not in PLUGIN_PREFIXES:
        raise ValueError(f"unknown cdk-nag rule pack in {rule_id!r} (known: {sorted(PLUGIN_PREFIXES)})")
    return PLUGIN_PREFIXES[pack] + rule_id


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledge one finding (`AwsSolutions-L1`, `AwsSolutions-IAM5[Resource::*]`, `Serverless-LambdaDLQ`)."""
    if len(reason.strip()) < MIN_REASON_LENGTH:
        raise ValueError(f"cdk-nag acknowledgment {rule_id} on {scope.node.path} needs a real reason")
    Validations.of(scope).acknowledge(Acknowledgment(id=qualified_rule_id(rule_id), reason=reason))


def acknowledge_all(scope: IConstruct, rules: dict[str, str]) -> None:
    for rule_id, reason in rules.items():
        acknowledge(scope, rule_id, reason)


# ------------------------------------------------------------------------------ Serverless pack
LAMBDA_DLQ_REASON = (
    "A Lambda DLQ keeps the events of failed asynchronous invocations. This stack invokes its "
    "functions synchronously (API Gateway proxy, the deploy-time CDK trigger, another function, "
    "the operator's tooling), through SQS event sources (a failing message moves to the source "
    "queue's own alarmed dead-letter queue) or from EventBridge schedules, whose event carries "
    "nothing worth replaying (only the time: the job runs again at its next tick or on demand); "
    "every function's errors raise an alarm that notifies the alarm topic."
)
LAMBDA_TRACING_REASON = (
    "X-Ray active tracing is not switched on for this function yet: requests are followed by the "
    "correlation id every log line carries. Issue 15 item 2 adds active tracing on target=aws, "
    "which removes this acknowledgment (it is only made while TracingConfig is not Active)."
)
API_TRACING_REASON = (
    "X-Ray tracing is not switched on for this stage yet (LocalStack community has no X-Ray); "
    "issue 15 item 2 enables it on target=aws, which removes this acknowledgment (it is only made "
    "while the stage's TracingEnabled is false)."
)
SQS_EVENT_SOURCE_REASON = (
    "On-failure destinations exist for stream and Kafka event sources, not for SQS: a message "
    "that keeps failing is moved by the source queue's redrive policy to its dead-letter queue, "
    "whose depth is alarmed."
)
DLQ_REDRIVE_REASON = (
    "This queue is itself a dead-letter queue (of a work queue or of an SNS subscription): its "
    "messages are inspected and redriven by an operator after the cause is fixed; a DLQ of a DLQ "
    "would only move them out of sight."
)
SCHEDULE_DLQ_REASON = (
    "An EventBridge DLQ would keep undelivered events of this schedule, which carry nothing but "
    "the time: nobody would replay them. A failed delivery raises the rule's FailedInvocations "
    "alarm (alarm topic); the job runs again at its next tick or on demand."
)
ASYNC_FAILURE_DESTINATION_REASON = (
    "This asynchronous invocation config exists to turn Lambda's automatic retries off (exactly "
    "one attempt by design); a failed attempt raises the function's Errors alarm, which notifies "
    "the alarm topic, and its outcome is recorded by the function itself."
)


def _tracing_active(fn: lambda_.CfnFunction) -> bool:
    config = Stack.of(fn).resolve(fn.tracing_config)
    return isinstance(config, dict) and config.get("mode") == "Active"


def acknowledge_serverless_findings(stack: Stack) -> None:
    """Acknowledge the design-level Serverless findings where their premise holds (see module doc)."""
    dead_letter_queue_arns = set()
    for node in stack.node.find_all():
        if (isinstance(node, sqs.CfnQueue) and node.redrive_policy is not None) or (
            isinstance(node, sns.CfnSubscription) and node.redrive_policy is not None
        ):
            dead_letter_queue_arns.add(str(stack.resolve(node.redrive_policy).get("deadLetterTargetArn")))

    from infra.constructs.service_function import ServiceFunction  # imports this module

    for node in stack.node.find_all():
        scope = node.node.scope
        if (
            isinstance(node, lambda_.CfnFunction)
            and scope is not None
            and isinstance(scope.node.scope, ServiceFunction)
        ):
            if node.dead_letter_config is None:
                acknowledge(node, "Serverless-LambdaDLQ", LAMBDA_DLQ_REASON)
            if not _tracing_active(node):
                acknowledge(node, "Serverless-LambdaTracing", LAMBDA_TRACING_REASON)
        elif isinstance(node, lambda_.CfnEventSourceMapping):
            source = str(stack.resolve(node.event_source_arn))
            if node.destination_config is None and _is_sqs_queue_arn(stack, source):
                acknowledge(node, "Serverless-LambdaEventSourceMappingDestination", SQS_EVENT_SOURCE_REASON)
        elif isinstance(node, sqs.CfnQueue):
            arn = str(stack.resolve(cdk.Fn.get_att(node.logical_id, "Arn")))
            if node.redrive_policy is None and arn in dead_letter_queue_arns:
                acknowledge(node, "Serverless-SQSRedrivePolicy", DLQ_REDRIVE_REASON)
        elif isinstance(node, events.CfnRule) and node.schedule_expression:
            acknowledge(node, "Serverless-EventBusDLQ", SCHEDULE_DLQ_REASON)
        elif isinstance(node, lambda_.CfnEventInvokeConfig):
            config = stack.resolve(node.destination_config) if node.destination_config else None
            if not (config or {}).get("onFailure") and stack.resolve(node.maximum_retry_attempts) == 0:
                acknowledge(node, "Serverless-LambdaAsyncFailureDestination", ASYNC_FAILURE_DESTINATION_REASON)
        elif isinstance(node, apigw.CfnStage) and not stack.resolve(node.tracing_enabled):
            acknowledge(node, "Serverless-APIGWXrayEnabled", API_TRACING_REASON)


def _is_sqs_queue_arn(stack: Stack, resolved_arn: str) -> bool:
    for node in stack.node.find_all():
        if (
            isinstance(node, sqs.CfnQueue)
            and str(stack.resolve(cdk.Fn.get_att(node.logical_id, "Arn"))) == resolved_arn
        ):
            return True
    return False
