"""Helpers for end-to-end tests that go through the deployed API Gateway of the local cloud."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

FINAL = {"CONFIRMED", "REJECTED"}


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

    def gremlin(self, document: dict) -> None:
        response = self.http.put("/gremlin", json=document, headers=self.admin)
        assert response.status_code == 200, response.text

    def gremlin_off(self) -> None:
        response = self.http.delete("/gremlin", headers=self.admin)
        assert response.status_code == 200, response.text

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
def closed_circuit(api):
    """No gremlin, and order's circuit closed again (a previous test may have opened it)."""
    api.gremlin_off()
    api.wait_circuit("closed", timeout=60, probe=True)
