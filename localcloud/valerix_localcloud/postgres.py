"""Throwaway or long-lived local PostgreSQL servers standing in for RDS.

Used by `make up` (two servers: order_db and inventory_db) and by the test-suite
(fixtures that need a real Postgres). Binaries come from Debian's postgresql package
(`/usr/lib/postgresql/<v>/bin`) or from $PATH.

initdb/pg_ctl refuse to run as root, so when we are root every server command runs as the
`postgres` system user in a directory that user owns.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pg8000.native

SUPERUSER = "valerix"


class PostgresError(RuntimeError):
    """A local Postgres server could not be created, started or stopped."""


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
        "PostgreSQL server binaries not found. Install them with "
        "`apt-get install -y postgresql` (or set VALERIX_PG_BIN to the folder holding pg_ctl)."
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_as_owner_prefix() -> list[str]:
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise PostgresError(
            "Running as root but there is no `postgres` system user to run the server as; "
            "install Debian's postgresql package or run as an unprivileged user."
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

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def state_file(self) -> Path:
        return self.directory / "server.json"

    @property
    def log_file(self) -> Path:
        return self.directory / "server.log"

    def secret(self) -> dict:
        """The same JSON shape as an RDS-generated Secrets Manager secret."""
        return {
            "engine": "postgres",
            "host": "127.0.0.1",
            "port": self.port,
            "username": SUPERUSER,
            "password": self.password,
            "dbname": self.dbname,
        }

    def _pg(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = _run_as_owner_prefix() + [str(find_bin_dir() / tool), *args]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise PostgresError(
                f"`{tool}` failed for {self.dbname} ({result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}; see {self.log_file}"
            )
        return result

    def _load_state(self) -> None:
        if self.state_file.exists():
            state = json.loads(self.state_file.read_text())
            self.password = state["password"]
            self.port = self.port or state["port"]

    def _save_state(self) -> None:
        self.state_file.write_text(json.dumps({"password": self.password, "port": self.port}))
        self.state_file.chmod(0o600)

    def init(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._load_state()
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.password = self.password or secrets.token_urlsafe(18)
        pwfile = self.directory / "pwfile"
        pwfile.write_text(self.password + "\n")
        self.data_dir.mkdir(exist_ok=True)
        _chown_to_owner(self.directory)
        try:
            self._pg(
                "initdb", "-D", str(self.data_dir), "-U", SUPERUSER, f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8",
                "--locale=C.UTF-8",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        self._save_state()

    def is_running(self) -> bool:
        if not self.data_dir.exists():
            return False
        return self._pg("pg_ctl", "-D", str(self.data_dir), "status", check=False).returncode == 0

    def start(self) -> "PostgresServer":
        self.init()
        if self.is_running():
            self._load_state()
            self._wait_ready()
            self.ensure_database()
            return self
        self.port = self.port or free_port()
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.data_dir}"
        if not self.fsync:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        options += " -c max_connections=200"
        self.log_file.touch()
        _chown_to_owner(self.log_file)
        self._pg(
            "pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-o", options,
            "-w", "-t", "30", "start",
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
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
                if time.monotonic() > deadline:
                    raise PostgresError(
                        f"Postgres for {self.dbname} on port {self.port} did not accept "
                        f"connections: {exc}; see {self.log_file}"
                    ) from exc
                time.sleep(0.1)

    def connect(self, database: str | None = None) -> pg8000.native.Connection:
        return pg8000.native.Connection(
            user=SUPERUSER, password=self.password, host="127.0.0.1", port=self.port,
            database=database or self.dbname, timeout=10,
        )

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

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
