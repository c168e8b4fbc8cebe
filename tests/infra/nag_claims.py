"""One check per acknowledged cdk-nag rule: the acknowledgment's reason is a claim about the
stack, and its check proves that claim on the synthesized template (and, where the reason
speaks of code, on that code).

How to use (test_infra_nag.py does it for every synth): every suppressed finding in the
validation report becomes a `Finding`; `CLAIMS[finding.rule]` must exist and must not raise.
A new acknowledgment therefore needs a new entry here — write the check so that it would fail
if the reason stopped being true (tests/infra/test_infra_nag.py shows each check failing on a
template where the claim is false).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

REPO_ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------ template helpers
def ref(value: Any) -> str:
    """The logical id a Ref/GetAtt names; where the template must hold one."""
    found = ref_id(value)
    if found is None:
        raise AssertionError(f"not a Ref or Fn::GetAtt: {value!r}")
    return found


def ref_id(value: Any) -> str | None:
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            return value["Fn::GetAtt"][0]
    return None


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def refs_in(value: Any) -> set[str]:
    """Every logical id a template value refers to (Ref, GetAtt, Sub ${...})."""
    found: set[str] = set()
    if isinstance(value, dict):
        if "Ref" in value and isinstance(value["Ref"], str) and not value["Ref"].startswith("AWS::"):
            found.add(value["Ref"])
        if "Fn::GetAtt" in value:
            found.add(value["Fn::GetAtt"][0])
        for v in value.values():
            found |= refs_in(v)
    elif isinstance(value, list):
        for v in value:
            found |= refs_in(v)
    elif isinstance(value, str):
        found |= set(re.findall(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z]+)?\}", value))
    return found


@dataclass
class Template:
    resources: dict[str, dict]

    @classmethod
    def of(cls, template: dict) -> Template:
        return cls(template["Resources"])

    def of_type(self, cfn_type: str) -> dict[str, dict]:
        return {k: r for k, r in self.resources.items() if r["Type"] == cfn_type}

    def props(self, logical_id: str) -> dict:
        return self.resources[logical_id].get("Properties", {})

    def path_of(self, logical_id: str) -> str:
        return self.resources.get(logical_id, {}).get("Metadata", {}).get("aws:cdk:path", "")

    def by_path(self, construct_path: str) -> str | None:
        for logical_id, res in self.resources.items():
            if res.get("Metadata", {}).get("aws:cdk:path") == construct_path:
                return logical_id
        return None

    def referrers(self, logical_id: str, cfn_type: str | None = None) -> dict[str, dict]:
        return {k: r for k, r in self.resources.items() if (cfn_type is None or r["Type"] == cfn_type)
                and logical_id in refs_in(r.get("Properties", {}))}  # fmt: skip

    def alarms_on(self, namespace: str, metric: str, dimension: str, logical_id: str) -> list[dict]:
        out = []
        for alarm in self.of_type("AWS::CloudWatch::Alarm").values():
            p = alarm["Properties"]
            if (
                p.get("Namespace") == namespace
                and p.get("MetricName") == metric
                and any(d["Name"] == dimension and logical_id in refs_in(d["Value"]) for d in p.get("Dimensions", []))
            ):
                out.append(p)
        return out

    def assert_notifying_alarm(self, namespace: str, metric: str, dimension: str, logical_id: str) -> None:
        found = [a for a in self.alarms_on(namespace, metric, dimension, logical_id) if a.get("AlarmActions")]
        assert found, f"no alarm with actions on {namespace} {metric} of {logical_id}"

    def policy_statements(self, policy_id: str) -> list[dict]:
        res = self.resources[policy_id]
        if res["Type"] == "AWS::IAM::Role":
            return [st for p in res["Properties"].get("Policies", []) for st in p["PolicyDocument"]["Statement"]]
        return res["Properties"]["PolicyDocument"]["Statement"]

    def trust_services(self, role_id: str) -> set[str]:
        doc = self.props(role_id)["AssumeRolePolicyDocument"]
        return {svc for st in doc["Statement"] for svc in as_list(st.get("Principal", {}).get("Service", []))}

    def queue_dead_letter_targets(self) -> set[str]:
        """Queues that are a dead-letter queue of an SQS queue or an SNS subscription."""
        targets = set()
        for res in self.resources.values():
            if res["Type"] in ("AWS::SQS::Queue", "AWS::SNS::Subscription"):
                redrive = res.get("Properties", {}).get("RedrivePolicy")
                if redrive:
                    targets.add(ref(redrive["deadLetterTargetArn"]))
        return targets


@dataclass
class Finding:
    template: Template
    target: str
    rule: str  # e.g. AwsSolutions-IAM5 (no finding detail)
    detail: str  # e.g. Resource::* ("" for rules without one)
    construct_path: str  # the violating construct (…/Resource)
    logical_id: str
    reason: str
    acknowledged_at: str

    @property
    def resource(self) -> dict:
        return self.template.resources[self.logical_id]

    @property
    def props(self) -> dict:
        return self.resource.get("Properties", {})

    @property
    def cdk_internal(self) -> bool:
        """A provider CDK adds itself (BucketDeployment, custom resource providers)."""
        return "/Custom::" in "/" + self.construct_path

    def fail(self, why: str) -> NoReturn:
        raise AssertionError(f"{self.rule}[{self.detail}] on {self.construct_path} ({self.target}): {why}\n"
                             f"reason given: {self.reason}")  # fmt: skip


def findings_of(report: dict, template: dict, target: str) -> list[Finding]:
    t = Template.of(template)
    out = []
    for plugin in report.get("pluginReports", []):
        for v in plugin.get("suppressedViolations", []):
            rule, _, detail = v["ruleName"].partition("[")
            for construct in v["violatingConstructs"]:
                path = construct["constructPath"]
                logical_id = t.by_path(path)
                assert logical_id, f"no resource for {path}"
                out.append(Finding(t, target, rule, detail.rstrip("]"), path, logical_id, v["reason"],
                                   v["acknowledgedAt"]))  # fmt: skip
    return out


def source(relative: str) -> str:
    return (REPO_ROOT / relative).read_text()


# ------------------------------------------------------------------------------ the checks
# Actions AWS documents without resource-level permissions (Resource must be "*").
NO_RESOURCE_LEVEL_ACTIONS = {
    "ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses",
    "xray:PutTraceSegments", "xray:PutTelemetryRecords",
    # CloudWatch Logs log delivery, for the FIS experiment log (infra/constructs/fis.py)
    "logs:CreateLogDelivery", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies", "logs:DescribeLogGroups",
}  # fmt: skip
S3_OBJECT_ACTIONS = re.compile(r"^s3:(GetObject|PutObject|DeleteObject|Abort|ListMultipart|GetObjectVersion)")
CDK_ASSETS_BUCKET = re.compile(r"cdk-[a-z0-9]+-assets-")


def check_runtime(f: Finding) -> None:
    from infra import bundling
    from infra.constructs.service_function import RUNTIME

    if f.cdk_internal:
        return  # "runtime chosen by CDK": the function belongs to a CDK provider (checked by cdk_internal)
    if f.props.get("Runtime") != RUNTIME.name or RUNTIME.name != f"python{bundling.LAMBDA_PYTHON_VERSION}":
        f.fail("the function does not run the runtime the AWS bundle is built for")


def check_iam5(f: Finding) -> None:
    statements = f.template.policy_statements(f.logical_id)
    if f.detail == "Resource::*":
        for st in statements:
            if "*" in as_list(st.get("Resource")):
                extra = set(as_list(st["Action"])) - NO_RESOURCE_LEVEL_ACTIONS
                if extra:
                    f.fail(f"Resource * also grants {sorted(extra)}")
        return
    if f.cdk_internal:  # BucketDeployment: CDK's grant on the asset bucket and the website bucket
        for st in statements:
            for resource in as_list(st.get("Resource")):
                website = any(f.template.path_of(b).endswith("/Website/Bucket/Resource") for b in refs_in(resource))
                if not (website or CDK_ASSETS_BUCKET.search(str(resource))):
                    f.fail(f"CDK provider grant reaches beyond its buckets: {resource}")
        return
    match = re.fullmatch(r"Resource::<([A-Za-z0-9]+)\.Arn>/(.+)", f.detail)
    if not match:
        f.fail("no check for this IAM5 finding: add one to tests/infra/nag_claims.py")
    bucket, prefix = match.groups()
    if f.template.resources[bucket]["Type"] != "AWS::S3::Bucket" or prefix.strip("*/") == "":
        f.fail("the wildcard is not limited to a key prefix of one bucket")
    scoped = [st for st in statements
              if any(bucket in refs_in(r) and f"/{prefix}" in str(r) for r in as_list(st.get("Resource")))]  # fmt: skip
    if not scoped:
        f.fail("no statement uses this resource")
    for st in scoped:
        bad = [a for a in as_list(st["Action"]) if not S3_OBJECT_ACTIONS.match(a)]
        if bad:
            f.fail(f"{bad} on objects under {prefix}")


def check_iam4(f: Finding) -> None:
    policy = f.detail.rsplit("/", 1)[-1]
    services = f.template.trust_services(f.logical_id)
    expected = {
        "AmazonAPIGatewayPushToCloudWatchLogs": {"apigateway.amazonaws.com"},
        "AWSBackupServiceRolePolicyForBackup": {"backup.amazonaws.com"},
        "AWSBackupServiceRolePolicyForRestores": {"backup.amazonaws.com"},
        "AWSLambdaBasicExecutionRole": {"lambda.amazonaws.com"},
    }.get(policy)
    if expected is None:
        f.fail("no check for this managed policy: add one to tests/infra/nag_claims.py")
    if services != expected:
        f.fail(f"the role is assumable by {services}, not only {expected}")
    if policy == "AWSLambdaBasicExecutionRole" and not f.cdk_internal:
        f.fail("only CDK's own providers may use the basic execution managed policy")


def check_secret_rotation(f: Finding) -> None:
    t = f.template
    if t.referrers(f.logical_id, "AWS::SecretsManager::RotationSchedule"):
        f.fail("the secret is rotated: the acknowledgment is wrong")
    api_keys = [k for k, r in t.of_type("AWS::ApiGateway::ApiKey").items()
                if f.logical_id in refs_in(r["Properties"].get("Value"))]  # fmt: skip
    if "API Gateway API key" in f.reason:
        if f.target == "aws" and not api_keys:
            f.fail("the API key does not take its value from this secret")
        if f.target == "local":
            (key,) = t.of_type("AWS::ApiGateway::ApiKey").values()
            if key["Properties"]["Value"] != f.props.get("SecretString"):
                f.fail("the API key and the secret hold different values")
        if "ADMIN_KEY_CACHE_SECONDS" not in source("functions/common/admin_auth.py"):
            f.fail("the functions do not re-read the admin key periodically")
    elif f.reason.startswith("Local target"):
        if f.target != "local" or "127.0.0.1" not in str(f.props.get("SecretString")):
            f.fail("not a secret pointing at a loopback Postgres server")
    else:  # RDS credentials
        db = source("functions/common/db.py")
        if not ("28P01" in db and "force_fetch" in db):
            f.fail("the functions do not re-read the secret after a failed login")


def check_api_gateway(f: Finding) -> None:
    t = f.template
    methods = t.of_type("AWS::ApiGateway::Method")
    if f.rule == "AwsSolutions-APIG2":
        if t.of_type("AWS::ApiGateway::RequestValidator") or t.of_type("AWS::ApiGateway::Model"):
            f.fail("the gateway validates requests after all")
        if any(m["Properties"]["Integration"].get("Type") not in ("AWS_PROXY", "MOCK") for m in methods.values()):
            f.fail("a route is not a Lambda proxy route (its function would not see the raw request)")
    elif f.rule == "AwsSolutions-APIG3":
        if t.of_type("AWS::WAFv2::WebACLAssociation"):
            f.fail("a WebACL is associated after all")
        settings = f.props.get("MethodSettings", [])
        if not any("ThrottlingRateLimit" in s and "ThrottlingBurstLimit" in s for s in settings):
            f.fail("the stage is not throttled")
        if not any("Throttle" in p["Properties"] for p in t.of_type("AWS::ApiGateway::UsagePlan").values()):
            f.fail("the admin usage plan has no throttle")
    elif f.rule in ("AwsSolutions-APIG4", "AwsSolutions-COG4"):
        if f.props.get("AuthorizationType", "NONE") != "NONE" or t.of_type("AWS::Cognito::UserPool"):
            f.fail("the method has an authorizer after all")
        if f.rule == "AwsSolutions-APIG4":
            keyed = [m for m in methods.values() if m["Properties"].get("ApiKeyRequired")]
            if not keyed or "hmac.compare_digest" not in source("functions/common/admin_auth.py"):
                f.fail("admin routes are not keyed at the gateway and checked in constant time by the function")
    elif f.rule == "Serverless-APIGWXrayEnabled" and f.props.get("TracingEnabled"):
        f.fail("the stage is traced: the acknowledgment is stale")


def check_website_bucket(f: Finding) -> None:
    t = f.template
    bucket_id = f.logical_id if f.resource["Type"] == "AWS::S3::Bucket" else ref(f.props.get("Bucket"))
    bucket = t.props(bucket_id)
    if "WebsiteConfiguration" not in bucket:
        f.fail("not the static website bucket")
    block = bucket.get("PublicAccessBlockConfiguration", {})
    if not (block.get("BlockPublicAcls") and block.get("IgnorePublicAcls")):
        f.fail("public ACLs are not blocked")
    for policy in t.referrers(bucket_id, "AWS::S3::BucketPolicy").values():
        for st in policy["Properties"]["PolicyDocument"]["Statement"]:
            if (
                st["Effect"] == "Allow"
                and st.get("Principal") in ("*", {"AWS": "*"})
                and as_list(st["Action"]) != ["s3:GetObject"]
            ):
                f.fail(f"public statement allows {st['Action']}")
    if f.rule == "AwsSolutions-S5" and t.of_type("AWS::CloudFront::Distribution"):
        f.fail("there is a CloudFront distribution after all")


def check_endpoint_ingress(f: Finding) -> None:
    for rule in f.props.get("SecurityGroupIngress", []):
        cidr = rule.get("CidrIp")
        if not (isinstance(cidr, dict) and "Fn::GetAtt" in cidr and cidr["Fn::GetAtt"][1] == "CidrBlock"):
            f.fail(f"ingress from {cidr}, not the VPC CIDR")
        if (rule.get("FromPort"), rule.get("ToPort")) != (443, 443):
            f.fail("ingress on ports other than 443")


def check_rds(f: Finding) -> None:
    t = f.template
    p = f.props
    if f.rule == "AwsSolutions-RDS11":
        for sg in p.get("VPCSecurityGroups", []):
            for ingress in t.referrers(ref(sg), "AWS::EC2::SecurityGroupIngress").values():
                ip = ingress["Properties"]
                if ref_id(ip.get("GroupId")) == ref_id(sg) and "SourceSecurityGroupId" not in ip:
                    f.fail("the database admits more than a security group of its functions")
            if t.props(ref(sg)).get("SecurityGroupIngress"):
                f.fail("the database security group has inline (CIDR) ingress")
        if p.get("PubliclyAccessible"):
            f.fail("the instance is public")
    elif f.rule == "AwsSolutions-RDS3":
        if p.get("MultiAZ"):
            f.fail("the instance is Multi-AZ: stale acknowledgment")
        rules = []
        for selection in t.of_type("AWS::Backup::BackupSelection").values():
            sp = selection["Properties"]
            if any(f.logical_id in refs_in(r) for r in sp["BackupSelection"]["Resources"]):
                rules += t.props(ref(sp["BackupPlanId"]))["BackupPlan"]["BackupPlanRule"]
        if not any("*/4" in r["ScheduleExpression"] for r in rules) or not any(r.get("CopyActions") for r in rules):
            f.fail("no 4-hourly backup and no copy to a second vault")
    elif f.rule == "AwsSolutions-RDS10" and (
        p.get("DeletionProtection") or f.resource.get("DeletionPolicy") != "Snapshot"
    ):
        f.fail("deletion protection is on, or no final snapshot is taken")


def check_lambda_dlq(f: Finding) -> None:
    """Every invoker of the function is synchronous, an SQS source with a DLQ, or a schedule."""
    t = f.template
    if f.cdk_internal:
        custom = [r for r in t.resources.values() if r["Type"].startswith("Custom::")
                  and f.logical_id in refs_in(r["Properties"].get("ServiceToken"))]  # fmt: skip
        if not custom:
            f.fail("not the handler of a CloudFormation custom resource")
        return
    for perm in t.referrers(f.logical_id, "AWS::Lambda::Permission").values():
        principal = perm["Properties"]["Principal"]
        if principal == "events.amazonaws.com":
            rule = ref(perm["Properties"]["SourceArn"])
            if "ScheduleExpression" not in t.props(rule):
                f.fail("invoked by an EventBridge event pattern, whose events would be worth keeping")
        elif principal != "apigateway.amazonaws.com":
            f.fail(f"invoked asynchronously by {principal}?")
    for mapping in t.referrers(f.logical_id, "AWS::Lambda::EventSourceMapping").values():
        queue = ref(mapping["Properties"]["EventSourceArn"])
        if "RedrivePolicy" not in t.props(queue):
            f.fail("its SQS source has no dead-letter queue")
    t.assert_notifying_alarm("AWS/Lambda", "Errors", "FunctionName", f.logical_id)


def check_tracing(f: Finding) -> None:
    if f.props.get("TracingConfig", {}).get("Mode") == "Active":
        f.fail("the function is traced: the acknowledgment is stale")
    if not f.cdk_internal and "correlation" not in source("functions/common/api.py").lower():
        f.fail("log lines carry no correlation id")


def check_event_source_mapping(f: Finding) -> None:
    t = f.template
    queue = ref(f.props.get("EventSourceArn"))
    if t.resources[queue]["Type"] != "AWS::SQS::Queue":
        f.fail("the source is not an SQS queue: it could have an on-failure destination")
    dlq = ref(t.props(queue).get("RedrivePolicy", {}).get("deadLetterTargetArn"))
    if dlq is None:
        f.fail("the source queue has no dead-letter queue")
    t.assert_notifying_alarm("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", dlq)


def check_dead_letter_queue(f: Finding) -> None:
    t = f.template
    if f.logical_id not in t.queue_dead_letter_targets():
        f.fail("this queue is nobody's dead-letter queue")
    t.assert_notifying_alarm("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", f.logical_id)


def check_schedule(f: Finding) -> None:
    if "ScheduleExpression" not in f.props:
        f.fail("not a schedule: an event pattern's events carry data worth keeping")
    for target in f.props.get("Targets", []):
        if "InputPath" in target or "InputTransformer" in target:
            f.fail("the target receives event data, not just the time")
    f.template.assert_notifying_alarm("AWS/Events", "FailedInvocations", "RuleName", f.logical_id)


def check_async_failure_destination(f: Finding) -> None:
    if f.props.get("MaximumRetryAttempts") != 0:
        f.fail("the invoke config does not turn retries off")
    function = ref_id(f.props["FunctionName"]) or next(iter(refs_in(f.props["FunctionName"])), None)
    if function is None:
        f.fail("the function is neither referenced nor named")
    f.template.assert_notifying_alarm("AWS/Lambda", "Errors", "FunctionName", function)


def check_sns_dead_letter_queue(f: Finding) -> None:
    subs = [s for s in f.template.of_type("AWS::SNS::Subscription").values()
            if ref_id(s["Properties"].get("RedrivePolicy", {}).get("deadLetterTargetArn")) == f.logical_id]  # fmt: skip
    if not subs:
        f.fail("no SNS subscription uses this queue as its dead-letter queue")


CLAIMS: dict[str, Callable[[Finding], None]] = {
    "AwsSolutions-L1": check_runtime,
    "Serverless-LambdaLatestVersion": check_runtime,
    "AwsSolutions-IAM4": check_iam4,
    "AwsSolutions-IAM5": check_iam5,
    "AwsSolutions-SMG4": check_secret_rotation,
    "AwsSolutions-APIG2": check_api_gateway,
    "AwsSolutions-APIG3": check_api_gateway,
    "AwsSolutions-APIG4": check_api_gateway,
    "AwsSolutions-COG4": check_api_gateway,
    "Serverless-APIGWXrayEnabled": check_api_gateway,
    "AwsSolutions-S2": check_website_bucket,
    "AwsSolutions-S5": check_website_bucket,
    "AwsSolutions-S10": check_website_bucket,
    "AwsSolutions-EC23": check_endpoint_ingress,
    "AwsSolutions-RDS3": check_rds,
    "AwsSolutions-RDS10": check_rds,
    "AwsSolutions-RDS11": check_rds,
    "AwsSolutions-SQS3": check_sns_dead_letter_queue,
    "Serverless-LambdaDLQ": check_lambda_dlq,
    "Serverless-LambdaTracing": check_tracing,
    "Serverless-LambdaEventSourceMappingDestination": check_event_source_mapping,
    "Serverless-SQSRedrivePolicy": check_dead_letter_queue,
    "Serverless-EventBusDLQ": check_schedule,
    "Serverless-LambdaAsyncFailureDestination": check_async_failure_destination,
}


def check_all(findings: Iterable[Finding]) -> None:
    missing = sorted({f.rule for f in findings if f.rule not in CLAIMS})
    assert not missing, f"acknowledged rules without a claim check in tests/infra/nag_claims.py: {missing}"
    for finding in findings:
        CLAIMS[finding.rule](finding)
