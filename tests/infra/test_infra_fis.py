"""Issue 17 item 5: the AWS FIS experiment templates (context fisExperiments, target=aws):
scenarios, targets, actions, stop conditions, logging, the extension on the target function,
the experiment role's least privilege, cdk-nag clean; and off by default."""

from __future__ import annotations

import json

import pytest

from infra import outputs
from infra.config import ValerixConfig
from infra.constructs.fis import CONFIG_PREFIX, EXTENSION_WRAPPER
from infra.constructs.service_functions import GREMLIN_STOP_ALARMS
from tests.infra.nag_claims import check_all, findings_of, ref_id
from tests.infra.test_infra_nag import acknowledgments, nag_violations

EXPECTED = {  # scenario -> (action id, parameters, resource type, action target key)
    "latency": ("aws:lambda:invocation-add-delay",
                {"startupDelayMilliseconds": "5000", "invocationPercentage": "100", "duration": "PT5M"},
                "aws:lambda:function", "Functions"),
    "errors": ("aws:lambda:invocation-error",
               {"preventExecution": "true", "invocationPercentage": "50", "duration": "PT5M"},
               "aws:lambda:function", "Functions"),
    "crash": ("aws:lambda:invocation-error",
              {"preventExecution": "false", "invocationPercentage": "25", "duration": "PT5M"},
              "aws:lambda:function", "Functions"),
    "database-outage": ("aws:rds:reboot-db-instances", {"forceFailover": "false"}, "aws:rds:db", "DBInstances"),
}  # fmt: skip


def templates(s) -> dict[str, dict]:
    """scenario -> template properties (each template has exactly one action, named by its scenario)."""
    out = {}
    for res in s.of_type("AWS::FIS::ExperimentTemplate").values():
        (name,) = res["Properties"]["Actions"]
        out[name] = res["Properties"]
    return out


def ours(s) -> dict[str, dict]:
    """The stack's functions (not CDK's own providers, whose layers are CDK's business)."""
    return {k: r for k, r in s.of_type("AWS::Lambda::Function").items()
            if str(r["Properties"].get("FunctionName", "")).startswith("Valerix-")}  # fmt: skip


def logical_id_of_function(s, name: str) -> str:
    return next(k for k, r in s.of_type("AWS::Lambda::Function").items() if r["Properties"].get("FunctionName") == name)


def policy_statements_of_role(s, role_id: str) -> list[dict]:
    return [st for p in s.of_type("AWS::IAM::Policy").values() if {"Ref": role_id} in p["Properties"]["Roles"]
            for st in p["Properties"]["PolicyDocument"]["Statement"]]  # fmt: skip


def test_off_by_default_and_refused_where_it_cannot_work(local_synth, aws_synth):
    for s in (local_synth, aws_synth):
        assert not s.of_type("AWS::FIS::ExperimentTemplate")
        assert not [o for o in s.template_dict["Outputs"] if o.startswith("Fis")]
        for fn in ours(s).values():
            assert "Layers" not in fn["Properties"]
            assert "AWS_LAMBDA_EXEC_WRAPPER" not in fn["Properties"].get("Environment", {}).get("Variables", {})
    with pytest.raises(ValueError, match="target=aws only"):
        ValerixConfig.from_context(
            {
                "target": "local",
                "fisExperiments": "true",
                "fisExtensionLayerArn": "arn:aws:lambda:eu-central-1:211125425201:layer:x:9",
            }
        )
    with pytest.raises(ValueError, match="needs fisExtensionLayerArn"):
        ValerixConfig.from_context({"target": "aws", "fisExperiments": "true"})
    with pytest.raises(ValueError, match="fisExtensionLayerArn must be a Lambda layer version ARN"):
        ValerixConfig.from_context({"target": "aws", "fisExperiments": "true", "fisExtensionLayerArn": "latest"})


def test_one_template_per_gremlin_scenario_with_its_action_and_target(fis_synth):
    found = templates(fis_synth)
    assert set(found) == set(EXPECTED) == set(outputs.FIS_TEMPLATE_OUTPUTS)
    reserve = logical_id_of_function(fis_synth, "Valerix-inventory-reserve")
    inventory_db = next(k for k, r in fis_synth.of_type("AWS::RDS::DBInstance").items()
                        if "Inventory" in r["Metadata"]["aws:cdk:path"])  # fmt: skip
    for scenario, (action_id, parameters, resource_type, key) in EXPECTED.items():
        p = found[scenario]
        action = p["Actions"][scenario]
        assert (action["ActionId"], action["Parameters"]) == (action_id, parameters), scenario
        (target_name,) = p["Targets"]
        assert action["Targets"] == {key: target_name}
        target = p["Targets"][target_name]
        assert (target["ResourceType"], target["SelectionMode"]) == (resource_type, "ALL")
        (arn,) = target["ResourceArns"]  # one named resource, never a tag search
        wanted = reserve if resource_type == "aws:lambda:function" else inventory_db
        assert wanted in json.dumps(arn), (scenario, arn)
        assert p["ExperimentOptions"] == {"AccountTargeting": "single-account", "EmptyTargetResolutionMode": "fail"}
        assert fis_synth.template_dict["Outputs"][outputs.FIS_TEMPLATE_OUTPUTS[scenario]]["Value"] == {
            "Fn::GetAtt": [next(k for k, r in fis_synth.of_type("AWS::FIS::ExperimentTemplate").items()
                                if r["Properties"] is p), "Id"]}  # fmt: skip


def test_every_template_stops_on_the_gremlins_stop_alarms(fis_synth):
    alarms = fis_synth.of_type("AWS::CloudWatch::Alarm")
    wanted = {f"Valerix-{name}" for name in GREMLIN_STOP_ALARMS}
    for scenario, p in templates(fis_synth).items():
        sources = {c["Source"] for c in p["StopConditions"]}
        named = {alarms[ref_id(c["Value"])]["Properties"]["AlarmName"] for c in p["StopConditions"]}
        assert sources == {"aws:cloudwatch:alarm"} and named == wanted, scenario
        for condition in p["StopConditions"]:
            assert alarms[ref_id(condition["Value"])]["Properties"]["AlarmActions"], "a stop alarm that notifies"


def test_every_experiment_logs_to_its_own_log_group(fis_synth):
    groups = fis_synth.of_type("AWS::Logs::LogGroup")
    for p in templates(fis_synth).values():
        log = p["LogConfiguration"]
        assert log["LogSchemaVersion"] == 2
        group = ref_id(log["CloudWatchLogsConfiguration"]["LogGroupArn"])
        assert groups[group]["Properties"]["RetentionInDays"] == 14
    assert ref_id(fis_synth.template_dict["Outputs"][outputs.FIS_LOG_GROUP_NAME]["Value"]) == group


def test_the_extension_is_on_the_reservation_function_only(fis_synth, aws_synth):
    reserve = logical_id_of_function(fis_synth, "Valerix-inventory-reserve")
    with_layers = {k for k, r in ours(fis_synth).items() if "Layers" in r["Properties"]}
    assert with_layers == {reserve}
    fn = fis_synth.resources[reserve]["Properties"]
    assert fn["Layers"] == [json.loads(json.dumps(fis_synth.context["fisExtensionLayerArn"]))]
    env = fn["Environment"]["Variables"]
    before = aws_synth.resources[reserve]["Properties"]["Environment"]["Variables"]
    added = {k: v for k, v in env.items() if k not in before}
    assert set(added) == {"AWS_LAMBDA_EXEC_WRAPPER", "AWS_FIS_CONFIGURATION_LOCATION",
                          "AWS_FIS_POLL_MAX_WAIT_MILLISECONDS"}  # fmt: skip
    assert added["AWS_LAMBDA_EXEC_WRAPPER"] == EXTENSION_WRAPPER
    location = json.dumps(added["AWS_FIS_CONFIGURATION_LOCATION"])
    bucket = next(k for k, r in fis_synth.of_type("AWS::S3::Bucket").items()
                  if r["Metadata"]["aws:cdk:path"].endswith("/Fis/ConfigBucket/Resource"))  # fmt: skip
    assert bucket in location and f"/{CONFIG_PREFIX}/" in location and ":s3:::" in location
    # its role may list and read the configurations, and nothing more of that bucket
    role = ref_id(fn["Role"])
    on_bucket = [st for st in policy_statements_of_role(fis_synth, role) if bucket in json.dumps(st["Resource"])]
    assert sorted(
        a for st in on_bucket for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])
    ) == ["s3:GetObject", "s3:ListBucket"]
    listing = next(st for st in on_bucket if st["Action"] == "s3:ListBucket")
    assert listing["Condition"] == {"StringLike": {"s3:prefix": [f"{CONFIG_PREFIX}/*"]}}


def test_the_experiment_role_has_least_privilege(fis_synth):
    (template,) = {json.dumps(p["RoleArn"]) for p in templates(fis_synth).values()}
    role = ref_id(json.loads(template))
    trust = fis_synth.resources[role]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert [st["Principal"] for st in trust] == [{"Service": "fis.amazonaws.com"}]
    assert set(trust[0]["Condition"]) == {"StringEquals", "ArnLike"}  # this account's experiments only
    granted = {}
    for st in policy_statements_of_role(fis_synth, role):
        assert st["Effect"] == "Allow"
        for action in [st["Action"]] if isinstance(st["Action"], str) else st["Action"]:
            granted[action] = json.dumps(st["Resource"])
    reserve = logical_id_of_function(fis_synth, "Valerix-inventory-reserve")
    assert granted.keys() == {"s3:PutObject", "s3:DeleteObject", "lambda:GetFunction", "rds:RebootDBInstance",
                              "rds:DescribeDBInstances", "logs:CreateLogDelivery", "logs:PutResourcePolicy",
                              "logs:DescribeResourcePolicies", "logs:DescribeLogGroups"}  # fmt: skip
    assert f"/{CONFIG_PREFIX}/*" in granted["s3:PutObject"] == granted["s3:DeleteObject"]
    assert reserve in granted["lambda:GetFunction"] and "*" not in granted["lambda:GetFunction"]
    assert ":db:" in granted["rds:RebootDBInstance"] and "Inventory" in granted["rds:RebootDBInstance"]
    wildcard = {a for a, r in granted.items() if r == '"*"'}
    assert wildcard == {a for a in granted if a.startswith("logs:")}


def test_cdk_nag_is_clean_and_each_new_acknowledgment_is_true(fis_synth):
    assert fis_synth.error is None, fis_synth.error
    assert nag_violations(fis_synth.validation_report) == []
    assert all(len(reason) >= 40 for reason in acknowledgments(fis_synth).values())
    findings = findings_of(fis_synth.validation_report, fis_synth.template_dict, "aws")
    assert any("/Fis/ExperimentRole/" in f.construct_path for f in findings)
    check_all(findings)
