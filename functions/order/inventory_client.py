"""Order's synchronous call to `POST {INVENTORY_API_URL}/inventory/reservations`.

Resilience, from the outside in:

1. **Circuit breaker** (Powertools `circuit_breaker`, DynamoDB persistence on
   CIRCUIT_BREAKER_TABLE, so every order environment shares one state). Timeouts, connection
   errors and 5xx count as failures (`InventoryUnavailable`); a business refusal (409) is a
   healthy answer. Open: `CircuitBreakerOpenError` immediately, inventory is not called.
   Half-open: one probe; CIRCUIT_SUCCESS_THRESHOLD (default 1) successes close it again.
2. **Hard wall-clock budget** (INVENTORY_CALL_BUDGET_MS, default 2000) for the whole call,
   retry included: every attempt runs on a worker thread and the caller stops waiting at the
   deadline whatever the socket does (httpx timeouts alone are per operation, not per call).
3. **At most one retry** (tenacity, jittered 20-100 ms), only for connection errors (the
   request did not get an answer: refused, reset, dropped keep-alive) and only if at least
   MIN_RETRY_WINDOW of the budget is left. Safe because reservations are idempotent by orderId.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
import time
from typing import Any

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_random

from functions.common import aws
from functions.common.observability import MetricUnit, get_logger, put_metric
from functions.common.settings import Settings, get_settings

SERVICE = "order"
CIRCUIT_NAME = "inventory-reservations"
MIN_RETRY_WINDOW = 0.25  # seconds of budget a retry needs to be worth trying
RESERVATIONS_PATH = "/inventory/reservations"

logger = get_logger(SERVICE)

_STATE_GAUGE = {"CLOSED": 0, "HALF_OPEN": 1, "OPEN": 2}


class InventoryUnavailable(Exception):
    """Inventory gave no business answer: kind is timeout | connection_error | server_error."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class _ConnectionFailed(Exception):
    """Internal, retryable: the request got no answer because of the connection."""


@dataclasses.dataclass(frozen=True)
class InventoryReply:
    reserved: bool
    status_code: int
    reason: str | None
    body: dict[str, Any]


class _StopWithinBudget:
    """tenacity stop: two attempts at most, and a retry only if it still fits in the budget."""

    def __init__(self, deadline: float, max_attempts: int = 2) -> None:
        self.deadline = deadline
        self.max_attempts = max_attempts

    def __call__(self, retry_state: RetryCallState) -> bool:
        if retry_state.attempt_number >= self.max_attempts:
            return True
        remaining_after_sleep = self.deadline - time.monotonic() - retry_state.upcoming_sleep
        return remaining_after_sleep < MIN_RETRY_WINDOW


class InventoryClient:
    def __init__(self, settings: Settings, *, dynamodb_client: Any = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        from aws_lambda_powertools.utilities.circuit_breaker import CircuitBreakerConfig, circuit_breaker
        from aws_lambda_powertools.utilities.circuit_breaker.persistence import CircuitBreakerDynamoDBPersistence

        self.base_url = settings.inventory_api_url
        self.budget = settings.inventory_call_budget_seconds
        self._http = httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(self.budget),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            headers={"content-type": "application/json", "user-agent": "valerix-order"},
        )
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="inventory-call")
        self.persistence = CircuitBreakerDynamoDBPersistence(
            table_name=settings.circuit_breaker_table,
            boto3_client=dynamodb_client or aws.fast_client("dynamodb"),
        )
        self.breaker_config = CircuitBreakerConfig(
            failure_threshold=settings.circuit_failure_threshold,
            recovery_timeout=settings.circuit_recovery_timeout_seconds,
            success_threshold=settings.circuit_success_threshold,
            handled_exceptions=(InventoryUnavailable,),
            local_cache_max_age=settings.circuit_cache_seconds,
        )
        self._guarded = circuit_breaker(
            name=CIRCUIT_NAME,
            persistence_store=self.persistence,
            config=self.breaker_config,
            on_transition=_on_transition,
        )(self._call_with_budget)

    # ------------------------------------------------------------------ public

    def reserve(self, order_id: str, product_id: str, quantity: int, deadline: float | None = None) -> InventoryReply:
        """Reserve stock, or raise InventoryUnavailable / CircuitBreakerOpenError.

        `deadline` is a time.monotonic() instant; default: now + budget.
        """
        if deadline is None:
            deadline = time.monotonic() + self.budget
        payload = {"orderId": order_id, "productId": product_id, "quantity": quantity}
        return self._guarded(payload, deadline)

    def circuit_state(self) -> str:
        """CLOSED | OPEN | HALF_OPEN as this environment sees it (cached read of the shared state)."""
        self.persistence.configure(config=self.breaker_config, circuit_name=CIRCUIT_NAME)
        return str(self.persistence.get_state(CIRCUIT_NAME).state)

    def probe(self, timeout: float = 1.5) -> dict[str, Any]:
        """Health: is inventory reachable and healthy? Raises with the reason if not."""
        try:
            response = self._http.get(f"{self.base_url}/health/inventory", timeout=timeout)
        except httpx.TimeoutException as exc:
            raise RuntimeError(f"inventory did not answer within {timeout} s") from exc
        except httpx.HTTPError as exc:
            raise RuntimeError(f"inventory unreachable: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            try:
                message = response.json().get("message")
            except Exception:  # noqa: BLE001
                message = response.text[:200]
            raise RuntimeError(f"GET /health/inventory answered {response.status_code}: {message}")
        return {"httpStatus": response.status_code}

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._http.close()

    # ------------------------------------------------------------------ internals

    def _call_with_budget(self, payload: dict[str, Any], deadline: float) -> InventoryReply:
        retrying = Retrying(
            retry=retry_if_exception_type(_ConnectionFailed),
            stop=_StopWithinBudget(deadline),
            wait=wait_random(0.02, 0.1),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        logger.info("retrying inventory call after a connection error",
                                    extra={"order_id": payload["orderId"]})
                    return self._attempt(payload, deadline)
        except _ConnectionFailed as exc:
            raise InventoryUnavailable("connection_error", str(exc)) from exc
        raise InventoryUnavailable("timeout", "no attempt fitted in the budget")  # pragma: no cover

    def _attempt(self, payload: dict[str, Any], deadline: float) -> InventoryReply:
        remaining = deadline - time.monotonic()
        if remaining <= 0.005:
            raise InventoryUnavailable("timeout", "budget exhausted")
        future = self._executor.submit(self._post, payload, remaining)
        try:
            response = future.result(timeout=remaining)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise InventoryUnavailable("timeout", f"no answer within the {self.budget:.1f} s budget") from exc
        return _classify(response)

    def _post(self, payload: dict[str, Any], remaining: float) -> httpx.Response:
        try:
            return self._http.post(
                f"{self.base_url}{RESERVATIONS_PATH}", json=payload, timeout=httpx.Timeout(remaining)
            )
        except httpx.TimeoutException as exc:
            raise InventoryUnavailable("timeout", f"{type(exc).__name__}") from exc
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise _ConnectionFailed(f"{type(exc).__name__}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise InventoryUnavailable("connection_error", f"{type(exc).__name__}: {exc}") from exc


def _classify(response: httpx.Response) -> InventoryReply:
    try:
        body = response.json()
        if not isinstance(body, dict):
            body = {}
    except ValueError:
        body = {}
    status = response.status_code
    if 200 <= status < 300:
        return InventoryReply(True, status, None, body)
    if status == 409:
        return InventoryReply(False, status, body.get("reason") or "rejected by inventory", body)
    detail = body.get("message") or response.text[:200]
    raise InventoryUnavailable("server_error", f"HTTP {status}: {detail}")


def _on_transition(transition: Any) -> None:
    to_state = str(transition.to_state)
    logger.warning(
        "circuit breaker transition",
        extra={"circuit": transition.circuit_name, "from_state": str(transition.from_state), "to_state": to_state},
    )
    put_metric("CircuitTransitions", MetricUnit.Count, 1, service=SERVICE, to_state=to_state.lower())
    put_metric("CircuitState", MetricUnit.NoUnit, _STATE_GAUGE.get(to_state, 0), service=SERVICE)


_client: InventoryClient | None = None
_client_lock = threading.Lock()


def get_client() -> InventoryClient:
    global _client
    if _client is None:
        with _client_lock:
            if _client is None:
                _client = InventoryClient(get_settings())
    return _client


def reset_client() -> None:
    global _client
    with _client_lock:
        client, _client = _client, None
    if client is not None:
        client.close()
