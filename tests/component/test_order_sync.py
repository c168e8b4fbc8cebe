"""Order -> inventory over HTTP on the synchronous path (real Postgres, moto, uvicorn)."""

from __future__ import annotations

from tests.component.conftest import call_api


def test_happy_path_confirms_and_deducts_stock(valerix):
    reply = valerix.order("widget", 3)
    assert reply.status == 201, reply.body
    assert reply.body["status"] == "CONFIRMED"
    order_id = reply.body["orderId"]
    assert valerix.stock("widget") == 97
    assert valerix.order_row(order_id)["status"] == "CONFIRMED"
    got = call_api(valerix.order_api, "GET", f"/orders/{order_id}")
    assert got.status == 200
    assert set(got.body) == {"orderId", "status", "reason", "productId", "quantity", "createdAt", "updatedAt"}
    assert got.body["status"] == "CONFIRMED" and got.body["quantity"] == 3
    assert valerix.queue_depth(valerix.inventory_queue_url) == 0


def test_insufficient_stock_is_rejected_and_not_queued(valerix):
    reply = valerix.order("doohickey", 11)
    assert reply.status == 409, reply.body
    assert reply.body["status"] == "REJECTED"
    assert reply.body["reason"] == "insufficient stock"
    assert "message" in reply.body and reply.body["orderId"]
    assert valerix.stock("doohickey") == 10
    assert valerix.order_row(reply.body["orderId"])["status"] == "REJECTED"
    assert valerix.queue_depth(valerix.inventory_queue_url) == 0


def test_unknown_product_is_rejected_nothing_stored_nothing_queued(valerix):
    before = valerix.snapshot()
    reply = valerix.order("no-such-thing", 1)
    assert reply.status == 409, reply.body
    assert reply.body["status"] == "REJECTED"
    assert reply.body["reason"] == "unknown product"
    assert reply.body["orderId"]
    assert valerix.snapshot() == before
    assert valerix.queue_depth(valerix.inventory_queue_url) == 0


def test_list_orders_newest_first(valerix):
    ids = [valerix.order("gadget", 1).body["orderId"] for _ in range(3)]
    listed = call_api(valerix.order_api, "GET", "/orders", query={"limit": "2"})
    assert listed.status == 200
    assert [o["orderId"] for o in listed.body["orders"]] == [ids[2], ids[1]]
    assert call_api(valerix.order_api, "GET", "/orders/nope").status == 404
