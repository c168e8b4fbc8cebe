"""`make up` twice in a row works; `make down` leaves no process and no open port behind.

Runs after every other test (tests/conftest.py orders it last) because it stops the local
cloud the other tests use.
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

from valerix_localcloud import cli

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "localcloud")}
    return subprocess.run([sys.executable, "-m", "valerix_localcloud", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _our_processes() -> list[psutil.Process]:
    """Processes `make up` started from this checkout's state or virtualenvs (the test
    session's own throwaway Postgres servers under .valerix/test-pg are not among them)."""
    state = str(REPO / ".valerix")
    test_servers = str(REPO / ".valerix" / "test-pg")
    venv = str(REPO / ".venv")
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "cwd"]):
        try:
            cmdline = " ".join(process.info["cmdline"] or [])
            cwd = process.info["cwd"] or ""
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if process.pid == os.getpid() or test_servers in cmdline or test_servers in cwd:
            continue
        if state in cmdline or state in cwd or ("awslambdaric" in cmdline and venv in cmdline):
            found.append(process)
    return found


def test_up_twice_then_down_leaves_nothing_behind():
    first = _cli("up")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "==> cdklocal deploy" in first.stdout and "done in" in first.stdout
    outputs = json.loads(cli.OUTPUTS_FILE.read_text())

    second = _cli("up")
    assert second.returncode == 0, second.stdout + second.stderr
    again = json.loads(cli.OUTPUTS_FILE.read_text())
    assert again["api_url"] == outputs["api_url"], "re-running up must update, not recreate"
    products = httpx.get(f"{again['api_url']}/products", timeout=30)
    assert products.status_code == 200
    # Prometheus, restarted by the second `up`, answers with the rules loaded
    rules = httpx.get(f"{again['prometheus_url']}/api/v1/rules", timeout=10).json()["data"]["groups"]
    assert rules

    ports = [cli.PORT, cli.EXPORTER_PORT, cli.prometheus().port] + [
        int(db["port"]) for db in again["databases"].values()]
    assert any(_listening(port) for port in ports)

    down = _cli("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert [port for port in ports if _listening(port)] == []
    leftovers = _our_processes()
    assert leftovers == [], [" ".join(p.cmdline()) for p in leftovers]
    assert not cli.OUTPUTS_FILE.exists()
