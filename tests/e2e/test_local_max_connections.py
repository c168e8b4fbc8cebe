"""The local cloud meets the connection limit the stack is budgeted for (issue 15).

The local Postgres servers stand in for the RDS instances, so they run with the same
`max_connections` the stack sets on AWS (infra/constructs/db_limits.py, from cdk.json's
context: one source, no number written twice); and the deployed functions carry the same
per-environment caps (DB_POOL_MAX) the budget counts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.constructs import db_limits
from infra.outputs import FUNCTION_NAME_OUTPUTS

CDK_JSON = Path(__file__).resolve().parents[2] / "cdk.json"  # the context the CDK app reads

pytestmark = pytest.mark.e2e


def test_local_servers_run_with_the_stacks_max_connections(localcloud):
    expected = db_limits.stack_max_connections(json.loads(CDK_JSON.read_text())["context"])
    assert expected == db_limits.max_connections(db_limits.DEFAULT_INSTANCE_CLASS)  # cdk.json: no other class
    for service in ("order", "inventory"):
        conn = localcloud.db(service)
        try:
            assert int(conn.run("SHOW max_connections")[0][0]) == expected, service
        finally:
            conn.close()


def test_deployed_functions_carry_their_connection_caps(localcloud):
    lambda_client = localcloud.client("lambda")
    for key, use in db_limits.BUDGET.items():
        name = localcloud.stack[FUNCTION_NAME_OUTPUTS[key]]
        env = lambda_client.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
        if use.pooled:
            assert env["DB_POOL_MAX"] == str(use.connections), key
        assert "DB_PROXY_ENDPOINT" not in env, key  # no proxy locally: straight to the local server
