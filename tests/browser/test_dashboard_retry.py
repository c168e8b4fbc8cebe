"""The dashboard sends an Idempotency-Key with every order, and retries a 503 (nothing stored),
API Gateway's 429 (throttled) or a lost answer with the same key, so a retry can never place a
second order (issue 13 item 6)."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


REFUSALS = {
    503: "order database unavailable, try again later",  # the order API, its database down
    429: "too many requests at once: retry after a second",  # API Gateway's method throttle
}


@pytest.mark.parametrize("status", sorted(REFUSALS))
def test_a_refusal_that_asks_for_a_retry_is_retried_with_the_same_key_and_places_one_order(dash, localcloud, status):
    page = dash.page
    dash.allowed_statuses = {(status, "/orders"), (503, "/health/")}
    attempts: list[dict] = []

    def on_order(route, request):
        if request.method != "POST":
            return route.continue_()
        attempts.append({"key": request.headers.get("idempotency-key"), "body": request.post_data})
        if len(attempts) == 1:
            return route.fulfill(
                status=status,
                content_type="application/json",
                headers={"Access-Control-Allow-Origin": "*", "Retry-After": "1"},
                body=json.dumps({"message": REFUSALS[status]}),
            )
        return route.continue_()

    page.route("**/orders", on_order)
    dash.open()
    order_id = dash.place_order("widget", 1)
    assert len(attempts) == 2, attempts
    assert attempts[0]["key"] and attempts[0]["key"] == attempts[1]["key"]
    assert attempts[0]["body"] == attempts[1]["body"]

    conn = localcloud.db("order")
    try:
        rows = conn.run("SELECT order_id FROM orders WHERE idempotency_key = :k", k=attempts[0]["key"])
    finally:
        conn.close()
    assert rows == [[order_id]]
