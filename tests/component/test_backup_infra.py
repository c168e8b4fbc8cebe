"""CDK assertions for infra/constructs/local_backup.py (both targets), with cdk-nag AwsSolutions.

The construct is synthesized in a small stack next to the real `Databases` construct (RDS + VPC
on aws, local secrets on local), so it is checked before the lead wires it into ValerixStack.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

from infra.outputs import BACKUP_BUCKET_NAME, BACKUP_KEY_ARN, EXTERNAL_BACKUP_BUCKET_NAME

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("CDK_VALIDATION", "false")

REPO = Path(__file__).resolve().parents[2]


def synth(target: str):
    import aws_cdk as cdk
    from aws_cdk import RemovalPolicy
    from aws_cdk import aws_lambda as lambda_
    from aws_cdk.assertions import Template
    from cdk_nag import AwsSolutionsChecks

    from infra.config import ValerixConfig
    from infra.constructs.databases import Databases
    from infra.constructs.local_backup import LocalBackup

    asset = Path(tempfile.mkdtemp(prefix="valerix-backup-asset-"))
    (asset / "functions").mkdir()
    (asset / "functions" / "__init__.py").write_text("")
    context = {k: v for k, v in json.loads((REPO / "cdk.json").read_text())["context"].items() if k.startswith("@")}
    app = cdk.App(outdir=tempfile.mkdtemp(prefix="valerix-backup-cdk-"), context=context)
    stack = cdk.Stack(app, "BackupTest")
    databases = Databases(stack, "Databases", config=ValerixConfig(target=target))
    backup = LocalBackup(
        stack,
        "LocalBackup",
        code=lambda_.Code.from_asset(str(asset)),
        order_db=databases.order,
        inventory_db=databases.inventory,
        name_prefix="Valerix",
        removal_policy=RemovalPolicy.RETAIN if target == "aws" else RemovalPolicy.DESTROY,
    )
    for key, value in backup.outputs().items():
        cdk.CfnOutput(stack, key, value=value)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    app.synth()  # raises ValidationFailed on any unacknowledged cdk-nag finding
    return Template.from_stack(stack), backup


@pytest.fixture(scope="module", params=["local", "aws"])
def synthesized(request):
    return request.param, *synth(request.param)


def resources(template, kind: str) -> dict:
    return template.find_resources(kind)


def test_functions_handlers_and_environment(synthesized) -> None:
    target, template, _ = synthesized
    # (CDK adds unnamed provider functions of its own, e.g. the default-security-group restrictor)
    functions = {
        f["Properties"]["FunctionName"]: f["Properties"]
        for f in resources(template, "AWS::Lambda::Function").values()
        if "FunctionName" in f["Properties"]
    }
    assert {name: props["Handler"] for name, props in functions.items()} == {
        "Valerix-backup": "functions.backup.handler.backup_handler",
        "Valerix-backup-sync": "functions.backup.handler.sync_handler",
        "Valerix-backup-restore": "functions.backup.handler.restore_handler",
    }
    for name, props in functions.items():
        env = props["Environment"]["Variables"]
        assert {"BACKUP_BUCKET", "EXTERNAL_BUCKET", "BACKUP_KMS_KEY_ID"} <= set(env)
        assert env["POWERTOOLS_SERVICE_NAME"] == "backup" and props["Runtime"] == "python3.12"
        has_db = {"ORDER_DB_SECRET_ARN", "INVENTORY_DB_SECRET_ARN"} <= set(env)
        assert has_db == (name != "Valerix-backup-sync")
        assert ("VpcConfig" in props) == (target == "aws" and name != "Valerix-backup-sync")


def test_schedules(synthesized) -> None:
    _, template, _ = synthesized
    schedules = sorted(r["Properties"]["ScheduleExpression"] for r in resources(template, "AWS::Events::Rule").values())
    assert schedules == ["cron(0 */4 * * ? *)", "cron(50 23 * * ? *)"]


def test_buckets_and_key_are_private_and_encrypted(synthesized) -> None:
    _, template, _ = synthesized
    buckets = resources(template, "AWS::S3::Bucket")
    assert len(buckets) == 3  # backups, external, access logs
    for bucket in buckets.values():
        block = bucket["Properties"]["PublicAccessBlockConfiguration"]
        assert all(
            block[k] for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
        )
    (key,) = resources(template, "AWS::KMS::Key").values()
    assert key["Properties"]["EnableKeyRotation"] is True


def test_least_privilege(synthesized) -> None:
    _, template, _ = synthesized
    policies = resources(template, "AWS::IAM::Policy")
    by_role: dict[str, list[Any]] = {}
    for policy in policies.values():
        role = policy["Properties"]["Roles"][0]["Ref"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert not any(a == "*" or a.endswith(":*") for a in actions), statement
            by_role.setdefault(role, []).extend(actions)
    sync_role = next(r for r in by_role if "BackupSync" in r)
    backup_role = next(r for r in by_role if r.startswith("LocalBackupRole"))
    restore_role = next(r for r in by_role if "BackupRestore" in r)
    assert "secretsmanager:GetSecretValue" not in by_role[sync_role]
    assert not any(a.startswith("kms:") for a in by_role[sync_role])
    assert "kms:GenerateDataKey" in by_role[backup_role] and "kms:Decrypt" not in by_role[backup_role]
    assert "kms:Decrypt" in by_role[restore_role] and "s3:PutObject" not in by_role[restore_role]


def test_aws_databases_admit_the_backup_functions(synthesized) -> None:
    target, template, _backup = synthesized
    if target != "aws":
        pytest.skip("RDS only on target=aws")
    ingress = [
        r["Properties"]
        for r in resources(template, "AWS::EC2::SecurityGroupIngress").values()
        if "backup" in r["Properties"].get("Description", "")
    ]
    assert len(ingress) == 2 and all(r["FromPort"] == 5432 and r["ToPort"] == 5432 for r in ingress)


def test_outputs(synthesized) -> None:
    _, template, _ = synthesized
    assert {BACKUP_BUCKET_NAME, EXTERNAL_BACKUP_BUCKET_NAME, BACKUP_KEY_ARN} <= set(template.find_outputs("*"))
