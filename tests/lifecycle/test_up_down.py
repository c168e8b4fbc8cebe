"""`make up` twice in a row works; `make down` leaves no process and no open port behind;
no secret is printed, put on a command line, or left in a file other users may read.

Runs after every other test on the local cloud (tests/conftest.py orders it last, on the same
xdist worker) because it stops the local cloud the other tests use.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from tests.lifecycle.lifecycle_privacy import CommandLineWatcher, readable_secret_files, secrets_in, secrets_of
from valerix_localcloud import cli

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "valerix_localcloud", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _postgres_server_dirs() -> list[str]:
    """As root the servers' files live outside the checkout (valerix_localcloud.postgres)."""
    return [
        json.loads(state.read_text()).get("server_dir", str(state.parent))
        for state in (REPO / ".valerix" / "pg").glob("*/server.json")
    ]


def _our_processes(server_dirs: list[str]) -> list[psutil.Process]:
    """Processes `make up` started from this checkout's state or virtualenvs, and its
    Postgres servers (the test session's own throwaway servers are not among them)."""
    state = str(REPO / ".valerix")
    test_servers = str(REPO / ".valerix" / "test-pg")
    venv = str(REPO / ".venv")
    session = _test_session_processes()
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "cwd"]):
        try:
            cmdline = " ".join(process.info["cmdline"] or [])
            cwd = process.info["cwd"] or ""
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if process.pid in session or test_servers in cmdline or test_servers in cwd:
            continue
        if (
            state in cmdline
            or state in cwd
            or ("awslambdaric" in cmdline and venv in cmdline)
            or any(server_dir in cmdline for server_dir in server_dirs)
        ):
            found.append(process)
    return found


def _test_session_processes() -> set[int]:
    """This test session and everything it runs: under pytest-xdist the controller and every
    worker with their children (another worker may be synthesizing into .valerix/cdk-build
    meanwhile). `make up` daemonizes what it starts (LocalStack, Postgres, the exporter), so
    nothing it leaves behind is in this tree."""
    root = psutil.Process(os.getppid() if os.environ.get("PYTEST_XDIST_WORKER") else os.getpid())
    try:
        return {root.pid, *(child.pid for child in root.children(recursive=True))}
    except psutil.NoSuchProcess:
        return {os.getpid()}


def test_up_twice_then_down_leaves_nothing_behind():
    # In a full run the session's local cloud is up (this test runs after every other test on
    # it): that was the first `make up`, and a minute of `make test` is saved. Alone, the test
    # makes the first one itself. (A first `make up` from scratch printing no secret is also
    # checked by the fresh-clone tests.)
    if not (cli.OUTPUTS_FILE.exists() and cli.localstack().pid()):
        first = _cli("up")
        assert first.returncode == 0, first.stdout + first.stderr
        assert secrets_in(first.stdout + first.stderr, secrets_of(REPO)) == []
    outputs = json.loads(cli.OUTPUTS_FILE.read_text())
    secrets = secrets_of(REPO)
    assert secrets["admin key"] == outputs["admin_api_key"]
    assert readable_secret_files(REPO, secrets) == []

    with CommandLineWatcher() as watcher:
        second = _cli("up")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "==> cdklocal deploy" in second.stdout and "done in" in second.stdout
    assert watcher.lines_with(secrets) == [], "secrets on a command line, visible in ps"
    assert any("cdk" in line and "synth" in line for line in watcher.seen), "the watcher saw cdk synth"
    assert secrets_in(second.stdout + second.stderr, secrets) == []
    again = json.loads(cli.OUTPUTS_FILE.read_text())
    assert again["api_url"] == outputs["api_url"], "re-running up must update, not recreate"
    products = httpx.get(f"{again['api_url']}/products", timeout=30)
    assert products.status_code == 200
    # Prometheus, restarted by the second `up`, answers with the rules loaded
    rules = httpx.get(f"{again['prometheus_url']}/api/v1/rules", timeout=10).json()["data"]["groups"]
    assert rules

    assert readable_secret_files(REPO, secrets) == []

    ports = [cli.PORT, cli.EXPORTER_PORT, cli.prometheus().port] + [
        int(db["port"]) for db in again["databases"].values()
    ]
    assert any(_listening(port) for port in ports)

    server_dirs = _postgres_server_dirs()
    assert server_dirs and all(Path(d).is_absolute() for d in server_dirs)
    down = _cli("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert [port for port in ports if _listening(port)] == []
    leftovers = _our_processes(server_dirs)
    assert leftovers == [], [" ".join(p.cmdline()) for p in leftovers]
    assert not cli.OUTPUTS_FILE.exists()
