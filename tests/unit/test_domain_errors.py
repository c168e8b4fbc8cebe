"""Issue 16 item 1: the service layers raise domain exceptions, each app maps them to HTTP in one
place (the same `{"message", ..., "requestId"}` answers as before); the order state machine and
the contracts' vocabularies."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from functions.common.contracts import CompletionMessage, ReservationStatus
from functions.inventory.model import ProductNotFound
from functions.order import model
from functions.order.model import Order, OrderStatus


def _order(status: OrderStatus = OrderStatus.PENDING) -> Order:
    return Order("o-1", status, None, "widget", 2, "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.000Z")


@pytest.fixture
def order_api(monkeypatch):
    from functions.order import app, service

    def get_order(order_id: str) -> Order:
        raise {
            "missing": model.OrderNotFound(order_id),
            "vanished": model.OrderVanished(order_id),
            "reused": model.IdempotencyKeyReused(_order()),
            "busy": model.IdempotencyKeyInUse(),
        }[order_id]

    monkeypatch.setattr(service, "get_order", get_order)
    return TestClient(app.app, headers={"X-Correlation-Id": "unit-corr-1"})


def test_order_errors_become_the_same_answers_as_before(order_api):
    missing = order_api.get("/orders/missing")
    assert (missing.status_code, missing.json()) == (
        404,
        {"message": "order 'missing' not found", "requestId": "unit-corr-1"},
    )
    reused = order_api.get("/orders/reused")
    assert reused.status_code == 422
    assert reused.json() == {
        "message": "Idempotency-Key was already used for a different order (productId 'widget', quantity 2)",
        "orderId": "o-1",
        "requestId": "unit-corr-1",
    }
    busy = order_api.get("/orders/busy")
    assert busy.status_code == 409 and busy.json()["message"].startswith("a request with this Idempotency-Key")


def test_an_order_error_no_route_expects_is_a_plain_500(order_api):
    answer = order_api.get("/orders/vanished")
    assert (answer.status_code, answer.json()) == (500, {"message": "internal error", "requestId": "unit-corr-1"})


def test_inventory_product_not_found_is_404(monkeypatch):
    from functions.inventory import app, service

    def get_product(product_id: str) -> dict:
        raise ProductNotFound(product_id)

    monkeypatch.setattr(service, "get_product", get_product)
    answer = TestClient(app.app).get("/products/nope")
    assert answer.status_code == 404 and answer.json()["message"] == "product 'nope' not found"


def test_inventory_outcomes_map_to_order_states_in_one_place():
    assert OrderStatus.after_reservation(ReservationStatus.RESERVED) is OrderStatus.CONFIRMED
    assert OrderStatus.after_reservation(ReservationStatus.REJECTED) is OrderStatus.REJECTED
    assert {s for s in OrderStatus if s.final} == {OrderStatus.CONFIRMED, OrderStatus.REJECTED}
    # a final state is never left
    assert not any(final in sources for sources in model.ALLOWED_FROM.values() for final in model.FINAL)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("RESERVED", ReservationStatus.RESERVED),
        ("REJECTED", ReservationStatus.REJECTED),
        ("CONFIRMED", ReservationStatus.RESERVED),  # the former vocabulary, still on the queue after a deploy
    ],
)
def test_a_completion_carries_inventorys_outcome(status, expected):
    assert CompletionMessage.model_validate({"orderId": "o-1", "status": status}).status is expected


@pytest.mark.parametrize("status", ["PENDING", "QUEUED", "MAYBE", "reserved", 1, None])
def test_a_completion_with_another_status_is_refused(status):
    with pytest.raises(ValueError, match="status"):
        CompletionMessage.model_validate({"orderId": "o-1", "status": status})


def test_the_sweeper_skips_a_vanished_order_and_goes_on(monkeypatch):
    """One order discarded meanwhile must not stop the safety net for the others."""
    import contextlib

    from functions.order import repository, service

    stale = [_order(), Order("o-2", OrderStatus.PENDING, None, "widget", 1, "x", "x")]

    class Db:
        @contextlib.contextmanager
        def transaction(self):
            yield None

    def queue(order: Order, reason: str) -> service.OrderResult:
        if order.order_id == "o-1":
            raise model.OrderVanished(order.order_id)
        return service.OrderResult(order.shown_as(OrderStatus.QUEUED, reason))

    monkeypatch.setattr(repository, "database", Db)
    monkeypatch.setattr(repository, "stale_pending", lambda conn, older, limit: stale)
    monkeypatch.setattr(service, "_queue", queue)
    assert service.requeue_stale_pending() == {"requeued": ["o-2"]}
