"""The inventory admin route checks the key itself; public answers carry no internals; health is cached.

Real Postgres + moto Secrets Manager (the admin key secret, as the stack creates it).
"""

from __future__ import annotations

import json
import re

import pytest

from tests.component.conftest import ADMIN, ADMIN_KEY, aws_client, call_api

REFUSALS = [
    ({}, 401, "missing x-api-key header"),
    ({"x-api-key": "wrong-key-0123456789012345"}, 403, "invalid API key"),
    ({"x-api-key": ADMIN_KEY[:-1]}, 403, "invalid API key"),
    ({"x-api-key": ADMIN_KEY.upper()}, 403, "invalid API key"),
]


@pytest.mark.parametrize(("headers", "status", "message"), REFUSALS, ids=["absent", "wrong", "prefix", "case"])
def test_admin_upsert_without_the_key_is_refused_by_the_app_and_changes_nothing(valerix, headers, status, message):
    before = valerix.snapshot()
    for body in ({"name": "Hijacked", "stock": 0}, {"stock": 999_999}):
        reply = call_api(valerix.inventory_api, "PUT", "/admin/products/widget", body, headers=headers)
        assert (reply.status, reply.body["message"]) == (status, message)
        assert reply.body["requestId"]
        created = call_api(valerix.inventory_api, "PUT", "/admin/products/brand-new", body, headers=headers)
        assert created.status == status
    assert valerix.snapshot() == before


def test_admin_refusal_comes_before_body_validation(valerix):
    # (a body that is not JSON at all is answered 400 by FastAPI's body parsing first: it names
    # nothing about the expected fields, and nothing runs either way)
    for body in ({"stock": "lots"}, {"colour": "red"}, [1, 2]):
        reply = call_api(valerix.inventory_api, "PUT", "/admin/products/widget", body)
        assert reply.status == 401, reply.body  # learns nothing about the expected body


def test_admin_upsert_with_the_key_works(valerix):
    reply = call_api(valerix.inventory_api, "PUT", "/admin/products/widget", {"stock": 7}, headers=ADMIN)
    assert reply.status == 200 and reply.body["stock"] == 7
    assert valerix.stock("widget") == 7


def test_the_openapi_documents_the_key_on_admin_routes_only():
    from functions.gremlin.app import app as gremlin_app
    from functions.inventory.app import app as inventory_app

    for app, admin_ops in (
        (inventory_app, {("/admin/products/{productId}", "put")}),
        (gremlin_app, {("/gremlin", "put"), ("/gremlin", "delete")}),
    ):
        doc = app.openapi()
        assert doc["components"]["securitySchemes"]["adminApiKey"] == {
            "type": "apiKey",
            "in": "header",
            "name": "x-api-key",
            "description": "the admin API key (make up: .valerix/admin-api-key)",
        }
        for path, ops in doc["paths"].items():
            for method, op in ops.items():
                if (path, method) in admin_ops:
                    assert op["security"] == [{"adminApiKey": []}], (path, method)
                    assert {"401", "403"} <= set(op["responses"]), (path, method)
                else:
                    assert "security" not in op, (path, method)


# --------------------------------------------------------------------------- no internals


SECRET_ARN = re.compile(r"arn:aws:")
ACCOUNT = re.compile(r"(?<![0-9A-Za-z-])\d{12}(?![0-9A-Za-z-])")


def assert_no_internals(reply, postgres_servers) -> None:
    text = json.dumps(reply.body)
    for word in (
        "127.0.0.1",
        "localhost",
        "pg8000",
        "psycopg",
        "botocore",
        "Traceback",
        "Error:",
        "errno",
        "refused",
        "InterfaceError",
        "DatabaseUnavailable",
        "amazonaws",
    ):
        assert word not in text, (word, reply.body)
    for server in postgres_servers.values():
        assert str(server.port) not in text, (server.port, reply.body)
    assert not SECRET_ARN.search(text) and not ACCOUNT.search(text), reply.body


@pytest.mark.parametrize("down", ["inventory", "order"])
def test_with_a_database_down_no_answer_reveals_internals(valerix, postgres_servers, down):
    """Point the service's secret at a closed port (a database that is gone), then ask everything."""
    from functions.common import aws, db

    name = valerix.secret_arns[down]["app"]  # the login the service runs with
    secret = json.loads(aws_client("secretsmanager").get_secret_value(SecretId=name)["SecretString"])
    closed = {**secret, "port": _closed_port()}
    aws_client("secretsmanager").put_secret_value(SecretId=name, SecretString=json.dumps(closed))
    db.get_database.cache_clear()  # new pools: the next connections read the secret again
    aws.secrets_provider().clear_cache()
    try:
        answers = [
            call_api(valerix.inventory_api, "GET", "/health/inventory"),
            call_api(valerix.order_api, "GET", "/health/order"),
            call_api(valerix.inventory_api, "GET", "/products"),
            call_api(valerix.inventory_api, "GET", "/products/widget"),
            call_api(valerix.inventory_api, "PUT", "/admin/products/widget", {"stock": 5}, headers=ADMIN),
            call_api(valerix.order_api, "GET", "/orders"),
            call_api(valerix.order_api, "GET", "/orders/some-order"),
            valerix.order("widget", 1),
        ]
    finally:
        aws_client("secretsmanager").put_secret_value(SecretId=name, SecretString=json.dumps(secret))
        db.get_database.cache_clear()
        aws.secrets_provider().clear_cache()
    statuses = [a.status for a in answers]
    assert 503 in statuses, statuses
    for reply in answers:
        assert_no_internals(reply, postgres_servers)
        if reply.status >= 500:
            assert reply.body.get("requestId") and reply.body["message"], reply
    health = answers[0] if down == "inventory" else answers[1]
    assert health.status == 503 and health.body["checks"]["database"]["error"] == "database unreachable"


def _closed_port() -> int:
    from tests.component.conftest import free_port

    return free_port()  # bound and released: nothing listens there


# --------------------------------------------------------------------------- health cache


def test_health_is_cached_per_environment(valerix, monkeypatch):
    from functions.common import health
    from functions.inventory import repository

    valerix.set_env(HEALTH_CACHE_SECONDS="60")
    health.health_cache().clear()
    pings = []
    real = repository.database

    class CountingDatabase:
        def __init__(self, inner):
            self.inner = inner

        def ping(self):
            pings.append(1)
            return self.inner.ping()

    monkeypatch.setattr(repository, "database", lambda: CountingDatabase(real()))
    first = call_api(valerix.inventory_api, "GET", "/health/inventory")
    for _ in range(5):
        again = call_api(valerix.inventory_api, "GET", "/health/inventory")
        assert again.body == first.body  # same checkedAt: the answer came from the cache
    assert len(pings) == 1
    health.health_cache().clear()  # what the TTL's expiry does (the clock is tested in tests/unit)
    call_api(valerix.inventory_api, "GET", "/health/inventory")
    assert len(pings) == 2


def test_order_health_reads_the_circuit_fresh_while_checks_are_cached(valerix, monkeypatch):
    from functions.common import health
    from functions.order import inventory_client

    valerix.set_env(HEALTH_CACHE_SECONDS="60")
    health.health_cache().clear()
    first = call_api(valerix.order_api, "GET", "/health/order")
    assert first.body["circuitState"] == "closed"
    monkeypatch.setattr(inventory_client.InventoryClient, "circuit_state", lambda self: "OPEN")
    second = call_api(valerix.order_api, "GET", "/health/order")
    assert second.body["circuitState"] == "open"
    assert second.body["checkedAt"] == first.body["checkedAt"]
