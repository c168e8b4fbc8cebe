"""Lambda SnapStart on target=aws (infra/constructs/service_function.py): on exactly the three API
functions, each with a published version and the alias `live`, and API Gateway invoking the alias
(SnapStart never applies to $LATEST); on target=local none of it (LocalStack community has no
SnapStart)."""

from __future__ import annotations

import pytest

from infra.constructs.db_limits import BUDGET
from infra.constructs.routes import ROUTES

SNAP_START_FUNCTIONS = {"OrderApi", "InventoryApi", "Gremlin"}
REST_ROOT = "/Api/RestApi/Default"


def key_of(resource: dict) -> str:
    """The construct id under the stack: `Valerix/OrderApi/Function/Resource` -> OrderApi."""
    return resource["Metadata"]["aws:cdk:path"].split("/")[1]


def logical_id(s, cfn_type: str, path_suffix: str) -> str:
    found = [k for k, r in s.of_type(cfn_type).items() if r["Metadata"]["aws:cdk:path"].endswith(path_suffix)]
    assert len(found) == 1, (cfn_type, path_suffix, found)
    return found[0]


def function_id(s, key: str) -> str:
    return logical_id(s, "AWS::Lambda::Function", f"/{key}/Function/Resource")


def routes_by_method(s) -> dict[tuple[str, str], dict]:
    """(path, method) -> the AWS::ApiGateway::Method of that route."""
    methods = {}
    for resource in s.of_type("AWS::ApiGateway::Method").values():
        path = resource["Metadata"]["aws:cdk:path"]
        method = resource["Properties"]["HttpMethod"]
        if method == "OPTIONS":
            continue  # CORS preflight, a mock integration
        route = path.split(REST_ROOT, 1)[1].removesuffix(f"/{method}/Resource")
        methods[(route, method)] = resource
    return methods


def invoked(resource: dict) -> dict:
    """What a Lambda proxy integration's URI names: `{"Ref": alias}` or `{"Fn::GetAtt": [fn, "Arn"]}`."""
    parts = resource["Properties"]["Integration"]["Uri"]["Fn::Join"][1]
    assert parts[-1] == "/invocations" and str(parts[-3]).endswith(":lambda:path/2015-03-31/functions/"), parts
    return parts[-2]


def test_snap_start_is_on_exactly_the_three_api_functions(aws_synth):
    with_snap_start = {
        key_of(fn)
        for fn in aws_synth.of_type("AWS::Lambda::Function").values()
        if fn["Properties"].get("SnapStart") == {"ApplyOn": "PublishedVersions"}
    }
    assert with_snap_start == SNAP_START_FUNCTIONS
    others = [fn["Properties"].get("SnapStart") for fn in aws_synth.of_type("AWS::Lambda::Function").values()
              if key_of(fn) not in SNAP_START_FUNCTIONS]  # fmt: skip
    assert set(others) == {None}
    for key in SNAP_START_FUNCTIONS:
        props = aws_synth.resources[function_id(aws_synth, key)]["Properties"]
        # what SnapStart cannot be combined with (service_function.py): EFS, > 512 MB /tmp
        assert "FileSystemConfigs" not in props
        assert props.get("EphemeralStorage", {"Size": 512})["Size"] <= 512
        assert props["Runtime"] == "python3.12"
        # kept: active tracing and, for a database function, the connection budget's cap
        assert props["TracingConfig"] == {"Mode": "Active"}
        if key in BUDGET:
            assert props["ReservedConcurrentExecutions"] == BUDGET[key].environments


def test_each_alias_points_at_the_published_version_of_its_function(aws_synth):
    aliases = aws_synth.of_type("AWS::Lambda::Alias")
    assert {key_of(a) for a in aliases.values()} == SNAP_START_FUNCTIONS and len(aliases) == 3
    versions = aws_synth.of_type("AWS::Lambda::Version")
    for alias in aliases.values():
        key = key_of(alias)
        fn = {"Ref": function_id(aws_synth, key)}
        props = alias["Properties"]
        assert props["Name"] == "live" and props["FunctionName"] == fn
        version_id, attribute = props["FunctionVersion"]["Fn::GetAtt"]
        assert attribute == "Version"
        version = versions[version_id]
        assert version["Properties"]["FunctionName"] == fn
        assert version["Metadata"]["aws:cdk:path"] == f"Valerix/{key}/Function/CurrentVersion/Resource"
        # a deploy that publishes a new version deletes the old one (and its billed snapshot)
        assert version.get("DeletionPolicy") == "Delete" and version.get("UpdateReplacePolicy") == "Delete"
        assert not any(c.get("Properties", {}).get("ProvisionedConcurrencyConfig") for c in (alias, version)), (
            "provisioned concurrency cannot be combined with SnapStart"
        )


def test_every_route_of_an_api_function_integrates_its_alias(aws_synth):
    methods = routes_by_method(aws_synth)
    assert set(methods) == {(r.path, r.method) for r in ROUTES}
    aliases = {key_of(a): k for k, a in aws_synth.of_type("AWS::Lambda::Alias").items()}
    for route in ROUTES:
        assert route.function in SNAP_START_FUNCTIONS, route  # every public route is an API function's
        assert invoked(methods[(route.path, route.method)]) == {"Ref": aliases[route.function]}, route


def test_api_gateway_may_invoke_the_alias_and_not_the_bare_function(aws_synth):
    gateway = [p["Properties"] for p in aws_synth.of_type("AWS::Lambda::Permission").values()
               if p["Properties"]["Principal"] == "apigateway.amazonaws.com"]  # fmt: skip
    aliases = {k: key_of(a) for k, a in aws_synth.of_type("AWS::Lambda::Alias").items()}
    targets: dict[str, int] = {}
    for permission in gateway:
        assert permission["Action"] == "lambda:InvokeFunction"
        ref = permission["FunctionName"].get("Ref")
        assert ref in aliases, f"API Gateway may invoke {permission['FunctionName']}, not an alias"
        targets[aliases[ref]] = targets.get(aliases[ref], 0) + 1
    # one permission per route (scoped to its method and path by SourceArn)
    assert targets == {key: sum(r.function == key for r in ROUTES) for key in SNAP_START_FUNCTIONS}


def test_nothing_of_it_on_target_local(local_synth):
    assert not local_synth.of_type("AWS::Lambda::Alias")
    assert not any("SnapStart" in fn["Properties"] for fn in local_synth.of_type("AWS::Lambda::Function").values())
    versions = {key_of(v) for v in local_synth.of_type("AWS::Lambda::Version").values()}
    assert not versions & SNAP_START_FUNCTIONS
    for route, resource in routes_by_method(local_synth).items():
        function = next(r.function for r in ROUTES if (r.path, r.method) == route)
        assert invoked(resource) == {"Fn::GetAtt": [function_id(local_synth, function), "Arn"]}, route


@pytest.mark.parametrize("key", sorted(SNAP_START_FUNCTIONS))
def test_alarms_watch_the_whole_function_every_version_included(aws_synth, key):
    """Lambda's FunctionName-only metrics aggregate every version and alias: the errors and
    throttles alarms keep watching what the alias invokes."""
    fn = function_id(aws_synth, key)
    dimensions = [[{"Name": "FunctionName", "Value": {"Ref": fn}}]]  # the function, not `fn:live`
    alarms = aws_synth.of_type("AWS::CloudWatch::Alarm").values()
    watched = {a["Properties"]["MetricName"] for a in alarms if a["Properties"].get("Dimensions") in dimensions}
    assert {"Errors", "Throttles"} <= watched
