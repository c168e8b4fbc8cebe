"""The process side of a local Lambda environment, without LocalStack: the fork server, the
Runtime API's secret, the memory limits (cgroup or RLIMIT_AS) and the kill of everything an
environment started. Real processes, real awslambdaric; the executor glue is covered by
tests/e2e/test_executor.py."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.process_markers import processes_named
from valerix_localcloud import zygote
from valerix_localcloud.runtime_api import API_PREFIX, Invocation, RuntimeApiServer

PROBE_DIR = Path(__file__).resolve().parent.parent / "e2e" / "lambdas"
ZYGOTE = Path(zygote.__file__)


# --- Runtime API ---------------------------------------------------------------------------


def _request(host_port: str, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    host, port = host_port.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request(method, path, body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.fixture
def two_apis():
    apis = [RuntimeApiServer().start(), RuntimeApiServer().start()]
    yield apis
    for api in apis:
        api.close()


def test_runtime_api_address_carries_a_per_environment_secret(two_apis):
    mine, other = two_apis
    assert mine.address.startswith(f"{mine.host_port}/")
    assert mine.secret != other.secret and len(mine.secret) >= 32


@pytest.mark.parametrize(
    "path",
    [
        f"{API_PREFIX}/invocation/next",  # no secret
        f"/wrong{API_PREFIX}/invocation/next",  # a guessed one
        f"/{'x' * 43}{API_PREFIX}/invocation/next",  # the right length, still wrong
    ],
)
def test_runtime_api_refuses_requests_without_its_secret(two_apis, path):
    api = two_apis[0]
    api.submit(Invocation("req-1", b'{"secret": "event"}', "arn:fn", 0))
    status, body = _request(api.host_port, "GET", path)
    assert status == 403
    assert "secret" in json.loads(body)["errorMessage"]
    # The refused request took nothing: the event is still there for the runtime.
    status, body = _request(api.host_port, "GET", f"/{api.secret}{API_PREFIX}/invocation/next")
    assert (status, body) == (200, b'{"secret": "event"}')


def test_runtime_api_refuses_another_environments_secret(two_apis):
    mine, other = two_apis
    mine.submit(Invocation("req-1", b"{}", "arn:fn", 0))
    for method, route in (
        ("GET", "/invocation/next"),
        ("POST", "/invocation/req-1/response"),
        ("POST", "/invocation/req-1/error"),
        ("POST", "/init/error"),
    ):
        status, _ = _request(mine.host_port, method, f"/{other.secret}{API_PREFIX}{route}", b"{}")
        assert status == 403, (method, route)
    assert mine.wait_outcome("req-1", 0.2) is None
    assert mine.init_error is None


def test_runtime_api_accepts_its_own_secret(two_apis):
    api = two_apis[0]
    status, _ = _request(api.host_port, "POST", f"/{api.secret}{API_PREFIX}/invocation/r/response", b'{"ok": true}')
    assert status == 202
    assert api.wait_outcome("r", 1).body == b'{"ok": true}'


# --- cgroup discovery ------------------------------------------------------------------------

MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""


def test_cgroup_candidates_lists_v2_before_v1_at_this_process_own_cgroup():
    own = "5:devices:/x\n4:memory:/jobs/abc\n0::/user.slice/app.scope\n"
    assert zygote.cgroup_candidates(MOUNTINFO, own) == [
        ("2", "/sys/fs/cgroup/unified/user.slice/app.scope"),
        ("1", "/sys/fs/cgroup/memory/jobs/abc"),
    ]


def test_cgroup_candidates_honours_a_mount_of_a_subtree():
    mountinfo = "50 1 0:40 /jobs /mnt/mem rw - cgroup cgroup rw,memory,hugetlb\n"
    assert zygote.cgroup_candidates(mountinfo, "7:hugetlb,memory:/jobs/abc\n") == [("1", "/mnt/mem/abc")]


def test_cgroup_candidates_without_memory_controller_is_empty():
    assert zygote.cgroup_candidates(MOUNTINFO.replace("rw,memory", "rw,cpu"), "4:cpu:/jobs/abc\n") == []


def test_unknown_memory_limit_preference_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="auto, cgroup2, cgroup1 or rlimit"):
        zygote.Containment("cgroups")


# --- environments forked by a real zygote -----------------------------------------------------


@pytest.fixture(scope="module")
def fork_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("zygote")
    env = {"PATH": os.environ["PATH"], "VALERIX_LAMBDA_PRELOAD": "json"}
    server = subprocess.Popen(
        [sys.executable, str(ZYGOTE), str(base / "z.sock"), str(base / "exits")],
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while not (base / "z.sock").exists():
        assert server.poll() is None and time.monotonic() < deadline, "zygote did not start"
        time.sleep(0.02)
    yield base / "z.sock"
    server.kill()
    server.wait()


class Environment:
    """One runtime forked by the zygote, talking to its own Runtime API."""

    def __init__(self, socket_path: Path, limits: dict, handler: str = "probe.handler") -> None:
        self.api = RuntimeApiServer().start()
        read_fd, write_fd = os.pipe()
        self.output = os.fdopen(read_fd, "rb")
        os.set_blocking(read_fd, False)
        request = {
            "cwd": str(PROBE_DIR),
            "handler": handler,
            "limits": limits,
            "env": {
                "PATH": os.environ["PATH"],
                "AWS_LAMBDA_RUNTIME_API": self.api.address,
                "LAMBDA_TASK_ROOT": str(PROBE_DIR),
                "PYTHONPATH": str(PROBE_DIR),
            },
        }
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(str(socket_path))
            socket.send_fds(conn, [json.dumps(request).encode()], [write_fd])
            self.pid = json.loads(conn.recv(65536))["pid"]
        os.close(write_fd)

    def ready(self, timeout: float = 30) -> bool:
        return self.api.wait_until_ready(timeout)

    def invoke(self, event: dict, timeout: float = 20):
        request_id = uuid.uuid4().hex
        self.api.submit(
            Invocation(request_id, json.dumps(event).encode(), "arn:probe", int((time.time() + timeout) * 1000))
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and zygote._running(self.pid):
            if (outcome := self.api.wait_outcome(request_id, 0.05)) is not None:
                return outcome
        return self.api.wait_outcome(request_id, 0)  # None: it died (or timed out) silently

    def printed(self) -> str:
        try:
            return (self.output.read() or b"").decode(errors="replace")
        except BlockingIOError:
            return ""

    def close(self, members: Callable[[], set[int]] = set) -> None:
        zygote.kill_environment(self.pid, members)
        self.api.close()
        self.output.close()


@pytest.fixture
def marker():
    """Names the processes a test's function starts; whatever a failing test left is killed."""
    name = f"escapee-{uuid.uuid4().hex}"
    yield name
    for pid in processes_named(name):
        zygote._signal(pid, 9)


def _wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (result := predicate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return result


def _settled(marker: str, count: int, timeout: float = 30.0) -> list[int]:
    """The `count` processes carrying `marker`, once the same set is seen twice in a row: a
    double fork passes through a short-lived middle process that must not be counted."""
    previous: set[int] = set()

    def stable() -> list[int] | None:
        nonlocal previous
        current = set(processes_named(marker))
        found = sorted(current) if len(current) == count and current == previous else None
        previous = current
        return found

    return _wait_for(stable, timeout) or sorted(previous)


@pytest.fixture(scope="module")
def containment():
    chosen = zygote.Containment("auto")
    if chosen.mode == "rlimit":
        pytest.skip(f"no usable memory cgroup here ({chosen.reason})")
    yield chosen
    chosen.close()


def test_kill_environment_leaves_no_process_the_function_started_without_cgroup(fork_server, marker):
    """Plain RLIMIT_AS mode: the runtime is a subreaper, so setsid children and a
    double-forked daemon stay in its tree and die with it."""
    env = Environment(fork_server, {"address_space_mb": 256})
    try:
        assert env.ready(), env.printed()
        outcome = env.invoke({"spawnMarker": marker})
        assert outcome.kind == "response", outcome.body
        assert len(_settled(marker, 3)) == 3
        killed = zygote.kill_environment(env.pid)
        assert env.pid in killed
        assert _wait_for(lambda: not processes_named(marker), timeout=5), processes_named(marker)
    finally:
        env.close()


def test_kill_environment_leaves_no_process_in_the_cgroup(fork_server, containment, marker):
    group = containment.create(f"test-{uuid.uuid4().hex[:8]}", 256)
    env = Environment(fork_server, containment.limits(group, 256))
    try:
        assert env.ready(), env.printed()
        assert env.pid in group.members()
        assert env.invoke({"spawnMarker": marker}).kind == "response"
        spawned = _settled(marker, 3)
        assert len(spawned) == 3 and set(spawned) <= group.members()
        zygote.kill_environment(env.pid, group.members)
        assert _wait_for(lambda: not processes_named(marker), timeout=5), processes_named(marker)
        assert _wait_for(lambda: not group.members(), timeout=5)
    finally:
        env.close()
        group.remove()
    assert not os.path.exists(group.path)


def test_a_dead_runtimes_escapees_are_killed_by_the_fork_server(fork_server, marker):
    """The runtime exits (a crash) while a daemon it started runs: the zygote adopts the
    daemon (it is a subreaper too) and kills it — the environment is over."""
    env = Environment(fork_server, {"address_space_mb": 256})
    try:
        assert env.ready(), env.printed()
        assert env.invoke({"spawnMarker": marker}).kind == "response"
        assert _wait_for(lambda: len(processes_named(marker)) == 3)
        assert env.invoke({"exit": True}, timeout=3) is None  # the runtime is gone
        assert _wait_for(lambda: not processes_named(marker), timeout=5), processes_named(marker)
    finally:
        env.close()


def test_rlimit_memory_lets_memory_size_through_and_stops_what_is_past_it(fork_server):
    env = Environment(fork_server, {"address_space_mb": 128})
    try:
        assert env.ready(), env.printed()
        within = env.invoke({"allocateMb": 96})
        assert within.kind == "response", within.body
        assert json.loads(within.body)["allocatedMb"] == 96
        past = env.invoke({"allocateMb": 160})
        assert past.kind == "error"
        assert json.loads(past.body)["errorType"] == "MemoryError"  # the executor's OOM signal
    finally:
        env.close()


def test_cgroup_memory_kills_an_environment_past_memory_size(fork_server, containment):
    group = containment.create(f"test-{uuid.uuid4().hex[:8]}", 128)
    env = Environment(fork_server, containment.limits(group, 128))
    try:
        assert env.ready(), env.printed()
        assert env.invoke({"allocateMb": 200}, timeout=10) is None  # no answer: killed
        assert _wait_for(lambda: not zygote._running(env.pid))
        assert group.oom_kills() >= 1
        assert group.peak_mb() >= 120
    finally:
        env.close(group.members)
        group.remove()


def test_cgroup_memory_counts_child_processes_together(fork_server, containment):
    """Two children of 80 MiB each: each alone is under 128 MiB, together they are not."""
    group = containment.create(f"test-{uuid.uuid4().hex[:8]}", 128)
    env = Environment(fork_server, containment.limits(group, 128))
    try:
        assert env.ready(), env.printed()
        outcome = env.invoke({"childrenAllocateMb": [80, 80]})
        assert outcome.kind == "response", outcome.body
        assert -9 in json.loads(outcome.body)["childExitCodes"]
        assert group.oom_kills() >= 1  # what the executor turns into Runtime.OutOfMemory
    finally:
        env.close(group.members)
        group.remove()


def test_init_error_reaches_the_runtime_api_through_the_secret_path(fork_server):
    """awslambdaric reports init errors with http.client, not its C client: the secret path
    must work there too."""
    env = Environment(fork_server, {}, handler="no_such_module.handler")
    try:
        assert _wait_for(lambda: env.api.init_error is not None, timeout=30), env.printed()
        init_error = env.api.init_error
        assert init_error is not None
        assert json.loads(init_error.body)["errorType"] == "Runtime.ImportModuleError"
    finally:
        env.close()


def test_the_secret_is_not_in_the_runtimes_visible_environment(fork_server):
    """/proc/<pid>/environ of a forked runtime shows the fork server's start-up environment,
    so a process scanning /proc does not find the secret there."""
    env = Environment(fork_server, {})
    try:
        assert env.ready(), env.printed()
        with open(f"/proc/{env.pid}/environ", "rb") as environ:
            assert env.api.secret.encode() not in environ.read()
        assert env.invoke({}).kind == "response"  # and the runtime does use it
    finally:
        env.close()


# --- the fork server's own door ------------------------------------------------------------------


def test_fork_server_socket_is_owner_only(fork_server):
    assert fork_server.stat().st_mode & 0o777 == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another user")
def test_fork_server_refuses_another_user_even_when_the_socket_file_is_open(fork_server):
    """Defence in depth: if the socket's and its folders' modes are lost, the peer's uid is
    still checked."""
    opened = [path for path in fork_server.parents if path.stat().st_mode & 0o777 == 0o700]
    modes = {path: path.stat().st_mode & 0o777 for path in opened}
    for path in opened:
        os.chmod(path, 0o711)  # noqa: S103 -- on purpose: only the socket's own check is left
    os.chmod(fork_server, 0o666)  # noqa: S103 -- on purpose: only the socket's own check is left
    try:
        read_end, write_end = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the forked child
            os.close(read_end)
            try:
                os.setgid(65534)
                os.setuid(65534)
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                    conn.connect(str(fork_server))
                    payload = json.dumps({"cwd": "/", "env": {}, "handler": "probe.handler"}).encode()
                    # refused before the request was read: the refusal is still readable
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                        socket.send_fds(conn, [payload], [write_end])
                    conn.settimeout(10)
                    answer = conn.recv(4096)
                os.write(write_end, answer)
            except BaseException as exc:  # noqa: BLE001 - the parent's assertion shows it
                os.write(write_end, repr(exc).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        os.waitpid(child, 0)
        answer = os.read(read_end, 4096)
        os.close(read_end)
    finally:
        os.chmod(fork_server, 0o600)
        for path, mode in modes.items():
            os.chmod(path, mode)
    assert b"refused" in answer and b"own user" in answer, answer
