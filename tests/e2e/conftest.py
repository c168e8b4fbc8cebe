"""Helpers for end-to-end tests that go through the deployed API Gateway of the local cloud."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable

import httpx
import pytest

FINAL = {"CONFIRMED", "REJECTED"}
GREMLIN_CACHE_WAIT = 2.5  # the inventory functions pick a new gremlin document up within ~2 s
LOG_WAIT_SECONDS = 90  # log lines reach CloudWatch Logs shortly after the invocation


class Api:
    def __init__(self, cloud) -> None:
        self.cloud = cloud
        self.http = httpx.Client(base_url=cloud.api_url, timeout=30.0)
        self.admin = {"x-api-key": cloud.admin_api_key}

    def order(self, product_id: str, quantity: int = 1, **headers) -> httpx.Response:
        return self.http.post("/orders", json={"productId": product_id, "quantity": quantity}, headers=headers)

    def new_product(self, stock: int, name: str = "E2E product") -> str:
        product_id = f"e2e-{uuid.uuid4().hex[:10]}"
        response = self.http.put(
            f"/admin/products/{product_id}", json={"name": name, "stock": stock}, headers=self.admin
        )
        assert response.status_code in (200, 201), response.text
        return product_id

    def stock(self, product_id: str) -> int:
        conn = self.cloud.db("inventory")
        try:
            return conn.run("SELECT stock FROM products WHERE product_id = :p", p=product_id)[0][0]
        finally:
            conn.close()

    def stored_orders(self, product_id: str) -> list[list]:
        """[order_id, status] of every order the order database holds for `product_id`."""
        conn = self.cloud.db("order")
        try:
            return conn.run("SELECT order_id, status FROM orders WHERE product_id = :p", p=product_id)
        finally:
            conn.close()

    def reservations(self, product_id: str) -> list[tuple]:
        conn = self.cloud.db("inventory")
        try:
            return conn.run(
                "SELECT order_id, status, quantity FROM reservations WHERE product_id = :p",
                p=product_id,
            )
        finally:
            conn.close()

    def wait_final(self, order_ids, timeout: float = 90.0) -> dict[str, dict]:
        pending = set(order_ids)
        final: dict[str, dict] = {}
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for order_id in list(pending):
                body = self.http.get(f"/orders/{order_id}").json()
                if body.get("status") in FINAL:
                    final[order_id] = body
                    pending.discard(order_id)
            if pending:
                time.sleep(0.5)
        assert not pending, f"orders not final after {timeout}s: {sorted(pending)}"
        return final

    def gremlin(self, document: dict, settle: bool = False) -> dict:
        """PUT the gremlin document; `settle` waits until the inventory functions act on it."""
        response = self.http.put("/gremlin", json=document, headers=self.admin)
        assert response.status_code == 200, response.text
        if settle:
            time.sleep(GREMLIN_CACHE_WAIT)
        return response.json()

    def gremlin_off(self) -> None:
        response = self.http.delete("/gremlin", headers=self.admin)
        assert response.status_code == 200, response.text

    def _wait_no_sleeping_transactions(self, timeout: float = 30.0) -> None:
        """A slow fault's pg_sleep may still hold a reservation transaction that the caller gave up
        on: wait until the inventory database runs none, so what is counted is final."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            conn = self.cloud.db("inventory")
            try:
                [[sleeping]] = conn.run(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                    "AND query ILIKE '%pg_sleep%' AND state = 'active'"
                )
            finally:
                conn.close()
            if sleeping == 0:
                return
            time.sleep(0.5)
        raise AssertionError("inventory transactions still sleeping after the fault was switched off")

    def assert_invariants(self, product: str, initial_stock: int, accepted: dict[str, int]) -> dict[str, dict]:
        """The order flow's invariants for `accepted` (orderId -> quantity of every order the API
        answered 201/202): none lost (each reaches a final state), the stock moved by exactly the
        CONFIRMED quantities, and one RESERVED reservation per CONFIRMED order, none other."""
        final = self.wait_final(list(accepted), timeout=120)
        self._wait_no_sleeping_transactions()
        confirmed = {oid: body for oid, body in final.items() if body["status"] == "CONFIRMED"}
        assert all(body["quantity"] == accepted[oid] for oid, body in final.items())
        assert initial_stock - self.stock(product) == sum(b["quantity"] for b in confirmed.values())
        rows = self.reservations(product)
        reservations = {row[0]: (row[1], row[2]) for row in rows}
        assert {oid for oid, (status, _) in reservations.items() if status == "RESERVED"} == set(confirmed)
        assert all(reservations[oid] == ("RESERVED", body["quantity"]) for oid, body in confirmed.items())
        assert len(rows) == len(reservations)  # one row per order id
        return final

    def log_lines(self, function_output: str, since_ms: int, match: Callable[[dict], bool]) -> list[dict]:
        """The Powertools log lines (JSON objects) of the function named by the stack output
        `function_output` since `since_ms` for which `match` holds, read through FilterLogEvents."""
        logs = self.cloud.client("logs")
        group = f"/aws/lambda/{self.cloud.stack[function_output]}"
        lines = []
        for page in logs.get_paginator("filter_log_events").paginate(logGroupName=group, startTime=since_ms):
            for event in page.get("events", []):
                try:
                    line = json.loads(event["message"])
                except ValueError:
                    continue  # START/END/REPORT lines
                if isinstance(line, dict) and match(line):
                    lines.append(line)
        return lines

    def wait_for_log_lines(
        self,
        function_outputs: list[str],
        since_ms: int,
        match: Callable[[dict], bool],
        enough: Callable[[list[dict]], bool] = bool,
    ) -> dict[str, list[dict]]:
        """Poll until every function's matching lines are `enough` (or the time is up: the caller's
        assertion then names what is missing). Function output -> its matching lines."""
        deadline = time.monotonic() + LOG_WAIT_SECONDS
        while True:
            found = {output: self.log_lines(output, since_ms, match) for output in function_outputs}
            if all(enough(lines) for lines in found.values()) or time.monotonic() > deadline:
                return found
            time.sleep(2)

    def circuit_state(self) -> str:
        body = self.http.get("/health/order").json()
        return str(body.get("circuitState", "")).lower()

    def wait_circuit(self, state: str, timeout: float, probe: bool = False) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.circuit_state() == state:
                return
            if probe:  # a half-open circuit only closes after successful probes
                self.order(self.new_product(stock=5), 1)
            time.sleep(1)
        raise AssertionError(f"circuit not {state} after {timeout}s (now {self.circuit_state()})")


@pytest.fixture(scope="session")
def api(localcloud):
    client = Api(localcloud)
    yield client
    client.http.close()


@pytest.fixture
def gremlin_off_around(api):
    """No gremlin before the test, none after it, even when it fails."""
    api.gremlin_off()
    yield
    api.gremlin_off()


@pytest.fixture
def closed_circuit(api):
    """No gremlin, and order's circuit closed again (a previous test may have opened it)."""
    api.gremlin_off()
    api.wait_circuit("closed", timeout=60, probe=True)
