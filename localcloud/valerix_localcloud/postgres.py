"""Throwaway or long-lived local PostgreSQL servers standing in for RDS.

Used by `make up` (two servers: order_db and inventory_db) and by the test-suite
(fixtures that need a real Postgres). Binaries come from Debian's postgresql package
(`/usr/lib/postgresql/<v>/bin`) or from $PATH.

initdb/pg_ctl refuse to run as root, so when we are root every server command runs as the
`postgres` system user. That user may not be able to enter the checkout (a clone under
/root, mode 700) nor `.valerix/` (private, 0700), so as root the server's own files (data,
log, socket) live in a private 0700 directory owned by `postgres` outside the checkout,
`/var/lib/valerix/<hash of the cluster's state directory>` (VALERIX_PG_ROOT to move it),
recorded in the cluster's `server.json` so `make down` finds it. As an unprivileged user
they live in the cluster's state directory itself.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pg8000.native

from valerix_localcloud.private import private_dir, write_private

SUPERUSER = "valerix"
DEFAULT_ROOT_SERVERS_DIR = "/var/lib/valerix"


class PostgresError(RuntimeError):
    """A local Postgres server could not be created, started or stopped; `fix`, when known,
    is the one command that cures it."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.fix = fix


INSTALL_POSTGRES = "`apt-get install -y postgresql` (as root), then `make up`"


def find_bin_dir() -> Path:
    override = os.environ.get("VALERIX_PG_BIN")
    candidates = [override] if override else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for candidate in candidates:
        if candidate and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).resolve().parent
    raise PostgresError(
        "PostgreSQL server binaries (pg_ctl, initdb) not found in /usr/lib/postgresql/*/bin, $VALERIX_PG_BIN or PATH",
        fix=INSTALL_POSTGRES,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run_as_owner_prefix() -> list[str]:
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise PostgresError(
            "running as root, but there is no `postgres` system user to run the server as "
            "(initdb and pg_ctl refuse root)",
            fix=INSTALL_POSTGRES + " (the package creates the user)",
        ) from exc
    return ["runuser", "-u", "postgres", "--"]


def _chown_to_owner(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(path, entry.pw_uid, entry.pw_gid)
        for root, dirs, files in os.walk(path):
            os.chown(root, entry.pw_uid, entry.pw_gid)
            for name in dirs + files:
                os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)


def root_server_dir(state_dir: Path) -> Path:
    """As root: where the cluster whose state lives in `state_dir` keeps its server files."""
    base = Path(os.environ.get("VALERIX_PG_ROOT", DEFAULT_ROOT_SERVERS_DIR))
    return base / hashlib.sha256(str(Path(state_dir).resolve()).encode()).hexdigest()[:16]


def _stop_by_pidfile(data_dir: Path, timeout: float = 30.0) -> None:
    """Fast-shutdown the postmaster of `data_dir` by signal (root cannot use pg_ctl)."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
        if Path(f"/proc/{pid}/comm").read_text().strip() != "postgres":
            return  # a stale pid file; that pid now belongs to someone else
        os.kill(pid, signal.SIGINT)
    except (OSError, ValueError, IndexError):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise PostgresError(f"the Postgres server of {data_dir} (pid {pid}) did not stop within {timeout:.0f}s")


@dataclasses.dataclass
class PostgresServer:
    """One cluster in `directory`, listening on 127.0.0.1:`port`, holding `dbname`."""

    directory: Path
    dbname: str

    def __post_init__(self) -> None:
        self.directory = Path(self.directory).resolve()

    port: int = 0
    password: str = ""
    fsync: bool = True
    # `make up` passes the stack's number (the RDS instances' max_connections, see cli.databases);
    # the test-suite's own servers keep room for many parallel test connections.
    max_connections: int = 200
    # Set by start() when it found a cluster without a known password and moved it here.
    orphaned_data: Path | None = None

    @property
    def server_dir(self) -> Path:
        """The server's own files: data, log, socket (see the module docstring)."""
        if os.geteuid() != 0:
            return self.directory
        recorded = self._read_state().get("server_dir")
        return Path(recorded) if recorded else root_server_dir(self.directory)

    @property
    def data_dir(self) -> Path:
        return self.server_dir / "data"

    @property
    def state_file(self) -> Path:
        return self.directory / "server.json"

    @property
    def log_file(self) -> Path:
        return self.server_dir / "server.log"

    @property
    def _legacy_data_dir(self) -> Path | None:
        """As root, older versions kept the data inside the checkout; None when there is none."""
        legacy = self.directory / "data"
        if legacy != self.data_dir and (legacy / "PG_VERSION").exists():
            return legacy
        return None

    def secret(self) -> dict[str, Any]:
        """The same JSON shape as an RDS-generated Secrets Manager secret."""
        return {
            "engine": "postgres",
            "host": "127.0.0.1",
            "port": self.port,
            "username": SUPERUSER,
            "password": self.password,
            "dbname": self.dbname,
        }

    def _pg(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [*_run_as_owner_prefix(), str(find_bin_dir() / tool), *args]
        # Every path is absolute; from "/" the `postgres` user never trips over a current
        # directory it may not enter (the checkout, as root).
        result = subprocess.run(cmd, capture_output=True, text=True, cwd="/", check=False)
        if check and result.returncode != 0:
            raise PostgresError(
                f"`{tool}` failed for {self.dbname} ({result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}; see {self.log_file}"
            )
        return result

    def _read_state(self) -> dict[str, Any]:
        try:
            state: dict[str, Any] = json.loads(self.state_file.read_text())
            return state
        except (OSError, ValueError):
            return {}

    def _load_state(self) -> None:
        state = self._read_state()
        if state:
            self.password = state["password"]
            self.port = self.port or state["port"]

    def _save_state(self) -> None:
        write_private(
            self.state_file,
            json.dumps({"password": self.password, "port": self.port, "server_dir": str(self.server_dir)}),
        )

    def _prepare_server_dir(self) -> None:
        """As root: a 0700 directory owned by `postgres`, under a base only root may write."""
        if os.geteuid() != 0:
            return
        _run_as_owner_prefix()  # fails clearly when there is no `postgres` user
        legacy = self._legacy_data_dir
        if legacy is not None and (self.data_dir / "PG_VERSION").exists():
            legacy = None  # already moved; a leftover copy is left alone
        if legacy is not None:
            # A cluster from before this layout, maybe running: stop it, then move its data
            # (a stopped cluster's data directory is relocatable), so no order is lost.
            _stop_by_pidfile(legacy)
        if self.directory.stat().st_uid != 0:
            # Older versions handed the state directory to `postgres`; it holds the password.
            os.chown(self.directory, 0, 0)
        base = self.server_dir.parent
        base.mkdir(parents=True, exist_ok=True)
        base.chmod(0o711)  # `postgres` must traverse it; nobody may list it
        private_dir(self.server_dir)
        entry = pwd.getpwnam("postgres")
        os.chown(self.server_dir, entry.pw_uid, entry.pw_gid)
        if legacy is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            shutil.move(str(legacy), str(self.data_dir))
            _chown_to_owner(self.server_dir)

    def _set_aside_orphaned_data(self) -> None:
        """A cluster whose password nobody knows any more is set aside, not reused.

        As root the data outlives the checkout (it lies under /var/lib/valerix, keyed by the
        state directory's path), so a fresh clone at the same path, or a `.valerix/` deleted by
        hand, finds a cluster created with a password that is gone with the old `server.json`.
        Its data may hold someone's orders, so it is moved (stopped first), never deleted;
        `make clean` removes it with the rest of the server's files.
        """
        if self.password or not (self.data_dir / "PG_VERSION").exists():
            return
        _stop_by_pidfile(self.data_dir)
        aside = self.server_dir / time.strftime("data.orphaned-%Y%m%dT%H%M%SZ", time.gmtime())
        self.data_dir.rename(aside)
        self.orphaned_data = aside

    def init(self) -> None:
        private_dir(self.directory)
        self._load_state()
        self._prepare_server_dir()
        self._set_aside_orphaned_data()
        if (self.data_dir / "PG_VERSION").exists():
            self._save_state()
            return
        self.password = self.password or secrets.token_urlsafe(18)
        # initdb reads the password from a file (never from its command line); it runs as
        # `postgres` when we are root, so the file lies in that user's private directory.
        pwfile = self.server_dir / "pwfile"
        write_private(pwfile, self.password + "\n")
        self.data_dir.mkdir(exist_ok=True, mode=0o700)
        _chown_to_owner(self.server_dir)
        try:
            self._pg(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        self._save_state()

    def is_running(self) -> bool:
        if not self.data_dir.exists():
            return False
        return self._pg("pg_ctl", "-D", str(self.data_dir), "status", check=False).returncode == 0

    def start(self) -> PostgresServer:
        self.init()
        if self.is_running():
            self._load_state()
            self._wait_ready()
            if self.running_max_connections() == self.max_connections:
                self.ensure_database()
                return self
            # Started with another limit (before the stack's number changed): max_connections is
            # read at start-up only, so restart it; the data stays.
            self._pg("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
        self.port = self.port or free_port()
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.data_dir}"
        if not self.fsync:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        options += f" -c max_connections={self.max_connections}"
        self.log_file.touch()
        _chown_to_owner(self.log_file)
        self._pg(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-o",
            options,
            "-w",
            "-t",
            "30",
            "start",
        )
        self._save_state()
        self._wait_ready()
        self.ensure_database()
        return self

    def _wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.connect("postgres").close()
                return
            except Exception as exc:  # any failure means "not ready yet"
                if time.monotonic() > deadline:
                    raise PostgresError(
                        f"Postgres for {self.dbname} on port {self.port} did not accept "
                        f"connections: {exc}; see {self.log_file}"
                    ) from exc
                time.sleep(0.1)

    def connect(self, database: str | None = None) -> pg8000.native.Connection:
        # ssl_context=False: a loopback server of ours. pg8000's default (None) first asks the
        # server for TLS, building a default SSL context each time (the system CA store loaded:
        # ~0.1 s of CPU per connection), then falls back to plain text anyway.
        return pg8000.native.Connection(
            user=SUPERUSER,
            password=self.password,
            host="127.0.0.1",
            port=self.port,
            database=database or self.dbname,
            timeout=10,
            ssl_context=False,
        )

    def running_max_connections(self) -> int:
        conn = self.connect("postgres")
        try:
            return int(conn.run("SHOW max_connections")[0][0])
        finally:
            conn.close()

    def ensure_database(self) -> None:
        conn = self.connect("postgres")
        try:
            exists = conn.run("SELECT 1 FROM pg_database WHERE datname = :name", name=self.dbname)
            if not exists:
                conn.run(f'CREATE DATABASE "{self.dbname}"')
        finally:
            conn.close()

    def stop(self) -> None:
        if self.is_running():
            self._pg("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
        if os.geteuid() == 0 and self._legacy_data_dir is not None:
            _stop_by_pidfile(self._legacy_data_dir)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.server_dir, ignore_errors=True)
        shutil.rmtree(self.directory, ignore_errors=True)
