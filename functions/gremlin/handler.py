"""Lambda entry point of the gremlin control API (API Gateway REST proxy). The handler is built
by the shared factory (functions/common/api.py), with the same Powertools decorators as every
other handler (Tracer where tracing is on, Lambda context in the logs, `ColdStart` once); its
correlation id comes from the request."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from functions.common.lazy import lazy_attributes

if TYPE_CHECKING:
    from collections.abc import Callable

    # built on first lookup (the function's INIT), by `__getattr__` below
    api_handler: Callable[[dict[str, Any], Any], dict[str, Any]]


def _build_api_handler() -> Any:
    from functions.common.fastapi_import import import_fastapi

    import_fastapi()  # first: without building its OpenAPI models
    from functions.common.api import make_api_handler
    from functions.common.observability import traced
    from functions.gremlin.app import app

    return traced(make_api_handler(app))


# Built when the runtime looks it up, so that FastAPI is imported by `import_fastapi` first.
__getattr__ = lazy_attributes(globals(), api_handler=_build_api_handler)

__all__ = ["api_handler"]
