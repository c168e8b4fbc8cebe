"""Orders through the deployed API Gateway -> Lambda (process executor) -> real Postgres."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from infra.outputs import INVENTORY_QUEUE_URL

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("closed_circuit")]


def _order_rows(cloud, product_id):
    conn = cloud.db("order")
    try:
        return conn.run("SELECT order_id, status FROM orders WHERE product_id = :p", p=product_id)
    finally:
        conn.close()


def test_products_come_from_the_inventory_database(localcloud, api):
    response = api.http.get("/products")
    assert response.status_code == 200
    listed = {p["productId"]: p["stock"] for p in response.json()["products"]}
    conn = localcloud.db("inventory")
    try:
        in_db = dict(conn.run("SELECT product_id, stock FROM products"))
    finally:
        conn.close()
    assert {"widget", "gadget", "gizmo", "doohickey"} <= set(listed)
    assert listed == in_db


def test_order_is_confirmed_and_stock_deducted_once(localcloud, api):
    product = api.new_product(stock=5)
    response = api.order(product, 2)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "CONFIRMED"
    assert api.stock(product) == 3
    assert api.reservations(product) == [[body["orderId"], "RESERVED", 2]]
    fetched = api.http.get(f"/orders/{body['orderId']}").json()
    assert fetched["status"] == "CONFIRMED" and fetched["productId"] == product
    assert _order_rows(localcloud, product) == [[body["orderId"], "CONFIRMED"]]
    newest = api.http.get("/orders", params={"limit": 5}).json()["orders"]
    assert newest[0]["orderId"] == body["orderId"]


def test_insufficient_stock_is_rejected_and_never_queued(localcloud, api):
    product = api.new_product(stock=1)
    response = api.order(product, 2)
    assert response.status_code == 409, response.text
    assert response.json()["status"] == "REJECTED"
    assert "insufficient stock" in response.json()["reason"]
    assert api.stock(product) == 1
    sqs = localcloud.client("sqs")
    attributes = sqs.get_queue_attributes(
        QueueUrl=localcloud.stack[INVENTORY_QUEUE_URL],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "0"


def test_unknown_product_is_rejected(api):
    response = api.order(f"no-such-{uuid.uuid4().hex[:6]}", 1)
    assert response.status_code == 409
    assert response.json()["reason"] == "unknown product"
    assert "orderId" in response.json()


def test_idempotency_key_returns_the_same_order(localcloud, api):
    product = api.new_product(stock=10)
    key = uuid.uuid4().hex
    first = api.order(product, 1, **{"Idempotency-Key": key})
    second = api.order(product, 1, **{"Idempotency-Key": key})
    assert first.status_code == 201
    assert second.json()["orderId"] == first.json()["orderId"]
    assert api.stock(product) == 9
    assert len(_order_rows(localcloud, product)) == 1


BAD_BODIES = [
    '{"productId": "PRODUCT"}',
    '{"productId": "PRODUCT", "quantity": 0}',
    '{"productId": "PRODUCT", "quantity": -3}',
    '{"productId": "PRODUCT", "quantity": 1001}',
    '{"productId": "PRODUCT", "quantity": "two"}',
    '{"productId": "PRODUCT", "quantity": 1.5}',
    '{"productId": "PRODUCT", "quantity": 1, "extra": true}',
    '{"productId": "PRODUCT", "quantity": 1',
    '["PRODUCT"]',
    '{"productId": "PRODUCT", "quantity": 1, "pad": "' + "x" * 40000 + '"}',
]


@pytest.mark.parametrize("body", BAD_BODIES, ids=range(len(BAD_BODIES)))
def test_bad_input_is_a_4xx_naming_the_problem_and_stores_nothing(localcloud, api, body):
    product = api.new_product(stock=5)
    response = api.http.post(
        "/orders", content=body.replace("PRODUCT", product).encode(), headers={"content-type": "application/json"}
    )
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["message"]
    assert _order_rows(localcloud, product) == []
    assert api.reservations(product) == []
    assert api.stock(product) == 5


def _count(cloud, service, sql):
    conn = cloud.db(service)
    try:
        return conn.run(sql)[0][0]
    finally:
        conn.close()


def test_concurrent_orders_for_the_last_units_never_oversell(api):
    product = api.new_product(stock=10)
    with ThreadPoolExecutor(10) as pool:
        responses = list(pool.map(lambda _: api.order(product, 1), range(30)))
    first_answers = [r.status_code for r in responses]
    assert all(code in (201, 202, 409) for code in first_answers), first_answers
    final = api.wait_final([r.json()["orderId"] for r in responses])
    confirmed = [o for o in final.values() if o["status"] == "CONFIRMED"]
    assert len(confirmed) == 10
    assert api.stock(product) == 0


def test_health_endpoints_are_up(api):
    for service in ("order", "inventory"):
        response = api.http.get(f"/health/{service}")
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "UP"
        assert response.json()["checks"]
