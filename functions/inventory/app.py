"""Inventory HTTP routes (FastAPI). Logic lives in service.py, SQL in repository.py."""

from __future__ import annotations

import importlib
import logging
from typing import Annotated, Any

from fastapi import Depends
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from functions.common.admin_auth import ADMIN_RESPONSES, require_admin_key
from functions.common.api import ApiError, ErrorBody, create_app, json_error
from functions.common.health import HealthOut, cached_health, database_check, queue_check, run_checks
from functions.common.observability import MetricUnit, get_logger, put_metric
from functions.common.settings import get_settings
from functions.inventory import repository, service

SERVICE = service.SERVICE
logger = get_logger(SERVICE)

app = create_app(SERVICE)

PRODUCT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
ProductId = Annotated[str, PathParam(pattern=PRODUCT_ID_PATTERN, description="product id")]


class ReservationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    orderId: str = Field(min_length=1, max_length=64)
    productId: str = Field(min_length=1, max_length=64)
    quantity: int = Field(ge=1, le=1000)


class ProductOut(BaseModel):
    productId: str
    name: str
    stock: int


class ProductsOut(BaseModel):
    products: list[ProductOut]


class ReservationOut(BaseModel):
    orderId: str
    productId: str
    quantity: int
    status: str
    reason: str | None = None
    message: str | None = None


class ProductUpsert(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str | None = Field(default=None, min_length=1, max_length=200)
    stock: int = Field(ge=0, le=1_000_000_000)


# ----------------------------------------------------------------------------- gremlin hook

_NO_CHAOS_WARNED = False


class _NoInjectedError(Exception):
    """Stand-in when functions.common.chaos is not deployed: never raised."""


class _NoChaos:
    def before_reservation(self) -> None:
        return None

    def after_commit(self) -> None:
        return None


def _chaos() -> tuple[Any, type[BaseException]]:
    """(injector, InjectedError) from functions.common.chaos, or no-ops if it is absent."""
    global _NO_CHAOS_WARNED
    try:
        chaos = importlib.import_module("functions.common.chaos")
    except ModuleNotFoundError as exc:
        if exc.name != "functions.common.chaos":
            raise
        if not _NO_CHAOS_WARNED:
            _NO_CHAOS_WARNED = True
            logging.getLogger(__name__).warning("functions.common.chaos not found; gremlin disabled")
        return _NoChaos(), _NoInjectedError
    return chaos.injector(), chaos.InjectedError


# ----------------------------------------------------------------------------- routes


@app.post("/inventory/reservations", status_code=201, response_model=None, responses={
    200: {"model": ReservationOut, "description": "replay of an earlier reservation"},
    201: {"model": ReservationOut, "description": "RESERVED"},
    409: {"model": ReservationOut, "description": "REJECTED (reason: insufficient stock | unknown product)"},
    "default": {"model": ErrorBody, "description": "fault injected by the gremlin"},
})
def create_reservation(request: ReservationRequest) -> JSONResponse:
    injector, injected_error = _chaos()
    try:
        injector.before_reservation()  # latency / error / crash before-commit
        outcome = service.reserve(request.orderId, request.productId, request.quantity)
        injector.after_commit()  # crash after-commit: the "Schrödinger" case
    except injected_error as exc:
        status = int(getattr(exc, "status_code", 500))
        message = getattr(exc, "message", None) or f"injected fault (gremlin): HTTP {status}"
        return json_error(status, message)
    if outcome.replay:
        put_metric("IdempotentReplays", MetricUnit.Count, 1, service=SERVICE, source="http")
        status = 200 if outcome.reserved else 409
    else:
        status = 201 if outcome.reserved else 409
    return JSONResponse(status_code=status, content=outcome.body())


@app.get("/products", response_model=ProductsOut)
def list_products() -> dict[str, Any]:
    return {"products": service.list_products()}


@app.get("/products/{productId}", response_model=ProductOut, responses={404: {"model": ErrorBody}})
def get_product(productId: ProductId) -> dict[str, Any]:
    try:
        return service.get_product(productId)
    except service.ProductNotFound as exc:
        raise ApiError(404, f"product '{productId}' not found") from exc


@app.put("/admin/products/{productId}", response_model=None, dependencies=[Depends(require_admin_key)],
         responses={200: {"model": ProductOut, "description": "updated"},
                    201: {"model": ProductOut, "description": "created"}, **ADMIN_RESPONSES})
def put_product(productId: ProductId, request: ProductUpsert) -> JSONResponse:
    # x-api-key: required by API Gateway's usage plan and checked again by require_admin_key.
    product, created = service.upsert_product(productId, request.name, request.stock)
    return JSONResponse(status_code=201 if created else 200, content=product)


@app.get("/health/inventory", response_model=None, responses={
    200: {"model": HealthOut}, 503: {"model": HealthOut}})
def health() -> JSONResponse:
    settings = get_settings()
    checks = {
        "database": database_check(repository.database),
        "inventoryQueue": queue_check(lambda: settings.inventory_queue_url),
    }
    if settings._completion_queue_url:
        checks["completionQueue"] = queue_check(lambda: settings.completion_queue_url)
    status, body = cached_health(SERVICE, lambda: run_checks(SERVICE, checks))
    return JSONResponse(status_code=status, content=body)
