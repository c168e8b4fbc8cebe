"""boto3 clients, created lazily once per execution environment (never at import time).

boto3 finds its endpoint itself (AWS_ENDPOINT_URL locally); nothing here hard-codes one.
Timeouts are short and retries bounded so an AWS hiccup cannot eat a request's budget.
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.config import Config

__all__ = ["client", "fast_client", "single_attempt_client", "reset_clients"]

_CONFIG = Config(
    connect_timeout=2,
    read_timeout=5,
    retries={"max_attempts": 3, "mode": "standard"},
)

# For calls on the hot path of a request with a hard budget (circuit-breaker state).
_FAST_CONFIG = Config(
    connect_timeout=0.5,
    read_timeout=0.5,
    retries={"max_attempts": 2, "mode": "standard"},
)

# Conditional writes that claim something (Powertools idempotency's "in progress" record) must
# not be retried blindly: when a slow first attempt did succeed, the retry fails its own
# condition and the work looks "already in progress" until the record expires. So: patient
# timeout, no automatic retry; a failure surfaces and SQS redelivers the message.
# `total_max_attempts`, not `max_attempts`: in a client Config botocore reads `max_attempts` as
# the number of RETRIES (max_attempts=1 is two attempts; botocore/args.py).
_SINGLE_ATTEMPT_CONFIG = Config(
    connect_timeout=2,
    read_timeout=30,
    retries={"total_max_attempts": 1, "mode": "standard"},
)

_clients: dict[str, Any] = {}
_lock = threading.Lock()
_session: boto3.session.Session | None = None  # one session: service models are loaded once


def client(service: str) -> Any:
    """A cached boto3 client (boto3 clients are thread-safe; the session creation is not)."""
    return _cached(service, _CONFIG)


def fast_client(service: str) -> Any:
    """A cached boto3 client with sub-second timeouts, for calls inside a latency budget."""
    return _cached(service, _FAST_CONFIG, suffix="#fast")


def single_attempt_client(service: str) -> Any:
    """A cached boto3 client that never retries by itself (for claim-style conditional writes)."""
    return _cached(service, _SINGLE_ATTEMPT_CONFIG, suffix="#single")


def _cached(service: str, config: Config, suffix: str = "") -> Any:
    global _session
    key = service + suffix
    existing = _clients.get(key)
    if existing is not None:
        return existing
    with _lock:
        existing = _clients.get(key)
        if existing is None:
            if _session is None:
                _session = boto3.session.Session()
            existing = _session.client(service, config=config)
            _clients[key] = existing
        return existing


def reset_clients() -> None:
    with _lock:
        _clients.clear()
