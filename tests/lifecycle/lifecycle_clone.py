"""Fresh checkouts of this repository for `make up` from scratch: copying the work tree, a
wheelhouse built once so fresh virtualenvs install offline and fast, and full cleanup.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
REQUIREMENTS = ("requirements.txt", "requirements-dev.txt", "requirements-localstack.txt")
# Outside every checkout and readable by every user (the unprivileged test user installs
# from it too); one folder per set of requirements, reused across test sessions.
WHEELHOUSE_BASE = Path(os.environ.get("VALERIX_TEST_WHEELHOUSE", "/var/tmp/valerix-test-wheelhouse"))


def copy_checkout(dest: Path) -> Path:
    """The work tree as `git clone` + the uncommitted edits would give it: tracked and
    untracked-but-not-ignored files, nothing generated (.venv, .valerix, node_modules)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if not source.is_file() and not source.is_symlink():
            continue  # deleted in the work tree, not yet in the index
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
    return dest


def wheelhouse() -> Path:
    """The files of every locked requirement (pip and setuptools among them, for the Makefile's
    editable installs), downloaded once per set of lock files. Downloaded, not built: the
    Makefile installs with `--require-hashes`, and only the very files the locks name match
    (sources included: pip builds those offline, with the `wheel` downloaded beside them)."""
    digest = hashlib.sha256(f"{sys.version_info[:2]}".encode())
    for name in REQUIREMENTS:
        digest.update((REPO / name).read_bytes())
    target = WHEELHOUSE_BASE / digest.hexdigest()[:16]
    if (target / ".complete").exists():
        return target
    WHEELHOUSE_BASE.mkdir(parents=True, exist_ok=True)
    WHEELHOUSE_BASE.chmod(0o755)
    # Both fresh-clone tests run at once under `make test` (xdist): one builds, the other waits
    # for it instead of building the same wheels beside it.
    with open(WHEELHOUSE_BASE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / ".complete").exists():
            return target
        return _build_wheelhouse(target)


def _build_wheelhouse(target: Path) -> Path:
    building = WHEELHOUSE_BASE / f".building-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    pip_download = [sys.executable, "-m", "pip", "download", "-q", "--require-hashes", "--dest", str(building)]
    # The project and LocalStack virtualenvs pin differently: one lock at a time.
    for lock in ("requirements-dev.txt", "requirements-localstack.txt"):
        subprocess.run([*pip_download, "-r", lock], cwd=REPO, check=True)
    # A few locked packages are sources only (localstack-client, tailer, ...): pip builds them in
    # an isolated environment, which an older pip (Debian's 23.0) fills with setuptools and wheel.
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--dest", str(building), "wheel"], cwd=REPO, check=True
    )
    for path in [building, *building.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    (building / ".complete").touch()
    try:
        building.rename(target)
    except OSError:  # another session finished first
        shutil.rmtree(building, ignore_errors=True)
    for stale in WHEELHOUSE_BASE.iterdir():  # wheelhouses of older requirements
        if stale != target and not stale.name.startswith("."):  # .building-*, .lock
            shutil.rmtree(stale, ignore_errors=True)
    return target


def install_env(wheels: Path, uv_cache: Path) -> dict[str, str]:
    """Environment for a fresh `make up`: pip and uv install offline from `wheels`, npm prefers
    its cache. Nothing of the outer `make` (jobserver) leaks in.

    uv has no variable for --no-index: offline, it reads find-links and its cache, and a cache
    that knows the registry's files (this user's, after `make lock`) makes it want to download
    them. So it starts from `uv_cache`, a new folder, as on a fresh machine."""
    return {
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheels),
        "UV_OFFLINE": "1",
        "UV_FIND_LINKS": str(wheels),
        "UV_CACHE_DIR": str(uv_cache),
        "npm_config_prefer_offline": "true",
        "npm_config_audit": "false",
        "npm_config_fund": "false",
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_server_dirs(checkout: Path) -> list[Path]:
    return [
        Path(json.loads(state.read_text()).get("server_dir", str(state.parent)))
        for state in (checkout / ".valerix" / "pg").glob("*/server.json")
    ]


def processes_of(checkout: Path, server_dirs: list[Path], uid: int | None = None) -> list[psutil.Process]:
    """Processes started from `checkout` (cmdline or cwd), its Postgres servers, or run by `uid`."""
    markers = [str(checkout), *(str(d) for d in server_dirs)]
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "cwd", "uids", "status"]):
        try:
            cmdline = " ".join(process.info["cmdline"] or [])
            cwd = process.info["cwd"] or ""
            uids = process.info["uids"]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if process.pid == os.getpid() or process.info["status"] == psutil.STATUS_ZOMBIE:
            continue  # a zombie has exited: only its parent's wait is missing
        if any(m in cmdline or cwd.startswith(m) for m in markers) or (uid is not None and uids and uids.real == uid):
            found.append(process)
    return found


def kill_all(processes: list[psutil.Process]) -> None:
    """Last resort after a failed test: these are processes this test started, by pid."""
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.send_signal(signal.SIGKILL)
    psutil.wait_procs(processes, timeout=10)


def seed_npm_cache(dest: Path) -> None:
    """Give a fresh user a copy of this user's npm cache (npm writes into its cache, so it
    cannot be shared), so `npm ci` and `npm pack` need not download again."""
    source = Path.home() / ".npm" / "_cacache"
    if source.is_dir():
        shutil.copytree(source, dest / "_cacache", dirs_exist_ok=True)


def wait_closed(ports: list[int], timeout: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        open_ports = []
        for port in ports:
            with socket.socket() as sock:
                sock.settimeout(0.5)
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    open_ports.append(port)
        if not open_ports or time.monotonic() > deadline:
            return open_ports
        time.sleep(0.5)
