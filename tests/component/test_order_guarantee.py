"""Issue 13 item 6, "503 means nothing happened": once the PENDING row is stored the order has a
guaranteed outcome and the client gets 202 QUEUED; 503 only when nothing was stored, so a
client that retries after a 503 never buys twice."""

from __future__ import annotations

from functions.common.db import Database, DatabaseUnavailable
from functions.gremlin.injector import InjectedError
from functions.order import repository as order_repository
from functions.order import service as order_service
from functions.order.handler import sweeper_handler
from tests.component.conftest import lambda_context


def _inventory_fails():
    raise InjectedError(500, "injected")


def _sweep() -> dict:
    return sweeper_handler({"olderThanSeconds": 0}, lambda_context())


def test_queue_down_answers_202_and_the_sweeper_completes_the_order_once(valerix):
    valerix.chaos.before = _inventory_fails
    valerix.set_env(INVENTORY_QUEUE_URL=valerix.inventory_queue_url + "-missing")  # SQS refuses the message

    reply = valerix.order("widget", 3, key="queue-down-1")
    assert reply.status == 202, reply.body
    assert reply.body["status"] == "QUEUED"
    assert reply.body["reason"] == order_service.QUEUE_DEFERRED
    assert "automatically" in reply.body["reason"] and reply.body["message"]
    order_id = reply.body["orderId"]
    assert valerix.order_row(order_id)["status"] == "PENDING"  # what the sweeper looks for
    assert valerix.queue_depth(valerix.inventory_queue_url) == 0

    # the client retries (as a 202 allows, with its key): the same order, nothing new
    again = valerix.order("widget", 3, key="queue-down-1")
    assert again.status == 202 and again.body["orderId"] == order_id
    assert valerix.count("order", "orders") == 1

    # the sweeper while the queue is still down leaves it PENDING for the next run
    assert _sweep() == {"requeued": []}
    assert valerix.order_row(order_id)["status"] == "PENDING"

    valerix.set_env(INVENTORY_QUEUE_URL=valerix.inventory_queue_url)  # the queue is back
    valerix.chaos.before = None
    assert _sweep() == {"requeued": [order_id]}
    valerix.drain()
    assert valerix.order_row(order_id)["status"] == "CONFIRMED"
    assert valerix.stock("widget") == 97
    assert valerix.count("order", "orders") == 1


def test_order_db_failing_after_the_reservation_answers_202_and_completes_once(valerix, monkeypatch):
    """Inventory reserved, then the order database failed while recording CONFIRMED: the row is
    PENDING, the client is told QUEUED, and the sweeper's queued copy replays the reservation."""
    real_transition = order_service.transition_order
    failures = []

    def flaky_transition(order_id, to_status, reason=None):
        if not failures:
            failures.append(to_status)
            raise DatabaseUnavailable("connection lost (test)")
        return real_transition(order_id, to_status, reason)

    monkeypatch.setattr(order_service, "transition_order", flaky_transition)
    reply = valerix.order("gadget", 2)
    assert reply.status == 202 and reply.body["status"] == "QUEUED", reply.body
    assert reply.body["reason"] == order_service.RECORD_DEFERRED
    order_id = reply.body["orderId"]
    assert failures == ["CONFIRMED"]
    assert valerix.order_row(order_id)["status"] == "PENDING"
    assert valerix.stock("gadget") == 48  # reserved once

    assert _sweep() == {"requeued": [order_id]}
    valerix.drain()
    assert valerix.order_row(order_id)["status"] == "CONFIRMED"
    assert valerix.stock("gadget") == 48  # the queued copy was a replay


def test_503_only_when_nothing_was_stored_and_a_retry_creates_one_order(valerix, monkeypatch):
    real_database = order_repository.database
    down = {"yes": True}

    class Down(Database):
        def _open(self):
            raise DatabaseUnavailable("cannot connect to the database (test)")

    monkeypatch.setattr(order_repository, "database", lambda: Down("arn:none") if down["yes"] else real_database())
    before = valerix.snapshot()
    for key in ("retry-503", None):
        reply = valerix.order("gizmo", 2, key=key)
        assert reply.status == 503, reply.body
        assert reply.body["message"] and "orderId" not in reply.body
    assert valerix.snapshot() == before  # nothing stored, nothing reserved
    assert valerix.queue_depth(valerix.inventory_queue_url) == 0

    down["yes"] = False
    first = valerix.order("gizmo", 2, key="retry-503")
    second = valerix.order("gizmo", 2, key="retry-503")
    assert first.status == 201 and second.body["orderId"] == first.body["orderId"]
    assert valerix.count("order", "orders") == 1
    assert valerix.stock("gizmo") == 23
