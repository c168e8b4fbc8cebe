"""boto3 clients and the Secrets Manager provider, created on first use, once per execution
environment (never at import time).

boto3 finds its endpoint itself (AWS_ENDPOINT_URL locally); nothing here hard-codes one.
Timeouts are short and retries bounded so an AWS hiccup cannot eat a request's budget. Every
factory is a `functools.cache`: the first call builds, later calls share (tests that switch AWS
mocks call `client.cache_clear()` and friends).
"""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import boto3
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

__all__ = ["Profile", "client", "client_with", "fast_client", "secrets_provider", "single_attempt_client"]

Profile = Literal["default", "fast", "single_attempt", "fail_fast"]

# botocore's Config arguments, not Configs: importing boto3 costs ~75-120 ms of INIT, and only the
# order API needs a client before its first request (it prewarms them); the rest import boto3
# with their first client (README, "aws_init_ms").
_CONFIGS: dict[str, dict[str, Any]] = {
    "default": {"connect_timeout": 2, "read_timeout": 5, "retries": {"max_attempts": 3, "mode": "standard"}},
    # For calls on the hot path of a request with a hard budget (circuit-breaker state).
    "fast": {"connect_timeout": 0.5, "read_timeout": 0.5, "retries": {"max_attempts": 2, "mode": "standard"}},
    # Conditional writes that claim something (Powertools idempotency's "in progress" record) must
    # not be retried blindly: when a slow first attempt did succeed, the retry fails its own
    # condition and the work looks "already in progress" until the record expires. So: patient
    # timeout, no automatic retry; a failure surfaces and SQS redelivers the message.
    # `total_max_attempts`, not `max_attempts`: in a client Config botocore reads `max_attempts`
    # as the number of RETRIES (max_attempts=1 is two attempts; botocore/args.py).
    "single_attempt": {
        "connect_timeout": 2,
        "read_timeout": 30,
        "retries": {"total_max_attempts": 1, "mode": "standard"},
    },
    # The gremlin's reads on inventory's path: it must never stall inventory when AWS is away.
    "fail_fast": {"connect_timeout": 0.5, "read_timeout": 1, "retries": {"max_attempts": 2, "mode": "standard"}},
}

# boto3 clients are thread-safe, creating them from one session is not (health checks create
# theirs on worker threads): creation is serialised.
_create_lock = threading.Lock()


@functools.cache
def _session() -> boto3.session.Session:
    """One session per environment, so each service model is loaded once."""
    import boto3

    return boto3.session.Session()


@functools.cache
def client(service: str, profile: Profile = "default") -> Any:
    """The environment's boto3 client for `service` with the timeouts and retries of `profile`."""
    from botocore.config import Config

    with _create_lock:
        return _session().client(service, config=Config(**_CONFIGS[profile]))


def client_with(service: str, **config: Any) -> Any:
    """A new client for `service` with botocore Config arguments of the caller's own (timeouts
    that follow a setting), not cached: the caller keeps it. On the shared session all the
    same: a session of its own would parse botocore's endpoint and partition data again (~30 ms
    of the order API's INIT, which builds this client before its first request)."""
    from botocore.config import Config

    with _create_lock:
        return _session().client(service, config=Config(**config))


def fast_client(service: str) -> Any:
    """Sub-second timeouts, for calls inside a latency budget."""
    return client(service, "fast")


def single_attempt_client(service: str) -> Any:
    """Never retries by itself (for claim-style conditional writes)."""
    return client(service, "single_attempt")


@functools.cache
def secrets_provider() -> SecretsProvider:
    """One Powertools SecretsProvider per environment on the shared client, so its cache (the
    database logins, the admin key) survives across invocations."""
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    return SecretsProvider(boto3_client=client("secretsmanager"))
