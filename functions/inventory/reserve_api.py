"""The internal reserve function's API (`InventoryReserve`, invoked by Order through the Lambda
API): a `ReserveRequest` | `PingRequest` in, a `ReservationAnswer` | `PingAnswer` out
(functions/common/contracts.py). This is where the reservation logic meets the contract: the
answer to each outcome and to each exception of the logic is decided here, in `_answer`, and
nowhere else.

The sync path obeys the gremlin exactly as the former HTTP route did (latency / error / crash
before the transaction, crash after the commit), and the caller's deadline: the time the
gremlin's latency takes comes out of it.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from functions.common.contracts import (
    AnswerStatus,
    PingRequest,
    ReservationAnswer,
    ReserveRequest,
    parse_inventory_command,
)
from functions.common.deadline import Deadline
from functions.common.errors import DatabaseUnavailable, DeadlineExceeded
from functions.common.observability import MetricUnit, get_logger, put_metric
from functions.gremlin import injector as gremlin
from functions.inventory import service
from functions.inventory.model import Reservation, ReservationConflict

__all__ = ["answer_command", "answer_reservation"]

logger = get_logger(service.SERVICE)


def answer_command(payload: Any) -> dict[str, Any]:
    """Validate the Invoke payload, then reserve or answer a ping. Always a structured answer;
    only a gremlin crash (a real process exit, which Invoke reports as a FunctionError) or a bug
    leaves without one."""
    try:
        command = parse_inventory_command(payload)
    except ValidationError as exc:
        message = "invalid reservation request: " + _describe(exc)
        logger.warning("invalid reserve command", extra={"error": message})
        answer = ReservationAnswer(statusCode=422, status=AnswerStatus.INVALID, message=message)
    else:
        if isinstance(command, PingRequest):
            return service.ping().model_dump(exclude_none=True)
        answer = answer_reservation(command)
    put_metric("ReservationRequests", MetricUnit.Count, 1, service=service.SERVICE, outcome=answer.status.value.lower())
    return answer.model_dump(mode="json", exclude_none=True)


def answer_reservation(request: ReserveRequest) -> ReservationAnswer:
    # From the first line: the gremlin's latency and this function's own start come out of it.
    deadline = None if request.deadlineEpochMs is None else Deadline.from_epoch_ms(request.deadlineEpochMs)
    injector = gremlin.injector()
    try:
        injector.before_reservation()  # latency / error / crash before-commit
        outcome = service.reserve(request.orderId, request.productId, request.quantity, deadline)
        injector.after_commit()  # crash after-commit: the "Schroedinger" case
    except (gremlin.InjectedError, ReservationConflict, DatabaseUnavailable, DeadlineExceeded) as exc:
        return _answer(request, exc)
    return _answer(request, outcome)


def _answer(request: ReserveRequest, result: Reservation | Exception) -> ReservationAnswer:
    """The one mapping from what the reservation logic did (or refused) to the contract's answer."""
    fields: dict[str, Any] = {"orderId": request.orderId, "productId": request.productId, "quantity": request.quantity}
    if isinstance(result, Reservation):
        fields = {"orderId": result.order_id, "productId": result.product_id, "quantity": result.quantity}
        if result.replay:
            put_metric("IdempotentReplays", MetricUnit.Count, 1, service=service.SERVICE, source="invoke")
        if result.reserved:
            return ReservationAnswer(
                statusCode=200 if result.replay else 201, status=AnswerStatus.RESERVED, replay=result.replay, **fields
            )
        return ReservationAnswer(
            statusCode=409,
            status=AnswerStatus.REJECTED,
            replay=result.replay,
            reason=result.reason,
            message=f"reservation refused: {result.reason} for product '{result.product_id}'",
            **fields,
        )
    if isinstance(result, gremlin.InjectedError):
        return ReservationAnswer(
            statusCode=result.status_code, status=AnswerStatus.ERROR, message=result.message, **fields
        )
    if isinstance(result, ReservationConflict):
        logger.warning(
            "conflicting reservation replay refused", extra={"order_id": request.orderId, "error": str(result)}
        )
        return ReservationAnswer(
            statusCode=409, status=AnswerStatus.CONFLICT, reason="reservation conflict", message=str(result), **fields
        )
    if isinstance(result, DeadlineExceeded):
        logger.warning(
            "reservation not committed: the caller's deadline",
            extra={"order_id": request.orderId, "deadline_epoch_ms": request.deadlineEpochMs, "error": str(result)},
        )
        return ReservationAnswer(
            statusCode=504,
            status=AnswerStatus.DEADLINE_EXCEEDED,
            message=f"reservation not made, nothing was written: {result}",
            **fields,
        )
    if isinstance(result, DatabaseUnavailable):
        logger.warning("reservation failed: database unavailable", extra={"error": str(result)})
        return ReservationAnswer(
            statusCode=503, status=AnswerStatus.ERROR, message="inventory database unavailable", **fields
        )
    raise result  # pragma: no cover - answer_reservation passes only the exceptions above


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc_parts = [str(p) for p in err.get("loc", ())]
        if loc_parts and loc_parts[0] in ("reserve", "ping"):  # the union's tag, not a field
            loc_parts = loc_parts[1:]
        loc = ".".join(loc_parts)
        if err.get("type") == "extra_forbidden":
            parts.append(f"{loc}: unknown field is not allowed")
        else:
            parts.append(f"{loc or 'payload'}: {err.get('msg', 'invalid value')}")
    return "; ".join(parts)
