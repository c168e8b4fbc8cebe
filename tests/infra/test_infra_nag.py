"""cdk-nag (v3, AwsSolutions) runs as a validation plugin during synth of both targets:
zero unacknowledged findings, and every acknowledgment carries a written reason."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_sqs as sqs
from cdk_nag import AwsSolutionsChecks

MIN_REASON = 40


def nag_violations(report: dict) -> list[dict]:
    out = []
    for plugin in report.get("pluginReports", []):
        if "AwsSolutions" in plugin.get("summary", {}).get("pluginName", "") or "AwsSolutions" in str(plugin):
            out.extend(v for v in plugin.get("violations", []) if v.get("severity") in ("error", "fatal", "warning"))
    return out


def test_harness_detects_violations(tmp_path):
    """The same plugin wiring catches a known violation, so 'zero findings' below is not vacuous."""
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "NagProbe")
    sqs.Queue(stack, "PlainQueue")  # no DLQ, no SSL enforcement
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    try:
        app.synth()
        failed = False
    except Exception:
        failed = True
    assert failed
    report = (tmp_path / "validation-report.json").read_text()
    assert "AwsSolutions-SQS3" in report and "AwsSolutions-SQS4" in report


def test_no_unacknowledged_findings(any_synth):
    assert any_synth.error is None, any_synth.error
    assert nag_violations(any_synth.validation_report) == []


def test_every_acknowledgment_has_a_reason(any_synth):
    acknowledged = {}
    for path, entries in any_synth.metadata.items():
        for entry in entries:
            if entry["type"] == cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                for rule, reason in entry["data"].items():
                    if "AwsSolutions" in rule:  # CDK itself acknowledges some CloudFormation-Validate rules
                        acknowledged[(path, rule)] = reason
    assert acknowledged, "the stack acknowledges some findings (L1, APIG4, ...)"
    for (path, rule), reason in acknowledged.items():
        assert rule.startswith("AwsSolutions::AwsSolutions-"), (path, rule)
        assert isinstance(reason, str) and len(reason.strip()) >= MIN_REASON, (path, rule, reason)
