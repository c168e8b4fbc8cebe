"""A Lambda Runtime API server for one execution environment.

AWS's runtime interface client (`awslambdaric`) polls `GET /runtime/invocation/next` and
posts the outcome back; this server is the other end of that conversation, living inside
the LocalStack process (the role the Go "rapid" init plays in LocalStack's Docker images).

Only the standard library is used on purpose: the server must start in milliseconds for
every cold start and add as little as possible to each invoke. `disable_nagle_algorithm`
(TCP_NODELAY) matters: without it every small response waits for the peer's delayed ACK
(~40-90 ms per call measured on this machine, 2 ms with it).

Each server serves only its own environment. On AWS nothing but the sandbox can reach its
Runtime API; here every server listens on loopback, where any local process (another
environment's function included) could otherwise fetch this environment's events or post its
results. So each server has a random secret and answers only requests whose path starts with
it: `AWS_LAMBDA_RUNTIME_API` is `127.0.0.1:<port>/<secret>`, which awslambdaric's C client
turns into `http://127.0.0.1:<port>/<secret>/2018-06-01/runtime/...` (its Python fallback for
init errors is adapted in zygote.py). A Unix socket would be stricter, but awslambdaric can
only speak TCP to `host:port`. Everything else gets a 403 saying why, and touches nothing.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import queue
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API_PREFIX = "/2018-06-01/runtime"


@dataclasses.dataclass
class Invocation:
    request_id: str
    payload: bytes
    function_arn: str
    deadline_ms: int
    trace_id: str = ""


@dataclasses.dataclass
class Outcome:
    """What the runtime said about one invocation (or at init)."""

    kind: str  # "response" | "error" | "init_error"
    body: bytes
    error_type: str = ""


class RuntimeApiServer:
    """Runtime API for exactly one runtime process (one invocation at a time, like AWS)."""

    def __init__(self) -> None:
        self._pending: queue.Queue[Invocation] = queue.Queue()
        self._outcomes: dict[str, Outcome] = {}
        self._outcome_arrived = threading.Condition()
        self._ready = threading.Event()  # the runtime is waiting in GET /next
        self._closed = threading.Event()
        self.init_error: Outcome | None = None
        # URL-safe and long enough that guessing it over loopback is hopeless.
        self.secret = secrets.token_urlsafe(32)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="valerix-runtime-api",
            daemon=True,
        )

    @property
    def address(self) -> str:
        """`AWS_LAMBDA_RUNTIME_API` for this environment's runtime: host:port/secret."""
        return f"{self.host_port}/{self.secret}"

    @property
    def host_port(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host.decode() if isinstance(host, bytes) else host}:{port}"

    def start(self) -> RuntimeApiServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._closed.set()
        with self._outcome_arrived:
            self._outcome_arrived.notify_all()
        self._server.shutdown()
        self._server.server_close()

    # --- used by the executor -------------------------------------------------------------

    def wait_until_ready(self, timeout: float) -> bool:
        """True once the runtime asks for work (init finished), False on timeout."""
        return self._ready.wait(timeout)

    def submit(self, invocation: Invocation) -> None:
        self._ready.clear()
        self._pending.put(invocation)

    def wait_outcome(self, request_id: str, timeout: float) -> Outcome | None:
        deadline = time.monotonic() + timeout
        with self._outcome_arrived:
            while request_id not in self._outcomes and self.init_error is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed.is_set():
                    return None
                self._outcome_arrived.wait(remaining)
            if request_id in self._outcomes:
                return self._outcomes.pop(request_id)
            return self.init_error

    def _record(self, request_id: str, outcome: Outcome) -> None:
        with self._outcome_arrived:
            if request_id == "":
                self.init_error = outcome
            else:
                self._outcomes[request_id] = outcome
            self._outcome_arrived.notify_all()

    # --- HTTP side ------------------------------------------------------------------------

    def _next_invocation(self) -> Invocation | None:
        self._ready.set()
        while not self._closed.is_set():
            try:
                return self._pending.get(timeout=0.5)
            except queue.Empty:
                continue
        return None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:  # the runtime's chatter is not our log
                pass

            def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                try:
                    self.send_response(status)
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if body:
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    # The runtime was killed (timeout, crash, shutdown) while waiting for work.
                    self.close_connection = True

            def _authorised_route(self) -> str | None:
                """The route under API_PREFIX, or None (after a 403) without the secret."""
                _, _, rest = self.path.partition("/")
                secret, _, route = rest.partition("/")
                if hmac.compare_digest(secret.encode(), api.secret.encode()) and (f"/{route}".startswith(API_PREFIX)):
                    return f"/{route}"[len(API_PREFIX) :]
                # Drain the body so the connection stays usable for a well-formed retry.
                self._body()
                self._reply(
                    403,
                    json.dumps(
                        {
                            "errorType": "Runtime.Forbidden",
                            "errorMessage": "this Runtime API serves one execution environment only; "
                            "the request path must start with that environment's "
                            f"secret (/<secret>{API_PREFIX}/...)",
                        }
                    ).encode(),
                    {"Content-Type": "application/json"},
                )
                return None

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def do_GET(self) -> None:
                route = self._authorised_route()
                if route is None:
                    return None
                if route != "/invocation/next":
                    return self._reply(404, b'{"errorMessage":"unknown route"}')
                invocation = api._next_invocation()
                if invocation is None:
                    return self._reply(503, b'{"errorMessage":"environment shutting down"}')
                self._reply(
                    200,
                    invocation.payload,
                    {
                        "Content-Type": "application/json",
                        "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                        "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
                        "Lambda-Runtime-Invoked-Function-Arn": invocation.function_arn,
                        "Lambda-Runtime-Trace-Id": invocation.trace_id,
                    },
                )

            def do_POST(self) -> None:
                route = self._authorised_route()
                if route is None:
                    return None
                body = self._body()
                parts = route.strip("/").split("/")
                if parts == ["init", "error"]:
                    api._record("", Outcome("init_error", body, self._error_type()))
                elif len(parts) == 3 and parts[0] == "invocation" and parts[2] == "response":
                    api._record(parts[1], Outcome("response", body))
                elif len(parts) == 3 and parts[0] == "invocation" and parts[2] == "error":
                    api._record(parts[1], Outcome("error", body, self._error_type()))
                else:
                    return self._reply(404, b'{"errorMessage":"unknown route"}')
                self._reply(202, b'{"status":"OK"}', {"Content-Type": "application/json"})

            def _error_type(self) -> str:
                return self.headers.get("Lambda-Runtime-Function-Error-Type", "")

        return Handler


def error_payload(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()
