"""Gremlin control API: ``GET/PUT/DELETE /gremlin`` (built on the shared app factory).

* ``GET``: the current document, defaults included (all off when none is stored), as obeyed
  now: a mode past its ``expiresAt`` shows ``enabled: false, expired: true``; every mode with
  an expiry shows ``remainingSeconds`` (:meth:`GremlinDocument.to_view`);
* ``PUT``: validate (400 malformed JSON, 422 invalid document or an expiry in the past, the
  message naming each field; nothing stored), give every enabled mode its absolute expiry
  (default 15 min, :func:`stamp_expiry`), reset the ``every: N`` counters, store (overwrite),
  return the stored doc (same view as ``GET``);
* ``DELETE``: store the all-off document, reset the counters, return it.
* ``stopConditions``: alarm names checked on ``PUT`` (422 ``stopConditions.<i>`` for an
  unknown one); once one is in ALARM the gremlin is off for good (``GET`` shows ``stopped``).

SSM/DynamoDB faults answer 503 ``{"message": "gremlin settings unavailable, ...", "requestId"}``:
the store's own text (parameter and table names, SDK errors) goes to the log only.
``PUT``/``DELETE`` need the admin key: API Gateway requires it (``apiKeyRequired``) and this
function checks it again (:mod:`functions.common.admin_auth`), before the body is even read.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from functions.common.admin_auth import ADMIN_RESPONSES, require_admin_key
from functions.common.api import ApiError, create_app
from functions.common.settings import get_settings
from functions.gremlin.document import (
    GremlinDocument,
    GremlinDocumentError,
    all_off,
    parse_document_json,
    stamp_expiry,
)
from functions.gremlin.store import GremlinStore, StoreUnavailable

app = create_app("gremlin")

UNAVAILABLE = "gremlin settings unavailable, try again later"


@functools.cache
def get_store() -> GremlinStore:
    """The store, created on first use from the settings."""
    return GremlinStore(get_settings().gremlin)


def _view(store: GremlinStore, doc: GremlinDocument) -> dict[str, Any]:
    now = time.time()
    return doc.to_view(now, stopped=store.stopped(doc, now))


async def _replace(doc: GremlinDocument) -> dict[str, Any]:
    def replace() -> dict[str, Any]:
        store = get_store()
        store.check_stop_conditions(doc)  # 422 naming the alarm before anything is changed
        return _view(store, store.replace(doc))

    try:
        return await run_in_threadpool(replace)
    except GremlinDocumentError as exc:
        raise ApiError(exc.status_code, exc.message, errors=exc.errors) from exc
    except StoreUnavailable as exc:
        raise ApiError(503, UNAVAILABLE) from exc  # the cause is logged by the error handler


@app.get("/gremlin")
async def get_gremlin() -> dict[str, Any]:
    try:
        return await run_in_threadpool(lambda: _view(get_store(), get_store().load()))
    except StoreUnavailable as exc:
        raise ApiError(503, UNAVAILABLE) from exc


@app.put("/gremlin", dependencies=[Depends(require_admin_key)], responses=ADMIN_RESPONSES)
async def put_gremlin(request: Request) -> dict[str, Any]:
    try:
        doc = stamp_expiry(parse_document_json(await request.body()), time.time())
    except GremlinDocumentError as exc:
        raise ApiError(exc.status_code, exc.message, errors=exc.errors) from exc
    return await _replace(doc)


@app.delete("/gremlin", dependencies=[Depends(require_admin_key)], responses=ADMIN_RESPONSES)
async def delete_gremlin() -> dict[str, Any]:
    return await _replace(all_off())
