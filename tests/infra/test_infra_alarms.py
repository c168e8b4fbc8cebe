"""Alarms: every alarm notifies the stack's encrypted, TLS-only SNS topic, and the alarms cover
Lambda errors and throttles, API 5xx and p99 latency, DLQ depth, failed schedule deliveries, and
(target=aws) RDS CPU and connections; the construct takes RDS Proxy metrics the same way."""

from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk import aws_events as events
from aws_cdk.assertions import Template

from infra.config import ValerixConfig
from infra.constructs.alarms import StackAlarms, schedule_rules
from infra.constructs.db_limits import postgres_max_connections_upper_bound
from tests.infra.infra_synth import synth
from tests.infra.test_infra_stack import all_functions, as_list, ref_id


def alarms(s) -> dict[str, dict]:
    return {k: r["Properties"] for k, r in s.of_type("AWS::CloudWatch::Alarm").items()}


def the_topic(s) -> str:
    (topic_id,) = s.of_type("AWS::SNS::Topic")
    return topic_id


def dims(alarm: dict) -> dict:
    return {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}


def by_metric(s, namespace: str, metric: str) -> list[dict]:
    return [a for a in alarms(s).values() if a.get("Namespace") == namespace and a.get("MetricName") == metric]


# ---------------------------------------------------------------------------------- the topic
def test_every_alarm_notifies_the_stack_topic(any_synth):
    topic = the_topic(any_synth)
    found = alarms(any_synth)
    assert len(found) > 20
    for logical_id, alarm in found.items():
        assert alarm.get("AlarmActions") == [{"Ref": topic}], logical_id
        assert alarm.get("AlarmDescription"), logical_id


def test_topic_is_encrypted_with_a_key_cloudwatch_may_use_and_refuses_plain_http(any_synth):
    topic_id = the_topic(any_synth)
    topic = any_synth.resources[topic_id]["Properties"]
    key_id = ref_id(topic["KmsMasterKeyId"])
    key = any_synth.resources[key_id]["Properties"]
    assert key["EnableKeyRotation"] is True
    cloudwatch = [st for st in key["KeyPolicy"]["Statement"]
                  if st.get("Principal", {}).get("Service") == "cloudwatch.amazonaws.com"]  # fmt: skip
    assert len(cloudwatch) == 1 and cloudwatch[0]["Effect"] == "Allow"
    assert set(as_list(cloudwatch[0]["Action"])) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    (policy,) = [p["Properties"] for p in any_synth.of_type("AWS::SNS::TopicPolicy").values()
                 if {"Ref": topic_id} in p["Properties"]["Topics"]]  # fmt: skip
    denies = [st for st in policy["PolicyDocument"]["Statement"] if st["Effect"] == "Deny"]
    assert any(st["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for st in denies)


def test_no_subscription_without_alarm_email(any_synth):
    assert any_synth.of_type("AWS::SNS::Subscription") == {}
    assert ValerixConfig.from_context({}).alarm_emails == ()


@pytest.fixture(scope="module")
def emailed_synth(tmp_path_factory):
    return synth("local", tmp_path_factory.mktemp("cdk-alarm-email"), alarmEmail="ops@example.com, oncall@example.org")


def test_alarm_email_context_subscribes_each_address_with_a_dead_letter_queue(emailed_synth):
    assert emailed_synth.error is None, emailed_synth.error
    topic = the_topic(emailed_synth)
    subs = [r["Properties"] for r in emailed_synth.of_type("AWS::SNS::Subscription").values()]
    assert sorted(s["Endpoint"] for s in subs) == ["oncall@example.org", "ops@example.com"]
    for sub in subs:
        assert sub["Protocol"] == "email" and sub["TopicArn"] == {"Ref": topic}
        dlq = ref_id(sub["RedrivePolicy"]["deadLetterTargetArn"])
        assert emailed_synth.resources[dlq]["Type"] == "AWS::SQS::Queue"
    # undelivered notifications are alarmed too (on the same topic)
    queue_alarms = [a for a in alarms(emailed_synth).values() if ref_id(dims(a).get("QueueName")) == dlq]
    assert len(queue_alarms) == 1 and queue_alarms[0]["AlarmActions"] == [{"Ref": topic}]


@pytest.mark.parametrize("value", ["ops", "ops@example", "ops@example.com,", "a b@example.com", "'ops@example.com'"])
def test_bad_alarm_email_is_refused_naming_it(value):
    with pytest.raises(ValueError, match="alarmEmail"):
        ValerixConfig.from_context({"alarmEmail": value})


# ---------------------------------------------------------------------------------- coverage
def test_every_function_has_an_errors_and_a_throttles_alarm(any_synth):
    fns = set(all_functions(any_synth))
    for metric in ("Errors", "Throttles"):
        found = by_metric(any_synth, "AWS/Lambda", metric)
        assert {ref_id(dims(a)["FunctionName"]) for a in found} == fns, metric
        for a in found:
            assert a["Statistic"] == "Sum" and a["Threshold"] == 1
            assert a["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_api_5xx_and_p99_latency_alarms_watch_the_stage(any_synth):
    (stage_id,) = any_synth.of_type("AWS::ApiGateway::Stage")
    (five_xx,) = by_metric(any_synth, "AWS/ApiGateway", "5XXError")
    (latency,) = by_metric(any_synth, "AWS/ApiGateway", "Latency")
    for alarm in (five_xx, latency):
        assert ref_id(dims(alarm)["Stage"]) == stage_id and dims(alarm)["ApiName"] == "Valerix-api"
    assert five_xx["Statistic"] == "Sum" and five_xx["Threshold"] == 5
    assert latency["ExtendedStatistic"] == "p99" and latency["Threshold"] == 2500
    assert (latency["EvaluationPeriods"], latency["DatapointsToAlarm"]) == (5, 3)


def test_every_dead_letter_queue_has_a_depth_alarm(any_synth):
    queues = any_synth.of_type("AWS::SQS::Queue")
    dlqs = {ref_id(q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"])
            for q in queues.values() if "RedrivePolicy" in q["Properties"]}  # fmt: skip
    assert len(dlqs) == 2
    depth = by_metric(any_synth, "AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert {ref_id(dims(a)["QueueName"]) for a in depth} == dlqs
    assert all(a["Threshold"] == 1 for a in depth)


def test_every_schedule_has_a_failed_invocations_alarm(any_synth):
    rules = {k for k, r in any_synth.of_type("AWS::Events::Rule").items() if "ScheduleExpression" in r["Properties"]}
    assert len(rules) >= 3  # sweeper, backup, backup sync
    failed = by_metric(any_synth, "AWS/Events", "FailedInvocations")
    assert {ref_id(dims(a)["RuleName"]) for a in failed} == rules


def test_rds_cpu_and_connections_alarms_on_aws_only(aws_synth, local_synth):
    assert by_metric(local_synth, "AWS/RDS", "CPUUtilization") == []
    instances = set(aws_synth.of_type("AWS::RDS::DBInstance"))
    assert len(instances) == 2
    cpu = by_metric(aws_synth, "AWS/RDS", "CPUUtilization")
    connections = [a for a in by_metric(aws_synth, "AWS/RDS", "DatabaseConnections") if "ProxyName" not in dims(a)]
    for found in (cpu, connections):
        assert {ref_id(dims(a)["DBInstanceIdentifier"]) for a in found} == instances
    assert all(a["Threshold"] == 80 and a["EvaluationPeriods"] == 3 for a in cpu)
    # t4g.micro: 1 GiB / 9531392 B = 112 connections at most; the stack sets 3/4 of that (84,
    # infra/constructs/db_limits.py) and the alarm fires at 70 % of it
    assert postgres_max_connections_upper_bound("t4g.micro") == 112
    assert {a["Threshold"] for a in connections} == {58}


def test_db_max_connections_context_sets_the_connections_threshold(tmp_path):
    s = synth("aws", tmp_path, dbInstanceClass="t4g.medium", dbMaxConnections="400", nag="false")
    connections = [a for a in by_metric(s, "AWS/RDS", "DatabaseConnections") if "DBInstanceIdentifier" in dims(a)]
    assert {a["Threshold"] for a in connections} == {280}


def test_unknown_instance_class_asks_for_db_max_connections():
    with pytest.raises(ValueError, match="dbMaxConnections"):
        postgres_max_connections_upper_bound("x2iedn.24xlarge")
    assert postgres_max_connections_upper_bound("db.r6g.large") == 16 * 1024**3 // 9531392


# ---------------------------------------------------------------------------------- extension
def test_rds_proxy_metrics_plug_into_the_same_topic():
    """RDS Proxy arrives later: its alarms are one call on the construct, on the same topic."""
    app = cdk.App()
    stack = cdk.Stack(app, "ProxyProbe")
    alarms_construct = StackAlarms(stack, "Alarms", name_prefix="Probe")
    alarms_construct.database_proxy("Order", "probe-order-proxy", max_database_connections=100)
    events.Rule(stack, "Tick", schedule=events.Schedule.rate(cdk.Duration.minutes(5)))
    alarms_construct.schedules(schedule_rules(stack))
    template = Template.from_stack(stack).to_json()
    topic = next(k for k, r in template["Resources"].items() if r["Type"] == "AWS::SNS::Topic")
    found = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    by_name = {a["MetricName"]: a for a in found}
    assert set(by_name) == {"DatabaseConnections", "DatabaseConnectionsBorrowLatency", "FailedInvocations"}
    for name in ("DatabaseConnections", "DatabaseConnectionsBorrowLatency"):
        assert dims(by_name[name]) == {"ProxyName": "probe-order-proxy"}
    assert by_name["DatabaseConnections"]["Threshold"] == 90
    assert all(a["AlarmActions"] == [{"Ref": topic}] for a in found)
