"""plux entry point: registers the process executor under LocalStack's executor namespace."""

from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin


class ProcessRuntimeExecutorPlugin(RuntimeExecutorPlugin):
    name = "valerix-process"

    def load(self, *args, **kwargs):
        from valerix_localcloud.executor import ProcessRuntimeExecutor

        return ProcessRuntimeExecutor
