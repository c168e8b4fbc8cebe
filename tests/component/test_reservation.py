"""The internal reserve function (issue 13 items 1 and 2): payload validation, replays,
conflicting replays on the sync path and in the queue consumer, the ping, and no public route.

Real Postgres, moto for SQS/DynamoDB; the handler is called the way Lambda calls it, and the
order side reaches it through the Lambda Invoke API (see conftest.lambda_invoke_app)."""

from __future__ import annotations

import json
import uuid

import pytest

from functions.inventory.handler import queue_handler, reserve_handler
from tests.component.conftest import aws_client, call_api, lambda_context


def reserve(order_id: str, product_id: str, quantity: int) -> dict:
    payload = {"action": "reserve", "orderId": order_id, "productId": product_id, "quantity": quantity}
    return reserve_handler(payload, lambda_context("valerix-test-inventory-reserve"))


def test_reserve_then_replay_returns_the_original_outcome(valerix):
    first = reserve("o-123", "gadget", 5)
    assert first["statusCode"] == 201 and first["status"] == "RESERVED" and first["replay"] is False
    replay = reserve("o-123", "gadget", 5)
    assert replay["statusCode"] == 200 and replay["status"] == "RESERVED" and replay["replay"] is True
    assert valerix.stock("gadget") == 45

    first = reserve("o-124", "doohickey", 11)
    assert first["statusCode"] == 409 and first["reason"] == "insufficient stock" and first["message"]
    valerix.set_stock("doohickey", 100)  # even with stock now, the order id keeps its outcome
    replay = reserve("o-124", "doohickey", 11)
    assert replay["status"] == "REJECTED" and replay["reason"] == "insufficient stock"
    assert valerix.stock("doohickey") == 100

    unknown = reserve("o-125", "zzz", 1)
    assert unknown["statusCode"] == 409 and unknown["reason"] == "unknown product"
    assert valerix.count("inventory", "reservations") == 2  # nothing recorded for an unknown product


BAD_PAYLOADS = [
    ("no orderId", {"action": "reserve", "productId": "widget", "quantity": 1}, "orderId"),
    ("quantity zero", {"action": "reserve", "orderId": "o1", "productId": "widget", "quantity": 0}, "quantity"),
    ("quantity as string", {"action": "reserve", "orderId": "o1", "productId": "widget", "quantity": "1"}, "quantity"),
    ("extra field", {"action": "reserve", "orderId": "o1", "productId": "widget", "quantity": 1, "price": 1}, "price"),
    ("no action", {"orderId": "o1", "productId": "widget", "quantity": 1}, "action"),
    ("unknown action", {"action": "release", "orderId": "o1"}, "action"),
    ("not an object", ["o1", "widget", 1], "payload"),
]


@pytest.mark.parametrize("label,payload,field", BAD_PAYLOADS, ids=[b[0] for b in BAD_PAYLOADS])
def test_invalid_payload_is_refused_naming_the_field_and_changes_nothing(valerix, label, payload, field):
    before = valerix.snapshot()
    answer = reserve_handler(payload, lambda_context())
    assert answer["statusCode"] == 422 and answer["status"] == "INVALID", answer
    assert field in answer["message"], answer
    assert valerix.snapshot() == before
    assert valerix.chaos.calls == 0  # refused before the gremlin or the database


@pytest.mark.parametrize("replay_product,replay_quantity", [("gadget", 4), ("widget", 1), ("widget", 5)])
def test_a_mismatched_replay_is_a_conflict_that_changes_nothing(valerix, replay_product, replay_quantity):
    assert reserve("o-9", "widget", 4)["status"] == "RESERVED"
    before = valerix.snapshot()
    answer = reserve("o-9", replay_product, replay_quantity)
    assert answer["statusCode"] == 409 and answer["status"] == "CONFLICT", answer
    assert "order 'o-9' already reserved 4 of 'widget'" in answer["message"]
    assert valerix.snapshot() == before
    assert reserve("o-9", "widget", 4)["status"] == "RESERVED"  # the real replay still works


def test_a_mismatched_replay_of_a_refusal_is_a_conflict_too(valerix):
    assert reserve("o-10", "doohickey", 11)["status"] == "REJECTED"
    before = valerix.snapshot()
    answer = reserve("o-10", "doohickey", 1)  # would fit: must not turn the refusal into stock taken
    assert answer["status"] == "CONFLICT"
    assert "was already refused 11 of 'doohickey' (insufficient stock)" in answer["message"]
    assert valerix.snapshot() == before


def test_order_treats_a_conflicting_reservation_as_a_refusal(valerix, monkeypatch):
    """Order ids are order's own UUIDs, so this only happens if something else reserved the id:
    the order is refused (its stock never moved) instead of confirmed on another's reservation."""
    from functions.order import service as order_service

    taken = uuid.UUID(int=7)
    assert reserve(str(taken), "widget", 1)["status"] == "RESERVED"
    monkeypatch.setattr(order_service.uuid, "uuid4", lambda: taken)
    reply = valerix.order("widget", 4)
    assert reply.status == 409 and reply.body["status"] == "REJECTED", reply.body
    assert reply.body["reason"] == "reservation conflict"
    assert valerix.stock("widget") == 99  # only the first reservation's unit
    assert valerix.queue_depth(valerix.inventory_queue_url) == 0


def test_queued_conflicting_replay_goes_to_the_dlq_at_once_and_changes_nothing(valerix, caplog):
    """The queue consumer neither confirms nor rejects a conflicting replay, and does not retry
    what can never succeed: the first delivery sends the record to the DLQ, saying why."""
    sqs = aws_client("sqs")
    url, dlq_url = valerix.inventory_queue_url, valerix.dlq_of(valerix.inventory_queue_url)

    assert reserve("o-11", "widget", 4)["status"] == "RESERVED"
    before = valerix.snapshot()
    body = json.dumps({"orderId": "o-11", "productId": "widget", "quantity": 1})
    sqs.send_message(
        QueueUrl=url,
        MessageBody=body,
        MessageAttributes={"correlationId": {"DataType": "String", "StringValue": "replay-o-11"}},
    )
    messages = valerix.receive(url)
    response = valerix.deliver(url, queue_handler, messages)
    assert response["batchItemFailures"] == []  # handled: SQS deletes it from the queue
    assert valerix.queue_depth(url) == 0
    (dead,) = sqs.receive_message(QueueUrl=dlq_url, MessageAttributeNames=["All"])["Messages"]
    assert dead["Body"] == body
    attributes = {name: value["StringValue"] for name, value in dead["MessageAttributes"].items()}
    assert attributes["correlationId"] == "replay-o-11"
    assert "already reserved 4 of 'widget'" in attributes["failureReason"]
    assert attributes["sourceQueueArn"].endswith(":valerix-test-inventory")
    assert valerix.snapshot() == before
    assert valerix.queue_depth(valerix.completion_queue_url) == 0  # neither confirmed nor rejected
    why = [
        r
        for r in caplog.records
        if r.levelname == "ERROR" and "already reserved 4 of 'widget'" in str(getattr(r, "error", ""))
    ]
    assert len(why) == 1, "the one delivery logs why"


def test_ping_reports_the_database(valerix, monkeypatch):
    assert reserve_handler({"action": "ping"}, lambda_context()) == {"status": "UP"}
    from functions.common.db import Database, DatabaseUnavailable
    from functions.inventory import repository

    class Down(Database):
        def _open(self):
            raise DatabaseUnavailable("cannot connect to host 127.0.0.1 port 1 (test)")

    monkeypatch.setattr(repository, "database", lambda: Down("arn:none"))
    answer = reserve_handler({"action": "ping"}, lambda_context())
    assert answer == {"status": "DOWN", "reason": "database unreachable"}  # no host, no port, no driver text
    assert valerix.chaos.calls == 0  # a ping is not a reservation: the gremlin does not count it


def test_database_down_during_a_reservation_is_an_error_answer(valerix, monkeypatch):
    from functions.common.db import Database, DatabaseUnavailable
    from functions.inventory import repository

    class Down(Database):
        def _open(self):
            raise DatabaseUnavailable("cannot connect to host 127.0.0.1 port 1 (test)")

    monkeypatch.setattr(repository, "database", lambda: Down("arn:none"))
    answer = reserve("o-12", "widget", 1)
    assert answer["statusCode"] == 503 and answer["status"] == "ERROR"
    assert answer["message"] == "inventory database unavailable"


def test_a_handler_failure_is_a_function_error_and_the_order_is_queued(valerix):
    """Anything that leaves the reserve function without an answer (a bug here; a crashed
    runtime in the cloud) reaches order as an Invoke FunctionError: a server error."""

    def boom():
        raise RuntimeError("bug (test)")

    valerix.chaos.before = boom
    reply = valerix.order("widget", 1)
    assert reply.status == 202 and reply.body["reason"] == "inventory error", reply.body
    valerix.chaos.before = None
    valerix.drain()
    assert valerix.order_row(reply.body["orderId"])["status"] == "CONFIRMED"
    assert valerix.stock("widget") == 99


def test_the_inventory_app_has_no_reservation_route(valerix):
    before = valerix.snapshot()
    reply = call_api(
        valerix.inventory_api,
        "POST",
        "/inventory/reservations",
        {"orderId": "o-13", "productId": "widget", "quantity": 8},
    )
    assert reply.status == 404 and reply.body["message"]
    assert valerix.snapshot() == before
