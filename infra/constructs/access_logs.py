"""The server-access-log bucket every logged bucket writes to (one definition, reused)."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct


def access_logs_bucket(scope: Construct, construct_id: str, *, removal_policy: RemovalPolicy, serves: str) -> s3.Bucket:
    """A private, encrypted, SSL-only bucket keeping access logs 90 days; `serves` names the
    buckets that log into it. (cdk-nag's S1 "no access logs" does not apply to a bucket that is a
    log destination, so it needs no acknowledgment.)"""
    bucket = s3.Bucket(
        scope,
        construct_id,
        encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(90))],
        removal_policy=removal_policy,
    )
    return bucket
