"""A throttled function behind the public API: a 503 that says "retry", never a bare 500, and the
retry with the same Idempotency-Key places exactly one order.

On the local cloud LocalStack enforces reserved concurrency as Lambda does; with the order API's
set to 0 every invocation is throttled, which API Gateway reports as an integration failure.
The stack maps that to 503 (infra/constructs/api.py). LocalStack applies the status code of a
gateway response but not its template or headers (its own `message` and no Retry-After): those
are proven on the template (tests/infra/test_infra_stack.py).
"""

from __future__ import annotations

import json
import uuid

import pytest

from infra.outputs import FUNCTION_NAME_OUTPUTS
from valerix_localcloud import cli

pytestmark = [pytest.mark.e2e]


def test_every_function_runs_with_the_reserved_concurrency_of_its_template(localcloud):
    """LocalStack's CloudFormation skips ReservedConcurrentExecutions; `make up` sets it, so the
    connection budget (infra/constructs/db_limits.py) holds on the local cloud as on AWS."""
    template = json.loads((cli.STATE / "cdk.out" / f"{cli.STACK_NAME}.template.json").read_text())
    declared = {
        r["Properties"]["FunctionName"]: r["Properties"].get("ReservedConcurrentExecutions")
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function" and isinstance(r["Properties"].get("FunctionName"), str)
    }
    assert declared[localcloud.stack[FUNCTION_NAME_OUTPUTS["OrderApi"]]] == 20
    lam = localcloud.client("lambda")
    deployed = {
        name: lam.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions") for name in declared
    }
    assert deployed == declared


def test_a_throttled_order_function_answers_503_and_the_retry_places_one_order(api, localcloud):
    lam = localcloud.client("lambda")
    name = localcloud.stack[FUNCTION_NAME_OUTPUTS["OrderApi"]]
    reserved = lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"]
    assert reserved, "the order API is deployed with a reserved concurrency (db_limits.BUDGET)"
    product = api.new_product(stock=5)
    key = uuid.uuid4().hex

    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    try:
        refused = api.order(product, 2, **{"Idempotency-Key": key})
        health = api.http.get("/health/order")
    finally:
        lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=reserved)

    assert refused.status_code == 503, refused.text  # API Gateway's default: 500 (502 on LocalStack)
    assert refused.json()["message"], refused.text
    assert health.status_code == 503, health.text
    assert api.stored_orders(product) == []  # the function never ran
    assert api.stock(product) == 5

    retry = api.order(product, 2, **{"Idempotency-Key": key})
    assert retry.status_code == 201, retry.text
    again = api.order(product, 2, **{"Idempotency-Key": key})
    assert again.json()["orderId"] == retry.json()["orderId"]
    assert [row[0] for row in api.stored_orders(product)] == [retry.json()["orderId"]]
    assert api.stock(product) == 3
