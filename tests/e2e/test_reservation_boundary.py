"""Issue 13 items 1, 2 and 6 through the deployed local cloud: the reservation is not on the
public API, a mismatched replay changes nothing, and a retry after a 503 never buys twice."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from infra.outputs import INVENTORY_DLQ_URL, INVENTORY_QUEUE_URL, INVENTORY_RESERVE_FUNCTION_NAME

pytestmark = [pytest.mark.e2e]


def _invoke_reserve(cloud, **payload) -> dict:
    """The call order makes: the internal reserve function through the Lambda API."""
    response = cloud.client("lambda").invoke(
        FunctionName=cloud.stack[INVENTORY_RESERVE_FUNCTION_NAME], Payload=json.dumps({"action": "reserve", **payload})
    )
    assert "FunctionError" not in response, response
    return json.loads(response["Payload"].read())


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-api-key": "ADMIN"},  # not even the admin key opens it: there is no such route
        {"Authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250101/us-east-1/execute-api/aws4_request"},
    ],
    ids=["anonymous", "admin-key", "forged-signature"],
)
def test_reservation_route_is_refused_on_the_public_api_and_moves_nothing(api, localcloud, headers):
    product = api.new_product(stock=10)
    headers = {k: (localcloud.admin_api_key if v == "ADMIN" else v) for k, v in headers.items()}
    for method in ("POST", "PUT"):
        response = api.http.request(
            method,
            "/inventory/reservations",
            headers=headers,
            json={"orderId": f"anon-{uuid.uuid4().hex[:8]}", "productId": product, "quantity": 8},
        )
        assert response.status_code in (401, 403), response.text
        assert response.json()["message"]
    assert api.stock(product) == 10
    assert api.reservations(product) == []


def test_mismatched_replay_is_refused_and_changes_nothing(api, localcloud, closed_circuit):
    product = api.new_product(stock=10)
    order_id = f"replay-{uuid.uuid4().hex[:10]}"
    first = _invoke_reserve(localcloud, orderId=order_id, productId=product, quantity=4)
    assert first["statusCode"] == 201 and first["status"] == "RESERVED", first
    for other in ({"productId": product, "quantity": 1}, {"productId": "widget", "quantity": 4}):
        answer = _invoke_reserve(localcloud, orderId=order_id, **other)
        assert answer["statusCode"] == 409 and answer["status"] == "CONFLICT", answer
        assert f"order '{order_id}' already reserved 4 of '{product}'" in answer["message"]
    assert api.stock(product) == 6
    assert api.reservations(product) == [[order_id, "RESERVED", 4]]


@pytest.mark.slow
def test_mismatched_replay_on_the_queue_goes_to_the_dlq_at_once_and_changes_nothing(api, localcloud):
    product = api.new_product(stock=10)
    order_id = f"qreplay-{uuid.uuid4().hex[:10]}"
    assert _invoke_reserve(localcloud, orderId=order_id, productId=product, quantity=4)["status"] == "RESERVED"
    sqs = localcloud.client("sqs")
    sqs.send_message(
        QueueUrl=localcloud.stack[INVENTORY_QUEUE_URL],
        MessageBody=json.dumps({"orderId": order_id, "productId": product, "quantity": 1}),
        MessageAttributes={"correlationId": {"DataType": "String", "StringValue": f"c-{order_id}"}},
    )
    dlq = localcloud.stack[INVENTORY_DLQ_URL]
    found, deadline = None, time.monotonic() + 60
    while found is None and time.monotonic() < deadline:
        for message in sqs.receive_message(
            QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=2, VisibilityTimeout=5, MessageAttributeNames=["All"]
        ).get("Messages", []):
            if order_id in message["Body"]:
                found = message
                sqs.delete_message(QueueUrl=dlq, ReceiptHandle=message["ReceiptHandle"])
    assert found is not None, "the conflicting record never reached the DLQ"
    attributes = {name: value["StringValue"] for name, value in found["MessageAttributes"].items()}
    # sent by the consumer on the first delivery, saying why (SQS's redrive adds no such attribute)
    assert f"already reserved 4 of '{product}'" in attributes["failureReason"]
    assert attributes["correlationId"] == f"c-{order_id}"
    assert attributes["sourceQueueArn"].endswith(localcloud.stack[INVENTORY_QUEUE_URL].rsplit("/", 1)[1])
    assert api.stock(product) == 6
    assert api.reservations(product) == [[order_id, "RESERVED", 4]]


def test_a_retry_after_503_never_creates_a_second_order(api, localcloud, closed_circuit):
    from valerix_localcloud.cli import databases

    product = api.new_product(stock=10)
    key = uuid.uuid4().hex
    db = databases()["order"]
    db.stop()
    try:
        for headers in ({"Idempotency-Key": key}, {}):
            response = api.order(product, 2, **headers)
            assert response.status_code == 503, response.text
            assert response.json()["message"]
    finally:
        db.start()
    assert api.stored_orders(product) == []  # 503: nothing was stored
    assert api.stock(product) == 10 and api.reservations(product) == []

    deadline = time.monotonic() + 30
    while (retry := api.order(product, 2, **{"Idempotency-Key": key})).status_code == 503:
        assert time.monotonic() < deadline, "the order database did not come back"
        time.sleep(1)
    assert retry.status_code == 201, retry.text
    again = api.order(product, 2, **{"Idempotency-Key": key})
    assert again.json()["orderId"] == retry.json()["orderId"]
    assert len(api.stored_orders(product)) == 1
    assert api.stock(product) == 8
