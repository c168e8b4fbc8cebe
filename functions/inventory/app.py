"""Inventory public HTTP routes (FastAPI): products, admin, health. Logic lives in service.py,
SQL in repository.py; the internal reserve function's answers in reserve_api.py.

The exceptions of the inventory logic become HTTP answers in one place, `_on_inventory_error`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from functions.common.admin_auth import ADMIN_RESPONSES, require_admin_key
from functions.common.api import ErrorBody, create_app, json_error
from functions.common.health import HealthOut, cached_health, database_check, queue_check, run_checks
from functions.common.observability import get_logger
from functions.common.settings import get_settings
from functions.inventory import repository, service
from functions.inventory.model import InventoryError, ProductNotFound

SERVICE = service.SERVICE
logger = get_logger(SERVICE)

app = create_app(SERVICE)

PRODUCT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
ProductId = Annotated[str, PathParam(pattern=PRODUCT_ID_PATTERN, description="product id")]


class ProductOut(BaseModel):
    productId: str
    name: str
    stock: int


class ProductsOut(BaseModel):
    products: list[ProductOut]


class ProductUpsert(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str | None = Field(default=None, min_length=1, max_length=200)
    stock: int = Field(ge=0, le=1_000_000_000)


@app.exception_handler(InventoryError)
async def _on_inventory_error(_: Request, exc: InventoryError) -> JSONResponse:
    """Every refusal of the inventory logic, as a caller of the public API reads it."""
    if isinstance(exc, ProductNotFound):
        return json_error(404, f"product '{exc.product_id}' not found")
    # ReservationConflict belongs to the reserve function (reserve_api.py); here it is a bug.
    logger.error("inventory error reached the API", extra={"error_type": type(exc).__name__, "error": str(exc)})
    return json_error(500, "internal error")


# ----------------------------------------------------------------------------- routes
# The reservation is not a route: Order invokes the internal `InventoryReserve` function
# (handler.reserve_handler), which is not on the public API.


@app.get("/products", response_model=ProductsOut)
def list_products() -> dict[str, Any]:
    return {"products": service.list_products()}


@app.get("/products/{productId}", response_model=ProductOut, responses={404: {"model": ErrorBody}})
def get_product(productId: ProductId) -> dict[str, Any]:
    return service.get_product(productId)


@app.put(
    "/admin/products/{productId}",
    response_model=None,
    dependencies=[Depends(require_admin_key)],
    responses={
        200: {"model": ProductOut, "description": "updated"},
        201: {"model": ProductOut, "description": "created"},
        **ADMIN_RESPONSES,
    },
)
def put_product(productId: ProductId, request: ProductUpsert) -> JSONResponse:
    # x-api-key: required by API Gateway's usage plan and checked again by require_admin_key.
    product, created = service.upsert_product(productId, request.name, request.stock)
    return JSONResponse(status_code=201 if created else 200, content=product)


@app.get("/health/inventory", response_model=None, responses={200: {"model": HealthOut}, 503: {"model": HealthOut}})
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
