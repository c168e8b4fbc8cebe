"""Bad input, Idempotency-Key, products/admin API, health, migrations (reservations: test_reservation.py)."""

from __future__ import annotations

import json

import pytest

from tests.component.conftest import ADMIN, call_api, free_port

BAD_ORDERS = [
    ("missing quantity", {"productId": "widget"}, "quantity"),
    ("missing productId", {"quantity": 1}, "productId"),
    ("extra field", {"productId": "widget", "quantity": 1, "price": 3}, "price"),
    ("quantity as string", {"productId": "widget", "quantity": "1"}, "quantity"),
    ("quantity as float", {"productId": "widget", "quantity": 1.5}, "quantity"),
    ("quantity as bool", {"productId": "widget", "quantity": True}, "quantity"),
    ("quantity zero", {"productId": "widget", "quantity": 0}, "quantity"),
    ("quantity negative", {"productId": "widget", "quantity": -3}, "quantity"),
    ("quantity huge", {"productId": "widget", "quantity": 1001}, "quantity"),
    ("quantity enormous", {"productId": "widget", "quantity": 10**30}, "quantity"),
    ("productId number", {"productId": 42, "quantity": 1}, "productId"),
    ("productId empty", {"productId": "", "quantity": 1}, "productId"),
    ("productId null", {"productId": None, "quantity": 1}, "productId"),
    ("body is a list", [{"productId": "widget", "quantity": 1}], "request body"),
    ("body is null", None, "request body"),
]


def _assert_untouched(valerix, before):
    assert valerix.snapshot() == before
    assert valerix.queue_depth(valerix.inventory_queue_url) == 0
    assert valerix.queue_depth(valerix.completion_queue_url) == 0


@pytest.mark.parametrize("label,body,field", BAD_ORDERS, ids=[b[0] for b in BAD_ORDERS])
def test_bad_order_input_is_a_4xx_naming_the_field_and_stores_nothing(valerix, label, body, field):
    before = valerix.snapshot()
    raw = json.dumps(body) if body is not None else None
    reply = call_api(valerix.order_api, "POST", "/orders", raw_body=raw)
    assert 400 <= reply.status < 500, (label, reply.status, reply.body)
    assert field in reply.body["message"], reply.body
    assert "Traceback" not in json.dumps(reply.body)
    _assert_untouched(valerix, before)


@pytest.mark.parametrize(
    "label,raw,status",
    [
        ("malformed JSON", '{"productId": "widget", "quantity": ', 400),
        ("not JSON at all", "hello", 400),
        ("oversized body", json.dumps({"productId": "widget", "quantity": 1, "pad": "x" * 20000}), 413),
    ],
)
def test_malformed_and_oversized_bodies(valerix, label, raw, status):
    before = valerix.snapshot()
    reply = call_api(valerix.order_api, "POST", "/orders", raw_body=raw)
    assert reply.status == status, (label, reply.body)
    assert reply.body["message"]
    _assert_untouched(valerix, before)


def test_bad_inventory_input(valerix):
    before = valerix.snapshot()
    api = valerix.inventory_api
    cases = [
        ("PUT", "/admin/products/widget", {"stock": -1}, "stock"),
        ("PUT", "/admin/products/widget", {"stock": "5"}, "stock"),
        ("PUT", "/admin/products/widget", {"stock": 5, "colour": "red"}, "colour"),
        ("PUT", "/admin/products/bad%20id!", {"stock": 5}, "productId"),
    ]
    for method, path, body, field in cases:
        reply = call_api(api, method, path, body, headers=ADMIN if path.startswith("/admin/") else None)
        assert reply.status in (400, 422), (path, body, reply.body)
        assert field in reply.body["message"], reply.body
    assert valerix.snapshot() == before


def test_bad_query_and_header(valerix):
    assert call_api(valerix.order_api, "GET", "/orders", query={"limit": "0"}).status == 422
    assert call_api(valerix.order_api, "GET", "/orders", query={"limit": "lots"}).status == 422
    before = valerix.snapshot()
    reply = valerix.order("widget", 1, key="k" * 300)
    assert reply.status == 422 and "Idempotency-Key" in reply.body["message"]
    assert valerix.snapshot() == before
    assert call_api(valerix.order_api, "DELETE", "/orders").status == 405
    assert call_api(valerix.order_api, "GET", "/nowhere").body["message"] == "Not Found"


def test_idempotency_key_returns_the_same_order(valerix):
    first = valerix.order("widget", 4, key="abc-1")
    second = valerix.order("widget", 4, key="abc-1")
    assert first.status == second.status == 201
    assert first.body["orderId"] == second.body["orderId"]
    assert second.headers.get("idempotent-replayed") == "true"
    assert valerix.count("order", "orders") == 1
    assert valerix.stock("widget") == 96
    other = valerix.order("widget", 4, key="abc-2")
    assert other.body["orderId"] != first.body["orderId"]
    reused = valerix.order("gadget", 1, key="abc-1")
    assert reused.status == 422 and "Idempotency-Key" in reused.body["message"]
    assert valerix.count("order", "orders") == 2


def test_idempotency_key_replays_a_rejection_and_a_queued_order(valerix):
    rejected = valerix.order("doohickey", 99, key="r-1")
    again = valerix.order("doohickey", 99, key="r-1")
    assert rejected.status == again.status == 409
    assert again.body["orderId"] == rejected.body["orderId"] and again.body["reason"] == "insufficient stock"


def test_products_and_admin_upsert(valerix):
    api = valerix.inventory_api
    listed = call_api(api, "GET", "/products")
    assert listed.status == 200
    assert {p["productId"]: p["stock"] for p in listed.body["products"]} == {
        "widget": 100,
        "gadget": 50,
        "gizmo": 25,
        "doohickey": 10,
    }
    assert call_api(api, "GET", "/products/gizmo").body == {"productId": "gizmo", "name": "Gizmo", "stock": 25}
    assert call_api(api, "GET", "/products/nope").status == 404
    created = call_api(api, "PUT", "/admin/products/sprocket", {"name": "Sprocket", "stock": 3}, headers=ADMIN)
    assert created.status == 201 and created.body == {"productId": "sprocket", "name": "Sprocket", "stock": 3}
    updated = call_api(api, "PUT", "/admin/products/sprocket", {"stock": 7}, headers=ADMIN)
    assert updated.status == 200 and updated.body == {"productId": "sprocket", "name": "Sprocket", "stock": 7}
    assert valerix.order("sprocket", 7).status == 201
    assert valerix.stock("sprocket") == 0


def test_health_up(valerix):
    order = call_api(valerix.order_api, "GET", "/health/order")
    assert order.status == 200, order.body
    assert order.body["status"] == "UP"
    assert set(order.body["checks"]) == {"database", "inventoryQueue", "completionQueue", "inventory"}
    assert order.body["circuitState"] == "closed"
    inventory = call_api(valerix.inventory_api, "GET", "/health/inventory")
    assert inventory.status == 200 and inventory.body["status"] == "UP"
    assert {"database", "inventoryQueue"} <= set(inventory.body["checks"])


def test_health_names_the_failing_check(valerix, monkeypatch):
    valerix.set_env(INVENTORY_QUEUE_URL=valerix.inventory_queue_url + "-missing")
    reply = call_api(valerix.order_api, "GET", "/health/order")
    assert reply.status == 503
    assert reply.body["status"] == "DOWN"
    assert reply.body["checks"]["inventoryQueue"]["status"] == "DOWN"
    assert reply.body["checks"]["database"]["status"] == "UP"
    assert "inventoryQueue" in reply.body["message"]
    assert reply.body["checks"]["inventoryQueue"]["error"] == "queue unreachable"
    assert "-missing" not in json.dumps(reply.body) and "NonExistentQueue" not in json.dumps(reply.body)

    port = free_port()
    valerix.set_env(
        INVENTORY_QUEUE_URL=valerix.inventory_queue_url, AWS_ENDPOINT_URL_LAMBDA=f"http://127.0.0.1:{port}"
    )  # the Lambda API unreachable
    reply = call_api(valerix.order_api, "GET", "/health/order")
    assert reply.status == 503 and reply.body["checks"]["inventory"]["status"] == "DOWN"
    assert reply.body["checks"]["inventory"]["error"] == "inventory unreachable"
    assert "inventory" in reply.body["message"]
    assert str(port) not in json.dumps(reply.body) and "127.0.0.1" not in json.dumps(reply.body)


def test_health_database_down(valerix, monkeypatch):
    from functions.common.db import Database
    from functions.inventory import repository as inventory_repository
    from functions.order import repository as order_repository

    class Down(Database):
        def _open(self):
            from functions.common.db import DatabaseUnavailable

            raise DatabaseUnavailable("cannot connect to the database: connection refused (test)")

    monkeypatch.setattr(order_repository, "database", lambda: Down("arn:none"))
    monkeypatch.setattr(inventory_repository, "database", lambda: Down("arn:none"))
    reply = call_api(valerix.order_api, "GET", "/health/order")
    assert reply.status == 503 and reply.body["checks"]["database"]["status"] == "DOWN"
    # a short public reason; the driver's text ("connection refused", host, port) stays in the logs
    assert reply.body["checks"]["database"]["error"] == "database unreachable"
    assert "refused" not in json.dumps(reply.body)
    reply = call_api(valerix.inventory_api, "GET", "/health/inventory")
    assert reply.status == 503 and "database unreachable" in reply.body["message"]
    assert "refused" not in json.dumps(reply.body)
    # and an order while the order database is down: 503 with a JSON message, nothing queued
    reply = valerix.order("widget", 1)
    assert reply.status == 503 and reply.body["message"]
    assert valerix.queue_depth(valerix.inventory_queue_url) == 0


def test_migrations_are_idempotent_and_seed_once(valerix):
    valerix.set_stock("widget", 3)
    roles = {"owner": "inventory_owner", "app": "inventory_app", "reader": "inventory_backup"}
    assert valerix.migrate("inventory") == {"applied": [], "seeded": False, "roles": roles}
    assert valerix.migrate("order")["applied"] == []
    assert valerix.stock("widget") == 3  # not re-seeded
    versions = [r[0] for r in valerix.inventory_db.run("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == ["001_products_reservations", "002_seed_catalogue"]
