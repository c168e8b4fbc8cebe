"""Uniqueness after a Lambda SnapStart restore (target=aws: the order, inventory and gremlin APIs).

With SnapStart, Lambda runs INIT once when a version is published, snapshots the memory of the
initialised environment and resumes every new environment of that version from the same
snapshot (AWS docs, "Handling uniqueness with Lambda SnapStart"). Whatever INIT left in memory
is therefore shared by all of them. The one piece of such state these functions depend on is the
`random` module's generator: restored environments would draw the same sequence, so tenacity's
jitter (functions/order/inventory_client.py) and botocore's and urllib3's retry jitter would fire
in lockstep across environments (the gremlin's `percentage` faults draw from it too, but run in
the reserve and queue functions, which have no SnapStart). `reseed_random_after_restore`
registers an after-restore runtime hook (the `snapshot_restore_py` library of AWS's Python
managed runtimes) that re-seeds it from the OS (`random.seed()` reads os.urandom). Every user
found calls the module-level functions (`random.random`, `random.uniform`, `random.choice`, or
`random.random` bound as a default argument), which all draw from the one generator re-seeded
here; no library in the bundle keeps a `random.Random` of its own.

What else INIT creates, checked for the three API functions (none needs a hook):
- correlation ids: made per request (the client's header, API Gateway's request id, else
  `uuid.uuid4()`), never at INIT; `uuid4`, `secrets` and X-Ray's trace/segment ids read
  os.urandom, which is not in the snapshot;
- Powertools: Logger, Metrics and Tracer hold configuration only; the `ColdStart` metric and the
  Tracer's cold-start annotation are module flags cleared by the first invocation, and INIT runs
  none, so each restored environment still reports its own cold start; the Logger's debug
  sampling (`random`) is off (no POWERTOOLS_LOGGER_SAMPLE_RATE);
- database: no connection is opened at INIT (functions/common/db.py connects on first use), so
  no socket is frozen into the snapshot and the connection budget (infra/constructs/db_limits.py)
  is unchanged; SCRAM nonces come from `secrets`;
- boto3 (the order API builds its hot-path clients at INIT, functions/order/handler.py): clients
  hold no connection until their first call; with SnapStart Lambda gives the function container
  credentials (AWS_CONTAINER_CREDENTIALS_FULL_URI), which botocore holds as refreshable
  credentials and fetches again when they expire, so a snapshot's credentials are never used
  past their expiry;
- the circuit breaker's local cache and the admin key's cache are empty at INIT and time-bound.

Locally (and on AWS without SnapStart) `snapshot_restore_py` is absent and registration is a
no-op. The local fork server (localcloud/valerix_localcloud/zygote.py) needs nothing: CPython
re-seeds `random` in every child of `os.fork()` (`os.register_at_fork` in random.py).
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable
from typing import cast

__all__ = ["reseed_random", "reseed_random_after_restore"]

_RegisterAfterRestore = Callable[[Callable[[], None]], object]
_registered = False


def reseed_random() -> None:
    """Give this environment a generator state of its own (from os.urandom)."""
    random.seed()


def _register_after_restore() -> _RegisterAfterRestore | None:
    """`snapshot_restore_py.register_after_restore`, or None where the library is absent. Imported
    by name: it exists only in AWS's managed Python runtimes, so neither the local environment
    nor mypy has it (no stubs to check against; the signature is AWS's documented one)."""
    try:
        module = importlib.import_module("snapshot_restore_py")
    except ImportError:
        return None
    return cast("_RegisterAfterRestore", module.register_after_restore)


def reseed_random_after_restore() -> bool:
    """Register `reseed_random` to run after every SnapStart restore, once per process. Call it
    while building a handler (INIT). True when a hook is registered (now or before)."""
    global _registered  # noqa: PLW0603 -- one registration per process, whoever builds a handler
    if _registered:
        return True
    register = _register_after_restore()
    if register is None:
        return False
    register(reseed_random)
    _registered = True
    return True
