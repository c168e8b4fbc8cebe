"""Schemathesis as an anonymous caller: every inventory and gremlin operation, no admin key.

An attacker has the same OpenAPI documents we do. Without `x-api-key`, every admin operation
(`PUT /admin/products/{productId}`, `PUT`/`DELETE /gremlin`) must be refused with 401/403 and
change nothing, nothing may answer 5xx, and no answer may carry internals (hosts, ports, ARNs,
driver names, tracebacks). Because writes are refused, the gremlin's write routes are safe to
fuzz here, unlike in test_fuzz.py.
"""

from __future__ import annotations

import re

import httpx
import hypothesis
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error

from functions.gremlin.app import app as gremlin_app
from functions.inventory.app import app as inventory_app

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ADMIN_OPERATIONS = {("PUT", "/admin/products/{productId}"), ("PUT", "/gremlin"), ("DELETE", "/gremlin")}

# What must never reach an anonymous caller. Loopback/private addresses, host:port pairs,
# ARNs and account ids, driver/SDK names and Python tracebacks.
LEAK_PATTERNS = [
    re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"),
    re.compile(r"\blocalhost\b|\blocalstack\b", re.I),
    re.compile(r"\bport\s+\d{2,5}\b|(?:localhost|\d+\.\d+\.\d+\.\d+|\b[\w-]+(?:\.[\w-]+)+):\d{2,5}\b", re.I),
    re.compile(r"arn:aws[\w-]*:"),
    re.compile(r"(?<![0-9A-Za-z-])\d{12}(?![0-9A-Za-z-])"),  # an account id, not a UUID's last group
    re.compile(r"pg8000|psycopg|botocore|boto3|sqlalchemy|Traceback|File \"", re.I),
]

FUZZ = hypothesis.settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(hypothesis.HealthCheck),
)

inventory_schema = schemathesis.openapi.from_dict(inventory_app.openapi())
gremlin_schema = schemathesis.openapi.from_dict(gremlin_app.openapi())


def admin_operations_refused(ctx, response, case) -> None:
    if (case.method.upper(), case.path) in ADMIN_OPERATIONS:
        assert response.status_code in (401, 403), (
            f"{case.method} {case.formatted_path} without a key answered {response.status_code}"
        )


def no_internals_in_answer(ctx, response, case) -> None:
    """Errors, health and gremlin answers are where internals would surface; a catalogue
    listing is data (earlier fuzzing may have stored any product name)."""
    if response.status_code < 400 and case.path.startswith("/products"):
        return
    text = response.text or ""
    for pattern in LEAK_PATTERNS:
        match = pattern.search(text)
        assert match is None, f"{case.method} {case.formatted_path} leaks {match.group(0)!r}: {text[:300]}"


CHECKS = [not_a_server_error, admin_operations_refused, no_internals_in_answer]


@pytest.fixture(scope="module")
def gremlin_before(localcloud):
    """The stored gremlin document before anonymous fuzzing; it must be the same afterwards."""
    before = httpx.get(f"{localcloud.api_url}/gremlin", timeout=30).json()
    yield before
    after = httpx.get(f"{localcloud.api_url}/gremlin", timeout=30).json()
    assert _settings(after) == _settings(before), "anonymous callers changed the gremlin"


def _settings(document: dict) -> dict:
    """The stored settings; `remainingSeconds` counts down by itself and `expired` follows it."""
    return {
        key: {field: v for field, v in value.items() if field not in ("remainingSeconds", "expired")}
        for key, value in document.items()
        if key in ("latency", "error", "crash", "database")
    }


@pytest.fixture(scope="module")
def catalogue_before(localcloud):
    """Product ids and names before anonymous fuzzing (stock may still move by earlier tests'
    queued orders; ids and names change only through the admin route)."""
    before = _catalogue(localcloud)
    yield before
    assert _catalogue(localcloud) == before, "anonymous callers changed the catalogue"


def _catalogue(localcloud) -> dict[str, str]:
    products = httpx.get(f"{localcloud.api_url}/products", timeout=30).json()["products"]
    return {product["productId"]: product["name"] for product in products}


@inventory_schema.parametrize()
@FUZZ
def test_inventory_api_refuses_anonymous_admin(case, localcloud, catalogue_before):
    case.call_and_validate(base_url=localcloud.api_url, checks=CHECKS, timeout=30)


@gremlin_schema.parametrize()
@FUZZ
def test_gremlin_api_refuses_anonymous_writes(case, localcloud, gremlin_before):
    case.call_and_validate(base_url=localcloud.api_url, checks=CHECKS, timeout=30)
