"""Issue 15, item 2 on the local cloud: one order's correlation id (a unique X-Correlation-Id the
client sends) appears in the CloudWatch logs of every function that touched the order, read back
through the local cloud's CloudWatch Logs API (FilterLogEvents).

- sync path: order-api -> inventory-reserve (the id travels in the Invoke payload);
- queue path (the gremlin delays every reservation past the 2 s budget): order-api ->
  inventory-queue -> order-completion (the id travels as an SQS message attribute).
"""

from __future__ import annotations

import time
import uuid

import pytest

from infra.outputs import FUNCTION_NAME_OUTPUTS

pytestmark = pytest.mark.e2e


def _wait_for_logs(api, keys: list[str], correlation_id: str, since_ms: int) -> dict[str, list[dict]]:
    """Function key -> its log lines carrying `correlation_id`, once every function shows one."""
    outputs = {FUNCTION_NAME_OUTPUTS[key]: key for key in keys}
    found = api.wait_for_log_lines(
        list(outputs), since_ms, match=lambda line: line.get("correlation_id") == correlation_id
    )
    return {outputs[output]: lines for output, lines in found.items() if lines}


def test_the_sync_path_logs_the_callers_id_in_every_function(localcloud, api, closed_circuit):
    correlation_id = f"e2e-sync-{uuid.uuid4().hex}"
    product_id = api.new_product(stock=5)
    since_ms = int(time.time() * 1000) - 5_000
    response = api.order(product_id, 1, **{"X-Correlation-Id": correlation_id})
    assert response.status_code == 201, response.text
    assert response.headers["x-correlation-id"] == correlation_id
    order_id = response.json()["orderId"]

    keys = ["OrderApi", "InventoryReserve"]
    found = _wait_for_logs(api, keys, correlation_id, since_ms)
    assert set(found) == set(keys), f"functions without {correlation_id} in their logs: {set(keys) - set(found)}"
    # the lines are about this order (not merely carrying the id by accident)
    assert any(line.get("order_id") == order_id for line in found["OrderApi"])
    assert any(line.get("order_id") == order_id for line in found["InventoryReserve"])


def test_the_queue_path_logs_the_callers_id_in_every_function(localcloud, api, closed_circuit):
    correlation_id = f"e2e-queue-{uuid.uuid4().hex}"
    product_id = api.new_product(stock=5)
    since_ms = int(time.time() * 1000) - 5_000
    # Every reservation takes 3 s: the order API gives up after its 2 s budget and queues it.
    api.gremlin({"latency": {"enabled": True, "delayMs": 3000, "every": 1}})
    try:
        response = api.order(product_id, 1, **{"X-Correlation-Id": correlation_id})
    finally:
        api.gremlin_off()
    assert response.status_code == 202, response.text
    order_id = response.json()["orderId"]
    assert api.wait_final([order_id])[order_id]["status"] == "CONFIRMED"

    keys = ["OrderApi", "InventoryQueue", "OrderCompletion"]
    found = _wait_for_logs(api, keys, correlation_id, since_ms)
    assert set(found) == set(keys), f"functions without {correlation_id} in their logs: {set(keys) - set(found)}"
    assert any(
        line.get("orderId") == order_id and line["message"] == "completion published"
        for line in found["InventoryQueue"]
    )
    assert any(
        line.get("order_id") == order_id and line.get("to_status") == "CONFIRMED" for line in found["OrderCompletion"]
    )
