"""Order's inventory client: hard budget, one jittered retry for connection errors only, breaker."""

from __future__ import annotations

import time

import boto3
import httpx
import pytest
from moto import mock_aws

from functions.common.settings import Settings
from functions.order.inventory_client import InventoryClient, InventoryUnavailable

TABLE = "circuit"


@pytest.fixture
def make_client(monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    from aws_lambda_powertools.utilities.circuit_breaker import base

    clients = []
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(TableName=TABLE, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                         BillingMode="PAY_PER_REQUEST")

        def make(handler, **env):
            base._LOCAL_FAILURES.clear()
            base._LOCAL_SUCCESSES.clear()
            base._LAST_OBSERVED_STATE.clear()
            settings = Settings.from_env({"INVENTORY_API_URL": "http://inventory.test", "CIRCUIT_BREAKER_TABLE": TABLE,
                                          **env})
            client = InventoryClient(settings, dynamodb_client=ddb, transport=httpx.MockTransport(handler))
            clients.append(client)
            return client

        yield make
    for client in clients:
        client.close()


def test_reserved_and_rejected(make_client):
    def handler(request):
        body = request.read()
        if b"widget" in body:
            return httpx.Response(201, json={"status": "RESERVED"})
        return httpx.Response(409, json={"message": "no", "reason": "insufficient stock"})

    client = make_client(handler)
    assert client.reserve("o1", "widget", 1).reserved
    reply = client.reserve("o2", "gadget", 1)
    assert not reply.reserved and reply.reason == "insufficient stock"


def test_hard_budget_even_if_the_transport_hangs(make_client):
    def handler(request):
        time.sleep(5)  # ignores every httpx timeout
        return httpx.Response(201, json={})

    client = make_client(handler, INVENTORY_CALL_BUDGET_MS="500")
    started = time.monotonic()
    with pytest.raises(InventoryUnavailable) as info:
        client.reserve("o1", "widget", 1)
    assert info.value.kind == "timeout"
    assert time.monotonic() - started < 1.5


def test_one_retry_for_connection_errors(make_client):
    calls = []

    def handler(request):
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(201, json={"status": "RESERVED"})

    assert make_client(handler).reserve("o1", "widget", 1).reserved
    assert len(calls) == 2


def test_no_more_than_one_retry(make_client):
    calls = []

    def handler(request):
        calls.append(1)
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(InventoryUnavailable) as info:
        make_client(handler).reserve("o1", "widget", 1)
    assert info.value.kind == "connection_error"
    assert len(calls) == 2


def test_no_retry_for_timeouts_or_5xx(make_client):
    calls = []

    def handler(request):
        calls.append(1)
        if len(calls) == 1:
            raise httpx.ReadTimeout("slow", request=request)
        return httpx.Response(500, json={"message": "boom"})

    client = make_client(handler)
    with pytest.raises(InventoryUnavailable) as info:
        client.reserve("o1", "widget", 1)
    assert info.value.kind == "timeout" and len(calls) == 1
    with pytest.raises(InventoryUnavailable) as info:
        client.reserve("o2", "widget", 1)
    assert info.value.kind == "server_error" and len(calls) == 2


def test_no_retry_when_the_budget_is_nearly_spent(make_client):
    calls = []

    def handler(request):
        calls.append(1)
        time.sleep(0.3)
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(InventoryUnavailable):
        make_client(handler, INVENTORY_CALL_BUDGET_MS="400").reserve("o1", "widget", 1)
    assert len(calls) == 1


def test_circuit_opens_and_short_circuits(make_client):
    from aws_lambda_powertools.utilities.circuit_breaker import CircuitBreakerOpenError

    calls = []

    def handler(request):
        calls.append(1)
        return httpx.Response(503, json={"message": "down"})

    client = make_client(handler, CIRCUIT_FAILURE_THRESHOLD="2", CIRCUIT_RECOVERY_TIMEOUT_SECONDS="60")
    for _ in range(2):
        with pytest.raises(InventoryUnavailable):
            client.reserve("o", "widget", 1)
    assert client.circuit_state() == "OPEN"
    started = time.monotonic()
    with pytest.raises(CircuitBreakerOpenError):
        client.reserve("o", "widget", 1)
    assert time.monotonic() - started < 0.1
    assert len(calls) == 2


def test_business_refusals_do_not_open_the_circuit(make_client):
    def handler(request):
        return httpx.Response(409, json={"reason": "insufficient stock"})

    client = make_client(handler, CIRCUIT_FAILURE_THRESHOLD="2")
    for _ in range(5):
        assert not client.reserve("o", "widget", 1).reserved
    assert client.circuit_state() == "CLOSED"
