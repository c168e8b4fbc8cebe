"""README "Deploying to AWS" stays true to the synthesized aws template: the quantities the cost
table prices, the resources teardown keeps (every DeletionPolicy Retain/Snapshot has a row, every
row has a resource), and the context keys it names."""

from __future__ import annotations

import re
from pathlib import Path

from infra import config as config_module

README = Path(__file__).resolve().parents[2] / "README.md"


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def table_row(text: str, first_cell: str) -> list[str]:
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0].startswith(first_cell):
            return cells
    raise LookupError(first_cell)


def count(s, cfn_type: str) -> int:
    return len(s.of_type(cfn_type))


def test_cost_table_prices_the_quantities_of_the_template(aws_synth):
    doc = section("Deploying to AWS")
    rds = table_row(doc, "RDS PostgreSQL `db.t4g.micro`")
    assert rds[1] == f"{count(aws_synth, 'AWS::RDS::DBInstance')} instances"
    assert aws_synth.context.get("dbInstanceClass", "t4g.micro") == "t4g.micro"
    for db in aws_synth.of_type("AWS::RDS::DBInstance").values():
        p = db["Properties"]
        assert (p["DBInstanceClass"], p["AllocatedStorage"], p["StorageType"], p["MultiAZ"]) == (
            "db.t4g.micro", "20", "gp3", False)  # fmt: skip
    # RDS Proxy bills the vCPUs of the instance behind it, at least 2 (t4g.micro has 2)
    assert table_row(doc, "RDS Proxy")[1] == f"{count(aws_synth, 'AWS::RDS::DBProxy')} proxies × 2 vCPUs"  # noqa: RUF001 -- the docs' own multiplication sign
    assert table_row(doc, "NAT gateway")[1] == str(count(aws_synth, "AWS::EC2::NatGateway"))
    interface = [e["Properties"] for e in aws_synth.of_type("AWS::EC2::VPCEndpoint").values()
                 if e["Properties"].get("VpcEndpointType") == "Interface"]  # fmt: skip
    azs = {len(e["SubnetIds"]) for e in interface}
    assert (
        table_row(doc, "interface endpoints")[1] == f"{len(interface)} \N{MULTIPLICATION SIGN} {azs.pop()} AZs"
        and not azs
    )
    assert table_row(doc, "KMS customer-managed keys")[1] == str(count(aws_synth, "AWS::KMS::Key"))
    assert table_row(doc, "Secrets Manager secrets")[1] == str(count(aws_synth, "AWS::SecretsManager::Secret"))
    assert table_row(doc, "CloudWatch alarms")[1] == str(count(aws_synth, "AWS::CloudWatch::Alarm"))
    # SnapStart caches one snapshot per live version: the memory of every SnapStart function
    snap = [
        f["Properties"] for f in aws_synth.of_type("AWS::Lambda::Function").values() if "SnapStart" in f["Properties"]
    ]
    gb = sum(f["MemorySize"] for f in snap) / 1024
    cache = table_row(doc, "Lambda SnapStart cache")
    assert cache[1] == f"{len(snap)} versions, {gb:g} GB" and len(snap) == count(aws_synth, "AWS::Lambda::Alias")
    price = float(re.fullmatch(r"\$([\d.]+) / GB-s", cache[2]).group(1))
    assert abs(float(cache[3]) - gb * 730 * 3600 * price) < 0.01, cache
    # the total is the sum of the rows (≈ rows rounded), within a dollar
    rows = re.findall(r"^\|[^|]+\|[^|]*\|[^|]*\| (?:≈ |< )?([\d.]+) \|$", doc, re.MULTILINE)
    assert len(rows) >= 10, rows
    found = re.search(r"\*\*total, idle\*\* \| \| \| \*\*≈ (\d+)\*\*", doc)
    assert found, "no total row"
    total = float(found.group(1))
    assert abs(sum(map(float, rows)) - total) <= 2.5, (rows, total)


# Retained resource (type, construct path fragment) -> the words its teardown row starts with.
KEPT = [
    ("AWS::RDS::DBInstance", "/Databases/", "a final snapshot of each RDS instance"),
    ("AWS::Backup::BackupVault", "/Backups/", "the two AWS Backup vaults"),
    ("AWS::KMS::Key", "/Backups/CopyVaultKey", "the two AWS Backup vaults and the copy vault's KMS key"),
    ("AWS::S3::Bucket", "/LocalBackup/", "the restore-point buckets"),
    ("AWS::KMS::Key", "/LocalBackup/Key", "the restore-point buckets"),
    ("AWS::S3::Bucket", "/Website/", "the website bucket and its access-log bucket"),
    ("AWS::Logs::LogGroup", "/Custom::CDKBucketDeployment", "the log group of CDK's BucketDeployment handler"),
]


def test_teardown_lists_exactly_what_the_template_retains(aws_synth):
    doc = section("Deploying to AWS")
    teardown = doc[doc.index("**Teardown.**") :]
    retained = {k: r for k, r in aws_synth.resources.items() if r.get("DeletionPolicy") in ("Retain", "Snapshot")}
    assert retained
    used = set()
    for _logical_id, res in retained.items():
        path = res["Metadata"]["aws:cdk:path"]
        rules = [rule for rule in KEPT if rule[0] == res["Type"] and rule[1] in path]
        assert rules, f"{path} ({res['Type']}) is retained but the teardown section does not say so"
        used.update(rules)
        assert res["Type"] != "AWS::RDS::DBInstance" or res["DeletionPolicy"] == "Snapshot"
    assert used == set(KEPT), f"rows for resources that are no longer retained: {set(KEPT) - used}"
    for _, _, words in KEPT:
        assert f"| {words}" in teardown, words
    deleted_by_default = {res["Type"] for res in aws_synth.resources.values() if "DeletionPolicy" not in res
                          or res["DeletionPolicy"] == "Delete"}  # fmt: skip
    assert {"AWS::DynamoDB::Table", "AWS::SQS::Queue", "AWS::SNS::Topic"} <= deleted_by_default
    assert "dbDeletionProtection=false" in teardown


def test_every_context_key_the_section_names_exists():
    doc = section("Deploying to AWS")
    table = doc[doc.index("| context | default |") : doc.index("**4. After the deploy.**")]
    keys = set(re.findall(r"^\| ((?:`\w+`(?: / |, )?)+)", table, re.MULTILINE))
    names = {k for cell in keys for k in re.findall(r"`(\w+)`", cell)}
    assert {"target", "alarmEmail", "dbMaxConnections", "dbMultiAz"} <= names
    documented = config_module.__doc__
    for name in names:
        assert f"`{name}`" in documented, f"{name} is not a context key of infra/config.py"


def test_the_concurrency_quota_the_section_asks_for_is_the_templates(aws_synth):
    """Lambda keeps 100 executions unreserved: the account quota must cover the reservations + 100."""
    doc = section("Deploying to AWS")
    reserved = sum(f["Properties"].get("ReservedConcurrentExecutions", 0)
                   for f in aws_synth.of_type("AWS::Lambda::Function").values())  # fmt: skip
    assert re.search(rf"reserve {reserved} concurrent executions", doc), reserved
    assert re.search(rf"must be at least {reserved + 100}\.", doc), reserved + 100
