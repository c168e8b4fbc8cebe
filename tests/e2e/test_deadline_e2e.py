"""Issue 17, item 2 on the local cloud: the order API passes its deadline to the reserve function,
which never commits after it.

The gremlin's database `slow` mode delays every inventory transaction by 3 s, past the order's
2 s budget. The synchronous reservation is cut at the deadline and rolled back (the reserve
function logs it for this order), the caller gets QUEUED, and the queue path -- which has no
deadline -- reserves the order: it ends CONFIRMED with exactly one reservation and the stock
moved once. Before deadline propagation, the abandoned synchronous attempt committed 3 s later
behind the QUEUED answer and the queued copy replayed it.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from infra.outputs import INVENTORY_RESERVE_FUNCTION_NAME

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.usefixtures("gremlin_off_around")]

SLOW = {"database": {"fault": "slow", "delayMs": 3000}}
REFUSED = "reservation not committed: the caller's deadline"


def test_a_slow_database_past_the_budget_rolls_the_sync_attempt_back_and_confirms_once(api, localcloud, closed_circuit):
    product = api.new_product(stock=20)
    since_ms = int(time.time() * 1000) - 5_000
    try:
        api.gremlin(SLOW, settle=True)
        response = api.order(product, 3)
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "QUEUED" and response.json()["reason"] == "inventory timeout"
        order_id = response.json()["orderId"]
        final = api.assert_invariants(product, 20, {order_id: 3})  # the queue path, slow as well
    finally:
        api.gremlin_off()
    assert final[order_id]["status"] == "CONFIRMED"
    assert api.reservations(product) == [[order_id, "RESERVED", 3]]  # exactly one
    assert api.stock(product) == 17  # moved once

    # The synchronous attempt was cut at the order's deadline and wrote nothing; it says so.
    lines = api.wait_for_log_lines(
        [INVENTORY_RESERVE_FUNCTION_NAME],
        since_ms,
        match=lambda line: line.get("order_id") == order_id,
        enough=lambda lines: any(line.get("message") == REFUSED for line in lines),
    )[INVENTORY_RESERVE_FUNCTION_NAME]
    refused = [line for line in lines if line.get("message") == REFUSED]
    assert len(refused) == 1, lines
    assert "rolled back" in refused[0]["error"] or "not started" in refused[0]["error"], refused[0]
    assert not any(line.get("message") == "stock reserved" for line in lines), lines  # not by the sync path


def test_the_reserve_function_refuses_a_reservation_it_cannot_commit_in_time(api, localcloud, closed_circuit):
    """The call order makes, with the deadline it sends: under a 3 s statement delay a 1.5 s
    deadline is answered DEADLINE_EXCEEDED and nothing moves; without a deadline (a caller that
    waits) the same reservation commits."""
    product = api.new_product(stock=10)
    order_id = f"deadline-{uuid.uuid4().hex[:10]}"
    lam = localcloud.client("lambda")

    def invoke(**extra) -> dict:
        result = lam.invoke(
            FunctionName=localcloud.stack[INVENTORY_RESERVE_FUNCTION_NAME],
            Payload=json.dumps(
                {"action": "reserve", "orderId": order_id, "productId": product, "quantity": 4, **extra}
            ),
        )
        assert "FunctionError" not in result, result
        return json.loads(result["Payload"].read())

    try:
        api.gremlin(SLOW, settle=True)
        answer = invoke(deadlineEpochMs=int(time.time() * 1000) + 1500)
        assert answer["statusCode"] == 504 and answer["status"] == "DEADLINE_EXCEEDED", answer
        assert api.stock(product) == 10
        assert api.reservations(product) == []
        answer = invoke()
        assert answer["statusCode"] == 201 and answer["status"] == "RESERVED", answer
    finally:
        api.gremlin_off()
    assert api.stock(product) == 6
    assert api.reservations(product) == [[order_id, "RESERVED", 4]]
