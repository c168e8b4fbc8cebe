"""Failed queue records come back after a short, growing delay instead of the queue's
whole visibility timeout (functions/common/queue.py)."""

from __future__ import annotations

import base64
import json
import time

import boto3
import pytest
from moto import mock_aws

from functions.common import aws
from functions.common.observability import get_logger
from functions.common.queue import PoisonMessage, backoff_seconds, process_batch


def test_backoff_grows_and_is_capped():
    assert [backoff_seconds(n) for n in (1, 2, 3, 4, 5, 6, 7)] == [2, 4, 8, 16, 32, 60, 60]


@pytest.fixture
def sqs(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    with mock_aws():
        aws.client.cache_clear()
        yield boto3.client("sqs", region_name="us-east-1")
        aws.client.cache_clear()


def _event_from(sqs, queue_url: str, count: int) -> dict:
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=count, AttributeNames=["All"])["Messages"]
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m["Attributes"],
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


def test_a_failed_record_is_redelivered_after_the_backoff_not_the_visibility_timeout(sqs):
    queue_url = sqs.create_queue(QueueName="backoff", Attributes={"VisibilityTimeout": "300"})["QueueUrl"]
    sqs.send_message(QueueUrl=queue_url, MessageBody='{"ok": true}')
    sqs.send_message(QueueUrl=queue_url, MessageBody='{"ok": false}')
    event = _event_from(sqs, queue_url, 2)
    assert len(event["Records"]) == 2

    def handler(record):
        if '"ok": false' in record.body:
            raise RuntimeError("transient")
        return "done"

    response = process_batch(event, None, handler, "test", get_logger("test"))
    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    assert len(failed) == 1
    assert sqs.receive_message(QueueUrl=queue_url).get("Messages") is None  # not yet
    time.sleep(backoff_seconds(1) + 0.5)
    redelivered = sqs.receive_message(QueueUrl=queue_url, AttributeNames=["All"])["Messages"]
    assert [m["MessageId"] for m in redelivered] == list(failed)
    assert redelivered[0]["Attributes"]["ApproximateReceiveCount"] == "2"


def _queue_redriving_to(sqs, name: str) -> tuple[str, str]:
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})
    return sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": policy})["QueueUrl"], dlq_url


def test_a_poison_record_goes_to_the_dead_letter_queue_at_once_saying_why(sqs):
    queue_url, dlq_url = _queue_redriving_to(sqs, "poison")
    sqs.send_message(QueueUrl=queue_url, MessageBody="not json")
    sqs.send_message(QueueUrl=queue_url, MessageBody='{"ok": true}')
    event = _event_from(sqs, queue_url, 2)
    for record in event["Records"]:
        record["messageAttributes"] = {
            "correlationId": {"stringValue": "c-42", "dataType": "String"},
            "blob": {"binaryValue": base64.b64encode(b"\x00\x01").decode(), "dataType": "Binary"},
        }

    def handler(record):
        if record.body == "not json":
            raise PoisonMessage("malformed: expected JSON")
        return "done"

    response = process_batch(event, None, handler, "test", get_logger("test"))
    assert response == {"batchItemFailures": []}  # nothing left to retry
    (dead,) = sqs.receive_message(QueueUrl=dlq_url, MessageAttributeNames=["All"], MaxNumberOfMessages=10)["Messages"]
    assert dead["Body"] == "not json"
    attributes = dead["MessageAttributes"]
    assert attributes["correlationId"]["StringValue"] == "c-42"
    assert attributes["blob"]["BinaryValue"] == b"\x00\x01"
    assert attributes["failureReason"]["StringValue"] == "PoisonMessage: malformed: expected JSON"
    assert attributes["sourceQueueArn"]["StringValue"] == event["Records"][0]["eventSourceARN"]


def test_a_poison_record_fails_as_any_other_when_its_dead_letter_queue_is_unknown(sqs):
    """No redrive policy to follow (or no permission to send): SQS's own redrive stays the way
    to the DLQ, so the record must keep failing rather than be lost."""
    queue_url = sqs.create_queue(QueueName="poison-without-dlq")["QueueUrl"]
    sqs.send_message(QueueUrl=queue_url, MessageBody="not json")
    event = _event_from(sqs, queue_url, 1)

    def handler(record):
        raise PoisonMessage("malformed")

    response = process_batch(event, None, handler, "test", get_logger("test"))
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [event["Records"][0]["messageId"]]


def test_records_of_a_batch_are_handled_concurrently(sqs):
    """Every record waits for all the others to start: handled one after another, the first
    would time out at the barrier and the whole batch would fail."""
    import threading

    queue_url = sqs.create_queue(QueueName="concurrent")["QueueUrl"]
    for i in range(5):
        sqs.send_message(QueueUrl=queue_url, MessageBody=f'{{"n": {i}}}')
    event = _event_from(sqs, queue_url, 5)
    assert len(event["Records"]) == 5
    all_started = threading.Barrier(5, timeout=10)
    threads: set[str] = set()

    def handler(record):
        threads.add(threading.current_thread().name)
        all_started.wait()
        return record.body

    response = process_batch(event, None, handler, "test", get_logger("test"))
    assert response == {"batchItemFailures": []}
    assert len(threads) == 5
