"""`make up` from a fresh clone, the two ways the issue found broken, end to end:

* as root in a folder only root may enter (mode 700, like /root): the Postgres servers run as
  `postgres`, which cannot enter the checkout;
* as an unprivileged user whose `python3` is Debian's own /usr/bin/python3 (3.11.2 on Debian 12).

Each builds both virtualenvs and node_modules from scratch (offline from a wheelhouse built
once, npm from its cache), deploys on its own ports, then `make down` must leave no process,
no open port; the clone (and the user) are deleted afterwards. No secret may be printed,
shown on a command line or left readable by another user.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import httpx
import pytest

from tests.lifecycle.lifecycle_clone import (
    copy_checkout,
    free_port,
    install_env,
    kill_all,
    postgres_server_dirs,
    processes_of,
    seed_npm_cache,
    wait_closed,
    wheelhouse,
)
from tests.lifecycle.lifecycle_privacy import CommandLineWatcher, readable_secret_files, secrets_in, secrets_of

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a mode-700 root folder, useradd, runuser)"),
]

MAKE_TIMEOUT = 1500
DEBIAN_PYTHON = Path("/usr/bin/python3")
OUTER_MAKE_VARIABLES = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "VIRTUAL_ENV", "PYTHONPATH")


@pytest.fixture(scope="module")
def wheels() -> Path:
    return wheelhouse()


@pytest.fixture
def ports() -> dict[str, str]:
    # Prometheus too: the session's own local cloud may be running beside this test (xdist).
    names = ("VALERIX_LOCALSTACK_PORT", "VALERIX_EXPORTER_PORT", "VALERIX_PROMETHEUS_PORT")
    ports: set[int] = set()
    while len(ports) < len(names):
        ports.add(free_port())
    return dict(zip(names, map(str, sorted(ports)), strict=True))


class FreshClone:
    """One checkout and the way to run `make` in it (as root, or as a user via runuser)."""

    def __init__(self, checkout: Path, env: dict[str, str], user: str | None = None) -> None:
        self.checkout, self.env, self.user = checkout, env, user

    def make(self, target: str, timeout: float = MAKE_TIMEOUT) -> subprocess.CompletedProcess:
        cmd = ["make", target]
        env = self.env
        if self.user:
            # A clean login-like environment: nothing of root's (pyenv shims, pip settings).
            cmd = [
                "runuser",
                "-u",
                self.user,
                "--",
                "env",
                "-i",
                *(f"{key}={value}" for key, value in self.env.items()),
                *cmd,
            ]
            env = {"PATH": os.environ["PATH"]}
        return subprocess.run(
            cmd, cwd=self.checkout, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def as_nobody(self, *cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(["runuser", "-u", "nobody", "--", *cmd], capture_output=True, text=True, check=False)


def _show(result: subprocess.CompletedProcess, lines: int = 80) -> str:
    return "\n".join((result.stdout + "\n" + result.stderr).splitlines()[-lines:])


def _up_then_down(clone: FreshClone, ports: dict[str, str]) -> dict:
    """Runs the whole check; returns outputs.json for case-specific assertions."""
    with CommandLineWatcher() as watcher:
        up = clone.make("up")
    assert up.returncode == 0, _show(up)
    assert "Valerix is up." in up.stdout

    secrets = secrets_of(clone.checkout)
    assert secrets_in(up.stdout + up.stderr, secrets) == [], "make up printed a secret"
    assert watcher.lines_with(secrets) == [], "a secret on a command line, visible in ps"
    assert readable_secret_files(clone.checkout, secrets) == []
    stolen = clone.as_nobody("cat", str(clone.checkout / ".valerix" / "admin-api-key"))
    assert stolen.returncode != 0 and secrets["admin key"] not in stolen.stdout

    shown = clone.make("admin-key")
    assert shown.returncode == 0 and shown.stdout.strip() == secrets["admin key"], _show(shown)

    outputs = json.loads((clone.checkout / ".valerix" / "outputs.json").read_text())
    assert outputs["admin_api_key"] == secrets["admin key"], "tests read the key from outputs.json"
    assert str(ports["VALERIX_LOCALSTACK_PORT"]) in outputs["endpoint_url"]
    assert httpx.get(f"{outputs['api_url']}/products", timeout=60).status_code == 200
    gremlin = httpx.put(
        f"{outputs['api_url']}/gremlin", json={}, timeout=60, headers={"x-api-key": secrets["admin key"]}
    )
    assert gremlin.status_code == 200, gremlin.text

    server_dirs = postgres_server_dirs(clone.checkout)
    assert len(server_dirs) == 2
    listening = [int(port) for port in ports.values()]  # LocalStack, exporter, Prometheus
    listening += [int(db["port"]) for db in outputs["databases"].values()]

    down = clone.make("down", timeout=300)
    assert down.returncode == 0, _show(down)
    assert wait_closed(listening) == []
    uid = pwd.getpwnam(clone.user).pw_uid if clone.user else None
    leftovers = processes_of(clone.checkout, server_dirs, uid)
    assert leftovers == [], [f"{p.pid} {p.info['cmdline']}" for p in leftovers]
    return {**outputs, "server_dirs": server_dirs}


def _cleanup(clone: FreshClone, uid: int | None = None) -> None:
    server_dirs = postgres_server_dirs(clone.checkout) if clone.checkout.exists() else []
    if (clone.checkout / ".venv" / "bin" / "python").exists():
        with contextlib.suppress(subprocess.TimeoutExpired):
            clone.make("down", timeout=300)
    kill_all(processes_of(clone.checkout, server_dirs, uid))
    for server_dir in server_dirs:
        if not server_dir.is_relative_to(clone.checkout):
            shutil.rmtree(server_dir, ignore_errors=True)


def test_make_up_as_root_in_a_folder_only_root_may_enter(wheels, ports):
    private = Path(tempfile.mkdtemp(prefix="valerix-root-only-"))  # mode 700, like /root
    private.chmod(0o700)
    clone = FreshClone(
        copy_checkout(private / "valerix"),
        {
            **{k: v for k, v in os.environ.items() if k not in OUTER_MAKE_VARIABLES},
            **install_env(wheels, private / "uv-cache"),
            **ports,
        },
    )
    try:
        assert clone.as_nobody("ls", str(clone.checkout)).returncode != 0, "postgres/nobody can't enter"
        outputs = _up_then_down(clone, ports)
        postgres_uid = pwd.getpwnam("postgres").pw_uid
        for server_dir in outputs["server_dirs"]:
            assert not server_dir.is_relative_to(private)
            assert server_dir.stat().st_uid == postgres_uid
            assert server_dir.stat().st_mode & 0o077 == 0
    finally:
        _cleanup(clone)
        shutil.rmtree(private, ignore_errors=True)
    assert not private.exists()


@pytest.fixture
def unprivileged_user():
    """A throwaway login with a home of its own; deleted with everything it ran."""
    name = f"valerix-t{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", name], check=True)
    entry = pwd.getpwnam(name)
    try:
        yield entry
    finally:
        kill_all(processes_of(Path(entry.pw_dir), [], entry.pw_uid))
        subprocess.run(["userdel", "--remove", name], capture_output=True, check=False)
        shutil.rmtree(entry.pw_dir, ignore_errors=True)


@pytest.mark.skipif(not DEBIAN_PYTHON.exists(), reason="no /usr/bin/python3")
def test_make_up_as_an_unprivileged_user_with_debians_python(wheels, ports, unprivileged_user):
    home = Path(unprivileged_user.pw_dir)
    checkout = copy_checkout(home / "valerix")
    seed_npm_cache(home / ".npm")
    subprocess.run(["chown", "-R", f"{unprivileged_user.pw_uid}:{unprivileged_user.pw_gid}", str(home)], check=True)
    clone = FreshClone(
        checkout,
        {
            "HOME": str(home),
            "USER": unprivileged_user.pw_name,
            "LOGNAME": unprivileged_user.pw_name,
            "SHELL": "/bin/bash",
            "LANG": "C.UTF-8",
            # Debian's default PATH for a user: its python3 is /usr/bin/python3.
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            **install_env(wheels, home / ".cache" / "uv"),
            **ports,
        },
        user=unprivileged_user.pw_name,
    )
    try:
        _up_then_down(clone, ports)
        venv_home = (checkout / ".venv" / "pyvenv.cfg").read_text()
        assert "home = /usr/bin\n" in venv_home, venv_home
        for server_dir in postgres_server_dirs(checkout):
            assert server_dir.is_relative_to(checkout / ".valerix"), "a user's servers live in its checkout"
    finally:
        _cleanup(clone, unprivileged_user.pw_uid)
