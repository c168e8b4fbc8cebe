"""Schemathesis against the APIs' OpenAPI documents, through the deployed local API Gateway.

The documents come from the FastAPI apps themselves (the same objects the Lambdas serve), so
they cannot drift from the code. Checks: no 5xx, status codes, content types and response
bodies conform to the documents. The gremlin's write routes are not fuzzed (random chaos
would disturb the rest of the suite); their validation has its own tests.
"""

from __future__ import annotations

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from functions.gremlin.app import app as gremlin_app
from functions.inventory.app import app as inventory_app
from functions.order.app import app as order_app

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

order_schema = schemathesis.openapi.from_dict(order_app.openapi())
inventory_schema = schemathesis.openapi.from_dict(inventory_app.openapi())
gremlin_schema = schemathesis.openapi.from_dict(gremlin_app.openapi()).include(method="GET")

FUZZ = hypothesis.settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(hypothesis.HealthCheck),
)


@order_schema.parametrize()
@FUZZ
def test_order_api_conforms(case, localcloud):
    case.call_and_validate(base_url=localcloud.api_url, checks=CHECKS, timeout=30)


@inventory_schema.parametrize()
@FUZZ
def test_inventory_api_conforms(case, localcloud):
    case.call_and_validate(
        base_url=localcloud.api_url, checks=CHECKS, timeout=30, headers={"x-api-key": localcloud.admin_api_key}
    )


@gremlin_schema.parametrize()
@FUZZ
def test_gremlin_api_conforms(case, localcloud):
    case.call_and_validate(base_url=localcloud.api_url, checks=CHECKS, timeout=30)
