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

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CACHE_WAIT = 2.5  # the inventory functions pick a new gremlin document up within ~2 s


@pytest.fixture(autouse=True)
def gremlin_off_afterwards(api):
    api.gremlin_off()
    yield
    api.gremlin_off()


def _put(api, document: dict) -> dict:
    response = api.http.put("/gremlin", json=document, headers=api.admin)
    assert response.status_code == 200, response.text
    return response.json()


def _wait_no_sleeping_transactions(api, timeout: float = 30.0) -> None:
    """A slow fault's pg_sleep may still hold a reservation transaction that the caller gave up
    on: wait until the inventory database runs none, so what is counted below is final."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = api.cloud.db("inventory")
        try:
            [[sleeping]] = conn.run(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND query ILIKE '%pg_sleep%' AND state = 'active'"
            )
        finally:
            conn.close()
        if sleeping == 0:
            return
        time.sleep(0.5)
    raise AssertionError("inventory transactions still sleeping after the fault was switched off")


def assert_invariants(api, product: str, initial_stock: int, accepted: dict[str, int]) -> dict[str, dict]:
    """accepted: orderId -> quantity of every order the API accepted (201/202)."""
    final = api.wait_final(list(accepted), timeout=120)  # no order lost, each reaches a final state
    _wait_no_sleeping_transactions(api)
    confirmed = {oid: body for oid, body in final.items() if body["status"] == "CONFIRMED"}
    assert all(body["quantity"] == accepted[oid] for oid, body in final.items())
    assert initial_stock - api.stock(product) == sum(b["quantity"] for b in confirmed.values())
    reservations = {row[0]: (row[1], row[2]) for row in api.reservations(product)}
    assert {oid for oid, (status, _) in reservations.items() if status == "RESERVED"} == set(confirmed)
    assert all(reservations[oid] == ("RESERVED", body["quantity"]) for oid, body in confirmed.items())
    assert len(api.reservations(product)) == len(reservations)  # one row per order id
    return final


def test_unreachable_database_queues_orders_and_the_fault_expires_by_itself(api, closed_circuit):
    product = api.new_product(stock=30)
    try:
        body = _put(api, {"database": {"fault": "unreachable", "expiresInSeconds": 12}})
        assert body["database"]["enabled"] is True and body["database"]["remainingSeconds"] > 0
        time.sleep(CACHE_WAIT)
        responses = [api.order(product, quantity) for quantity in (1, 2, 3)]
        assert [r.status_code for r in responses] == [202, 202, 202], [r.text for r in responses]
        accepted = {r.json()["orderId"]: q for r, q in zip(responses, (1, 2, 3), strict=True)}
        # No DELETE: the queued orders complete once the safety switch has turned the fault off.
        final = assert_invariants(api, product, 30, accepted)
        assert {o["status"] for o in final.values()} == {"CONFIRMED"}  # the queue path did its job
        assert api.stock(product) == 24
        shown = api.http.get("/gremlin").json()["database"]
        assert shown["enabled"] is False and shown["expired"] is True and shown["remainingSeconds"] == 0
    finally:
        api.gremlin_off()


def test_exhausted_connections_every_second_transaction(api, closed_circuit):
    product = api.new_product(stock=40)
    try:
        _put(api, {"database": {"fault": "exhausted", "every": 2}})
        time.sleep(CACHE_WAIT)
        quantities = (1, 2, 3, 4, 5, 6)
        responses = [api.order(product, q) for q in quantities]
        assert all(r.status_code in (201, 202) for r in responses), [r.text for r in responses]
        codes = [r.status_code for r in responses]
        # The counter starts at 0 with the PUT: the 1st reservation passes, the 2nd is refused.
        assert codes[:2] == [201, 202], codes
    finally:
        api.gremlin_off()
    accepted = {r.json()["orderId"]: q for r, q in zip(responses, quantities, strict=True)}
    final = assert_invariants(api, product, 40, accepted)
    assert {o["status"] for o in final.values()} == {"CONFIRMED"}
    assert api.stock(product) == 40 - sum(quantities)


def test_slow_database_past_the_budget_confirms_once(api, closed_circuit):
    product = api.new_product(stock=20)
    try:
        _put(api, {"database": {"fault": "slow", "delayMs": 3000}})
        time.sleep(CACHE_WAIT)
        responses = [api.order(product, q) for q in (1, 2)]
        # The reservation commits 3 s later, after the order's 2 s budget: the order queued it.
        assert [r.status_code for r in responses] == [202, 202], [r.text for r in responses]
        assert all(r.json()["status"] == "QUEUED" for r in responses)
    finally:
        api.gremlin_off()
    accepted = {r.json()["orderId"]: q for r, q in zip(responses, (1, 2), strict=True)}
    final = assert_invariants(api, product, 20, accepted)
    assert {o["status"] for o in final.values()} == {"CONFIRMED"}
    assert api.stock(product) == 17  # once: the sync attempt was rolled back at its deadline (test_deadline.py)


def test_a_held_lock_convoy_queues_the_tail_and_confirms_once(api, closed_circuit):
    from concurrent.futures import ThreadPoolExecutor

    product = api.new_product(stock=30)
    quantities = (1, 2, 3)
    try:
        _put(api, {"database": {"fault": "locked", "delayMs": 1200}})
        time.sleep(CACHE_WAIT)
        # Three at once: each reservation holds the one lock 1.2 s, so the last in the queue
        # waits 2 x 1.2 s before its own 1.2 s -- past the 2 s budget whatever the order.
        with ThreadPoolExecutor(3) as pool:
            responses = list(pool.map(lambda q: api.order(product, q), quantities))
        assert all(r.status_code in (201, 202) for r in responses), [r.text for r in responses]
        assert any(r.status_code == 202 for r in responses), [r.status_code for r in responses]
    finally:
        api.gremlin_off()
    accepted = {r.json()["orderId"]: q for r, q in zip(responses, quantities, strict=True)}
    final = assert_invariants(api, product, 30, accepted)
    assert {o["status"] for o in final.values()} == {"CONFIRMED"}
    assert api.stock(product) == 24


def test_a_refused_database_setting_leaves_the_gremlin_unchanged(api):
    before = _put(api, {"database": {"fault": "slow", "delayMs": 100, "every": 1000}})
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
        body = _put(api, {"error": {"statusCode": 503}, "stopConditions": [alarm]})
        assert body["stopConditions"] == [alarm] and "stopped" not in body
        time.sleep(CACHE_WAIT)
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
        time.sleep(CACHE_WAIT)
        assert [_reserve_directly(localcloud, probe) for _ in range(3)] == [201, 201, 201]  # stays off
        assert api.http.get("/gremlin").json()["stopped"]["alarm"] == alarm
        api.wait_circuit("closed", timeout=60, probe=True)
        response = api.order(product, 2)
        assert response.status_code == 201, response.text
        accepted[response.json()["orderId"]] = 2
    finally:
        cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="OK", StateReason="e2e: cleanup")
        api.gremlin_off()
    final = assert_invariants(api, product, 20, accepted)
    assert {o["status"] for o in final.values()} == {"CONFIRMED"}
