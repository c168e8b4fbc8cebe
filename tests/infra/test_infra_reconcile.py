"""Issue 17 item 4: the reconcile function — scheduled, and least privilege: the reader login of
each database (never app, owner or master), sqs:GetQueueAttributes on the two DLQs, nothing else."""

from __future__ import annotations

import json

from tests.infra.nag_claims import ref
from tests.infra.test_infra_db_roles import database_logins, readable_secrets
from tests.infra.test_infra_stack import as_list, env_of, ref_id, statements_of_role


def reconcile_function(s) -> tuple[str, dict]:
    [(logical_id, fn)] = [
        (lid, res)
        for lid, res in s.of_type("AWS::Lambda::Function").items()
        if res["Properties"].get("FunctionName") == "Valerix-reconcile"
    ]
    return logical_id, fn


def dead_letter_queues(s) -> set[str]:
    return {
        ref(q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"])
        for q in s.of_type("AWS::SQS::Queue").values()
        if "RedrivePolicy" in q["Properties"]
    }


def test_reconcile_function_and_its_environment(any_synth):
    _, fn = reconcile_function(any_synth)
    props, env = fn["Properties"], env_of(fn)
    assert props["Handler"] == "functions.reconcile.handler.reconcile_handler"
    assert env["POWERTOOLS_SERVICE_NAME"] == "reconcile"
    assert env["RECONCILE_STALE_MINUTES"] == "5"
    assert "DB_SECRET_ARN" not in env  # no single login: one reader per database
    # DLQ_URLS names both dead-letter queues, and only them
    joined = json.dumps(env["DLQ_URLS"])
    assert "inventory=" in joined and "completion=" in joined
    dlqs = dead_letter_queues(any_synth)
    assert len(dlqs) == 2 and all(dlq in joined for dlq in dlqs)
    work_queues = {lid for lid, q in any_synth.of_type("AWS::SQS::Queue").items() if "RedrivePolicy" in q["Properties"]}
    assert not any(q in joined for q in work_queues)
    assert ("VpcConfig" in props) is (any_synth.target == "aws")


def test_reconcile_reads_only_the_reader_secrets(any_synth):
    _, fn = reconcile_function(any_synth)
    logins = database_logins(any_synth)
    assert {logins[s] for s in readable_secrets(any_synth, fn)} == {("order", "reader"), ("inventory", "reader")}


def test_reconcile_may_only_read_dlq_attributes(any_synth):
    _, fn = reconcile_function(any_synth)
    dlqs = dead_letter_queues(any_synth)
    sqs_statements = []
    for st in statements_of_role(any_synth, ref_id(fn["Properties"]["Role"])):
        actions = as_list(st["Action"])
        services = {a.split(":")[0] for a in actions}
        assert services <= {"logs", "secretsmanager", "sqs", "ec2", "xray"}, actions
        if "xray" in services:  # active tracing on aws: only sending its own segments
            assert set(actions) == {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}, actions
        if "sqs" in services:
            sqs_statements.append(st)
            assert actions == ["sqs:GetQueueAttributes"]
    resources = {ref_id(r) for st in sqs_statements for r in as_list(st["Resource"])}
    assert resources == dlqs


def test_reconcile_runs_every_15_minutes_with_only_the_time(any_synth):
    logical_id, _ = reconcile_function(any_synth)
    rules = [
        r["Properties"]
        for r in any_synth.of_type("AWS::Events::Rule").values()
        if any(ref_id(t["Arn"]) == logical_id for t in r["Properties"].get("Targets", []))
    ]
    assert len(rules) == 1
    [rule] = rules
    assert rule["ScheduleExpression"] == "rate(15 minutes)"
    [target] = rule["Targets"]
    assert json.loads(target["Input"]) == {"source": "schedule"}
    permissions = [
        p["Properties"]
        for p in any_synth.of_type("AWS::Lambda::Permission").values()
        if ref_id(p["Properties"]["FunctionName"]) == logical_id
    ]
    assert [p["Principal"] for p in permissions] == ["events.amazonaws.com"]


def test_aws_both_databases_admit_the_reconcile_function(aws_synth):
    _, fn = reconcile_function(aws_synth)
    [group] = [ref_id(g) for g in fn["Properties"]["VpcConfig"]["SecurityGroupIds"]]
    admitted = [
        r["Properties"]
        for r in aws_synth.of_type("AWS::EC2::SecurityGroupIngress").values()
        if ref_id(r["Properties"]["SourceSecurityGroupId"]) == group
    ]
    assert len(admitted) == 2
    db_groups = {
        ref_id(g)
        for db in aws_synth.of_type("AWS::RDS::DBInstance").values()
        for g in db["Properties"]["VPCSecurityGroups"]
    }
    assert {ref_id(r["GroupId"]) for r in admitted} == db_groups
    assert all(r["FromPort"] == r["ToPort"] == 5432 for r in admitted)


def test_a_run_with_problems_raises_an_alarm_that_notifies(any_synth):
    """On AWS nothing runs Prometheus: the CloudWatch alarm on the run's outcome is the alert."""
    [alarm] = [
        a["Properties"]
        for a in any_synth.of_type("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == "ReconcileRuns"
    ]
    assert alarm["Namespace"] == "Valerix" and alarm["Statistic"] == "Sum"
    assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == {"service": "reconcile", "outcome": "problems"}
    assert alarm["Threshold"] == 1 and alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    topics = set(any_synth.of_type("AWS::SNS::Topic"))
    assert {ref_id(a) for a in alarm["AlarmActions"]} & topics
