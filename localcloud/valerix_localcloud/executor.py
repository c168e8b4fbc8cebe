"""LocalStack Lambda runtime executor that runs each execution environment as a local process.

LocalStack's only built-in executor starts a Docker container per environment. This one
starts `python -m awslambdaric <handler>` (AWS's own runtime interface client) in its own
process group, with the function's environment variables, and speaks the Lambda Runtime
API to it through `RuntimeApiServer`. It honours what AWS honours:

* timeout: every process of the environment is killed — the runtime and whatever it
  started, `setsid` escapees included (zygote.py: `kill_environment`) — and the invoke
  reports `Sandbox.Timedout`;
* memory: MemorySize is a real limit on all the environment's processes together, a cgroup
  (v2 where usable, else v1), or RLIMIT_AS per process where no cgroup can be made (an
  unprivileged user); an environment past it fails the invoke with Lambda's
  `Runtime.OutOfMemory` / "Runtime exited with error: signal: killed" and is replaced;
  `VALERIX_LAMBDA_MEMORY_LIMIT=auto|cgroup2|cgroup1|rlimit` forces a mechanism;
* the Runtime API of an environment answers only that environment (runtime_api.py);
* a runtime that exits or crashes mid-invoke yields `Runtime.ExitError`; the next invoke
  cold-starts a fresh process (the environment is replaced, as on AWS);
* concurrency: LocalStack creates one executor per concurrent environment, so concurrent
  invokes run in parallel processes;
* logs: START / END / REPORT lines (with duration, billed duration, memory, init duration)
  around the function's own output, shipped to CloudWatch Logs by LocalStack.

With LocalStack's hot-reload convention (code in the magic `hot-reload` bucket, S3 key = a
local folder) the code is read straight from that folder, so edits apply at the next cold
start.

Selected with `LAMBDA_RUNTIME_EXECUTOR=valerix-process`; the interpreter that runs the
functions is `VALERIX_LAMBDA_PYTHON` (the project virtualenv, which holds requirements.txt).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import json
import logging
import math
import os
import select
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from localstack.services.lambda_.invocation.executor_endpoint import StatusErrorException
from localstack.services.lambda_.invocation.lambda_models import FunctionVersion, InvocationResult
from localstack.services.lambda_.invocation.runtime_executor import RuntimeExecutor

from valerix_localcloud.runtime_api import Invocation, Outcome, RuntimeApiServer, error_payload
from valerix_localcloud.zygote import CgroupEnvironment, Containment, kill_environment

LOG = logging.getLogger(__name__)

# AWS's init phase limit is 10 s; many environments starting at once on a 2-core laptop
# need more, so it is configurable and a little more generous by default.
INIT_TIMEOUT_SECONDS = float(os.environ.get("VALERIX_INIT_TIMEOUT_SECONDS", "30"))
POLL_SECONDS = 0.02
MEMORY_SAMPLE_SECONDS = 0.25
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
# Host variables a Python process needs to start at all; nothing else leaks from LocalStack.
PASSTHROUGH_HOST_VARS = ("PATH", "HOME", "LANG", "LC_ALL", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")


# Why an environment died without answering: (errorType, message), as Lambda reports them.
Failure = tuple[str, str]
OUT_OF_MEMORY: Failure = ("Runtime.OutOfMemory", "Runtime exited with error: signal: killed")
ZYGOTE_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zygote.py")


def _lambda_python() -> str:
    return os.environ.get("VALERIX_LAMBDA_PYTHON") or sys.executable


@functools.cache
def _containment() -> Containment:
    """The memory limit mechanism of this LocalStack process, chosen at the first cold start."""
    containment = Containment(os.environ.get("VALERIX_LAMBDA_MEMORY_LIMIT", "auto"))
    if containment.mode == "rlimit":
        LOG.warning(
            "Lambda memory limits: RLIMIT_AS per process (%s); a cgroup would also "
            "count the processes a function starts together",
            containment.reason,
        )
    else:
        LOG.info("Lambda memory limits: %s under %s", containment.mode, containment.base)
    # Environments LocalStack did not stop must not outlive it (nor their cgroups).
    atexit.register(containment.close)
    return containment


class OutputCollector:
    """Reads a runtime's merged stdout/stderr and hands out the lines of each invoke."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()
        self._lines: list[str] = []
        self._partial = b""
        self._eof = False
        self.recent: deque[str] = deque(maxlen=500)
        threading.Thread(target=self._pump, name="valerix-runtime-output", daemon=True).start()

    def _pump(self) -> None:
        while True:
            try:
                readable, _, _ = select.select([self._fd], [], [], 0.5)
            except (OSError, ValueError):
                break
            if not readable:
                continue
            with self._lock:
                data = os.read(self._fd, 65536)
                if not data:
                    self._eof = True
                    self._flush_partial()
                    break
                self._partial += data
                *complete, self._partial = self._partial.split(b"\n")
                for line in complete:
                    self._append(line)
        with contextlib.suppress(OSError):
            os.close(self._fd)

    def _append(self, raw: bytes) -> None:
        line = raw.decode("utf-8", errors="replace")
        self._lines.append(line)
        self.recent.append(line)

    def _flush_partial(self) -> None:
        if self._partial:
            self._append(self._partial)
            self._partial = b""

    def _pipe_is_empty(self) -> bool:
        if self._eof:
            return True
        try:
            buf = bytearray(4)
            fcntl.ioctl(self._fd, termios.FIONREAD, buf)
            return int.from_bytes(buf, sys.byteorder) == 0
        except OSError:
            return True

    def take(self, drain_seconds: float = 0.05) -> list[str]:
        """Everything written so far, waiting briefly for bytes still in the pipe."""
        deadline = time.monotonic() + drain_seconds
        while True:
            with self._lock:
                if self._pipe_is_empty() or time.monotonic() >= deadline:
                    self._flush_partial()
                    lines, self._lines = self._lines, []
                    return lines
            time.sleep(0.001)


class RuntimeProcess:
    """The OS process of one environment: a plain child, or a child of the zygote."""

    def __init__(self, pid: int, popen: subprocess.Popen[bytes] | None = None, exit_file: str | None = None) -> None:
        self.pid = pid
        self._popen = popen
        self._exit_file = exit_file
        self.returncode: int | None = None

    def rss_mb(self) -> int:
        """Resident memory in MiB (1 when unknown). /proc/<pid>/statm directly: this runs inside
        LocalStack for every invocation, and psutil's object set-up costs several file reads."""
        try:
            with open(f"/proc/{self.pid}/statm") as statm:
                resident_pages = int(statm.read().split()[1])
        except (OSError, ValueError, IndexError):
            return 1
        return max(1, math.ceil(resident_pages * _PAGE_SIZE / 2**20))

    def poll(self) -> int | None:
        if self.returncode is not None:
            return self.returncode
        if self._popen is not None:
            self.returncode = self._popen.poll()
            return self.returncode
        try:
            if self._exit_file is None:  # the zygote writes no status for it: ask the kernel
                raise FileNotFoundError("no exit file")
            with open(self._exit_file) as status:
                self.returncode = int(status.read().strip())
        except (OSError, ValueError):
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                # Gone without a status (its zygote died before reaping it): report a kill.
                self.returncode = -signal.SIGKILL
            except PermissionError:
                pass
            return self.returncode
        return self.returncode

    def kill(self, members: Callable[[], set[int]] = set) -> None:
        """Kill the runtime and everything it started (and `members()`, its cgroup's pids)."""
        if self.poll() is None:
            kill_environment(self.pid, members)
        else:
            kill_environment(None, members)
        deadline = time.monotonic() + 5
        while self.poll() is None and time.monotonic() < deadline:
            if self._popen is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._popen.wait(timeout=0.1)
            else:
                time.sleep(0.01)
        if self._exit_file:
            with contextlib.suppress(OSError):
                os.unlink(self._exit_file)


class Zygote:
    """Client of the fork server (zygote.py), started once per LocalStack process."""

    _lock = threading.Lock()
    _instance: Zygote | None = None

    def __init__(self) -> None:
        tmp = os.environ.get("TMPDIR", "/tmp")  # noqa: S108 -- TMPDIR is set by localstack_host; made 0700 below
        base = os.environ.get("VALERIX_RUNTIME_PID_DIR") or os.path.join(tmp, "valerix-runtimes")
        os.makedirs(base, mode=0o700, exist_ok=True)
        os.chmod(base, 0o700)  # the fork server's socket lives here: owner only
        self.socket_path = os.path.join(base, "zygote.sock")
        self.exit_dir = os.path.join(base, "exits")
        env = {name: os.environ[name] for name in PASSTHROUGH_HOST_VARS if name in os.environ}
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        self._log = open(os.path.join(base, "zygote.log"), "ab")  # noqa: SIM115 -- lives as long as the fork server
        self.process = subprocess.Popen(
            [_lambda_python(), ZYGOTE_SCRIPT, self.socket_path, self.exit_dir],
            cwd=base,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,
        )
        _remember_runtime_pid(self.process.pid)
        deadline = time.monotonic() + INIT_TIMEOUT_SECONDS
        while not os.path.exists(self.socket_path):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Lambda zygote did not start (see {base}/zygote.log)")
            time.sleep(0.02)

    @classmethod
    def get(cls) -> Zygote:
        with cls._lock:
            if cls._instance is None or cls._instance.process.poll() is not None:
                cls._instance = Zygote()
            return cls._instance

    def spawn(self, request: dict[str, Any], output_fd: int) -> RuntimeProcess:
        encoded = json.dumps(request).encode()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(INIT_TIMEOUT_SECONDS)
            conn.connect(self.socket_path)
            socket.send_fds(conn, [encoded], [output_fd])
            answer = json.loads(conn.recv(65536))
        if "pid" not in answer:
            raise RuntimeError(f"the Lambda zygote refused to fork: {answer}")
        return RuntimeProcess(answer["pid"], exit_file=os.path.join(self.exit_dir, str(answer["pid"])))


def _use_zygote() -> bool:
    return os.environ.get("VALERIX_LAMBDA_ZYGOTE", "1") != "0"


class ProcessRuntimeExecutor(RuntimeExecutor):
    def __init__(self, id: str, function_version: FunctionVersion) -> None:
        super().__init__(id=id, function_version=function_version)
        self._env: dict[str, str] = {}
        self._process: RuntimeProcess | None = None
        self._cgroup: CgroupEnvironment | None = None
        self._api: RuntimeApiServer | None = None
        self._output: OutputCollector | None = None
        self._init_duration_ms: float | None = None
        self._lock = threading.Lock()
        self._stopped = False

    # --- RuntimeExecutor interface ------------------------------------------------------

    def start(self, env_vars: dict[str, str]) -> None:
        runtime = str(self.function_version.config.runtime or "")
        if not runtime.startswith("python"):
            raise StatusErrorException(
                "unsupported runtime",
                payload=error_payload(
                    "Runtime.InvalidRuntime",
                    f"the valerix-process executor runs Python functions only, not {runtime!r}",
                ),
            )
        self._env = {key: str(value) for key, value in env_vars.items()}
        with self._lock:
            self._cold_start()

    def stop(self) -> None:
        self._stopped = True
        with self._lock:
            self._terminate()

    def get_address(self) -> str:
        return "127.0.0.1"

    def get_endpoint_from_executor(self) -> str:
        return "127.0.0.1"

    def get_runtime_endpoint(self) -> str:
        from localstack import config

        return f"http://127.0.0.1:{config.GATEWAY_LISTEN[0].port}/_localstack_lambda/{self.id}"

    def get_logs(self) -> str:
        return "\n".join(self._output.recent) if self._output else ""

    @classmethod
    def prepare_version(cls, function_version: FunctionVersion) -> None:
        if function_version.config.code:
            function_version.config.code.prepare_for_execution()

    @classmethod
    def cleanup_version(cls, function_version: FunctionVersion) -> None:
        pass  # prepare_version only unpacks code, which LocalStack itself cleans up

    @classmethod
    def validate_environment(cls) -> bool:
        python = _lambda_python()
        probe = subprocess.run([python, "-c", "import awslambdaric"], capture_output=True, text=True, check=False)
        if probe.returncode != 0:
            LOG.warning(
                "valerix-process executor: %s cannot import awslambdaric (%s); set "
                "VALERIX_LAMBDA_PYTHON to an interpreter with the functions' requirements",
                python,
                probe.stderr.strip(),
            )
            return False
        return True

    def invoke(self, payload: dict[str, str]) -> InvocationResult:
        request_id = payload["invoke-id"]
        with self._lock:
            cold_start_error = None
            if not self._is_alive():
                try:
                    self._cold_start()
                except StatusErrorException as exc:
                    cold_start_error = exc
            if cold_start_error is not None:
                return InvocationResult(request_id, cold_start_error.payload, True, "")
            return self._invoke_locked(request_id, payload)

    # --- process lifecycle --------------------------------------------------------------

    def _code_dir(self) -> str:
        return str(self.function_version.config.code.get_unzipped_code_location())

    def _process_env(self, runtime_api: str, code_dir: str) -> dict[str, str]:
        env = {name: os.environ[name] for name in PASSTHROUGH_HOST_VARS if name in os.environ}
        env.update(self._env)
        env.update(
            {
                "AWS_LAMBDA_RUNTIME_API": runtime_api,
                "LAMBDA_TASK_ROOT": code_dir,
                "PYTHONPATH": code_dir,
                "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1",
            }
        )
        return env

    def _cold_start(self) -> None:
        self._terminate()
        code_dir = self._code_dir()
        handler = self.function_version.config.handler
        memory_mb = int(self.function_version.config.memory_size)
        started = time.perf_counter()
        self._api = RuntimeApiServer().start()
        containment = _containment()
        try:
            self._cgroup = containment.create(f"env-{self.id}", memory_mb)
        except OSError as exc:  # e.g. the cgroup was removed from under us
            LOG.warning("no memory cgroup for a %s environment (%s); RLIMIT_AS instead", self._name(), exc)
            self._cgroup = None
        request = {
            "cwd": code_dir,
            "handler": handler,
            "env": self._process_env(self._api.address, code_dir),
            "limits": containment.limits(self._cgroup, memory_mb),
        }
        read_fd, write_fd = os.pipe()
        try:
            self._process = None
            if _use_zygote():
                try:
                    self._process = Zygote.get().spawn(request, write_fd)
                except Exception as exc:  # noqa: BLE001 - fall back to a plain process
                    LOG.warning("Lambda zygote unavailable (%s); starting a plain process", exc)
            if self._process is None:
                # The same bootstrap as a forked runtime (limits, subreaper), without preloads.
                # The request (the function's environment) goes through stdin, never argv.
                popen = subprocess.Popen(
                    [_lambda_python(), ZYGOTE_SCRIPT, "--run"],
                    cwd=code_dir,
                    env={name: os.environ[name] for name in PASSTHROUGH_HOST_VARS if name in os.environ},
                    stdin=subprocess.PIPE,
                    stdout=write_fd,
                    stderr=write_fd,
                    start_new_session=True,
                )
                stdin = popen.stdin
                if stdin is None:  # stdin=PIPE always gives one; this tells the type checker
                    raise RuntimeError("no pipe to the runtime's stdin")
                stdin.write(json.dumps(request).encode())
                stdin.close()
                self._process = RuntimeProcess(popen.pid, popen=popen)
        finally:
            os.close(write_fd)
        _remember_runtime_pid(self._process.pid)
        self._output = OutputCollector(read_fd)
        deadline = time.monotonic() + INIT_TIMEOUT_SECONDS
        while not self._api.wait_until_ready(POLL_SECONDS):
            if self._api.init_error is not None or self._process.poll() is not None:
                break
            if time.monotonic() > deadline:
                break
        if not self._api.wait_until_ready(0):
            output = "\n".join(self._output.take())
            init_error = self._api.init_error
            self._terminate()
            LOG.warning("Lambda %s failed to initialise:\n%s", self._name(), output)
            payload = (
                init_error.body
                if init_error
                else error_payload(
                    "Runtime.ExitError",
                    f"Runtime failed to start within {INIT_TIMEOUT_SECONDS:.0f} s or exited: {output[-2000:]}",
                )
            )
            raise StatusErrorException("Environment startup failed", payload=payload)
        self._init_duration_ms = (time.perf_counter() - started) * 1000

    def _is_alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _terminate(self) -> None:
        cgroup, self._cgroup = self._cgroup, None
        members = cgroup.members if cgroup is not None else set
        if self._process is not None:
            self._process.kill(members)
            _forget_runtime_pid(self._process.pid)
        self._process = None
        if cgroup is not None:
            cgroup.remove()
        if self._api is not None:
            self._api.close()
            self._api = None

    def _name(self) -> str:
        return self.function_version.id.function_name

    # --- one invoke ---------------------------------------------------------------------

    def _invoke_locked(self, request_id: str, payload: dict[str, str]) -> InvocationResult:
        config = self.function_version.config
        timeout = float(config.timeout)
        memory_mb = int(config.memory_size)
        init_duration_ms, self._init_duration_ms = self._init_duration_ms, None
        api, output = self._api, self._output
        if api is None or output is None:
            raise RuntimeError("an invoke before the environment started")
        pre_invoke_lines = output.take(drain_seconds=0)  # init output belongs here
        started = time.perf_counter()
        api.submit(
            Invocation(
                request_id=request_id,
                payload=payload["payload"].encode(),
                function_arn=payload["invoked-function-arn"],
                deadline_ms=int((time.time() + timeout) * 1000),
                trace_id=payload.get("trace-id", ""),
            )
        )
        outcome, max_memory_mb = self._await_outcome(request_id, timeout, memory_mb)
        duration_ms = (time.perf_counter() - started) * 1000
        if isinstance(outcome, Outcome) and self._out_of_memory(outcome):
            outcome = OUT_OF_MEMORY

        if isinstance(outcome, Outcome):
            # The runtime posts the result and then asks for the next event; once it asks,
            # everything the invoke printed is in the pipe.
            api.wait_until_ready(0.25)
            body_lines = output.take()
            is_error = outcome.kind != "response"
            body = outcome.body
        else:
            self._terminate_keep_output()
            body_lines = output.take()
            error_type, message = outcome
            if error_type == "Sandbox.Timedout":
                body_lines.append(f"{_now()} {request_id} {message}")
            else:  # what AWS logs when the runtime dies
                body_lines += [f"RequestId: {request_id} Error: {message}", error_type]
            is_error = True
            body = error_payload(error_type, f"RequestId: {request_id} Error: {message}")

        report = (
            f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
            f"Billed Duration: {math.ceil(duration_ms)} ms\tMemory Size: {memory_mb} MB\t"
            f"Max Memory Used: {max_memory_mb} MB"
        )
        if init_duration_ms is not None:
            report += f"\tInit Duration: {init_duration_ms:.2f} ms"
        logs = (
            "\n".join(
                [
                    *pre_invoke_lines,
                    f"START RequestId: {request_id} Version: {self.function_version.id.qualifier}",
                    *body_lines,
                    f"END RequestId: {request_id}",
                    report,
                ]
            )
            + "\n"
        )
        return InvocationResult(request_id, body, is_error, logs)

    def _out_of_memory(self, outcome: Outcome) -> bool:
        """Did the environment run out of memory although the runtime answered?

        With a cgroup the kernel may have killed a process the function started (the runtime
        lives on): Lambda ends the whole environment then, so this invoke fails too. Under
        RLIMIT_AS an allocation past the limit raises MemoryError in the handler instead of
        killing it; that is reported as the kill it would have been on Lambda.
        """
        if self._cgroup is not None:
            return self._cgroup.oom_kills() > 0
        if outcome.kind != "error":
            return False
        try:
            return bool(json.loads(outcome.body).get("errorType") == "MemoryError")
        except (ValueError, AttributeError):
            return False

    def _await_outcome(self, request_id: str, timeout: float, memory_mb: int) -> tuple[Outcome | Failure, int]:
        """(the runtime's outcome, or (errorType, message) when it died; max_memory_mb)."""
        deadline = time.monotonic() + timeout
        max_rss = 0
        process, cgroup, api = self._process, self._cgroup, self._api
        if process is None or api is None:
            raise RuntimeError("an invoke before the environment started")

        def max_memory() -> int:
            if cgroup is not None:  # every process of the environment, at its peak
                return max(1, cgroup.peak_mb())
            return max(max_rss, process.rss_mb())

        # Sampled, not polled: reading /proc costs the LocalStack process CPU that every other
        # in-flight request needs. Short invocations are measured once, when they end.
        next_memory_sample = time.monotonic() + MEMORY_SAMPLE_SECONDS
        while True:
            outcome = api.wait_outcome(request_id, POLL_SECONDS)
            if outcome is not None and outcome.kind != "init_error":
                return outcome, max_memory()
            now = time.monotonic()
            if now >= next_memory_sample:
                next_memory_sample = now + MEMORY_SAMPLE_SECONDS
                if cgroup is not None:
                    if cgroup.oom_kills() > 0:  # the kernel enforced the limit
                        return OUT_OF_MEMORY, max_memory()
                else:
                    # RLIMIT_AS caps address space; resident memory past MemorySize (a
                    # function near its limit that maps little but touches all) is a kill too.
                    max_rss = max(max_rss, process.rss_mb())
                    if max_rss > memory_mb:
                        return OUT_OF_MEMORY, max_rss
            exit_code = process.poll()
            if exit_code is not None:
                late = api.wait_outcome(request_id, 0)
                if late is not None and late.kind != "init_error":
                    return late, max_memory()
                if cgroup is not None and cgroup.oom_kills() > 0:
                    return OUT_OF_MEMORY, max_memory()
                status = f"signal: {_signal_name(-exit_code)}" if exit_code < 0 else (f"exit status {exit_code}")
                return ("Runtime.ExitError", f"Runtime exited with error: {status}"), (max_memory())
            if time.monotonic() > deadline:
                return ("Sandbox.Timedout", f"Task timed out after {timeout:.2f} seconds"), (max_memory())

    def _terminate_keep_output(self) -> None:
        """Kill the environment; the output collector keeps whatever the process printed."""
        output = self._output
        self._terminate()
        self._output = output


def _runtime_pid_dir() -> str | None:
    # `make down` kills whatever is listed here, even if LocalStack itself died abruptly:
    # runtimes live in their own process groups so that a timeout can kill one cleanly.
    return os.environ.get("VALERIX_RUNTIME_PID_DIR")


def _remember_runtime_pid(pid: int) -> None:
    if directory := _runtime_pid_dir():
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, str(pid)), "w") as marker:
            marker.write(str(pid))


def _forget_runtime_pid(pid: int) -> None:
    if directory := _runtime_pid_dir():
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(directory, str(pid)))


def _signal_name(number: int) -> str:
    """Go's wording, as Lambda's runtime reports it ("signal: killed")."""
    names: dict[int, str] = {
        signal.SIGKILL: "killed",
        signal.SIGSEGV: "segmentation fault",
        signal.SIGABRT: "aborted",
        signal.SIGTERM: "terminated",
    }
    return names.get(number, str(number))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
