"""infra/deploy-policy.json: what a person or CI needs to run `cdk deploy -c target=aws` into a
bootstrapped account — assume the CDK bootstrap roles, read the bootstrap version — and nothing
else (CloudFormation works through the deploy role; the cfn-exec role does the rest)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import aws_cdk as cdk
import pytest
from moto.iam.exceptions import MalformedPolicyDocument
from moto.iam.policy_validation import IAMPolicyDocumentValidator

POLICY_FILE = Path(__file__).resolve().parents[2] / "infra" / "deploy-policy.json"
ACCOUNT, REGION = "123456789012", "eu-central-1"


def policy_text() -> str:
    return POLICY_FILE.read_text()


def filled(text: str | None = None) -> dict:
    """The policy with its placeholders filled in, as the README's sed command does."""
    return json.loads((text or policy_text()).replace("ACCOUNT_ID", ACCOUNT).replace("REGION", REGION))


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def arn_matches(pattern: str, arn: str) -> bool:
    return re.fullmatch(re.escape(pattern).replace(r"\*", ".*").replace(r"\?", "."), arn) is not None


def allowed(policy: dict, action: str, arn: str) -> bool:
    return any(st["Effect"] == "Allow" and action in as_list(st["Action"])
               and any(arn_matches(r, arn) for r in as_list(st["Resource"]))
               for st in policy["Statement"])  # fmt: skip


def test_policy_is_a_valid_iam_policy_document():
    raw = policy_text()
    json.loads(raw)
    assert set(re.findall(r"[A-Z]{4,}_?[A-Z]*", raw)) <= {"ACCOUNT_ID", "REGION"}, "only the two placeholders"
    IAMPolicyDocumentValidator(json.dumps(filled())).validate()


def test_the_validator_would_catch_a_malformed_document():
    broken = filled()
    broken["Statement"][0]["Effect"] = "Permit"
    with pytest.raises(MalformedPolicyDocument):
        IAMPolicyDocumentValidator(json.dumps(broken)).validate()


def test_policy_is_least_privilege():
    policy = filled()
    for st in policy["Statement"]:
        assert st["Effect"] == "Allow" and "NotAction" not in st and "NotResource" not in st
        for action in as_list(st["Action"]):
            service, _, name = action.partition(":")
            assert action != "*" and "*" not in name, action
            assert service in ("sts", "ssm"), action
        for resource in as_list(st["Resource"]):
            assert resource != "*" and f":{ACCOUNT}:" in resource, resource
            assert "cdk-hnb659fds-" in resource or "/cdk-bootstrap/hnb659fds/" in resource, resource
    for role in (f"arn:aws:iam::{ACCOUNT}:role/cdk-hnb659fds-cfn-exec-role-{ACCOUNT}-{REGION}",
                 f"arn:aws:iam::{ACCOUNT}:role/OrganizationAccountAccessRole",
                 f"arn:aws:iam::999999999999:role/cdk-hnb659fds-deploy-role-999999999999-{REGION}"):  # fmt: skip
        assert not allowed(policy, "sts:AssumeRole", role), role


def test_policy_allows_everything_the_aws_assembly_asks_for(aws_synth):
    """The roles and the SSM parameter come from the synthesized cloud assembly itself."""
    manifest = json.loads((aws_synth.outdir / "manifest.json").read_text())
    props = manifest["artifacts"][aws_synth.stack.stack_name]["properties"]

    def concrete(value: str) -> str:
        return (value.replace("${AWS::Partition}", "aws").replace("${AWS::AccountId}", ACCOUNT)
                .replace("${AWS::Region}", REGION))  # fmt: skip

    policy = filled()
    roles = {concrete(props["assumeRoleArn"]), concrete(props["lookupRole"]["arn"])}
    for asset in aws_synth.assets["files"].values():
        for destination in asset["destinations"].values():
            roles.add(concrete(destination["assumeRoleArn"]))
    assert aws_synth.assets.get("dockerImages", {}) == {}, "image assets would need the image-publishing role"
    for role in roles:
        assert allowed(policy, "sts:AssumeRole", role), role
    parameter = props["bootstrapStackVersionSsmParameter"]
    assert parameter == f"/cdk-bootstrap/{cdk.DefaultStackSynthesizer.DEFAULT_QUALIFIER}/version"
    assert allowed(policy, "ssm:GetParameter", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{parameter}")
