"""FastAPI, imported without building its OpenAPI models at INIT.

Importing FastAPI builds the ~40 pydantic models of the OpenAPI document
(`fastapi.openapi.models`): ~65-90 ms of CPU at every API's INIT, a third of what FastAPI costs.
They are used only to build `app.openapi()`, which the functions never serve (`openapi_url=None`;
only tests ask for it). Imported here, they are created with pydantic's `defer_build`, a
documented pydantic option, given as the default while FastAPI's modules load: a deferred model
is built, the same as it would have been, the first time it is used (an `APIKeyHeader` for the
admin routes at INIT, everything when `app.openapi()` is called), and never otherwise.

pydantic offers no public switch for models it does not own, so the default is set in
`pydantic._internal._config.config_defaults` for the duration of the import and restored after
it. If that changes in a pydantic release, FastAPI is imported as before (the models are built
at INIT), and tests/unit/test_lazy_handlers.py says so.

The API handlers call `import_fastapi()` before anything imports FastAPI (functions/common/lazy.py
builds them when the runtime looks them up); in a process that has FastAPI already it does nothing.
"""

from __future__ import annotations

import importlib
import sys
import threading

__all__ = ["import_fastapi"]

_lock = threading.Lock()


def import_fastapi() -> None:
    """Import FastAPI (and its security schemes, which the admin routes use) with its models'
    schemas deferred to their first use."""
    with _lock:
        if "fastapi" in sys.modules:
            return
        try:
            from pydantic._internal._config import config_defaults
        except ImportError:  # a pydantic without it: FastAPI builds its models at import, as before
            importlib.import_module("fastapi.security")
            return
        previous = config_defaults.get("defer_build", False)
        config_defaults["defer_build"] = True
        try:
            importlib.import_module("fastapi")
            importlib.import_module("fastapi.security")
        finally:
            config_defaults["defer_build"] = previous
