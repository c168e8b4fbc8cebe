"""Order HTTP routes (FastAPI). Logic lives in service.py, SQL in repository.py."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Header, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from functions.common.api import ApiError, create_app
from functions.common.db import DatabaseUnavailable
from functions.order import service

SERVICE = service.SERVICE

app = create_app(SERVICE)


class OrderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    productId: str = Field(min_length=1, max_length=64)
    quantity: int = Field(ge=1, le=1000)


IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=200,
           description="same key -> same order, never a second one"),
]


@app.post("/orders")
def create_order(request: OrderRequest, idempotency_key: IdempotencyKey = None) -> JSONResponse:
    try:
        result = service.place_order(request.productId, request.quantity, idempotency_key)
    except DatabaseUnavailable as exc:
        raise ApiError(503, "order database unavailable, try again later") from exc
    headers = {"Idempotent-Replayed": "true"} if result.replay else None
    return JSONResponse(status_code=result.status_code, content=result.body(), headers=headers)


@app.get("/orders/{orderId}")
def get_order(orderId: str) -> dict[str, Any]:
    try:
        return service.get_order(orderId)
    except service.OrderNotFound as exc:
        raise ApiError(404, f"order '{orderId}' not found") from exc
    except DatabaseUnavailable as exc:
        raise ApiError(503, "order database unavailable") from exc


@app.get("/orders")
def list_orders(limit: Annotated[int, Query(ge=1, le=1000)] = 20) -> dict[str, Any]:
    try:
        return {"orders": service.list_orders(limit)}
    except DatabaseUnavailable as exc:
        raise ApiError(503, "order database unavailable") from exc


@app.get("/health/order")
def health() -> JSONResponse:
    status, body = service.health()
    return JSONResponse(status_code=status, content=body)
