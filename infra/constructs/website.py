"""S3 static website for the dashboard (web/) plus its generated config.json.

Public read of objects only (no listing, no write). On AWS the content and `config.json`
(`{"apiUrl", "metricsUrl"}`) are deployed with BucketDeployment. LocalStack runs
`Custom::CDKBucketDeployment` as a silent no-op, so on target=local the stack creates no
deployment at all and `make up` uploads web/ and config.json itself (bucket name is an output).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from aws_cdk import RemovalPolicy
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct

from infra.config import ValerixConfig
from infra.constructs.access_logs import access_logs_bucket
from infra.nag import acknowledge_all

# Browsers resolve *.localhost to loopback without DNS (offline-safe); LocalStack serves the
# website of <bucket> for any `<bucket>.s3-website.<domain>` Host header.
LOCALSTACK_WEBSITE_DOMAINS = ("s3-website.localhost", "s3-website.localhost.localstack.cloud")


class Website(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: ValerixConfig) -> None:
        super().__init__(scope, construct_id)
        removal = RemovalPolicy.RETAIN if config.is_aws else RemovalPolicy.DESTROY

        self.access_logs_bucket = access_logs_bucket(
            self, "AccessLogs", removal_policy=removal, serves="the website bucket"
        )

        self.bucket = s3.Bucket(
            self,
            "Bucket",
            website_index_document="index.html",
            encryption=s3.BucketEncryption.S3_MANAGED,
            # Objects are readable by anyone (that is the website); ACLs stay blocked and the
            # only public statement is s3:GetObject on objects (no list, no write).
            block_public_access=s3.BlockPublicAccess(
                block_public_acls=True,
                ignore_public_acls=True,
                block_public_policy=False,
                restrict_public_buckets=False,
            ),
            public_read_access=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs_bucket,
            server_access_logs_prefix="website/",
            removal_policy=removal,
        )
        acknowledge_all(
            self.bucket,
            {
                "AwsSolutions-S2": "Static website bucket: public *policy* access is required for "
                "s3:GetObject on the site; public ACLs remain blocked and ignored.",
                "AwsSolutions-S5": "Served by the S3 website endpoint (LocalStack emulates no "
                "CloudFront), so there is no CloudFront origin access identity to restrict to.",
                "AwsSolutions-S10": "S3 website endpoints are HTTP-only; a deny on "
                "aws:SecureTransport=false would block the website itself. Only public GetObject is allowed.",
            },
        )

        if config.is_aws:
            self.website_url = self.bucket.bucket_website_url
            self.origins = [self.bucket.bucket_website_url]
        else:
            endpoint = urlparse(config.localstack_endpoint)
            port = f":{endpoint.port}" if endpoint.port else ""
            self.origins = [f"http://{self.bucket.bucket_name}.{domain}{port}" for domain in LOCALSTACK_WEBSITE_DOMAINS]
            self.website_url = self.origins[0]
        self.deployment: s3deploy.BucketDeployment | None = None

    def deploy_content(self, *, web_dir: Path, api_url: str, metrics_url: str) -> s3deploy.BucketDeployment:
        """AWS only: upload web/ and a generated config.json."""
        sources = []
        if web_dir.is_dir() and any(p.is_file() for p in web_dir.rglob("*")):
            sources.append(s3deploy.Source.asset(str(web_dir), exclude=["config.json", "**/config.json"]))
        sources.append(s3deploy.Source.json_data("config.json", {"apiUrl": api_url, "metricsUrl": metrics_url}))
        self.deployment = s3deploy.BucketDeployment(
            self,
            "Content",
            sources=sources,
            destination_bucket=self.bucket,
            prune=True,
            memory_limit=256,
        )
        return self.deployment
