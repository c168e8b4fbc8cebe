"""The admin credential, checked by the apps themselves (written once for every admin route).

API Gateway already requires the admin API key on the admin routes (`PUT /admin/products/{productId}`,
`PUT`/`DELETE /gremlin`: `apiKeyRequired` + a usage plan). The functions check it again so a
gateway misconfiguration (a method deployed without `apiKeyRequired`, a stage left out of the
usage plan) or a direct Lambda invoke with a forged API Gateway event does not open them:

    @app.put("/admin/...", dependencies=[Depends(require_admin_key)], responses=ADMIN_RESPONSES)

* the expected value is the admin-key secret (`ADMIN_KEY_SECRET_ARN`, a plain string; the stack
  gives API Gateway's key the same value), read through the environment's Powertools
  SecretsProvider (functions/common/aws.py) on first use (never at import) and cached for
  `ADMIN_KEY_CACHE_SECONDS` (default 60 s);
* no `x-api-key` header: 401 "missing x-api-key header"; a different value: 403 "invalid API key";
  the comparison is constant-time (`hmac.compare_digest`), so timing reveals nothing of the key;
* the secret cannot be read: 503 — the route stays closed (fail closed), nothing runs.

The dependency runs before the request body is validated and before the route, so a refused
request changes nothing and learns nothing about the body's schema.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Request, Security
from fastapi.security import APIKeyHeader

from functions.common import aws
from functions.common.api import ApiError, ErrorBody
from functions.common.observability import get_logger
from functions.common.settings import get_settings, runtime

__all__ = ["ADMIN_RESPONSES", "API_KEY_HEADER", "AdminKeyUnavailable", "require_admin_key", "verify_admin_key"]

API_KEY_HEADER = "x-api-key"

MISSING_KEY = "missing x-api-key header"
INVALID_KEY = "invalid API key"
KEY_UNAVAILABLE = "admin key cannot be checked right now, try again later"

# Documents the key as an OpenAPI security scheme (not a fuzzable parameter); auto_error=False
# so a missing header gets this module's 401 message instead of FastAPI's generic 403.
_api_key_scheme = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    scheme_name="adminApiKey",
    description="the admin API key (make up: .valerix/admin-api-key)",
)

ADMIN_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": MISSING_KEY},
    403: {"model": ErrorBody, "description": INVALID_KEY},
}


class AdminKeyUnavailable(RuntimeError):
    """The admin-key secret could not be read (or is empty)."""


def admin_key() -> str:
    """The expected admin key: the secret's value, fetched at most every ADMIN_KEY_CACHE_SECONDS."""
    settings = get_settings()
    try:
        value = aws.secrets_provider().get(settings.admin_key_secret_arn, max_age=settings.admin_key_cache_seconds)
    except Exception as exc:  # any failure (config, IAM, network) closes the route
        raise AdminKeyUnavailable(f"cannot read the admin key secret: {type(exc).__name__}: {exc}") from exc
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str) or not value:
        # An empty expected value would make every empty comparison succeed: refuse everything.
        raise AdminKeyUnavailable("the admin key secret is empty")
    return value


def verify_admin_key(presented: str | None, *, service: str | None = None, route: str = "") -> None:
    """Raise ApiError 401/403/503 unless `presented` is the admin key."""
    logger = get_logger(service or runtime().service_name)
    if not presented:
        logger.warning("admin request refused: no API key", extra={"route": route})
        raise ApiError(401, MISSING_KEY)
    try:
        expected = admin_key()
    except AdminKeyUnavailable as exc:
        logger.error("admin request refused: the admin key cannot be read", extra={"route": route, "error": str(exc)})
        raise ApiError(503, KEY_UNAVAILABLE) from exc
    if not hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8")):
        logger.warning("admin request refused: wrong API key", extra={"route": route})
        raise ApiError(403, INVALID_KEY)


def require_admin_key(request: Request, api_key: Annotated[str | None, Security(_api_key_scheme)]) -> None:
    """FastAPI dependency for admin routes (sync: FastAPI runs it in the threadpool, the secret
    fetch blocks)."""
    verify_admin_key(
        api_key, service=getattr(request.app.state, "service_name", None), route=f"{request.method} {request.url.path}"
    )
