"""Reasoned cdk-nag acknowledgments for the Lambda-backed providers CDK itself adds to a stack."""

from __future__ import annotations

from aws_cdk import CfnElement, Stack
from aws_cdk import aws_s3 as s3

from infra.nag import acknowledge_all

BASIC_ROLE = "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]"


def acknowledge_cdk_providers(stack: Stack, *, website_bucket: s3.IBucket) -> None:
    """The BucketDeployment provider (target=aws: uploads web/ + config.json to `website_bucket`)."""
    for child in stack.node.children:
        if child.node.id.startswith("Custom::CDKBucketDeployment"):
            label = "CDK BucketDeployment provider (uploads web/ + config.json, AWS only)"
            bucket_resource = website_bucket.node.default_child
            assert isinstance(bucket_resource, CfnElement)  # a typing guard: an s3.Bucket's is
            website_bucket_id = stack.resolve(stack.get_logical_id(bucket_resource))
            rules = {
                BASIC_ROLE: f"{label}: CDK-managed role that writes its own logs; not application code.",
                "AwsSolutions-L1": f"{label}: runtime chosen by CDK and updated with aws-cdk-lib.",
                "Serverless-LambdaLatestVersion": f"{label}: runtime chosen by CDK and updated with aws-cdk-lib.",
                "Serverless-LambdaDLQ": f"{label}: CloudFormation invokes it for the custom resource and "
                "waits for its answer; a failed upload fails (and rolls back) the deployment itself.",
                "Serverless-LambdaTracing": f"{label}: runs only during a deployment, whose events "
                "CloudFormation already records; not application code.",
            }
            for finding in (
                "Action::s3:GetObject*",
                "Action::s3:GetBucket*",
                "Action::s3:List*",
                "Action::s3:DeleteObject*",
                "Action::s3:Abort*",
                "Resource::arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-<AWS::AccountId>-<AWS::Region>/*",
                f"Resource::<{website_bucket_id}.Arn>/*",
            ):
                rules[f"AwsSolutions-IAM5[{finding}]"] = (
                    f"{label}: CDK's own grant, scoped to the CDK asset bucket (read) and the "
                    "website bucket (sync with prune); functions never get these."
                )
            acknowledge_all(child, rules)
