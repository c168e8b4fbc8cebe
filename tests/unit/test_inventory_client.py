"""Order's inventory client: hard budget, one jittered retry for connection errors only, breaker.

The transport is the Lambda Invoke API; `FakeLambda` stands in for the boto3 Lambda client and
answers the way botocore does (a response dict with a streaming Payload, FunctionError when the
runtime failed, botocore exceptions for transport failures).
"""

from __future__ import annotations

import io
import json
import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from moto import mock_aws

from functions.common.settings import Settings
from functions.order.inventory_client import ANSWER_MARGIN, InventoryClient, InventoryUnavailable

TABLE = "circuit"
FUNCTION = "valerix-inventory-reserve"


def answer(status: str, status_code: int, **extra) -> dict:
    return {
        "StatusCode": 200,
        "Payload": io.BytesIO(json.dumps({"status": status, "statusCode": status_code, **extra}).encode()),
    }


def function_error(error_type: str = "Runtime.ExitError") -> dict:
    body = {"errorType": error_type, "errorMessage": "RequestId: x Error: Runtime exited with error: exit status 1"}
    return {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": io.BytesIO(json.dumps(body).encode())}


class FakeLambda:
    """Records every invoke; `behaviour(payload)` returns a response or raises."""

    def __init__(self, behaviour) -> None:
        self.behaviour = behaviour
        self.calls: list[dict] = []

    def invoke(self, **kwargs):
        self.calls.append(kwargs)
        assert kwargs["FunctionName"] == FUNCTION
        assert kwargs["InvocationType"] == "RequestResponse"
        return self.behaviour(json.loads(kwargs["Payload"]))


def connection_refused():
    raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1/2015-03-31/functions/x/invocations")


@pytest.fixture
def make_client(monkeypatch):
    for key, value in {
        "AWS_ACCESS_KEY_ID": "t",
        "AWS_SECRET_ACCESS_KEY": "t",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    from aws_lambda_powertools.utilities.circuit_breaker import base

    clients = []
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )

        def make(behaviour, **env):
            base._LOCAL_FAILURES.clear()
            base._LOCAL_SUCCESSES.clear()
            base._LAST_OBSERVED_STATE.clear()
            settings = Settings.from_env(
                {"INVENTORY_RESERVE_FUNCTION": FUNCTION, "CIRCUIT_BREAKER_TABLE": TABLE, **env}
            )
            fake = FakeLambda(behaviour)
            client = InventoryClient(settings, dynamodb_client=ddb, lambda_client=fake)
            client.fake = fake
            clients.append(client)
            return client

        yield make
    for client in clients:
        client.close()


def test_the_invoke_payload_is_the_reserve_contract(make_client):
    client = make_client(lambda payload: answer("RESERVED", 201, **payload))
    sent_after = time.time() * 1000
    assert client.reserve("o1", "widget", 3).reserved
    (call,) = client.fake.calls
    payload = json.loads(call["Payload"])
    deadline_ms = payload.pop("deadlineEpochMs")
    assert payload == {"action": "reserve", "orderId": "o1", "productId": "widget", "quantity": 3}
    # the instant this caller stops waiting (the whole budget here), less the answer's way back
    assert sent_after < deadline_ms <= time.time() * 1000 + client.budget * 1000 - ANSWER_MARGIN * 1000


def test_the_deadline_sent_is_the_callers_less_the_answer_margin(make_client):
    from functions.common.deadline import Deadline

    client = make_client(lambda payload: answer("RESERVED", 201, **payload))
    deadline = Deadline(time.monotonic() + 0.7)
    client.reserve("o1", "widget", 1, deadline)
    (call,) = client.fake.calls
    expected = Deadline(deadline.at - ANSWER_MARGIN).epoch_ms()
    assert abs(json.loads(call["Payload"])["deadlineEpochMs"] - expected) <= 5  # ms: two clock reads apart


def test_a_deadline_refusal_is_a_timeout_not_a_business_answer(make_client):
    client = make_client(lambda payload: answer("DEADLINE_EXCEEDED", 504, message="not started"))
    with pytest.raises(InventoryUnavailable) as caught:
        client.reserve("o1", "widget", 1)
    assert caught.value.kind == "timeout"


def test_reserved_rejected_and_conflict(make_client):
    def behaviour(payload):
        if payload["productId"] == "widget":
            return answer("RESERVED", 201)
        if payload["productId"] == "gadget":
            return answer("REJECTED", 409, reason="insufficient stock")
        return answer("CONFLICT", 409, reason="reservation conflict", message="order 'o3' already reserved 4 of 'x'")

    client = make_client(behaviour)
    assert client.reserve("o1", "widget", 1).reserved
    reply = client.reserve("o2", "gadget", 1)
    assert not reply.reserved and reply.reason == "insufficient stock"
    reply = client.reserve("o3", "gizmo", 1)
    assert not reply.reserved and reply.reason == "reservation conflict"


@pytest.mark.parametrize(
    "response,detail",
    [
        (lambda: answer("ERROR", 500, message="gremlin: injected error 500"), "ERROR 500"),
        (lambda: answer("ERROR", 409, message="gremlin: injected error 409"), "ERROR 409"),  # injected, not a refusal
        (lambda: answer("INVALID", 422, message="invalid reservation request: quantity"), "INVALID 422"),
        (function_error, "Runtime.ExitError"),  # a crashed runtime (gremlin crash: a real process exit)
        (lambda: {"StatusCode": 200, "Payload": io.BytesIO(b"not json")}, "malformed answer"),
    ],
)
def test_faults_are_server_errors(make_client, response, detail):
    client = make_client(lambda payload: response())
    with pytest.raises(InventoryUnavailable) as info:
        client.reserve("o1", "widget", 1)
    assert info.value.kind == "server_error" and detail in info.value.detail
    assert len(client.fake.calls) == 1  # never retried


def test_lambda_service_errors_are_server_errors(make_client):
    def behaviour(payload):
        raise ClientError({"Error": {"Code": "TooManyRequestsException", "Message": "Rate exceeded"}}, "Invoke")

    with pytest.raises(InventoryUnavailable) as info:
        make_client(behaviour).reserve("o1", "widget", 1)
    assert info.value.kind == "server_error" and "TooManyRequestsException" in info.value.detail


def test_hard_budget_even_if_the_transport_hangs(make_client):
    def behaviour(payload):
        time.sleep(5)  # ignores every socket timeout
        return answer("RESERVED", 201)

    client = make_client(behaviour, INVENTORY_CALL_BUDGET_MS="500")
    started = time.monotonic()
    with pytest.raises(InventoryUnavailable) as info:
        client.reserve("o1", "widget", 1)
    assert info.value.kind == "timeout"
    assert time.monotonic() - started < 1.5


def test_one_retry_for_connection_errors(make_client):
    def behaviour(payload):
        if len(client.fake.calls) == 1:
            connection_refused()
        return answer("RESERVED", 201)

    client = make_client(behaviour)
    assert client.reserve("o1", "widget", 1).reserved
    assert len(client.fake.calls) == 2


def test_no_more_than_one_retry(make_client):
    client = make_client(lambda payload: connection_refused())
    with pytest.raises(InventoryUnavailable) as info:
        client.reserve("o1", "widget", 1)
    assert info.value.kind == "connection_error"
    assert len(client.fake.calls) == 2


def test_no_retry_for_timeouts_or_function_errors(make_client):
    def behaviour(payload):
        if len(client.fake.calls) == 1:
            raise ReadTimeoutError(endpoint_url="http://lambda")
        return function_error()

    client = make_client(behaviour)
    with pytest.raises(InventoryUnavailable) as info:
        client.reserve("o1", "widget", 1)
    assert info.value.kind == "timeout" and len(client.fake.calls) == 1
    with pytest.raises(InventoryUnavailable) as info:
        client.reserve("o2", "widget", 1)
    assert info.value.kind == "server_error" and len(client.fake.calls) == 2


def test_no_retry_when_the_budget_is_nearly_spent(make_client):
    def behaviour(payload):
        time.sleep(0.3)
        connection_refused()

    client = make_client(behaviour, INVENTORY_CALL_BUDGET_MS="400")
    with pytest.raises(InventoryUnavailable):
        client.reserve("o1", "widget", 1)
    assert len(client.fake.calls) == 1


def test_circuit_opens_and_short_circuits(make_client):
    from aws_lambda_powertools.utilities.circuit_breaker import CircuitBreakerOpenError

    client = make_client(
        lambda payload: answer("ERROR", 503, message="down"),
        CIRCUIT_FAILURE_THRESHOLD="2",
        CIRCUIT_RECOVERY_TIMEOUT_SECONDS="60",
    )
    for _ in range(2):
        with pytest.raises(InventoryUnavailable):
            client.reserve("o", "widget", 1)
    assert client.circuit_state() == "OPEN"
    started = time.monotonic()
    with pytest.raises(CircuitBreakerOpenError):
        client.reserve("o", "widget", 1)
    assert time.monotonic() - started < 0.1
    assert len(client.fake.calls) == 2


def test_business_refusals_do_not_open_the_circuit(make_client):
    client = make_client(
        lambda payload: answer("REJECTED", 409, reason="insufficient stock"), CIRCUIT_FAILURE_THRESHOLD="2"
    )
    for _ in range(5):
        assert not client.reserve("o", "widget", 1).reserved
    assert client.circuit_state() == "CLOSED"


def test_probe_pings_the_reserve_function(make_client):
    def behaviour(payload):
        assert payload == {"action": "ping"}
        return {"StatusCode": 200, "Payload": io.BytesIO(b'{"status": "UP"}')}

    client = make_client(behaviour)
    assert client.probe() == {}


@pytest.mark.parametrize(
    "behaviour,reason",
    [
        (
            lambda p: {
                "StatusCode": 200,
                "Payload": io.BytesIO(b'{"status": "DOWN", "reason": "database unreachable"}'),
            },
            "inventory: database unreachable",
        ),
        (lambda p: function_error(), "inventory reserve function failed"),
        (lambda p: connection_refused(), "inventory unreachable"),
    ],
)
def test_probe_failures_name_a_short_reason(make_client, behaviour, reason):
    with pytest.raises(RuntimeError) as info:
        make_client(behaviour).probe()
    assert str(info.value) == reason


def test_the_real_lambda_client_makes_no_retries_of_its_own(monkeypatch):
    """The budget and the single retry are decided by the client, never by botocore."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    captured = {}
    real_client = boto3.session.Session.client

    def spy(self, service, config: Config | None = None, **kwargs):
        captured[service] = config
        return real_client(self, service, config=config, **kwargs)

    monkeypatch.setattr(boto3.session.Session, "client", spy)
    settings = Settings.from_env(
        {"INVENTORY_RESERVE_FUNCTION": FUNCTION, "CIRCUIT_BREAKER_TABLE": TABLE, "INVENTORY_CALL_BUDGET_MS": "2000"}
    )
    client = InventoryClient(settings, dynamodb_client=object())
    try:
        config = captured["lambda"]
        assert config.retries == {"total_max_attempts": 1, "mode": "standard"}
        assert config.read_timeout == 2.0 and config.connect_timeout <= 0.5
        assert client._lambda.meta.config.retries["total_max_attempts"] == 1
    finally:
        client.close()


def test_the_reserve_request_carries_the_correlation_id(make_client):
    """The reserve function logs under the order request's id: it travels in the payload."""
    client = make_client(lambda payload: answer("RESERVED", 201))
    client.reserve("o1", "widget", 1, correlation_id="corr-77")
    client.reserve("o2", "widget", 1)
    sent = [json.loads(call["Payload"]) for call in client.fake.calls]
    assert sent[0]["correlationId"] == "corr-77"
    assert "correlationId" not in sent[1]  # none bound: the field is left out, not sent as null
