"""cdk-nag (v3) runs as validation plugins during synth of both targets — the AwsSolutions and the
Serverless packs: zero unacknowledged findings, every acknowledgment carries a reason, the reason
is TRUE (tests/infra/nag_claims.py proves each one on the template), and no acknowledgment is
left over once its finding is gone."""

from __future__ import annotations

import copy

import aws_cdk as cdk
import pytest
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs

from infra.nag import PLUGIN_PREFIXES, acknowledge, nag_plugins, qualified_rule_id
from tests.infra.infra_synth import Synth, synth
from tests.infra.nag_claims import CLAIMS, Finding, Template, check_all, findings_of, ref_id

MIN_REASON = 40
OUR_PACKS = tuple(PLUGIN_PREFIXES.values())


def nag_violations(report: dict) -> list[dict]:
    return [v for plugin in report.get("pluginReports", []) for v in plugin.get("violations", [])
            if v.get("severity") in ("error", "fatal", "warning")]  # fmt: skip


def acknowledgments(s: Synth) -> dict[tuple[str, str], str]:
    """(construct path, qualified rule id) -> reason, for our packs' acknowledgments."""
    out = {}
    for path, entries in s.metadata.items():
        for entry in entries:
            if entry["type"] == cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                for rule, reason in entry["data"].items():
                    if rule.startswith(OUR_PACKS):  # CDK itself acknowledges some CloudFormation rules
                        out[(path.lstrip("/"), rule)] = reason
    return out


@pytest.fixture(scope="module")
def variant_synths(tmp_path_factory) -> list[Synth]:
    """Context that switches acknowledgments on: no deletion protection (RDS10), alarm e-mails (SQS3)."""
    return [
        synth("aws", tmp_path_factory.mktemp("nag-aws-unprotected"), dbDeletionProtection="false"),
        synth("local", tmp_path_factory.mktemp("nag-local-email"), alarmEmail="ops@example.com"),
    ]


# ------------------------------------------------------------------------------ the plugins
def test_harness_detects_violations_of_both_packs(tmp_path):
    """The same plugin wiring catches known violations, so 'zero findings' below is not vacuous."""
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "NagProbe")
    sqs.Queue(stack, "PlainQueue")  # no DLQ, no SSL enforcement
    lambda_.Function(stack, "PlainFunction", runtime=lambda_.Runtime.PYTHON_3_12, handler="x.handler",
                     code=lambda_.Code.from_inline("def handler(e, c): pass"))  # fmt: skip
    cdk.Validations.of(app).add_plugins(*nag_plugins(app))
    with pytest.raises(RuntimeError, match="ValidationFailed"):  # a failed validation plugin, through jsii
        app.synth()
    report = (tmp_path / "validation-report.json").read_text()
    assert "AwsSolutions-SQS3" in report and "AwsSolutions-SQS4" in report
    assert "Serverless-LambdaDLQ" in report and "Serverless-LambdaTracing" in report


def test_rule_ids_are_qualified_with_their_pack():
    assert qualified_rule_id("AwsSolutions-IAM5[Resource::*]") == "AwsSolutions::AwsSolutions-IAM5[Resource::*]"
    assert qualified_rule_id("Serverless-LambdaDLQ") == "Serverless::Serverless-LambdaDLQ"
    with pytest.raises(ValueError, match="unknown cdk-nag rule pack"):
        qualified_rule_id("HIPAA.Security-LambdaDLQ")
    with pytest.raises(ValueError, match="real reason"):
        acknowledge(cdk.Stack(cdk.App(), "Probe"), "AwsSolutions-L1", "because")


# ------------------------------------------------------------------------------ the stack
def test_no_unacknowledged_findings(any_synth):
    assert any_synth.error is None, any_synth.error
    plugins = {p["pluginName"] for p in any_synth.validation_report["pluginReports"]}
    assert plugins == {"AwsSolutions", "Serverless"}
    assert nag_violations(any_synth.validation_report) == []


def test_every_acknowledgment_has_a_reason(any_synth):
    found = acknowledgments(any_synth)
    assert found, "the stack acknowledges some findings (L1, APIG4, ...)"
    for (path, rule), reason in found.items():
        assert isinstance(reason, str) and len(reason.strip()) >= MIN_REASON, (path, rule, reason)


def test_every_acknowledged_finding_is_true(any_synth, variant_synths):
    """Each reason's claim holds on the synthesized template (nag_claims.CLAIMS)."""
    for s in (any_synth, *variant_synths):
        assert s.error is None, s.error
        found = findings_of(s.validation_report, s.template_dict, s.target)
        assert found
        check_all(found)
    rules = {f.rule for f in findings_of(variant_synths[0].validation_report, variant_synths[0].template_dict, "aws")}
    assert "AwsSolutions-RDS10" in rules  # the variant exercises the conditional acknowledgments
    rules = {f.rule for f in findings_of(variant_synths[1].validation_report, variant_synths[1].template_dict, "local")}
    assert "AwsSolutions-SQS3" in rules


def test_no_acknowledgment_outlives_its_finding(any_synth):
    """An acknowledgment that suppresses nothing is a reason about something no longer there."""
    used = set()
    for plugin in any_synth.validation_report["pluginReports"]:
        for v in plugin.get("suppressedViolations", []):
            used.add((v["acknowledgedAt"], v["acknowledgedId"]))
    stale = sorted(key for key in acknowledgments(any_synth) if key not in used)
    assert stale == [], f"acknowledgments that suppress nothing (remove them): {stale}"


# ------------------------------------------------------------------------------ the checks can fail
def _finding(s: Synth, rule: str, detail: str = "", where: str = "") -> Finding:
    for f in findings_of(s.validation_report, s.template_dict, s.target):
        if f.rule == rule and f.detail == detail and where in f.construct_path:
            return f
    raise LookupError(rule)


def _with(f: Finding, mutate) -> Finding:
    resources = copy.deepcopy(f.template.resources)
    mutate(resources, f)
    return Finding(**{**f.__dict__, "template": Template(resources)})


def _alarms_on(resources, metric, logical_id):
    return [k for k, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"
            and r["Properties"].get("MetricName") == metric
            and any(ref_id(d["Value"]) == logical_id for d in r["Properties"].get("Dimensions", []))]  # fmt: skip


def _no_api_keys(resources, f):
    for r in resources.values():
        if r["Type"] == "AWS::ApiGateway::Method":
            r["Properties"]["ApiKeyRequired"] = False


def _s3_on_star(resources, f):
    resources[f.logical_id]["Properties"]["PolicyDocument"]["Statement"].append(
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}
    )


def _silence_errors_alarm(resources, f):
    for k in _alarms_on(resources, "Errors", f.logical_id):
        del resources[k]["Properties"]["AlarmActions"]


def _source_queue_without_dlq(resources, f):
    del resources[ref_id(f.props["EventSourceArn"])]["Properties"]["RedrivePolicy"]


def _drop_failed_invocations_alarm(resources, f):
    for k in _alarms_on(resources, "FailedInvocations", f.logical_id):
        del resources[k]


def _cidr_ingress_to_db(resources, f):
    sg = ref_id(f.props["VPCSecurityGroups"][0])
    resources[sg]["Properties"]["SecurityGroupIngress"] = [{"CidrIp": "10.0.0.0/8", "IpProtocol": "tcp",
                                                            "FromPort": 5432, "ToPort": 5432}]  # fmt: skip


def _public_write(resources, f):
    for r in resources.values():
        if r["Type"] == "AWS::S3::BucketPolicy" and ref_id(r["Properties"]["Bucket"]) == f.logical_id:
            for st in r["Properties"]["PolicyDocument"]["Statement"]:
                if st["Effect"] == "Allow" and st.get("Principal") in ("*", {"AWS": "*"}):
                    st["Action"] = ["s3:GetObject", "s3:PutObject"]


def _endpoint_open_to_all(resources, f):
    resources[f.logical_id]["Properties"]["SecurityGroupIngress"][0]["CidrIp"] = "0.0.0.0/0"


def _literal_api_key(resources, f):
    for r in resources.values():
        if r["Type"] == "AWS::ApiGateway::ApiKey":
            r["Properties"]["Value"] = "a-literal-key-in-the-template-0123456789"


def _not_a_dead_letter_queue(resources, f):
    for r in resources.values():
        if r["Type"] == "AWS::SQS::Queue":
            r["Properties"].pop("RedrivePolicy", None)


MUTATIONS = [
    ("AwsSolutions-APIG4", "", "", _no_api_keys),
    ("AwsSolutions-IAM5", "Resource::*", "OrderApi", _s3_on_star),
    ("Serverless-LambdaDLQ", "", "OrderSweeper", _silence_errors_alarm),
    ("Serverless-LambdaEventSourceMappingDestination", "", "InventoryQueue", _source_queue_without_dlq),
    ("Serverless-EventBusDLQ", "", "OrderSweeper", _drop_failed_invocations_alarm),
    ("Serverless-SQSRedrivePolicy", "", "InventoryQueues", _not_a_dead_letter_queue),
    ("AwsSolutions-RDS11", "", "OrderDb", _cidr_ingress_to_db),
    ("AwsSolutions-S2", "", "Website", _public_write),
    ("AwsSolutions-EC23", "", "SqsEndpoint", _endpoint_open_to_all),
    ("AwsSolutions-SMG4", "", "AdminKey", _literal_api_key),
]


@pytest.mark.parametrize("rule,detail,where,mutate", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_a_claim_check_fails_when_its_reason_is_false(aws_synth, rule, detail, where, mutate):
    finding = _finding(aws_synth, rule, detail, where)
    CLAIMS[rule](finding)  # true as synthesized
    with pytest.raises(AssertionError):
        CLAIMS[rule](_with(finding, mutate))


def test_a_rule_without_a_claim_check_fails():
    finding = Finding(Template({}), "aws", "AwsSolutions-NEW1", "", "Valerix/X/Resource", "X", "some reason " * 5,
                      "Valerix/X")  # fmt: skip
    with pytest.raises(AssertionError, match="without a claim check"):
        check_all([finding])
