"""Tracing (issue 15, item 2): X-Ray active tracing on every function and on the API stage for
target=aws; none locally (LocalStack community has no X-Ray), where the Powertools Tracer is
switched off by POWERTOOLS_TRACE_DISABLED."""

from __future__ import annotations

from tests.infra.test_infra_stack import all_functions, as_list, env_of, ref_id, statements_of_role

XRAY_WRITE = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}


def _stage(s) -> dict:
    stages = s.of_type("AWS::ApiGateway::Stage")
    assert len(stages) == 1, sorted(stages)
    return next(iter(stages.values()))["Properties"]


def test_every_function_traces_actively_on_aws(aws_synth):
    functions = all_functions(aws_synth)
    assert len(functions) >= 12  # nine service functions and three backup functions
    for logical_id, res in functions.items():
        assert res["Properties"].get("TracingConfig") == {"Mode": "Active"}, logical_id
        assert env_of(res)["POWERTOOLS_TRACE_DISABLED"] == "false", logical_id
        actions = {
            a for st in statements_of_role(aws_synth, ref_id(res["Properties"]["Role"])) for a in as_list(st["Action"])
        }
        assert actions >= XRAY_WRITE, f"{logical_id} cannot send its segments"


def test_the_api_stage_traces_on_aws(aws_synth):
    assert _stage(aws_synth).get("TracingEnabled") is True


def test_nothing_traces_locally(local_synth):
    functions = all_functions(local_synth)
    assert functions
    for logical_id, res in functions.items():
        assert res["Properties"].get("TracingConfig", {"Mode": "PassThrough"}) == {"Mode": "PassThrough"}, logical_id
        assert env_of(res)["POWERTOOLS_TRACE_DISABLED"] == "true", logical_id
        actions = {
            a
            for st in statements_of_role(local_synth, ref_id(res["Properties"]["Role"]))
            for a in as_list(st["Action"])
        }
        assert not actions & XRAY_WRITE, logical_id
    assert not _stage(local_synth).get("TracingEnabled")
