"""Gremlin control API: ``GET/PUT/DELETE /gremlin``.

API-key enforcement for ``PUT``/``DELETE`` is API Gateway's job (``apiKeyRequired`` in infra),
not this function's.

Switching to the shared app factory (``functions/common/api.py``) is a one-line change in
:func:`build_app`: replace ``_local_app()`` by ``create_app(...)``; the routes live on
``router`` and the gremlin-specific error handling on the route itself.
"""

from __future__ import annotations

import functools
import time

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from aws_lambda_powertools import Logger

from functions.common.chaos import GremlinDocument, GremlinDocumentError, all_off, parse_document_json
from functions.gremlin.store import GremlinStore, StoreUnavailable

logger = Logger()
router = APIRouter()


@functools.lru_cache(maxsize=1)
def get_store() -> GremlinStore:
    """The store, created on first use from the environment (tests: ``get_store.cache_clear()``)."""
    return GremlinStore()


def _unavailable(exc: StoreUnavailable) -> JSONResponse:
    logger.warning("gremlin store unavailable", extra={"error": str(exc)})
    return JSONResponse(status_code=503, content={"message": str(exc)})


def _invalid(exc: GremlinDocumentError) -> JSONResponse:
    return JSONResponse(status_code=exc.status_code, content={"message": exc.message, "errors": exc.errors})


@router.get("/gremlin")
async def get_gremlin():
    try:
        doc: GremlinDocument = await run_in_threadpool(lambda: get_store().load())
    except StoreUnavailable as exc:
        return _unavailable(exc)
    return doc.to_json_dict()


@router.put("/gremlin")
async def put_gremlin(request: Request):
    try:
        doc = parse_document_json(await request.body())
    except GremlinDocumentError as exc:
        return _invalid(exc)
    try:
        stored = await run_in_threadpool(lambda: get_store().replace(doc))
    except StoreUnavailable as exc:
        return _unavailable(exc)
    return stored.to_json_dict()


@router.delete("/gremlin")
async def delete_gremlin():
    try:
        stored = await run_in_threadpool(lambda: get_store().replace(all_off()))
    except StoreUnavailable as exc:
        return _unavailable(exc)
    return stored.to_json_dict()


def _local_app() -> FastAPI:
    """Stand-in for the shared factory: JSON ``{"message"}`` errors + HTTP metrics."""
    app = FastAPI(title="Valerix gremlin", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException):
        return JSONResponse(status_code=exc.status_code, content={"message": str(exc.detail)}, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError):
        parts = [".".join(str(p) for p in e.get("loc", ())) + ": " + e.get("msg", "invalid") for e in exc.errors()]
        return JSONResponse(status_code=422, content={"message": "; ".join(parts) or "invalid request"})

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception):
        logger.exception("unhandled error")
        return JSONResponse(status_code=500, content={"message": "internal error"})

    @app.middleware("http")
    async def _http_metrics(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        try:
            from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

            route = getattr(request.scope.get("route"), "path", None) or "unmatched"
            metrics = EphemeralMetrics()
            metrics.add_dimension("route", route)
            metrics.add_dimension("method", request.method)
            metrics.add_metric("HttpRequestDuration", MetricUnit.Milliseconds, (time.perf_counter() - started) * 1000)
            metrics.flush_metrics()
            metrics.add_dimension("route", route)
            metrics.add_dimension("method", request.method)
            metrics.add_dimension("status_class", f"{response.status_code // 100}xx")
            metrics.add_metric("HttpRequests", MetricUnit.Count, 1)
            metrics.flush_metrics()
        except Exception:  # noqa: BLE001 -- metrics never break a request
            logger.debug("http metrics failed", exc_info=True)
        return response

    return app


def build_app() -> FastAPI:
    app = _local_app()  # TODO(shared factory): app = create_app(service="gremlin")
    app.include_router(router)
    return app


app = build_app()
