"""SQS consumers: duplicates, partial batch failures, completions that must not flip final states."""

from __future__ import annotations

import json

from functions.common.db import DatabaseUnavailable
from functions.gremlin.injector import InjectedError
from functions.inventory import service as inventory_service
from functions.inventory.handler import queue_handler
from functions.order.handler import completion_handler
from tests.component.conftest import aws_client


def _queue_orders(valerix, *specs):
    """Place orders while inventory answers 503, so they are QUEUED; return their ids."""

    def fail():
        raise InjectedError(503, "injected")

    valerix.chaos.before = fail
    ids = []
    for product_id, quantity in specs:
        reply = valerix.order(product_id, quantity)
        assert reply.status == 202, reply.body
        ids.append(reply.body["orderId"])
    valerix.chaos.before = None
    return ids


def test_same_inventory_message_delivered_twice_moves_stock_once(valerix):
    (order_id,) = _queue_orders(valerix, ("widget", 7))
    messages = valerix.receive(valerix.inventory_queue_url)
    assert len(messages) == 1
    event = valerix.sqs_event(messages, valerix.inventory_queue_url)

    from tests.component.conftest import lambda_context

    assert queue_handler(event, lambda_context()) == {"batchItemFailures": []}
    assert queue_handler(event, lambda_context()) == {"batchItemFailures": []}  # redelivery
    assert valerix.stock("widget") == 93
    # Powertools idempotency: the duplicate did not publish a second completion
    assert valerix.queue_depth(valerix.completion_queue_url) == 1
    valerix.drain_completion_queue()
    assert valerix.order_row(order_id)["status"] == "CONFIRMED"


def test_duplicate_after_idempotency_record_expired_is_stopped_by_the_database(valerix):
    (order_id,) = _queue_orders(valerix, ("gadget", 2))
    first = valerix.receive(valerix.inventory_queue_url)
    body = first[0]["Body"]
    valerix.deliver(valerix.inventory_queue_url, queue_handler, first)
    sqs = aws_client("sqs")
    # forget the idempotency records, then the same order arrives again
    ddb = aws_client("dynamodb")
    from tests.component.conftest import IDEMPOTENCY_TABLE

    for item in ddb.scan(TableName=IDEMPOTENCY_TABLE)["Items"]:
        ddb.delete_item(TableName=IDEMPOTENCY_TABLE, Key={"id": item["id"]})
    sqs.send_message(QueueUrl=valerix.inventory_queue_url, MessageBody=body)
    valerix.drain_inventory_queue()
    assert valerix.stock("gadget") == 48
    assert valerix.queue_depth(valerix.completion_queue_url) == 2  # same outcome published twice
    valerix.drain_completion_queue()
    assert valerix.order_row(order_id)["status"] == "CONFIRMED"


def test_batch_with_one_failing_record_reports_only_that_record(valerix, monkeypatch):
    ids = _queue_orders(valerix, ("widget", 1), ("gizmo", 2), ("gadget", 3))
    sqs = aws_client("sqs")
    sqs.send_message(QueueUrl=valerix.inventory_queue_url, MessageBody="{not json")

    real_reserve = inventory_service.reserve
    flaky = {ids[1]}

    def reserve(order_id, product_id, quantity):
        if order_id in flaky:
            raise DatabaseUnavailable("database down (test)")
        return real_reserve(order_id, product_id, quantity)

    monkeypatch.setattr(inventory_service, "reserve", reserve)

    messages = valerix.receive(valerix.inventory_queue_url)
    assert len(messages) == 4
    response = valerix.deliver(valerix.inventory_queue_url, queue_handler, messages, redeliver_failed=True)
    failed_ids = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    by_body = {m["MessageId"]: m["Body"] for m in messages}
    failed_bodies = {by_body[i] for i in failed_ids}
    assert len(failed_ids) == 1  # the database error: retried; the malformed one: in the DLQ at once
    assert any(ids[1] in b for b in failed_bodies)
    dead = valerix.receive(valerix.dlq_of(valerix.inventory_queue_url))
    assert [m["Body"] for m in dead] == ["{not json"]
    assert valerix.stock("widget") == 99 and valerix.stock("gadget") == 47
    assert valerix.stock("gizmo") == 25

    # the database is back: the redelivered record succeeds (its idempotency record was released)
    flaky.clear()
    messages = valerix.receive(valerix.inventory_queue_url)
    response = valerix.deliver(valerix.inventory_queue_url, queue_handler, messages)
    assert response["batchItemFailures"] == []
    assert valerix.stock("gizmo") == 23

    valerix.drain_completion_queue()
    assert [valerix.order_row(i)["status"] for i in ids] == ["CONFIRMED"] * 3


def test_completion_never_flips_a_final_state(valerix):
    confirmed = valerix.order("widget", 1).body["orderId"]  # CONFIRMED on the sync path
    (queued,) = _queue_orders(valerix, ("widget", 1))
    sqs = aws_client("sqs")
    url = valerix.completion_queue_url
    for order_id, status, reason in [
        (confirmed, "REJECTED", "insufficient stock"),  # late/conflicting: ignored
        (queued, "REJECTED", "insufficient stock"),  # applied
        (queued, "CONFIRMED", None),  # late: ignored
        (queued, "REJECTED", "insufficient stock"),  # duplicate: no-op
    ]:
        sqs.send_message(
            QueueUrl=url, MessageBody=json.dumps({"orderId": order_id, "status": status, "reason": reason})
        )
        valerix.drain_completion_queue()
    assert valerix.order_row(confirmed)["status"] == "CONFIRMED"
    row = valerix.order_row(queued)
    assert row["status"] == "REJECTED" and row["reason"] == "insufficient stock"


def test_a_malformed_completion_goes_to_the_dlq_and_the_rest_of_its_batch_applies(valerix):
    (queued,) = _queue_orders(valerix, ("widget", 1))
    sqs = aws_client("sqs")
    url = valerix.completion_queue_url
    malformed = json.dumps({"orderId": queued, "status": "MAYBE"})
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"orderId": queued, "status": "CONFIRMED"}))
    sqs.send_message(QueueUrl=url, MessageBody=malformed)
    messages = valerix.receive(url)
    assert len(messages) == 2
    response = valerix.deliver(url, completion_handler, messages)
    assert response["batchItemFailures"] == []
    assert [m["Body"] for m in valerix.receive(valerix.dlq_of(url))] == [malformed]
    assert valerix.order_row(queued)["status"] == "CONFIRMED"


def test_sweeper_requeues_an_order_left_pending_by_a_dead_invocation(valerix):
    from functions.order.handler import sweeper_handler
    from tests.component.conftest import lambda_context

    # an invocation wrote PENDING, called inventory (which committed), then died
    valerix.order_db.run(
        "INSERT INTO orders (order_id, product_id, quantity, status, created_at, updated_at) "
        "VALUES ('dead-1', 'widget', 2, 'PENDING', now() - interval '5 minutes', now() - interval '5 minutes')"
    )
    from functions.inventory import service as inv

    assert inv.reserve("dead-1", "widget", 2).reserved
    valerix.order_db.run(
        "INSERT INTO orders (order_id, product_id, quantity, status) VALUES ('fresh-1', 'widget', 1, 'PENDING')"
    )
    assert sweeper_handler({}, lambda_context()) == {"requeued": ["dead-1"]}
    assert valerix.order_row("dead-1")["status"] == "QUEUED"
    assert valerix.order_row("fresh-1")["status"] == "PENDING"  # an in-flight request is left alone
    valerix.drain()
    assert valerix.order_row("dead-1")["status"] == "CONFIRMED"
    assert valerix.stock("widget") == 98
    assert sweeper_handler({}, lambda_context()) == {"requeued": []}
