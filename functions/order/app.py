"""Order HTTP routes (FastAPI). Logic lives in service.py, SQL in repository.py."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from functions.common.api import ApiError, ErrorBody, create_app, gateway_wait_seconds
from functions.common.health import HealthOut
from functions.order import service

SERVICE = service.SERVICE

app = create_app(SERVICE)


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
    Header(alias="Idempotency-Key", min_length=1, max_length=200,
           description="same key -> same order, never a second one"),
]


@app.post("/orders", status_code=201, response_model=None, responses={
    201: {"model": OrderOut, "description": "CONFIRMED"},
    202: {"model": OrderOut, "description": "QUEUED (reason says why)"},
    409: {"model": OrderOut, "description": "REJECTED: insufficient stock or unknown product"},
})
def create_order(request: OrderRequest, raw: Request, idempotency_key: IdempotencyKey = None) -> JSONResponse:
    result = service.place_order(request.productId, request.quantity, idempotency_key,
                                 waited=gateway_wait_seconds(raw.scope))
    headers = {"Idempotent-Replayed": "true"} if result.replay else None
    return JSONResponse(status_code=result.status_code, content=result.body(), headers=headers)


@app.get("/orders/{orderId}", response_model=OrderView, responses={404: {"model": ErrorBody}})
def get_order(orderId: str) -> dict[str, Any]:
    try:
        return service.get_order(orderId)
    except service.OrderNotFound as exc:
        raise ApiError(404, f"order '{orderId}' not found") from exc


@app.get("/orders", response_model=OrdersOut)
def list_orders(limit: Annotated[int, Query(ge=1, le=1000)] = 20) -> dict[str, Any]:
    return {"orders": service.list_orders(limit)}


@app.get("/health/order", response_model=None, responses={
    200: {"model": HealthOut}, 503: {"model": HealthOut}})
def health() -> JSONResponse:
    status, body = service.health()
    return JSONResponse(status_code=status, content=body)
