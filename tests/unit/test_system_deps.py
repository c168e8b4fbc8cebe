"""scripts/system-deps.sh: the first step of `make up` checks the Python the Makefile found
and, when something is wrong, says what and the one command that fixes it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _system_deps(python: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "system-deps.sh"), "up"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": python},
        timeout=60,
        check=False,
    )


def _fake_python(tmp_path: Path, body: str) -> str:
    fake = tmp_path / "python3"
    fake.write_text(f"#!/bin/sh\n{body}\n")
    fake.chmod(0o755)
    return str(fake)


def test_no_python_found():
    result = _system_deps("")
    assert result.returncode == 1
    assert "no Python 3.11+" in result.stderr and "apt-get install -y python3 python3-venv" in result.stderr


def test_python_too_old(tmp_path):
    old = _fake_python(tmp_path, 'case "$2" in *version_info*) exit 1;; esac; echo "Python 3.9.2"')
    result = _system_deps(old)
    assert result.returncode == 1
    assert "needs Python 3.11+" in result.stderr and "PYTHON=" in result.stderr


def test_python_without_venv_outside_usr_bin(tmp_path):
    no_venv = _fake_python(tmp_path, f'case "$2" in *ensurepip*) exit 1;; esac; exec {sys.executable} "$@"')
    result = _system_deps(no_venv)
    assert result.returncode == 1
    assert "no venv/ensurepip" in result.stderr and "make up PYTHON=/usr/bin/python3" in result.stderr
