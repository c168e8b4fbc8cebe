"""Module attributes built on first access (PEP 562), for a handler module that serves several
functions: the Lambda runtime looks up only the configured handler (`getattr(module, name)`
during INIT), so an attribute that is expensive to build — the FastAPI app behind
`api_handler`, ~0.3 s of imports — is paid for by the function that uses it and by no other
(the queue consumers, the reserve and migrate functions of the same module).

    __getattr__ = lazy_attributes(globals(), api_handler=_build_api_handler)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def lazy_attributes(namespace: dict[str, Any], **builders: Callable[[], Any]) -> Callable[[str], Any]:
    """A module `__getattr__` that builds each named attribute once (thread-safe) and stores it
    in the module, so later lookups are plain attribute reads."""
    lock = threading.Lock()

    def __getattr__(name: str) -> Any:
        builder = builders.get(name)
        if builder is None:
            raise AttributeError(f"module {namespace.get('__name__')!r} has no attribute {name!r}")
        with lock:
            if name not in namespace:
                namespace[name] = builder()
        return namespace[name]

    return __getattr__
