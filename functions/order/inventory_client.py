"""Order's synchronous call to inventory: a Lambda Invoke (RequestResponse) of the internal
reserve function INVENTORY_RESERVE_FUNCTION, payload and answer from functions.common.contracts.

The reservation is not on the public API: on AWS only this function's role may invoke the
reserve function (IAM), locally it is reachable only through the local cloud's Lambda API.

Resilience, from the outside in:

1. **Circuit breaker** (Powertools `circuit_breaker`, DynamoDB persistence on
   CIRCUIT_BREAKER_TABLE, so every order environment shares one state). Timeouts, connection
   errors, function errors (a crashed runtime) and error answers count as failures
   (`InventoryUnavailable`); a business refusal (REJECTED, CONFLICT) is a healthy answer. Open:
   `CircuitBreakerOpenError` immediately, inventory is not called. Half-open: one probe;
   CIRCUIT_SUCCESS_THRESHOLD (default 1) successes close it again.
2. **Hard wall-clock budget** (INVENTORY_CALL_BUDGET_MS, default 2000) for the whole call,
   retry included: every attempt runs on a worker thread and the caller stops waiting at the
   deadline whatever the socket does. The boto3 client's own read timeout is the whole budget
   (a client has one fixed timeout; the deadline is what enforces the remaining budget), its
   connect timeout is short, and it makes no retries of its own (`total_max_attempts: 1`):
   retrying is decided here, within the budget.
3. **At most one retry** (tenacity, jittered 20-100 ms), only for connection errors (the
   request did not get an answer: refused, reset, dropped keep-alive) and only if at least
   MIN_RETRY_WINDOW of the budget is left. Safe because reservations are idempotent by orderId.
4. **Deadline propagation** (issue 17, item 2): the request carries the instant this caller
   stops waiting, less ANSWER_MARGIN for the answer's way back (`ReserveRequest.deadlineEpochMs`).
   Inventory refuses work it cannot finish by then and never commits after it, so a reservation
   this caller gave up on (and queued) does not commit behind the QUEUED answer; its refusal
   (`DEADLINE_EXCEEDED`) is a timeout here.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import json
import time
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from pydantic import ValidationError
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_random

from functions.common import aws
from functions.common.contracts import (
    AnswerStatus,
    PingAnswer,
    PingRequest,
    ReservationAnswer,
    ReservationStatus,
    ReserveRequest,
)
from functions.common.deadline import Deadline
from functions.common.observability import MetricUnit, get_logger, put_metric
from functions.common.settings import Settings, get_settings

SERVICE = "order"
CIRCUIT_NAME = "inventory-reservations"
MIN_RETRY_WINDOW = 0.25  # seconds of budget a retry needs to be worth trying
CONNECT_TIMEOUT = 0.5  # seconds; the Lambda API endpoint is close (VPC/NAT on AWS, loopback locally)
MAX_CONCURRENT_CALLS = 64  # worker threads and pooled connections (abandoned calls hold one each)
# Of the time left, what inventory's answer needs to travel back (Invoke response, loopback or
# in-region): inventory must be done this much before this caller stops waiting.
ANSWER_MARGIN = 0.05

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
    """A business answer: what inventory did with the reservation (a conflicting replay is a
    refusal too), and the answer itself."""

    status: ReservationStatus
    reason: str | None
    answer: ReservationAnswer

    @property
    def reserved(self) -> bool:
        return self.status is ReservationStatus.RESERVED


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
    def __init__(self, settings: Settings, *, dynamodb_client: Any = None, lambda_client: Any = None) -> None:
        # Here, not at the top: the order module's other functions (completion, sweeper) load this
        # module too and never call inventory; boto3 costs them ~100 ms of INIT (README, aws_init_ms).
        from aws_lambda_powertools.utilities.circuit_breaker import CircuitBreakerConfig, circuit_breaker
        from aws_lambda_powertools.utilities.circuit_breaker.persistence import CircuitBreakerDynamoDBPersistence

        self.function_name = settings.inventory_reserve_function
        self.budget = settings.inventory_call_budget_seconds
        self._lambda = lambda_client or aws.client_with(
            "lambda",
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=self.budget,
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=MAX_CONCURRENT_CALLS,
        )
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=MAX_CONCURRENT_CALLS, thread_name_prefix="inventory-call"
        )
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

    def reserve(
        self,
        order_id: str,
        product_id: str,
        quantity: int,
        deadline: Deadline | None = None,
        correlation_id: str | None = None,
    ) -> InventoryReply:
        """Reserve stock, or raise InventoryUnavailable / CircuitBreakerOpenError.

        `deadline`: when this caller stops waiting; default: now + budget. Inventory is told it
        (less ANSWER_MARGIN). `correlation_id` travels in the request, so the reserve function
        logs under the order request's id.
        """
        if deadline is None:
            deadline = Deadline(time.monotonic() + self.budget)
        request = ReserveRequest(
            action="reserve",
            orderId=order_id,
            productId=product_id,
            quantity=quantity,
            correlationId=correlation_id,
            deadlineEpochMs=max(0, Deadline(deadline.at - ANSWER_MARGIN).epoch_ms()),
        )
        reply: InventoryReply = self._guarded(request.model_dump(exclude_none=True), deadline.at)
        return reply

    def circuit_state(self) -> str:
        """CLOSED | OPEN | HALF_OPEN as this environment sees it (cached read of the shared state)."""
        self.persistence.configure(config=self.breaker_config, circuit_name=CIRCUIT_NAME)
        return str(self.persistence.get_state(CIRCUIT_NAME).state)

    def probe(self, timeout: float = 1.5) -> dict[str, Any]:
        """Health: a `ping` invocation of the reserve function, i.e. the very path (function,
        permission, its database) an order takes. Raises with a short reason if not healthy;
        the detail goes to the log."""
        future = self._executor.submit(self._invoke, PingRequest(action="ping").model_dump())
        try:
            response = future.result(timeout=timeout)
            raw = response["Payload"].read()
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise RuntimeError(f"inventory did not answer within {timeout} s") from exc
        except (_ConnectionFailed, InventoryUnavailable) as exc:
            logger.warning("inventory ping failed", extra={"error": str(exc)})
            raise RuntimeError("inventory unreachable") from exc
        if response.get("FunctionError"):
            logger.warning("inventory ping: function error", extra={"error": raw[:300].decode(errors="replace")})
            raise RuntimeError("inventory reserve function failed")
        try:
            answer = PingAnswer.model_validate_json(raw)
        except ValidationError as exc:
            raise RuntimeError("inventory answered the ping with a malformed answer") from exc
        if answer.status != "UP":
            raise RuntimeError(f"inventory: {answer.reason or 'down'}")
        return {}

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

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
                        logger.info(
                            "retrying inventory call after a connection error", extra={"order_id": payload["orderId"]}
                        )
                    return self._attempt(payload, deadline)
        except _ConnectionFailed as exc:
            raise InventoryUnavailable("connection_error", str(exc)) from exc
        raise InventoryUnavailable("timeout", "no attempt fitted in the budget")  # pragma: no cover

    def _attempt(self, payload: dict[str, Any], deadline: float) -> InventoryReply:
        remaining = deadline - time.monotonic()
        if remaining <= 0.005:
            raise InventoryUnavailable("timeout", "budget exhausted")
        future = self._executor.submit(self._invoke_and_read, payload)
        try:
            return future.result(timeout=remaining)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise InventoryUnavailable("timeout", f"no answer within the {self.budget:.1f} s budget") from exc

    def _invoke_and_read(self, payload: dict[str, Any]) -> InventoryReply:
        response = self._invoke(payload)
        try:
            raw = response["Payload"].read()
        except ReadTimeoutError as exc:
            raise InventoryUnavailable("timeout", type(exc).__name__) from exc
        except BotoCoreError as exc:
            raise _ConnectionFailed(f"{type(exc).__name__}: {exc}") from exc
        return _classify(response, raw)

    def _invoke(self, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            response: dict[str, Any] = self._lambda.invoke(
                FunctionName=self.function_name,
                InvocationType="RequestResponse",
                Payload=json.dumps(payload).encode(),
            )
            return response
        except (ReadTimeoutError, ConnectTimeoutError) as exc:
            raise InventoryUnavailable("timeout", type(exc).__name__) from exc
        except (EndpointConnectionError, ConnectionClosedError) as exc:
            raise _ConnectionFailed(f"{type(exc).__name__}: {exc}") from exc
        except ClientError as exc:  # throttled, not found, not allowed, Lambda service error
            error = exc.response.get("Error", {})
            raise InventoryUnavailable("server_error", f"Lambda {error.get('Code')}: {error.get('Message')}") from exc
        except BotoCoreError as exc:
            raise InventoryUnavailable("connection_error", f"{type(exc).__name__}: {exc}") from exc


def _classify(response: dict[str, Any], raw: bytes) -> InventoryReply:
    """Invoke response -> a business answer, or InventoryUnavailable("server_error")."""
    if response.get("FunctionError"):
        # The runtime died (a gremlin crash is a real exit: Runtime.ExitError) or the handler
        # raised: inventory gave no answer, like a 502 from a gateway.
        try:
            error = json.loads(raw)
        except ValueError:
            error = {}
        error_type = error.get("errorType") if isinstance(error, dict) else None
        raise InventoryUnavailable(
            "server_error", f"function error ({response['FunctionError']}): {error_type or 'no detail'}"
        )
    try:
        answer = ReservationAnswer.model_validate_json(raw)
    except ValidationError as exc:
        raise InventoryUnavailable("server_error", f"malformed answer: {raw[:200]!r}") from exc
    if answer.reserved:
        return InventoryReply(ReservationStatus.RESERVED, None, answer)
    if answer.refused:
        return InventoryReply(ReservationStatus.REJECTED, answer.reason or "rejected by inventory", answer)
    if answer.status is AnswerStatus.DEADLINE_EXCEEDED:
        # Not started, or rolled back: nothing was reserved, like a timeout (usually this caller
        # has stopped waiting already; the answer matters when the budget was gone on arrival).
        raise InventoryUnavailable("timeout", f"{answer.status.value}: {answer.message}")
    # ERROR (an injected fault, the database down) or INVALID: no business answer.
    raise InventoryUnavailable("server_error", f"{answer.status.value} {answer.statusCode}: {answer.message}")


def _on_transition(transition: Any) -> None:
    to_state = str(transition.to_state)
    logger.warning(
        "circuit breaker transition",
        extra={"circuit": transition.circuit_name, "from_state": str(transition.from_state), "to_state": to_state},
    )
    put_metric("CircuitTransitions", MetricUnit.Count, 1, service=SERVICE, to_state=to_state.lower())
    put_metric("CircuitState", MetricUnit.NoUnit, _STATE_GAUGE.get(to_state, 0), service=SERVICE)


@functools.cache
def get_client() -> InventoryClient:
    """This environment's client (its circuit breaker, worker threads and Lambda client)."""
    return InventoryClient(get_settings())
