"""Issue 13 (items 3 and 4) end to end, on the deployed local cloud.

* The admin routes are refused by the functions themselves: the deployed inventory and gremlin
  API functions are invoked directly through the Lambda API (bypassing API Gateway and its usage
  plan) with an API-Gateway-shaped event, without the key or with a wrong one, and nothing changes.
* With a database really stopped (pg_ctl, through the local cloud's own helpers, restarted
  afterwards), no public answer carries an address, port, ARN, account id, driver name or
  exception text; the detail is in the function's log under the request's correlation id.
"""

from __future__ import annotations

import json
import re
import time
import uuid

import httpx
import pytest

from infra.outputs import GREMLIN_FUNCTION_NAME, INVENTORY_API_FUNCTION_NAME

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


# --------------------------------------------------------------------------- gateway bypassed


def gateway_event(
    method: str,
    path: str,
    resource: str,
    body: dict | None = None,
    headers: dict | None = None,
    path_parameters: dict | None = None,
) -> dict:
    """What API Gateway (REST, Lambda proxy) sends a function."""
    headers = {"Host": "gateway-bypass.example", "Content-Type": "application/json", **(headers or {})}
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method,
            "path": f"/prod{path}",
            "stage": "prod",
            "requestId": f"bypass-{uuid.uuid4()}",
            "requestTimeEpoch": int(time.time() * 1000),
            "identity": {"sourceIp": "203.0.113.9", "apiKey": "forged-by-the-caller"},
        },
        "body": json.dumps(body) if body is not None else None,
        "isBase64Encoded": False,
    }


@pytest.fixture(scope="module")
def lam(localcloud):
    return localcloud.client("lambda", read_timeout=60)


def invoke(lam, function_name: str, event: dict) -> tuple[int, dict]:
    response = lam.invoke(FunctionName=function_name, Payload=json.dumps(event).encode())
    assert not response.get("FunctionError"), response["Payload"].read()
    result = json.loads(response["Payload"].read())
    return result["statusCode"], json.loads(result["body"]) if result.get("body") else {}


BAD_KEYS = [
    ({}, 401, "missing x-api-key header"),
    ({"x-api-key": "wrong-key-0123456789012345"}, 403, "invalid API key"),
]


@pytest.mark.parametrize(("headers", "status", "message"), BAD_KEYS, ids=["no-key", "wrong-key"])
def test_inventory_admin_route_refuses_a_direct_invoke_without_the_key(api, localcloud, lam, headers, status, message):
    product = api.new_product(stock=5, name="Bypass target")
    function = localcloud.stack[INVENTORY_API_FUNCTION_NAME]
    for body in ({"name": "Hijacked", "stock": 0}, {"stock": 100_000}):
        event = gateway_event(
            "PUT", f"/admin/products/{product}", "/admin/products/{productId}", body, headers, {"productId": product}
        )
        assert invoke(lam, function, event)[0] == status
    got, reply = invoke(
        lam,
        function,
        gateway_event(
            "PUT",
            f"/admin/products/{product}",
            "/admin/products/{productId}",
            {"stock": 1},
            headers,
            {"productId": product},
        ),
    )
    assert (got, reply["message"]) == (status, message)
    assert api.stock(product) == 5
    assert api.http.get(f"/products/{product}").json()["name"] == "Bypass target"
    # the same event with the real key is served: the refusals above are about the key alone
    got, reply = invoke(
        lam,
        function,
        gateway_event(
            "PUT",
            f"/admin/products/{product}",
            "/admin/products/{productId}",
            {"stock": 6},
            {"x-api-key": localcloud.admin_api_key},
            {"productId": product},
        ),
    )
    assert got == 200 and reply["stock"] == 6


@pytest.mark.parametrize(("headers", "status", "message"), BAD_KEYS, ids=["no-key", "wrong-key"])
def test_gremlin_refuses_a_direct_invoke_without_the_key(api, localcloud, lam, headers, status, message):
    api.gremlin_off()
    before = api.http.get("/gremlin").json()
    function = localcloud.stack[GREMLIN_FUNCTION_NAME]
    chaos = {"crash": {"enabled": True, "when": "after-commit", "every": 1}}
    got, reply = invoke(lam, function, gateway_event("PUT", "/gremlin", "/gremlin", chaos, headers))
    assert (got, reply["message"]) == (status, message)
    got, reply = invoke(lam, function, gateway_event("DELETE", "/gremlin", "/gremlin", None, headers))
    assert (got, reply["message"]) == (status, message)
    assert api.http.get("/gremlin").json() == before  # nothing stored
    got, _ = invoke(
        lam, function, gateway_event("DELETE", "/gremlin", "/gremlin", None, {"x-api-key": localcloud.admin_api_key})
    )
    assert got == 200


def test_through_the_gateway_the_key_is_still_required(localcloud):
    for method in ("PUT", "DELETE"):
        response = httpx.request(method, f"{localcloud.api_url}/gremlin", json={"latency": {"enabled": True}})
        assert response.status_code in (401, 403)


# --------------------------------------------------------------------------- a database stopped

ACCOUNT_ID = re.compile(r"(?<![0-9A-Za-z-])\d{12}(?![0-9A-Za-z-])")
WORDS = (
    "127.0.0.1",
    "localhost",
    "localstack",
    "pg8000",
    "psycopg",
    "botocore",
    "boto3",
    "arn:",
    "Traceback",
    "Exception",
    "Error:",
    "errno",
    "refused",
    "source_address",
    "timeout is",
    "execute-api",
    "secretsmanager",
    "amazonaws",
)


def leaks(text: str, cloud) -> list[str]:
    found = [word for word in WORDS if word.lower() in text.lower()]
    ports = {str(secret["port"]) for secret in cloud.outputs["databases"].values()}
    ports.add(cloud.endpoint_url.rsplit(":", 1)[-1].strip("/"))
    found += [port for port in ports if re.search(rf"(?<!\d){port}(?!\d)", text)]
    found += ACCOUNT_ID.findall(text)
    return found


@pytest.fixture
def stopped_database(localcloud, request):
    """Stop one of the local cloud's Postgres servers (pg_ctl stop); start it again afterwards
    on the same port and wait until the service is healthy, so later tests are unaffected."""
    from valerix_localcloud import cli

    service = request.param
    server = cli.databases()[service]
    server.start()  # loads its state (port, password); a no-op when running
    server.stop()
    try:
        yield service
    finally:
        server.start()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if httpx.get(f"{localcloud.api_url}/health/{service}", timeout=30).status_code == 200:
                break
            time.sleep(1)
        else:
            raise AssertionError(f"{service} not healthy again after its database restarted")


def wait_down(api, service: str) -> httpx.Response:
    """Health is cached for a few seconds: wait for the first DOWN answer."""
    deadline = time.monotonic() + 60
    while True:
        response = api.http.get(f"/health/{service}")
        if response.status_code == 503 or time.monotonic() > deadline:
            return response
        time.sleep(1)


@pytest.mark.parametrize("stopped_database", ["inventory", "order"], indirect=True)
def test_with_a_database_stopped_no_public_answer_reveals_internals(api, localcloud, stopped_database):
    service = stopped_database
    down = wait_down(api, service)
    assert down.status_code == 503, down.text
    assert down.json()["checks"]["database"]["error"] == "database unreachable"
    product = "widget"
    correlation = f"e2e-leak-{uuid.uuid4().hex[:12]}"
    answers = {
        "health/order": api.http.get("/health/order"),
        "health/inventory": api.http.get("/health/inventory"),
        "products": api.http.get("/products", headers={"X-Correlation-Id": correlation}),
        "product": api.http.get(f"/products/{product}"),
        "admin upsert": api.http.put(
            f"/admin/products/e2e-leak-{uuid.uuid4().hex[:8]}", json={"stock": 1}, headers=api.admin
        ),
        "admin without key (app)": api.http.put(
            f"/admin/products/{product}", json={"stock": 1}, headers={"x-api-key": "wrong-key-0123456789012345"}
        ),
        "orders": api.http.get("/orders?limit=5"),
        "order": api.http.get(f"/orders/{uuid.uuid4()}"),
        "gremlin": api.http.get("/gremlin"),
        "not found": api.http.get("/nowhere-at-all"),
        "bad input": api.order(product, 0),
    }
    if service == "order":  # with inventory's database down an order would wait in the queue
        answers["place order"] = api.order(product, 1, **{"Idempotency-Key": f"leak-{uuid.uuid4()}"})
    failures = {name: r.status_code for name, r in answers.items() if r.status_code >= 500}
    assert failures, "the stopped database shows somewhere"
    for name, response in answers.items():
        found = leaks(response.text, localcloud)
        assert not found, (name, response.status_code, found, response.text)
        if response.status_code >= 400:
            assert response.json()["message"], (name, response.text)
    products = answers["products"]
    if service == "inventory":
        assert products.status_code == 503
        assert products.json() == {
            "message": "inventory database unreachable, try again later",
            "requestId": correlation,
        }
        # the detail went to the inventory function's log, under the same correlation id
        detail = _log_lines(localcloud, localcloud.stack[INVENTORY_API_FUNCTION_NAME], correlation)
        assert any(
            "database unreachable" in line.get("message", "") and "port" in str(line.get("error")) for line in detail
        ), detail


def _log_lines(cloud, function_name: str, correlation_id: str, timeout: float = 30.0) -> list[dict]:
    logs = cloud.client("logs")
    deadline = time.monotonic() + timeout
    while True:
        events = logs.filter_log_events(
            logGroupName=f"/aws/lambda/{function_name}", filterPattern=f'"{correlation_id}"'
        )["events"]
        lines = []
        for event in events:
            try:
                lines.append(json.loads(event["message"]))
            except ValueError:
                continue
        lines = [line for line in lines if line.get("correlation_id") == correlation_id]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(1)
