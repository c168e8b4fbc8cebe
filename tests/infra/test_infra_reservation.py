"""Issue 13 item 1: the reservation is internal. No route or method of the public API reaches
it, and on AWS IAM lets exactly one principal invoke the reserve function: the order API's role."""

from __future__ import annotations

import json

from tests.infra.test_infra_stack import (
    api_methods,
    as_list,
    functions_by_key,
    ref_id,
    resource_paths,
    statements_of_role,
)


def _invoke_statements(s):
    """(policy or role logical id, statement) for every Allow of lambda:InvokeFunction."""
    out = []
    for logical_id, res in s.resources.items():
        if res["Type"] == "AWS::IAM::Policy":
            docs = [res["Properties"]["PolicyDocument"]]
        elif res["Type"] == "AWS::IAM::Role":
            docs = [p["PolicyDocument"] for p in res["Properties"].get("Policies", [])]
        else:
            continue
        for doc in docs:
            for st in doc["Statement"]:
                actions = as_list(st.get("Action", []))
                if st["Effect"] == "Allow" and any(a in ("lambda:InvokeFunction", "lambda:*", "*") for a in actions):
                    out.append((logical_id, st))
    return out


def test_no_public_reservation_route_or_method(any_synth):
    paths = resource_paths(any_synth).values()
    assert not [p for p in paths if "reservation" in p], paths
    reserve_id = functions_by_key(any_synth)["InventoryReserve"][0]
    for route, props in api_methods(any_synth).items():
        assert reserve_id not in json.dumps(props.get("Integration", {})), f"{route} integrates the reserve function"


def test_reserve_function_has_no_resource_policy(any_synth):
    """No lambda:Permission at all: not API Gateway, not EventBridge, not another account."""
    reserve_id = functions_by_key(any_synth)["InventoryReserve"][0]
    permissions = [
        p
        for p in any_synth.of_type("AWS::Lambda::Permission").values()
        if reserve_id in json.dumps(p["Properties"]["FunctionName"])
    ]
    assert permissions == []
    urls = [u for u in any_synth.of_type("AWS::Lambda::Url").values() if reserve_id in json.dumps(u["Properties"])]
    assert urls == [], "no function URL either"


def test_only_the_order_api_role_may_invoke_the_reserve_function(aws_synth):
    fns = functions_by_key(aws_synth)
    reserve_id = fns["InventoryReserve"][0]
    order_role = ref_id(fns["OrderApi"][1]["Properties"]["Role"])

    grants = []
    for logical_id, st in _invoke_statements(aws_synth):
        resources = as_list(st.get("Resource", []))
        assert "*" not in resources, f"{logical_id} may invoke every function"
        if any(reserve_id in json.dumps(r) for r in resources):
            grants.append((logical_id, st))
    assert len(grants) == 1, grants
    ((policy_id, statement),) = grants
    policy = aws_synth.resources[policy_id]["Properties"]
    assert [ref_id(r) for r in policy["Roles"]] == [order_role]
    # exactly the function, no version/alias wildcard
    assert as_list(statement["Resource"]) == [{"Fn::GetAtt": [reserve_id, "Arn"]}]
    assert as_list(statement["Action"]) == ["lambda:InvokeFunction"]


def test_the_reserve_function_reads_the_gremlin_and_nothing_public(any_synth):
    fns = functions_by_key(any_synth)
    role = ref_id(fns["InventoryReserve"][1]["Properties"]["Role"])
    actions = {a for st in statements_of_role(any_synth, role) for a in as_list(st["Action"])}
    assert "ssm:GetParameter" in actions and "dynamodb:UpdateItem" in actions  # gremlin document + counters
    assert not any(a.startswith("sqs:") for a in actions)
    assert "ssm:PutParameter" not in actions


def test_the_queue_consumer_reads_the_gremlin_for_database_faults(any_synth):
    """Issue 17: the inventory queue consumer obeys the gremlin's database mode, so it needs the
    document (read only) and the every-N counters; it may not rewrite the gremlin."""
    fns = functions_by_key(any_synth)
    env = fns["InventoryQueue"][1]["Properties"]["Environment"]["Variables"]
    assert {"GREMLIN_PARAMETER_NAME", "GREMLIN_STATE_TABLE"} <= set(env)
    role = ref_id(fns["InventoryQueue"][1]["Properties"]["Role"])
    actions = {a for st in statements_of_role(any_synth, role) for a in as_list(st["Action"])}
    assert "ssm:GetParameter" in actions and "dynamodb:UpdateItem" in actions
    assert "ssm:PutParameter" not in actions  # (DeleteItem it has: the idempotency table)


def test_gremlin_stop_alarms_are_alarms_of_the_stack_and_readable_exactly(any_synth):
    """The known list of stop-condition alarms (GREMLIN_STOP_ALARMS) cannot drift from the stack:
    each is an alarm in the template; the gremlin functions may describe exactly those."""
    alarm_names = {
        r["Properties"].get("AlarmName") for r in any_synth.resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"
    }
    fns = functions_by_key(any_synth)
    for key in ("Gremlin", "InventoryReserve", "InventoryQueue"):
        env = fns[key][1]["Properties"]["Environment"]["Variables"]
        listed = env["GREMLIN_STOP_ALARMS"].split(",")
        assert listed and set(listed) <= alarm_names, (key, listed)
        role = ref_id(fns[key][1]["Properties"]["Role"])
        statements = [
            st for st in statements_of_role(any_synth, role) if "cloudwatch:DescribeAlarms" in as_list(st["Action"])
        ]
        assert len(statements) == 1 and len(as_list(statements[0]["Resource"])) == len(listed)
        assert "*" not in json.dumps(statements[0]["Resource"])
