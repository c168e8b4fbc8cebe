"""plux entry points loaded by LocalStack: our runtime executor, and the hot-path patches."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from localstack.runtime import hooks
from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin

if TYPE_CHECKING:
    from valerix_localcloud.executor import ProcessRuntimeExecutor


class ProcessRuntimeExecutorPlugin(RuntimeExecutorPlugin):
    name = "valerix-process"

    def load(self, *args: Any, **kwargs: Any) -> type[ProcessRuntimeExecutor]:
        from valerix_localcloud.executor import ProcessRuntimeExecutor

        return ProcessRuntimeExecutor


@hooks.on_infra_start()
def apply_patches() -> None:
    """At start-up, before any Lambda function's log thread exists (see patches.py)."""
    from localstack import config

    if ProcessRuntimeExecutorPlugin.name == config.LAMBDA_RUNTIME_EXECUTOR:
        from valerix_localcloud import patches

        patches.apply()


@hooks.on_infra_start()
def bind_to_listen_host() -> None:
    """Before the gateway server is registered: LocalStack's sockets honour GATEWAY_LISTEN's host
    and DynamoDB Local binds loopback (see listen_patches.py). Always on, whatever the executor."""
    from valerix_localcloud import listen_patches

    listen_patches.apply()
