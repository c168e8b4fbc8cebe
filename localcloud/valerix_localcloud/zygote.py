"""Fork server for Lambda runtimes: cold starts in milliseconds instead of seconds.

A cold Python Lambda spends most of its init importing third-party libraries (boto3,
FastAPI, pydantic, Powertools: ~2.5 s of CPU on this class of machine, far more when many
environments start at once on two cores). This process imports those libraries once and
then forks one child per execution environment. Each child becomes a fresh runtime: its own
session and process group, the function's environment only, its own stdout/stderr pipe,
then AWS's `awslambdaric` main loop — exactly what `python -m awslambdaric <handler>`
would run.

Function code itself is never imported here, only dependencies, so every environment
imports the function's modules from its own code folder (hot reload keeps working, and
module-level state is per environment as on AWS).

Run as a script by the executor (`python zygote.py <socket> <exit-dir>`) with the
interpreter that holds the functions' requirements. Protocol, one request per connection
on the Unix socket: JSON `{"cwd", "env", "handler"}` plus one file descriptor (the pipe
for stdout/stderr) sent with SCM_RIGHTS; the answer is JSON `{"pid": N}`. When a child
ends, its exit status is written to `<exit-dir>/<pid>` (negative = killed by that signal).
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import sys

DEFAULT_PRELOAD = (
    "boto3 botocore.session "
    "botocore.client botocore.endpoint botocore.parsers botocore.retries.standard "
    "fastapi fastapi.routing starlette pydantic mangum pg8000 pg8000.native httpx tenacity "
    "aws_lambda_powertools aws_lambda_powertools.logging aws_lambda_powertools.metrics "
    "aws_lambda_powertools.utilities.batch aws_lambda_powertools.utilities.idempotency "
    "aws_lambda_powertools.utilities.parameters aws_lambda_powertools.utilities.circuit_breaker "
    "aws_lambda_powertools.utilities.data_classes aws_lambda_powertools.utilities.typing"
)


def preload() -> None:
    names = os.environ.get("VALERIX_LAMBDA_PRELOAD", DEFAULT_PRELOAD).split()
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a missing optional library is fine
            print(f"zygote: not preloading {name}: {exc}", file=sys.stderr, flush=True)


def reap(exit_dir: str):
    def handler(signum, frame):  # noqa: ARG001 - signal handler signature
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            path = os.path.join(exit_dir, str(pid))
            with open(path + ".tmp", "w") as out:
                out.write(str(code))
            os.replace(path + ".tmp", path)

    return handler


def become_runtime(request: dict, output_fd: int) -> None:
    """In the forked child: turn into `python -m awslambdaric <handler>`; never returns."""
    try:
        os.setsid()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        os.close(output_fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        # Never cache bytecode next to function code: with hot reload an edit that keeps the
        # file's size within the same second would otherwise be served from a stale .pyc.
        sys.dont_write_bytecode = True
        sys.path.insert(0, request["cwd"])
        from awslambdaric.__main__ import main

        main(["awslambdaric", request["handler"]])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # noqa: BLE001 - report and exit like a crashed runtime
        print(f"runtime bootstrap failed: {exc!r}", file=sys.stderr, flush=True)
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def serve(socket_path: str, exit_dir: str) -> None:
    os.makedirs(exit_dir, exist_ok=True)
    if os.path.exists(socket_path):
        os.unlink(socket_path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(socket_path + ".tmp")
    os.rename(socket_path + ".tmp", socket_path)  # appears only once we are ready
    server.listen(64)
    signal.signal(signal.SIGCHLD, reap(exit_dir))
    while True:
        try:
            conn, _ = server.accept()
        except InterruptedError:
            continue
        with conn:
            try:
                message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 1)
                request = json.loads(message)
                if not fds:
                    raise ValueError("no output descriptor")
            except Exception as exc:  # noqa: BLE001
                conn.sendall(json.dumps({"error": repr(exc)}).encode())
                continue
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                server.close()
                conn.close()
                become_runtime(request, fds[0])
            os.close(fds[0])
            conn.sendall(json.dumps({"pid": pid}).encode())


if __name__ == "__main__":
    # Running as a script puts this folder first on sys.path; the function code must not
    # see our modules (cli, executor, ...) as top-level names.
    sys.path.pop(0)
    preload()
    serve(sys.argv[1], sys.argv[2])
