"""Issue 17: the gremlin's database faults and expiry, against the deployed local cloud.

Each test switches a database fault on through ``PUT /gremlin`` (admin key), places orders,
and proves the order flow's invariants under it:

* no order lost: every accepted order (201/202) reaches a final state (CONFIRMED/REJECTED);
* stock moved exactly once per CONFIRMED order: the stock went down by the sum of the
  CONFIRMED quantities and there is exactly one RESERVED reservation per CONFIRMED order;
* the queue path did its job: orders the fault turned into QUEUED end CONFIRMED.

``DELETE /gremlin`` runs in ``finally`` (and around every test), so a failing test never
leaves a fault behind for the next one.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from infra.outputs import GREMLIN_FUNCTION_NAME, INVENTORY_RESERVE_FUNCTION_NAME
from tests.e2e.conftest import GREMLIN_CACHE_WAIT

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.usefixtures("gremlin_off_around")]


def test_unreachable_database_queues_orders_and_the_fault_expires_by_itself(api, closed_circuit):
    product = api.new_product(stock=30)
    try:
        body = api.gremlin({"database": {"fault": "unreachable", "expiresInSeconds": 12}})
        assert body["database"]["enabled"] is True and body["database"]["remainingSeconds"] > 0
        time.sleep(GREMLIN_CACHE_WAIT)
        responses = [api.order(product, quantity) for quantity in (1, 2, 3)]
        assert [r.status_code for r in responses] == [202, 202, 202], [r.text for r in responses]
        accepted = {r.json()["orderId"]: q for r, q in zip(responses, (1, 2, 3), strict=True)}
        # No DELETE: the queued orders complete once the safety switch has turned the fault off.
        final = api.assert_invariants(product, 30, accepted)
        assert {o["status"] for o in final.values()} == {"CONFIRMED"}  # the queue path did its job
        assert api.stock(product) == 24
        shown = api.http.get("/gremlin").json()["database"]
        assert shown["enabled"] is False and shown["expired"] is True and shown["remainingSeconds"] == 0
    finally:
        api.gremlin_off()


def test_exhausted_connections_every_second_transaction(api, closed_circuit):
    product = api.new_product(stock=40)
    try:
        api.gremlin({"database": {"fault": "exhausted", "every": 2}}, settle=True)
        quantities = (1, 2, 3, 4, 5, 6)
        responses = [api.order(product, q) for q in quantities]
        assert all(r.status_code in (201, 202) for r in responses), [r.text for r in responses]
        codes = [r.status_code for r in responses]
        # The counter starts at 0 with the PUT: the 1st reservation passes, the 2nd is refused.
        assert codes[:2] == [201, 202], codes
    finally:
        api.gremlin_off()
    accepted = {r.json()["orderId"]: q for r, q in zip(responses, quantities, strict=True)}
    final = api.assert_invariants(product, 40, accepted)
    assert {o["status"] for o in final.values()} == {"CONFIRMED"}
    assert api.stock(product) == 40 - sum(quantities)


def test_slow_database_past_the_budget_confirms_once(api, closed_circuit):
    product = api.new_product(stock=20)
    try:
        api.gremlin({"database": {"fault": "slow", "delayMs": 3000}}, settle=True)
        responses = [api.order(product, q) for q in (1, 2)]
        # The reservation commits 3 s later, after the order's 2 s budget: the order queued it.
        assert [r.status_code for r in responses] == [202, 202], [r.text for r in responses]
        assert all(r.json()["status"] == "QUEUED" for r in responses)
    finally:
        api.gremlin_off()
    accepted = {r.json()["orderId"]: q for r, q in zip(responses, (1, 2), strict=True)}
    final = api.assert_invariants(product, 20, accepted)
    assert {o["status"] for o in final.values()} == {"CONFIRMED"}
    assert api.stock(product) == 17  # once: the sync attempt was rolled back at its deadline (test_deadline.py)


def test_a_held_lock_convoy_queues_the_tail_and_confirms_once(api, closed_circuit):
    from concurrent.futures import ThreadPoolExecutor

    product = api.new_product(stock=30)
    quantities = (1, 2, 3)
    try:
        api.gremlin({"database": {"fault": "locked", "delayMs": 1200}}, settle=True)
        # Three at once: each reservation holds the one lock 1.2 s, so the last in the queue
        # waits 2 x 1.2 s before its own 1.2 s -- past the 2 s budget whatever the order.
        with ThreadPoolExecutor(3) as pool:
            responses = list(pool.map(lambda q: api.order(product, q), quantities))
        assert all(r.status_code in (201, 202) for r in responses), [r.text for r in responses]
        assert any(r.status_code == 202 for r in responses), [r.status_code for r in responses]
    finally:
        api.gremlin_off()
    accepted = {r.json()["orderId"]: q for r, q in zip(responses, quantities, strict=True)}
    final = api.assert_invariants(product, 30, accepted)
    assert {o["status"] for o in final.values()} == {"CONFIRMED"}
    assert api.stock(product) == 24


def test_a_refused_database_setting_leaves_the_gremlin_unchanged(api):
    before = api.gremlin({"database": {"fault": "slow", "delayMs": 100, "every": 1000}})
    for bad, field in (
        ({"database": {"fault": "meltdown"}}, "database.fault"),
        ({"database": {"fault": "slow", "delayMs": -1}}, "database.delayMs"),
        ({"database": {"expiresAt": "2020-01-01T00:00:00Z"}}, "database.expiresAt"),
        ({"error": {"every": 2}, "stopConditions": ["Valerix-no-such-alarm"]}, "stopConditions.0"),
    ):
        response = api.http.put("/gremlin", json=bad, headers=api.admin)
        assert response.status_code == 422 and field in response.json()["message"], response.text
    after = api.http.get("/gremlin").json()["database"]
    assert {k: v for k, v in after.items() if k != "remainingSeconds"} == {
        k: v for k, v in before["database"].items() if k != "remainingSeconds"
    }


def _stop_alarm(localcloud) -> str:
    """The first stop-condition alarm the stack allows (the gremlin function's known list)."""
    config = localcloud.client("lambda").get_function_configuration(
        FunctionName=localcloud.stack[GREMLIN_FUNCTION_NAME]
    )
    return config["Environment"]["Variables"]["GREMLIN_STOP_ALARMS"].split(",")[0]


def _reserve_directly(localcloud, product: str) -> int:
    """One reservation through the internal reserve function itself (what order invokes), so the
    order API's circuit breaker does not get in the way of watching the gremlin."""
    response = localcloud.client("lambda").invoke(
        FunctionName=localcloud.stack[INVENTORY_RESERVE_FUNCTION_NAME],
        Payload=json.dumps(
            {"action": "reserve", "orderId": f"stop-{uuid.uuid4().hex}", "productId": product, "quantity": 1}
        ),
    )
    return json.loads(response["Payload"].read())["statusCode"]


def test_a_firing_alarm_switches_the_gremlin_off_for_good(api, localcloud, closed_circuit):
    alarm = _stop_alarm(localcloud)
    cloudwatch = localcloud.client("cloudwatch")
    product, probe = api.new_product(stock=20), api.new_product(stock=100)
    accepted: dict[str, int] = {}
    try:
        body = api.gremlin({"error": {"statusCode": 503}, "stopConditions": [alarm]})
        assert body["stopConditions"] == [alarm] and "stopped" not in body
        time.sleep(GREMLIN_CACHE_WAIT)
        response = api.order(product, 1)
        assert response.status_code == 202, response.text  # the gremlin is on
        accepted[response.json()["orderId"]] = 1
        assert _reserve_directly(localcloud, probe) == 503

        # The real alarm of the local cloud's CloudWatch goes to ALARM (as when the DLQ fills).
        cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="e2e: stop condition")
        shown = api.http.get("/gremlin").json()
        assert shown["stopped"]["alarm"] == alarm and shown["error"]["enabled"] is False
        deadline = time.monotonic() + 15
        while _reserve_directly(localcloud, probe) != 201:
            assert time.monotonic() < deadline, "the gremlin kept injecting after its stop condition fired"
            time.sleep(0.5)

        cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="OK", StateReason="e2e: cleared")
        time.sleep(GREMLIN_CACHE_WAIT)
        assert [_reserve_directly(localcloud, probe) for _ in range(3)] == [201, 201, 201]  # stays off
        assert api.http.get("/gremlin").json()["stopped"]["alarm"] == alarm
        api.wait_circuit("closed", timeout=60, probe=True)
        response = api.order(product, 2)
        assert response.status_code == 201, response.text
        accepted[response.json()["orderId"]] = 2
    finally:
        cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="OK", StateReason="e2e: cleanup")
        api.gremlin_off()
    final = api.assert_invariants(product, 20, accepted)
    assert {o["status"] for o in final.values()} == {"CONFIRMED"}
