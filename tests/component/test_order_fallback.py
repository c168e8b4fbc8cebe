"""Slow, failing and unreachable inventory: QUEUED within the 2 s budget, then exactly one outcome."""

from __future__ import annotations

import threading
import time

from functions.gremlin.injector import InjectedError
from tests.component.conftest import call_api, free_port

BUDGET_BOUND = 2.2  # seconds: the contract


def _wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def test_slow_inventory_queues_within_budget_and_the_abandoned_reservation_never_commits(valerix, inventory_server):
    """The sync reservation is still asleep when the caller gives up and queues the order: it
    wakes past the deadline the order sent, so it writes nothing (no commit behind the QUEUED
    answer, issue 17 item 2); the queued copy then reserves exactly once."""
    woke = threading.Event()
    valerix.chaos.before = lambda: (time.sleep(3), woke.set())

    started = time.monotonic()
    reply = valerix.order("widget", 2)
    elapsed = time.monotonic() - started
    assert reply.status == 202, reply.body
    assert reply.body["status"] == "QUEUED"
    assert reply.body["reason"] == "inventory timeout"
    assert elapsed <= BUDGET_BOUND, elapsed
    order_id = reply.body["orderId"]
    assert valerix.order_row(order_id)["status"] == "QUEUED"

    assert woke.wait(10), "the slow reservation never woke"
    inventory_server.wait_idle()  # its answer is sent: the reservation is over
    assert valerix.stock("widget") == 100  # nothing committed after the caller gave up
    assert valerix.count("inventory", "reservations") == 0

    valerix.chaos.before = None
    assert valerix.drain_inventory_queue() == 1
    assert valerix.drain_completion_queue() == 1
    assert valerix.order_row(order_id)["status"] == "CONFIRMED"
    assert valerix.stock("widget") == 98
    assert valerix.count("inventory", "reservations") == 1


def test_time_spent_before_the_function_counts_against_the_budget(valerix, inventory_server):
    """API Gateway stamps when it received the request; a request that already waited 1 s
    (gateway queueing, a cold start) has only the rest of the 2 s budget for inventory."""
    valerix.chaos.before = lambda: time.sleep(3)

    started = time.monotonic()
    reply = valerix.order("widget", 1, received_seconds_ago=1.0)
    elapsed = time.monotonic() - started
    assert reply.status == 202 and reply.body["reason"] == "inventory timeout", reply.body
    assert elapsed < 1.6, f"answered {elapsed:.2f}s after the function started, 1 s of the budget was gone"
    inventory_server.wait_idle()
    assert valerix.stock("widget") == 100  # the deadline inventory was told had the wait taken off too


def test_the_deadline_keeps_the_fallback_reserve_and_subtracts_the_wait():
    from functions.order.service import FALLBACK_RESERVE, call_deadline

    assert call_deadline(2.0, 0.0, monotonic_now=50.0) == 50.0 + 2.0 - FALLBACK_RESERVE
    assert call_deadline(2.0, 0.5, monotonic_now=50.0) == 50.0 + 1.5 - FALLBACK_RESERVE


def test_queued_copy_wins_the_race_and_the_late_sync_call_changes_nothing(valerix, inventory_server):
    woke = threading.Event()
    valerix.chaos.before = lambda: (time.sleep(2.5), woke.set())

    reply = valerix.order("gadget", 5)
    assert reply.status == 202 and reply.body["status"] == "QUEUED"
    valerix.drain()  # while the sync reservation is still asleep
    assert valerix.order_row(reply.body["orderId"])["status"] == "CONFIRMED"
    assert valerix.stock("gadget") == 45

    assert woke.wait(10)
    inventory_server.wait_idle()
    assert valerix.stock("gadget") == 45  # the late sync attempt, past its deadline, did nothing
    assert valerix.count("inventory", "reservations") == 1


def test_crash_after_commit_equivalent_reply_lost_still_one_outcome(valerix):
    """The stock moved but the reply never arrives in time (after-commit delay)."""
    valerix.chaos.after = lambda: time.sleep(3)
    reply = valerix.order("gizmo", 4)
    assert reply.status == 202 and reply.body["status"] == "QUEUED"
    assert valerix.stock("gizmo") == 21
    valerix.chaos.after = None
    valerix.drain()
    assert valerix.order_row(reply.body["orderId"])["status"] == "CONFIRMED"
    assert valerix.stock("gizmo") == 21


def test_inventory_5xx_queues_never_rejects_then_completes(valerix):
    def fail():
        raise InjectedError(500, "injected")

    valerix.chaos.before = fail
    reply = valerix.order("widget", 1)
    assert reply.status == 202, reply.body
    assert reply.body["status"] == "QUEUED"
    assert reply.body["reason"] == "inventory error"
    assert valerix.stock("widget") == 100
    valerix.drain()  # the queue path does not obey the gremlin
    assert valerix.order_row(reply.body["orderId"])["status"] == "CONFIRMED"
    assert valerix.stock("widget") == 99


def test_queued_order_for_insufficient_stock_ends_rejected(valerix):
    valerix.chaos.before = lambda: (_ for _ in ()).throw(InjectedError(503, "injected"))
    reply = valerix.order("doohickey", 50)
    assert reply.status == 202
    valerix.drain()
    row = valerix.order_row(reply.body["orderId"])
    assert row["status"] == "REJECTED" and row["reason"] == "insufficient stock"
    assert valerix.stock("doohickey") == 10


def test_inventory_unreachable_queues_fast(valerix):
    valerix.set_env(AWS_ENDPOINT_URL_LAMBDA=f"http://127.0.0.1:{free_port()}")  # the Lambda API unreachable
    started = time.monotonic()
    reply = valerix.order("widget", 1)
    assert time.monotonic() - started <= BUDGET_BOUND
    assert reply.status == 202 and reply.body["reason"] == "inventory unreachable"
    assert valerix.queue_depth(valerix.inventory_queue_url) == 1


def test_circuit_opens_after_threshold_and_short_circuits_then_recovers(valerix):
    valerix.set_env(CIRCUIT_FAILURE_THRESHOLD="3", CIRCUIT_RECOVERY_TIMEOUT_SECONDS="4")

    def fail():
        raise InjectedError(500, "injected")

    valerix.chaos.before = fail
    for _ in range(3):
        reply = valerix.order("widget", 1)
        assert reply.status == 202 and reply.body["reason"] == "inventory error"
    opened = time.monotonic()
    assert valerix.chaos.calls == 3

    health = call_api(valerix.order_api, "GET", "/health/order")
    assert health.body["circuitState"] == "open"

    for _ in range(3):
        started = time.monotonic()
        reply = valerix.order("widget", 1)
        assert time.monotonic() - started < 1.0
        assert reply.status == 202 and reply.body["reason"] == "circuit open"
    assert valerix.chaos.calls == 3  # inventory was not called while open

    assert time.monotonic() - opened < 4, "machine too slow for this test's recovery window"
    valerix.chaos.before = None
    time.sleep(max(0.0, opened + 5.1 - time.monotonic()))  # recovery timeout elapsed: next call probes
    reply = valerix.order("widget", 1)
    assert reply.status == 201, reply.body
    assert reply.body["status"] == "CONFIRMED"
    assert call_api(valerix.order_api, "GET", "/health/order").body["circuitState"] == "closed"
    assert valerix.order("widget", 1).status == 201

    valerix.drain()
    assert valerix.stock("widget") == 100 - 8
    statuses = [r[0] for r in valerix.order_db.run("SELECT status FROM orders")]
    assert statuses.count("CONFIRMED") == 8
