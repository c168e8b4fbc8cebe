"""A minimal Lambda Invoke API for handlers run in this process, without LocalStack.

`POST /2015-03-31/functions/{name}/invocations` (RequestResponse) -> `handler(payload, context)`:
the handler's return value is the response payload; an exception in the handler is a
FunctionError (`X-Amz-Function-Error: Unhandled`, payload `{"errorType", "errorMessage"}`), which
is also how Lambda reports a crashed runtime; an unknown name is 404 ResourceNotFoundException.
That is as much of the API as boto3's `invoke` needs to reach it through
AWS_ENDPOINT_URL_LAMBDA.

Used by the component tests (order reaches the reserve handler over real HTTP, as in the cloud:
moto's Lambda cannot run handler code without Docker) and by `make bench`'s baseline (the floor:
the same handler without the emulated Lambda service in between). Run on its own:

    python -m valerix_localcloud.invoke_emulator --port 8123 \
        --function valerix-inventory-reserve=functions.inventory.handler:reserve_handler

Imports Starlette (and uvicorn for `serve`) only when used: the LocalStack venv never needs it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import uuid
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any

Handler = Callable[[Any, Any], Any]
INVOKE_PATH = "/2015-03-31/functions/{name}/invocations"


def lambda_context(
    name: str, region: str = "us-east-1", account: str = "123456789012", memory_mb: int = 256
) -> SimpleNamespace:
    """What a Lambda runtime passes as `context`, as far as the project's handlers read it."""
    return SimpleNamespace(
        function_name=name,
        function_version="$LATEST",
        memory_limit_in_mb=memory_mb,
        invoked_function_arn=f"arn:aws:lambda:{region}:{account}:function:{name}",
        aws_request_id=str(uuid.uuid4()),
        log_group_name=f"/aws/lambda/{name}",
        log_stream_name="stream",
        get_remaining_time_in_millis=lambda: 30_000,
    )


def resolve(handler: Handler | str) -> Handler:
    """A handler, or "package.module:attribute" imported now."""
    if callable(handler):
        return handler
    module, _, attribute = handler.partition(":")
    if not module or not attribute:
        raise ValueError(f"handler must be 'module:attribute', got {handler!r}")
    found: Handler = getattr(importlib.import_module(module), attribute)
    return found


def invoke_app(functions: Mapping[str, Handler | str], context_factory: Callable[[str], Any] = lambda_context) -> Any:
    """An ASGI app serving the Invoke API for `functions` (name -> handler or "module:attr";
    a string is imported at the first invocation, so the caller's environment is in place).
    A name may also be given as a function ARN, as boto3 callers may."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    resolved: dict[str, Handler] = {}

    def invoke(request_body: bytes, name: str) -> Response:
        name = name.rsplit(":function:", 1)[-1].split(":", 1)[0]  # an ARN (with a qualifier) -> name
        if name not in functions:
            return Response(
                json.dumps({"Type": "User", "message": f"Function not found: {name}"}),
                404,
                headers={"x-amzn-errortype": "ResourceNotFoundException"},
                media_type="application/json",
            )
        try:
            handler = resolved.get(name) or resolved.setdefault(name, resolve(functions[name]))
            result = handler(json.loads(request_body) if request_body else {}, context_factory(name))
        except Exception as exc:  # noqa: BLE001 - what the Lambda runtime reports
            error = {"errorType": type(exc).__name__, "errorMessage": str(exc)}
            return Response(
                json.dumps(error),
                200,
                headers={"X-Amz-Function-Error": "Unhandled", "X-Amz-Executed-Version": "$LATEST"},
                media_type="application/json",
            )
        return Response(
            json.dumps(result), 200, headers={"X-Amz-Executed-Version": "$LATEST"}, media_type="application/json"
        )

    async def endpoint(request: Request) -> Response:
        body = await request.body()
        # Handlers are synchronous (and may block on a database): off the event loop.
        return await run_in_threadpool(invoke, body, request.path_params["name"])

    return Starlette(routes=[Route(INVOKE_PATH, endpoint, methods=["POST"])])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--function",
        action="append",
        required=True,
        metavar="NAME=module:attr",
        help="a function name and its handler (repeatable)",
    )
    args = parser.parse_args(argv)
    functions: dict[str, str] = {}
    for spec in args.function:
        name, sep, handler = spec.partition("=")
        if not sep or not name or ":" not in handler:
            parser.error(f"--function must be NAME=module:attr, got {spec!r}")
        functions[name] = handler
    # Import every handler before answering: its import errors belong on stderr at start.
    app = invoke_app({name: resolve(handler) for name, handler in functions.items()})
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False, lifespan="off")
    return 0


if __name__ == "__main__":
    sys.exit(main())
