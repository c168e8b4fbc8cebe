"""Synth tests of the backup history lock and the one-attempt daily sync (issue 13, item 7).

On target=aws the functions cannot erase history: both backup buckets are versioned with S3
Object Lock (GOVERNANCE, default retention = the retention days), lifecycle rules expire old
objects, and no backup function may delete, bypass the lock or change it. On both targets the
daily sync has no EventBridge or Lambda async retries, every write is create-only and a KMS data
key needs the point's identity in its encryption context.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.constructs.local_backup import HISTORY_ERASING_ACTIONS

BACKUP_FUNCTIONS = {"Valerix-backup", "Valerix-backup-sync", "Valerix-backup-restore"}


def _bucket_ids(s) -> dict[str, str]:
    """'local' / 'external' -> logical id of the two backup buckets."""
    ids = {}
    for logical_id in s.of_type("AWS::S3::Bucket"):
        if logical_id.startswith("LocalBackupExternalBucket"):
            ids["external"] = logical_id
        elif logical_id.startswith("LocalBackupBucket"):
            ids["local"] = logical_id
    assert set(ids) == {"local", "external"}, ids
    return ids


def _functions(s) -> dict[str, dict]:
    return {
        r["Properties"]["FunctionName"]: r
        for r in s.of_type("AWS::Lambda::Function").values()
        if r["Properties"].get("FunctionName") in BACKUP_FUNCTIONS
    }


def _role_ids(s) -> dict[str, str]:
    return {name: fn["Properties"]["Role"]["Fn::GetAtt"][0] for name, fn in _functions(s).items()}


def _statements_of_role(s, role_id: str) -> list[dict]:
    out = []
    for policy in s.of_type("AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            out.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return out


def _actions(statement: dict) -> list[str]:
    action = statement["Action"]
    return action if isinstance(action, list) else [action]


def _allowed_on_buckets(s) -> list[tuple[str, str, dict]]:
    """(policy id, action, statement) for every Allow statement, of ANY role, that names a backup bucket."""
    buckets = set(_bucket_ids(s).values())
    found: list[tuple[str, str, dict[str, Any]]] = []
    for policy_id, policy in s.of_type("AWS::IAM::Policy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement.get("Effect", "Allow") == "Allow" and any(
                b in json.dumps(statement["Resource"]) for b in buckets
            ):
                found.extend((policy_id, a, statement) for a in _actions(statement))
    return found


# ------------------------------------------------------------------ target=aws: history lock


@pytest.mark.parametrize(
    ("bucket", "retention", "expiry"), [("local", 7, {"points/": 8, "sync/": 31}), ("external", 30, {"bundles/": 31})]
)
def test_aws_backup_buckets_are_versioned_and_object_locked(aws_synth, bucket, retention, expiry) -> None:
    props = aws_synth.resources[_bucket_ids(aws_synth)[bucket]]["Properties"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["ObjectLockEnabled"] is True
    assert props["ObjectLockConfiguration"] == {
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": retention}},
    }
    rules = props["LifecycleConfiguration"]["Rules"]
    by_prefix = {r["Prefix"]: r for r in rules if "Prefix" in r}
    assert {p: r["ExpirationInDays"] for p, r in by_prefix.items()} == expiry
    for rule in by_prefix.values():  # expired versions are removed after the lock, never before
        assert rule["ExpirationInDays"] > retention and rule["NoncurrentVersionExpiration"]["NoncurrentDays"] >= 1
    assert any(r.get("ExpiredObjectDeleteMarker") for r in rules)


def test_aws_functions_cannot_delete_or_unlock_backups(aws_synth) -> None:
    granted = _allowed_on_buckets(aws_synth)
    assert granted, "the functions must at least read and create"
    forbidden = [
        (p, a)
        for p, a, _ in granted
        if a in HISTORY_ERASING_ACTIONS or a in ("s3:*", "s3:Delete*", "s3:Put*") or a.startswith("s3:Delete")
    ]
    assert forbidden == []
    roles = _role_ids(aws_synth)
    for name, role in roles.items():
        actions = {a for st in _statements_of_role(aws_synth, role) for a in _actions(st)}
        assert not actions & set(HISTORY_ERASING_ACTIONS), name
    env = {name: fn["Properties"]["Environment"]["Variables"] for name, fn in _functions(aws_synth).items()}
    assert {e["BACKUP_PRUNE_MODE"] for e in env.values()} == {"lifecycle"}


def test_aws_bucket_policies_deny_history_erasure_to_the_functions(aws_synth) -> None:
    """An explicit Deny survives a later over-broad grant to the functions' roles."""
    roles = set(_role_ids(aws_synth).values())
    for bucket in _bucket_ids(aws_synth).values():
        (policy,) = [
            p
            for p in aws_synth.of_type("AWS::S3::BucketPolicy").values()
            if p["Properties"]["Bucket"] == {"Ref": bucket}
        ]
        denies = [
            st
            for st in policy["Properties"]["PolicyDocument"]["Statement"]
            if st["Effect"] == "Deny" and "Condition" not in st
        ]
        (deny,) = denies
        assert set(_actions(deny)) == set(HISTORY_ERASING_ACTIONS)
        assert {p["Fn::GetAtt"][0] for p in deny["Principal"]["AWS"]} == roles
        assert {"Fn::GetAtt": [bucket, "Arn"]} in deny["Resource"]


# ------------------------------------------------------------------ target=local


def test_local_buckets_prune_by_code(local_synth) -> None:
    """LocalStack runs no lifecycle expiry, so locally the functions delete what is past retention
    (and the buckets stay unlocked, where those deletes would only pile up locked versions)."""
    for bucket in _bucket_ids(local_synth).values():
        props = local_synth.resources[bucket]["Properties"]
        assert "ObjectLockEnabled" not in props and "VersioningConfiguration" not in props
    deletes = {a for _, a, _ in _allowed_on_buckets(local_synth) if a.startswith("s3:Delete")}
    assert deletes == {"s3:DeleteObject"}
    env = {name: fn["Properties"]["Environment"]["Variables"] for name, fn in _functions(local_synth).items()}
    assert {e["BACKUP_PRUNE_MODE"] for e in env.values()} == {"delete"}


# ------------------------------------------------------------------ both targets


def test_daily_sync_has_no_eventbridge_or_lambda_retries(any_synth) -> None:
    functions = {
        name: logical_id
        for logical_id, fn in any_synth.of_type("AWS::Lambda::Function").items()
        if (name := fn["Properties"].get("FunctionName")) in BACKUP_FUNCTIONS
    }
    sync_id = functions["Valerix-backup-sync"]
    (rule,) = [
        r
        for r in any_synth.of_type("AWS::Events::Rule").values()
        if r["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": [sync_id, "Arn"]}
    ]
    (target,) = rule["Properties"]["Targets"]
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 0
    (config,) = [
        c["Properties"]
        for c in any_synth.of_type("AWS::Lambda::EventInvokeConfig").values()
        if c["Properties"]["FunctionName"] == {"Ref": sync_id}
    ]
    assert config["MaximumRetryAttempts"] == 0
    assert 60 <= config["MaximumEventAgeInSeconds"] <= 600  # a stale event must not run on the next day


def test_every_backup_write_is_create_only(any_synth) -> None:
    puts = [st for _, a, st in _allowed_on_buckets(any_synth) if a == "s3:PutObject"]
    assert len(puts) == 3  # points, sync records/intents, external bundles
    for statement in puts:
        assert statement["Condition"] == {"Null": {"s3:if-none-match": "false"}}


def test_kms_data_keys_need_the_point_identity(any_synth) -> None:
    kms_statements = [
        st
        for role in _role_ids(any_synth).values()
        for st in _statements_of_role(any_synth, role)
        if any(a.startswith("kms:") for a in _actions(st))
    ]
    assert sorted(a for st in kms_statements for a in _actions(st)) == ["kms:Decrypt", "kms:GenerateDataKey"]
    for statement in kms_statements:
        assert statement["Condition"]["StringEquals"] == {"kms:EncryptionContext:purpose": "valerix-backup"}
        assert statement["Condition"]["StringLike"] == {"kms:EncryptionContext:point": "points/*"}
