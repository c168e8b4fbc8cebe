"""Order HTTP routes (FastAPI). Logic lives in service.py, the order model in model.py, SQL in
repository.py.

This is where the order logic meets HTTP, in two places only: `STATUS_CODES` / `_order_body`
(an order decided -> its answer) and `_on_order_error` (a domain exception -> its answer).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from functions.common.api import ErrorBody, create_app, gateway_wait_seconds, json_error
from functions.common.health import Check, HealthOut, cached_health, database_check, queue_check, run_checks
from functions.common.observability import get_logger
from functions.common.settings import get_settings
from functions.order import repository, service
from functions.order.model import (
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    Order,
    OrderError,
    OrderNotFound,
    OrderStatus,
)

SERVICE = service.SERVICE
logger = get_logger(SERVICE)

app = create_app(SERVICE)

# POST /orders: the answer's status code follows the order's state.
STATUS_CODES = {
    OrderStatus.CONFIRMED: 201,
    OrderStatus.QUEUED: 202,
    OrderStatus.PENDING: 202,
    OrderStatus.REJECTED: 409,
}


class OrderView(BaseModel):
    orderId: str
    status: str
    reason: str | None = None
    productId: str
    quantity: int
    createdAt: str
    updatedAt: str


class OrderOut(OrderView):
    message: str | None = None


class OrdersOut(BaseModel):
    orders: list[OrderView]


class OrderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    productId: str = Field(min_length=1, max_length=64)
    quantity: int = Field(ge=1, le=1000)


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key", min_length=1, max_length=200, description="same key -> same order, never a second one"
    ),
]


def _order_body(order: Order) -> dict[str, Any]:
    body = order.public()
    if order.status is OrderStatus.REJECTED:
        body["message"] = f"order rejected: {order.reason}"
    elif order.status is OrderStatus.QUEUED:
        body["message"] = f"order accepted and queued ({order.reason})"
    elif order.status is OrderStatus.PENDING:
        body["message"] = "order is being processed"
    return body


@app.exception_handler(OrderError)
async def _on_order_error(_: Request, exc: OrderError) -> JSONResponse:
    """Every refusal of the order logic, as the caller reads it."""
    if isinstance(exc, OrderNotFound):
        return json_error(404, f"order '{exc.order_id}' not found")
    if isinstance(exc, IdempotencyKeyReused):
        existing = exc.existing
        return json_error(
            422,
            "Idempotency-Key was already used for a different order "
            f"(productId '{existing.product_id}', quantity {existing.quantity})",
            orderId=existing.order_id,
        )
    if isinstance(exc, IdempotencyKeyInUse):
        return json_error(409, "a request with this Idempotency-Key is being processed, retry shortly")
    # OrderVanished, QueueUnavailable: place_order answers QUEUED for them; reaching here is a bug.
    logger.error("order error reached the API", extra={"error_type": type(exc).__name__, "error": str(exc)})
    return json_error(500, "internal error")


@app.post(
    "/orders",
    status_code=201,
    response_model=None,
    responses={
        201: {"model": OrderOut, "description": "CONFIRMED"},
        202: {"model": OrderOut, "description": "QUEUED (reason says why)"},
        409: {"model": OrderOut, "description": "REJECTED: insufficient stock or unknown product"},
    },
)
def create_order(request: OrderRequest, raw: Request, idempotency_key: IdempotencyKey = None) -> JSONResponse:
    result = service.place_order(
        request.productId, request.quantity, idempotency_key, waited=gateway_wait_seconds(dict(raw.scope))
    )
    headers = {"Idempotent-Replayed": "true"} if result.replay else None
    return JSONResponse(
        status_code=STATUS_CODES[result.order.status], content=_order_body(result.order), headers=headers
    )


@app.get("/orders/{orderId}", response_model=OrderView, responses={404: {"model": ErrorBody}})
def get_order(orderId: str) -> dict[str, Any]:
    return service.get_order(orderId).public()


@app.get("/orders", response_model=OrdersOut)
def list_orders(limit: Annotated[int, Query(ge=1, le=1000)] = 20) -> dict[str, Any]:
    return {"orders": [order.public() for order in service.list_orders(limit)]}


@app.get("/health/order", response_model=None, responses={200: {"model": HealthOut}, 503: {"model": HealthOut}})
def health() -> JSONResponse:
    settings = get_settings()
    circuit_state = service.circuit_state()
    checks = {
        "database": database_check(repository.database),
        "inventoryQueue": queue_check(lambda: settings.inventory_queue_url),
        "completionQueue": queue_check(lambda: settings.completion_queue_url),
        "inventory": Check(service.probe_inventory, "inventory unreachable"),
    }
    status, body = cached_health(SERVICE, lambda: run_checks(SERVICE, checks))
    return JSONResponse(status_code=status, content={**body, "circuitState": circuit_state})
