"""Fork server for Lambda runtimes, and the process side of an environment's limits.

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
on the Unix socket: JSON `{"cwd", "env", "handler", "limits"}` plus one file descriptor (the
pipe for stdout/stderr) sent with SCM_RIGHTS; the answer is JSON `{"pid": N}`. When a child
ends, its exit status is written to `<exit-dir>/<pid>` (negative = killed by that signal).
`python zygote.py --run` reads one such request (without the descriptor) from stdin and
becomes that runtime itself: the executor's fallback when the fork server cannot start.

Limits (`limits` in a request; the executor chooses them with `Containment` below, which
is stdlib-only so that it is importable both here and inside LocalStack):

* memory: a cgroup (v2 where its memory controller is usable, else v1's memory controller)
  whose limit covers every process of the environment; the child joins it before it runs
  anything of the function. Without a usable cgroup (an unprivileged user, typically) the
  child sets RLIMIT_AS instead — see `apply_address_space_limit` for the mapping.
* processes: the runtime is a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so whatever
  the function starts — `setsid`, double-forked daemons included — stays in the runtime's
  process tree, where `kill_environment` finds it; with a cgroup, its members too.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import os
import resource
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

DEFAULT_PRELOAD = (
    "boto3 botocore.session "
    "botocore.client botocore.endpoint botocore.parsers botocore.retries.standard "
    "fastapi fastapi.routing starlette pydantic mangum pg8000 pg8000.native httpx tenacity "
    "aws_lambda_powertools aws_lambda_powertools.logging aws_lambda_powertools.metrics "
    "aws_lambda_powertools.utilities.batch aws_lambda_powertools.utilities.idempotency "
    "aws_lambda_powertools.utilities.parameters aws_lambda_powertools.utilities.circuit_breaker "
    "aws_lambda_powertools.utilities.data_classes aws_lambda_powertools.utilities.typing"
)
PR_SET_CHILD_SUBREAPER = 36
M_ARENA_MAX = -8  # glibc mallopt parameter
MIB = 2**20


# --- process trees --------------------------------------------------------------------------


def _parent_pids() -> dict[int, int]:
    """pid -> parent pid of every process, read from /proc (zombies included)."""
    parents = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                # The command name may hold spaces and parentheses: fields follow the last ')'.
                fields = stat.read().rsplit(b")", 1)[1].split()
            parents[int(entry.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    return parents


def descendants(root: int) -> set[int]:
    parents = _parent_pids()
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    todo = list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    return found


def _running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def kill_environment(root: int | None, members: Callable[[], set[int]] = set, wait_seconds: float = 5.0) -> set[int]:
    """SIGKILL `root`, all its descendants and every pid `members()` returns; wait until gone.

    Everything is stopped (SIGSTOP) before anything is killed, and the tree is re-read until
    no new process appears: a stopped process cannot fork (the kernel aborts a fork that has a
    signal pending), and a killed parent would hand its children to an ancestor outside the
    tree. Returns the pids it killed.
    """
    stopped: set[int] = set()
    for _ in range(1000):
        found = set(members())
        if root is not None and _running(root):
            found |= {root} | descendants(root)
        new = {pid for pid in found - stopped if pid != os.getpid()}
        if not new:
            break
        for pid in new:
            _signal(pid, signal.SIGSTOP)
        stopped |= new
    for pid in stopped:
        _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + wait_seconds
    while any(_running(pid) for pid in stopped) and time.monotonic() < deadline:
        time.sleep(0.005)
    return stopped


# --- memory limits ---------------------------------------------------------------------------


def _read(path: str) -> str:
    with open(path) as handle:
        return handle.read()


def _write(path: str, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


def cgroup_candidates(mountinfo: str, own_cgroups: str) -> list[tuple[str, str]]:
    """[(version, directory of this process's own cgroup)] for memory, v2 before v1.

    `mountinfo` is /proc/self/mountinfo, `own_cgroups` /proc/self/cgroup. A mount's root
    (field 4) is the cgroup path it shows at its mount point (field 5): with cgroup
    namespaces it is "/" while /proc/self/cgroup is relative to the namespace.
    """
    own: dict[str, str] = {}
    for line in own_cgroups.splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" and controllers == "":
            own["cgroup2"] = path
        elif "memory" in controllers.split(","):
            own["memory"] = path
    found = []
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, fstype_and_more = left.split(), right.split()
        if len(fields) < 5 or len(fstype_and_more) < 3:
            continue
        root, mount_point = fields[3], fields[4]
        fstype, super_options = fstype_and_more[0], fstype_and_more[2].split(",")
        if fstype == "cgroup2" and "cgroup2" in own:
            key, version = "cgroup2", "2"
        elif fstype == "cgroup" and "memory" in super_options and "memory" in own:
            key, version = "memory", "1"
        else:
            continue
        path = own[key]
        relative = path[len(root) :] if root != "/" and path.startswith(root) else path
        found.append((version, os.path.join(mount_point, relative.lstrip("/")).rstrip("/")))
    return sorted(found)[::-1]  # "2" first


class CgroupEnvironment:
    """One environment's memory cgroup."""

    def __init__(self, version: str, path: str) -> None:
        self.version = version
        self.path = path

    @property
    def procs_file(self) -> str:
        return os.path.join(self.path, "cgroup.procs")

    def members(self) -> set[int]:
        try:
            return {int(pid) for pid in _read(self.procs_file).split()}
        except (OSError, ValueError):
            return set()

    def _counter(self, file: str, key: str) -> int:
        try:
            for line in _read(os.path.join(self.path, file)).splitlines():
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def oom_kills(self) -> int:
        """How many of its processes the kernel killed for exceeding the limit."""
        if self.version == "2":
            return self._counter("memory.events", "oom_kill")
        return self._counter("memory.oom_control", "oom_kill")

    def peak_mb(self) -> int:
        """Highest memory use of all its processes together, in MiB (0 when unknown)."""
        names = ("memory.peak", "memory.current") if self.version == "2" else ("memory.max_usage_in_bytes",)
        for name in names:
            try:
                return -(-int(_read(os.path.join(self.path, name))) // MIB)
            except (OSError, ValueError):
                continue
        return 0

    def remove(self) -> None:
        """Kill what is left in it and delete it."""
        kill_environment(None, self.members)
        deadline = time.monotonic() + 5
        while True:
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError:
                # Killed processes leave the cgroup a moment after they die.
                if time.monotonic() > deadline:
                    return
                time.sleep(0.01)


class Containment:
    """How this LocalStack process limits environments' memory: one choice, made once.

    `mode` is "cgroup2", "cgroup1" or "rlimit". Environment cgroups live in
    `<own cgroup>/valerix-lambda-<pid>/`, nested under the cgroup LocalStack runs in, so
    whatever limit its user already has still applies to the functions.
    """

    def __init__(self, preference: str = "auto") -> None:
        self.mode = "rlimit"
        self.base: str | None = None
        self.reason = "no usable cgroup memory controller"
        if preference not in ("auto", "cgroup2", "cgroup1", "rlimit"):
            raise ValueError(
                f"VALERIX_LAMBDA_MEMORY_LIMIT must be auto, cgroup2, cgroup1 or rlimit, not {preference!r}"
            )
        if preference == "rlimit":
            self.reason = "VALERIX_LAMBDA_MEMORY_LIMIT=rlimit"
            return
        try:
            candidates = cgroup_candidates(_read("/proc/self/mountinfo"), _read("/proc/self/cgroup"))
        except OSError as exc:
            self.reason = f"cannot read cgroups: {exc}"
            return
        for version, own in candidates:
            if preference not in ("auto", f"cgroup{version}"):
                continue
            try:
                self.base = self._prepare(version, own)
                self.mode = f"cgroup{version}"
                return
            except OSError as exc:
                self.reason = f"cgroup v{version} at {own} is not usable: {exc}"

    def _prepare(self, version: str, own: str) -> str:
        if version == "2":
            # A cgroup2 child only gets a memory controller its parent enables; the parent
            # cannot enable it while it holds processes itself (unless it is the root of the
            # hierarchy or namespace). Moving LocalStack out of its own cgroup is not ours to
            # do, so v2 is used only where this simply works.
            if "memory" not in _read(os.path.join(own, "cgroup.controllers")).split():
                raise OSError("its memory controller is not available")
            if "memory" not in _read(os.path.join(own, "cgroup.subtree_control")).split():
                _write(os.path.join(own, "cgroup.subtree_control"), "+memory")
        _remove_stale_bases(own)
        base = os.path.join(own, f"valerix-lambda-{os.getpid()}")
        os.makedirs(base, exist_ok=True)
        try:
            if version == "2":
                _write(os.path.join(base, "cgroup.subtree_control"), "+memory")
            probe = self._create(version, base, "probe", 64)
            probe.remove()
        except OSError:
            _rmdir_quietly(base)
            raise
        return base

    @staticmethod
    def _create(version: str, base: str, name: str, memory_mb: int) -> CgroupEnvironment:
        path = os.path.join(base, name)
        os.mkdir(path)
        limit = str(memory_mb * MIB)
        try:
            if version == "2":
                _write(os.path.join(path, "memory.max"), limit)
                _write_if_present(os.path.join(path, "memory.swap.max"), "0")
                # One OOM kill takes the whole environment, as Lambda ends the sandbox.
                _write_if_present(os.path.join(path, "memory.oom.group"), "1")
            else:
                _write(os.path.join(path, "memory.limit_in_bytes"), limit)
                # Swap must not be a way around the limit (memsw = memory + swap).
                _write_if_present(os.path.join(path, "memory.memsw.limit_in_bytes"), limit)
        except OSError:
            _rmdir_quietly(path)
            raise
        return CgroupEnvironment(version, path)

    def create(self, name: str, memory_mb: int) -> CgroupEnvironment | None:
        """A fresh cgroup limited to `memory_mb` for one environment, or None (rlimit mode)."""
        if self.base is None:
            return None
        path = os.path.join(self.base, name)
        if os.path.isdir(path):
            CgroupEnvironment(self.mode[-1], path).remove()
        return self._create(self.mode[-1], self.base, name, memory_mb)

    def limits(self, cgroup: CgroupEnvironment | None, memory_mb: int) -> dict[str, Any]:
        """The `limits` of a zygote request."""
        if cgroup is not None:
            return {"cgroup_procs": cgroup.procs_file}
        return {"address_space_mb": memory_mb}

    def close(self) -> None:
        """Kill every environment still in a cgroup and remove them (LocalStack exits)."""
        if self.base is None:
            return
        for entry in os.scandir(self.base):
            if entry.is_dir():
                CgroupEnvironment(self.mode[-1], entry.path).remove()
        _rmdir_quietly(self.base)


def _write_if_present(path: str, value: str) -> None:
    if os.path.exists(path):
        _write(path, value)


def _rmdir_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.rmdir(path)


def _remove_stale_bases(own: str) -> None:
    """Empty the cgroups a LocalStack that died without cleaning up left behind."""
    try:
        entries = list(os.scandir(own))
    except OSError:
        return
    for entry in entries:
        prefix, _, pid = entry.name.rpartition("-")
        if prefix != "valerix-lambda" or not pid.isdigit() or not entry.is_dir():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # its LocalStack is alive (another local cloud)
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        version = "2" if os.path.exists(os.path.join(entry.path, "cgroup.controllers")) else "1"
        for child in os.scandir(entry.path):
            if child.is_dir():
                CgroupEnvironment(version, child.path).remove()
        _rmdir_quietly(entry.path)


def apply_address_space_limit(memory_mb: int) -> None:
    """The fallback memory limit: RLIMIT_AS, set in the runtime just before the handler loads.

    RLIMIT_AS caps virtual memory, while Lambda's MemorySize caps what the sandbox really
    uses. The mapping: the runtime may map MemorySize MiB on top of what it has mapped right
    now (interpreter, preloaded libraries, awslambdaric — memory Lambda's own runtime also
    has before the handler runs), so an allocation past MemorySize fails with MemoryError
    (the executor reports it as Lambda's Runtime.OutOfMemory) and never fails earlier than on
    Lambda for memory the function really touches. glibc would reserve 64 MiB of address
    space for each thread's malloc arena, which would eat the allowance without using memory:
    one arena for all threads (Python's GIL serialises them anyway). Thread stacks (8 MiB
    each) still count. Each child process inherits the limit for itself: unlike a cgroup,
    the limit does not add up across processes.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, 1)
    mapped_kib = 0
    for line in _read("/proc/self/status").splitlines():
        if line.startswith("VmSize:"):
            mapped_kib = int(line.split()[1])
    limit = mapped_kib * 1024 + memory_mb * MIB
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


# --- the runtime side ------------------------------------------------------------------------


def preload() -> None:
    names = os.environ.get("VALERIX_LAMBDA_PRELOAD", DEFAULT_PRELOAD).split()
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a missing optional library is fine
            print(f"zygote: not preloading {name}: {exc}", file=sys.stderr, flush=True)


def _set_child_subreaper() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    except (OSError, AttributeError) as exc:
        print(f"runtime: processes the function starts with setsid may outlive it: {exc}", file=sys.stderr, flush=True)


def _runtime_api_with_secret_path() -> None:
    """awslambdaric's C client builds `http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/...`, so a
    `host:port/<secret>` address works there; its Python fallback (init errors) passes the
    address to http.client as a host, so split the secret off into the path for it."""
    from awslambdaric.lambda_runtime_client import BaseLambdaRuntimeClient

    call_rapid = BaseLambdaRuntimeClient.call_rapid

    def call_rapid_with_path(self: Any, http_method: str, endpoint: str, *args: Any, **kwargs: Any) -> Any:
        host_port, _, secret = self.lambda_runtime_address.partition("/")
        if not secret:
            return call_rapid(self, http_method, endpoint, *args, **kwargs)
        plain = object.__new__(type(self))
        plain.__dict__.update(self.__dict__, lambda_runtime_address=host_port)
        return call_rapid(plain, http_method, f"/{secret}{endpoint}", *args, **kwargs)

    BaseLambdaRuntimeClient.call_rapid = call_rapid_with_path


def enter_limits(limits: dict[str, Any]) -> None:
    """First thing in a new runtime: join its cgroup, keep its descendants in its tree."""
    if limits.get("cgroup_procs"):
        # Before anything else runs, so every byte and every process is accounted.
        _write(limits["cgroup_procs"], str(os.getpid()))
    _set_child_subreaper()


def become_runtime(request: dict[str, Any], output_fd: int | None) -> None:
    """In the forked child: turn into `python -m awslambdaric <handler>`; never returns."""
    try:
        limits = request.get("limits") or {}
        enter_limits(limits)
        if output_fd is not None:
            os.setsid()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if output_fd is not None:
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

        _runtime_api_with_secret_path()
        if limits.get("address_space_mb"):
            apply_address_space_limit(int(limits["address_space_mb"]))
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


# --- the fork server -------------------------------------------------------------------------


class Reaper:
    """SIGCHLD handler of the fork server.

    The fork server is a subreaper too: when a runtime dies (a crash, an OOM kill) while
    processes it started still run, they are handed to the fork server instead of init — an
    environment whose runtime is gone is over, so they are killed rather than left behind.
    """

    def __init__(self, exit_dir: str) -> None:
        self.exit_dir = exit_dir
        self.runtimes: set[int] = set()

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        reaped = False
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            reaped = True
            if pid not in self.runtimes:
                continue  # an adopted orphan, reaped
            self.runtimes.discard(pid)
            code = os.waitstatus_to_exitcode(status)
            path = os.path.join(self.exit_dir, str(pid))
            with open(path + ".tmp", "w") as out:
                out.write(str(code))
            os.replace(path + ".tmp", path)
        if reaped:  # a runtime, or a process adopted from one, ended: sweep what it left
            me = os.getpid()
            for pid, ppid in _parent_pids().items():
                if ppid == me and pid not in self.runtimes and _running(pid):
                    kill_environment(pid, wait_seconds=0)


def _peer_uid(conn: socket.socket) -> int:
    """The connecting process's uid (SO_PEERCRED: pid, uid, gid as three ints)."""
    credentials = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    uid: int = struct.unpack("3i", credentials)[1]
    return uid


def serve(socket_path: str, exit_dir: str) -> None:
    os.makedirs(exit_dir, exist_ok=True)
    if os.path.exists(socket_path):
        os.unlink(socket_path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(socket_path + ".tmp")
    # Whoever can connect here can run any code as this user: owner only, and every peer's
    # uid is checked again on accept (a socket file's mode is not honoured on every system).
    os.chmod(socket_path + ".tmp", 0o600)
    os.rename(socket_path + ".tmp", socket_path)  # appears only once we are ready
    server.listen(64)
    reaper = Reaper(exit_dir)
    _set_child_subreaper()
    signal.signal(signal.SIGCHLD, reaper)
    while True:
        try:
            conn, _ = server.accept()
        except InterruptedError:
            continue
        with conn:
            try:
                message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 1)
                if _peer_uid(conn) != os.getuid():
                    for fd in fds:
                        os.close(fd)
                    raise PermissionError("refused: the fork server serves its own user only")
                request = json.loads(message)
                if not fds:
                    raise ValueError("no output descriptor")
            except Exception as exc:  # noqa: BLE001 -- any refusal is answered to the caller; the server lives on
                conn.sendall(json.dumps({"error": repr(exc)}).encode())
                continue
            sys.stdout.flush()
            sys.stderr.flush()
            # The child must be registered before its SIGCHLD can arrive.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
            try:
                # Each child draws its own `random` numbers: CPython re-seeds the module in the
                # child of os.fork() (register_at_fork in random.py), as the SnapStart restore hook
                # does on AWS (functions/common/snapstart.py).
                pid = os.fork()
                if pid == 0:
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
                    server.close()
                    conn.close()
                    become_runtime(request, fds[0])
                reaper.runtimes.add(pid)
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
            os.close(fds[0])
            conn.sendall(json.dumps({"pid": pid}).encode())


if __name__ == "__main__":
    # Running as a script puts this folder first on sys.path; the function code must not
    # see our modules (cli, executor, ...) as top-level names.
    sys.path.pop(0)
    if sys.argv[1:] == ["--run"]:
        # Already in its own session (the executor starts it so), output on stdout/stderr.
        run_request = json.loads(sys.stdin.read())
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        become_runtime(run_request, None)
    preload()
    serve(sys.argv[1], sys.argv[2])
