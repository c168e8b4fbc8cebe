"""One order's correlation id through the real handlers (real Postgres, moto SQS/DynamoDB, the
reserve function behind a Lambda Invoke endpoint): sync path order API -> reserve function; queue
path order API -> inventory queue (message attribute) -> inventory consumer -> completion queue
(message attribute) -> order completion consumer; and the sweeper's re-queue."""

from __future__ import annotations

import io
import json
import logging
import uuid

import pytest

from functions.common.contracts import CORRELATION_ID_ATTRIBUTE
from functions.common.observability import get_logger
from functions.gremlin.injector import InjectedError
from tests.component.conftest import call_api, lambda_context


@pytest.fixture
def log_lines():
    """Every Powertools JSON line the order and inventory services write, parsed."""
    stream = io.StringIO()
    loggers = [get_logger("order"), get_logger("inventory")]
    handlers = [logging.StreamHandler(stream) for _ in loggers]
    for logger, handler in zip(loggers, handlers, strict=True):  # each with its own logger's format (its service)
        handler.setFormatter(logger.registered_formatter)
    levels = [logger.log_level for logger in loggers]
    for logger, handler in zip(loggers, handlers, strict=True):
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)  # the component harness runs at WARNING
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    for logger, handler, level in zip(loggers, handlers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


def _order(valerix, correlation_id: str, product_id: str = "widget"):
    return call_api(
        valerix.order_api,
        "POST",
        "/orders",
        {"productId": product_id, "quantity": 1},
        headers={"X-Correlation-Id": correlation_id},
    )


def _lines_about(lines: list[dict], order_id: str) -> list[dict]:
    return [line for line in lines if order_id in (line.get("order_id"), line.get("orderId"))]


def _attribute(message: dict) -> str | None:
    return message.get("MessageAttributes", {}).get(CORRELATION_ID_ATTRIBUTE, {}).get("StringValue")


def test_the_sync_path_logs_the_callers_id_on_both_sides(valerix, log_lines):
    correlation_id = f"e2e-sync-{uuid.uuid4().hex}"
    reply = _order(valerix, correlation_id)
    assert reply.status == 201 and reply.headers["x-correlation-id"] == correlation_id
    about = _lines_about(log_lines(), reply.body["orderId"])
    services = {line["service"] for line in about}
    assert services == {"order", "inventory"}, about  # "order transition" and "stock reserved"
    assert {line.get("correlation_id") for line in about} == {correlation_id}


def test_the_queue_path_carries_the_id_in_message_attributes_to_every_consumer(valerix, log_lines):
    correlation_id = f"e2e-queue-{uuid.uuid4().hex}"

    def fail():
        raise InjectedError(503, "injected")

    valerix.chaos.before = fail
    reply = _order(valerix, correlation_id)
    valerix.chaos.before = None
    assert reply.status == 202, reply.body
    order_id = reply.body["orderId"]

    from functions.inventory.handler import queue_handler
    from functions.order.handler import completion_handler

    queued = valerix.receive(valerix.inventory_queue_url)
    assert [_attribute(m) for m in queued] == [correlation_id]
    valerix.deliver(valerix.inventory_queue_url, queue_handler, queued)
    completions = valerix.receive(valerix.completion_queue_url)
    assert [_attribute(m) for m in completions] == [correlation_id]
    valerix.deliver(valerix.completion_queue_url, completion_handler, completions)
    assert valerix.order_row(order_id)["status"] == "CONFIRMED"

    about = _lines_about(log_lines(), order_id)
    messages = {(line["service"], line["message"]) for line in about}
    assert ("inventory", "completion published") in messages  # the inventory consumer
    assert ("order", "order transition") in messages  # QUEUED by the API, CONFIRMED by the consumer
    assert len([line for line in about if line["message"] == "order transition"]) == 2
    assert {line.get("correlation_id") for line in about} == {correlation_id}, about


def test_the_sweepers_requeue_carries_its_invocation_id(valerix, log_lines):
    from functions.order.handler import sweeper_handler

    valerix.order_db.run(
        "INSERT INTO orders (order_id, product_id, quantity, status, created_at, updated_at) "
        "VALUES ('stale-corr-1', 'widget', 1, 'PENDING', now() - interval '5 minutes', now() - interval '5 minutes')"
    )
    context = lambda_context("order-sweeper")
    assert sweeper_handler({}, context) == {"requeued": ["stale-corr-1"]}
    queued = valerix.receive(valerix.inventory_queue_url)
    assert [_attribute(m) for m in queued] == [context.aws_request_id]
    requeued = [line for line in log_lines() if line["message"] == "stale PENDING orders re-queued"]
    assert requeued and requeued[0]["correlation_id"] == context.aws_request_id


def test_a_message_without_the_attribute_is_still_processed_under_its_message_id(valerix, log_lines):
    """An older producer's message (no attribute): processed as before, logged under its SQS id."""
    from tests.component.conftest import aws_client

    (order_id,) = [r.body["orderId"] for r in [_order(valerix, "x")]]  # a confirmed order to complete again
    aws_client("sqs").send_message(
        QueueUrl=valerix.completion_queue_url, MessageBody=json.dumps({"orderId": order_id, "status": "CONFIRMED"})
    )
    messages = valerix.receive(valerix.completion_queue_url)
    from functions.order.handler import completion_handler

    assert valerix.deliver(valerix.completion_queue_url, completion_handler, messages) == {"batchItemFailures": []}
    skipped = [line for line in _lines_about(log_lines(), order_id) if line["message"] == "order transition skipped"]
    assert [line["correlation_id"] for line in skipped] == [messages[0]["MessageId"]]
