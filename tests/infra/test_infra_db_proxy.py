"""Connections that hold under a burst (issue 15): RDS Proxy, reserved concurrency, pool caps.

The connection arithmetic of infra/constructs/db_limits.py is recomputed here from the
synthesized template alone — ReservedConcurrentExecutions, DB_POOL_MAX, the proxy's
MaxConnectionsPercent, the parameter group's max_connections and the instance class — so a
change anywhere (a new function, a bigger pool, another class) that breaks

    max environments x connections per environment <= max_connections - reserve

fails here even if db_limits.py itself were wrong.
"""

from __future__ import annotations

import json
import re

import pytest

from infra.constructs import db_limits
from infra.constructs.databases import RDS_CA_BUNDLE_PATH
from tests.infra.infra_synth import synth
from tests.infra.test_infra_stack import ref_id

# Handlers whose code opens one connection per database at a time and closes it (no pool):
# migrate (master session closed before the owner's opens), backup (one dump at a time),
# restore (CREATE DATABASE on one connection, then the load on another, one after the other).
SEQUENTIAL_HANDLERS = {
    "functions.order.handler.migrate_handler", "functions.inventory.handler.migrate_handler",
    "functions.backup.handler.backup_handler", "functions.backup.handler.restore_handler",
}  # fmt: skip
SECRET_VARIABLE = re.compile(r"(^|_)DB_SECRET_ARN$")


def functions(s) -> dict[str, dict]:
    return {k: r["Properties"] for k, r in s.of_type("AWS::Lambda::Function").items()
            if "FunctionName" in r["Properties"]}  # fmt: skip


def logical_id(value: object) -> str:
    """The resource a Ref or GetAtt names (a test fails on anything else)."""
    found = ref_id(value)
    assert found is not None, f"neither a Ref nor a GetAtt: {value!r}"
    return found


def instance_dbname(s) -> dict[str, str]:
    """DBInstance logical id -> its database (order_db / inventory_db)."""
    return {k: r["Properties"]["DBName"] for k, r in s.of_type("AWS::RDS::DBInstance").items()}


def secret_dbname(s, secret_ref: object) -> str:
    """The database a secret logs in to: aws, through its attachment to an instance; local, the
    `dbname` in the secret's value (or its generated value's template)."""
    resource = s.resources[ref_id(secret_ref)]
    if resource["Type"] == "AWS::SecretsManager::SecretTargetAttachment":
        return instance_dbname(s)[logical_id(resource["Properties"]["TargetId"])]
    p = resource["Properties"]
    value = p.get("SecretString") or p["GenerateSecretString"]["SecretStringTemplate"]
    return json.loads(value)["dbname"]


def databases_of(s, env: dict) -> set[str]:
    """The databases a function's secrets log in to."""
    return {secret_dbname(s, value) for name, value in env.items() if SECRET_VARIABLE.search(name)}


def proxies(s) -> dict[str, dict]:
    """dbname -> {"proxy": logical id, "percent": MaxConnectionsPercent, "props": DBProxy props}."""
    names = instance_dbname(s)
    result = {}
    for group in s.of_type("AWS::RDS::DBProxyTargetGroup").values():
        p = group["Properties"]
        (instance,) = p["DBInstanceIdentifiers"]
        proxy = ref_id(p["DBProxyName"])
        percent = p["ConnectionPoolConfigurationInfo"]["MaxConnectionsPercent"]
        props = s.resources[proxy]["Properties"]
        result[names[logical_id(instance)]] = {"proxy": proxy, "percent": percent, "props": props}
    return result


def max_connections_of(s) -> dict[str, int]:
    """dbname -> max_connections from the instance's parameter group, checked against its class."""
    result = {}
    for instance in s.of_type("AWS::RDS::DBInstance").values():
        p = instance["Properties"]
        group = s.resources[ref_id(p["DBParameterGroupName"])]["Properties"]
        pinned = int(group["Parameters"]["max_connections"])
        assert pinned == db_limits.max_connections(p["DBInstanceClass"]), "max_connections is not the class's number"
        assert pinned <= db_limits.postgres_max_connections_upper_bound(p["DBInstanceClass"])
        result[p["DBName"]] = pinned
    return result


def connection_load(s) -> dict[str, dict[str, int]]:
    """dbname -> {"proxied": n, "direct": n}: reserved concurrency x connections per environment."""
    load: dict[str, dict[str, int]] = {}
    proxy_of = {db: info["proxy"] for db, info in proxies(s).items()} if s.target == "aws" else {}
    for props in functions(s).values():
        env = props.get("Environment", {}).get("Variables", {})
        dbs = databases_of(s, env)
        if not dbs:
            assert "DB_POOL_MAX" not in env and "DB_PROXY_ENDPOINT" not in env
            continue
        name = props["FunctionName"]
        environments = props.get("ReservedConcurrentExecutions")
        assert isinstance(environments, int) and environments >= 1, f"{name} uses {dbs} without reserved concurrency"
        if "DB_POOL_MAX" in env:
            per_environment = int(env["DB_POOL_MAX"])
        else:
            assert props["Handler"] in SEQUENTIAL_HANDLERS, f"{name} connects to {dbs} without DB_POOL_MAX"
            per_environment = 1
        proxy = env.get("DB_PROXY_ENDPOINT")
        for db in dbs:
            if proxy is not None:
                assert len(dbs) == 1 and proxy == {"Fn::GetAtt": [proxy_of[db], "Endpoint"]}, f"{name}: wrong proxy"
            kind = "proxied" if proxy is not None else "direct"
            load.setdefault(db, {"proxied": 0, "direct": 0})[kind] += environments * per_environment
    return load


# ---------------------------------------------------------------------------------- the inequality
def test_every_database_holds_its_functions_connections_even_if_every_proxy_connection_were_pinned(aws_synth):
    limits, load, proxy = max_connections_of(aws_synth), connection_load(aws_synth), proxies(aws_synth)
    assert set(limits) == set(load) == set(proxy) == {"order_db", "inventory_db"}
    for db, max_conn in limits.items():
        proxy_opens = max_conn * proxy[db]["percent"] // 100
        assert load[db]["proxied"] <= proxy_opens, (db, load[db], proxy_opens)
        assert proxy_opens + load[db]["direct"] <= max_conn - db_limits.RESERVED_CONNECTIONS, (db, load[db])
        # the worked example in db_limits' docstring is the synthesized one
        example = re.search(rf"{db}\s+proxied .*= (\d+)\n\s+direct .*= +(\d+)", db_limits.__doc__)
        assert example and tuple(map(int, example.groups())) == (load[db]["proxied"], load[db]["direct"]), db
        assert f"proxy = floor({max_conn} x 0.{proxy[db]['percent']}) = {proxy_opens}" in db_limits.__doc__


def test_local_functions_get_the_same_caps_and_fit_without_a_proxy(local_synth):
    """No proxy locally: every connection goes straight to the local server, which runs with the
    same max_connections (tests/e2e/test_local_max_connections.py checks the servers)."""
    assert not local_synth.of_type("AWS::RDS::DBProxy")
    max_conn = db_limits.stack_max_connections(local_synth.context)
    load = connection_load(local_synth)
    assert set(load) == {"order_db", "inventory_db"}
    for db, counts in load.items():
        assert counts["proxied"] == 0
        assert counts["direct"] <= max_conn - db_limits.RESERVED_CONNECTIONS, (db, counts, max_conn)
    aws_equivalent = {db.removesuffix("_db"): b for db, b in db_limits.check_budget(max_conn).items()}
    assert {db: c["direct"] for db, c in load.items()} == {
        f"{db}_db": b.proxied + b.direct for db, b in aws_equivalent.items()
    }


def test_queue_consumers_scale_no_further_than_their_reserved_concurrency(aws_synth):
    """Lambda throttling an SQS poller returns messages to the queue (receive count up, towards
    the DLQ): the event source's MaximumConcurrency stays within the reserved concurrency."""
    fns = aws_synth.of_type("AWS::Lambda::Function")
    mappings = aws_synth.of_type("AWS::Lambda::EventSourceMapping").values()
    assert mappings
    for mapping in mappings:
        p = mapping["Properties"]
        reserved = fns[ref_id(p["FunctionName"])]["Properties"]["ReservedConcurrentExecutions"]
        assert 2 <= p["ScalingConfig"]["MaximumConcurrency"] <= reserved


# ---------------------------------------------------------------------------------- the proxy
def test_each_database_has_a_tls_only_proxy_that_logs_in_as_the_app_role_only(aws_synth):
    attachments = aws_synth.of_type("AWS::SecretsManager::SecretTargetAttachment")
    for db, info in proxies(aws_synth).items():
        p = info["props"]
        assert p["EngineFamily"] == "POSTGRESQL" and p["RequireTLS"] is True
        (auth,) = p["Auth"]  # one login: no master, owner or reader through the proxy
        assert auth["AuthScheme"] == "SECRETS" and auth["IAMAuth"] == "DISABLED"
        assert auth["ClientPasswordAuthType"] == "POSTGRES_SCRAM_SHA_256"
        secret = aws_synth.resources[ref_id(attachments[ref_id(auth["SecretArn"])]["Properties"]["SecretId"])]
        template = json.loads(secret["Properties"]["GenerateSecretString"]["SecretStringTemplate"])
        assert template["username"] == f"{db.removesuffix('_db')}_app"
        subnets = [aws_synth.resources[ref_id(sn)]["Properties"]["Tags"] for sn in p["VpcSubnetIds"]]
        assert len(subnets) == 2
        assert all({"Key": "aws-cdk:subnet-type", "Value": "Isolated"} in tags for tags in subnets)


def test_run_time_functions_reach_only_the_proxy_and_verify_its_certificate(aws_synth):
    """The app functions' security group is admitted by the proxy, never by the instance; the
    instance admits the proxy and the functions that connect directly (migrate, backup,
    reconcile)."""
    ingress = [r["Properties"] for r in aws_synth.of_type("AWS::EC2::SecurityGroupIngress").values()]
    proxy_sgs = {ref_id(sg) for info in proxies(aws_synth).values() for sg in info["props"]["VpcSecurityGroupIds"]}
    db_sgs = {ref_id(sg) for r in aws_synth.of_type("AWS::RDS::DBInstance").values()
              for sg in r["Properties"]["VPCSecurityGroups"]}  # fmt: skip
    app_sgs = set()
    for props in functions(aws_synth).values():
        env = props.get("Environment", {}).get("Variables", {})
        if "DB_PROXY_ENDPOINT" in env:
            assert env["DB_TLS"] == "verify-full" and env["DB_CA_BUNDLE"] == RDS_CA_BUNDLE_PATH
            app_sgs.update(ref_id(sg) for sg in props["VpcConfig"]["SecurityGroupIds"])
    assert app_sgs and len(proxy_sgs) == len(db_sgs) == 2
    for rule in ingress:
        target, source = ref_id(rule["GroupId"]), ref_id(rule["SourceSecurityGroupId"])
        if target in proxy_sgs:
            assert source in app_sgs and rule["FromPort"] == 5432
        elif target in db_sgs:
            assert source not in app_sgs, "a run-time function could bypass the proxy"
    admitted_by_proxies = {ref_id(r["SourceSecurityGroupId"]) for r in ingress if ref_id(r["GroupId"]) in proxy_sgs}
    assert admitted_by_proxies == app_sgs
    assert all(any(ref_id(r["GroupId"]) in db_sgs and ref_id(r["SourceSecurityGroupId"]) == p for r in ingress)
               for p in proxy_sgs)  # fmt: skip


def test_proxy_alarms_watch_what_the_proxy_may_open(aws_synth):
    alarms = [r["Properties"] for r in aws_synth.of_type("AWS::CloudWatch::Alarm").values()]
    limits, proxy = max_connections_of(aws_synth), proxies(aws_synth)
    for db, info in proxy.items():
        mine = [a for a in alarms if a.get("Namespace") == "AWS/RDS"
                and {"Name": "ProxyName", "Value": {"Ref": info["proxy"]}} in a.get("Dimensions", [])]  # fmt: skip
        by_metric = {a["MetricName"]: a for a in mine}
        assert set(by_metric) == {"DatabaseConnections", "DatabaseConnectionsBorrowLatency"}
        opens = limits[db] * info["percent"] // 100
        assert by_metric["DatabaseConnections"]["Threshold"] == int(opens * 0.9)


# ---------------------------------------------------------------------------------- refusals
def test_synth_fails_when_the_budget_does_not_fit(tmp_path):
    with pytest.raises(
        db_limits.ConnectionBudgetError,
        match=r"order_db: its functions may hold 61 connections "
        r"through RDS Proxy, but with max_connections 60 the proxy may open only \d+",
    ):
        synth("aws", tmp_path, dbMaxConnections="60", nag="false")


def test_max_connections_above_what_the_class_memory_allows_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"above what db\.t4g\.micro's memory allows"):
        synth("local", tmp_path, dbMaxConnections="500", nag="false")


def test_budget_entries_name_real_functions_and_are_sane():
    with pytest.raises(db_limits.ConnectionBudgetError, match="direct connections alone"):
        db_limits.database_budget("order", 9)
    assert db_limits.max_connections("t4g.micro") == 84 == db_limits.stack_max_connections({})
    assert db_limits.max_connections("db.t4g.small") == 168
    with pytest.raises(ValueError, match="dbMaxConnections"):
        db_limits.max_connections("x2iedn.24xlarge")
    assert db_limits.max_connections("x2iedn.24xlarge", 3000) == 3000
