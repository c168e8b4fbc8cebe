"""The processes one checkout's `make up` started, found from the PIDs it recorded under .valerix.

Only this checkout's: other clouds (another clone, another engineer) may run on the same
machine, so nothing here looks processes up by name. The roots are the PID files `make up`
writes (LocalStack, the exporter), Postgres' own `postmaster.pid`, and the Lambda runtime
markers of our executor, Prometheus' PID file; everything below them (DynamoDB Local, the zygote, function
processes, Postgres backends) is found through the process tree. A recorded PID counts only if
its process still points at this state folder (command line or working directory), so a PID
reused by an unrelated process after a crash is never taken for ours.
"""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

import psutil

from valerix_localcloud.listen import is_loopback

LOCALSTACK = "LocalStack"
DYNAMODB_LOCAL = "DynamoDB Local"
LAMBDA = "Lambda runtime"
EXPORTER = "exporter"
PROMETHEUS = "Prometheus"


@dataclasses.dataclass(frozen=True)
class CloudProcess:
    component: str
    process: psutil.Process


@dataclasses.dataclass(frozen=True)
class Listener:
    component: str
    pid: int
    command: str
    protocol: str  # tcp | udp
    ip: str
    port: int

    @property
    def loopback(self) -> bool:
        return is_loopback(self.ip)

    def __str__(self) -> str:
        return f"{self.component} (pid {self.pid}, {self.command}) {self.protocol} {self.ip}:{self.port}"


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _database_dirs(state: Path) -> dict[str, Path]:
    """Each database's server folder: under .valerix, or (as root) a postgres-owned folder
    outside the checkout, recorded in .valerix/pg/<service>/server.json."""
    from valerix_localcloud.postgres import PostgresServer

    return {
        f"{service}_db": PostgresServer(state / "pg" / service, f"{service}_db").server_dir
        for service in ("order", "inventory")
    }


def recorded_roots(state: Path) -> list[tuple[str, int, Path]]:
    """(component, pid, folder its process must point at) for every PID `make up` (and what it
    started) wrote under `state`."""
    roots = []
    candidates = [
        (LOCALSTACK, state / "localstack" / "localstack.pid", state),
        (EXPORTER, state / "exporter" / "exporter.pid", state),
        (PROMETHEUS, state / "prometheus" / "prometheus.pid", state),
    ]
    candidates += [
        (component, server_dir / "data" / "postmaster.pid", server_dir)
        for component, server_dir in _database_dirs(state).items()
    ]
    for component, pid_file, marker in candidates:
        pid = _read_pid(pid_file)
        if pid:
            roots.append((component, pid, marker))
    runtimes = state / "localstack" / "runtimes"
    if runtimes.is_dir():
        roots += [(LAMBDA, int(entry.name), state) for entry in runtimes.iterdir() if entry.name.isdigit()]
    return roots


def _belongs_to(process: psutil.Process, marker_dir: Path) -> bool:
    marker = str(marker_dir.resolve())
    try:
        if marker in " ".join(process.cmdline()):
            return True
        return bool(process.cwd().startswith(marker))
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def _component_of(process: psutil.Process, inherited: str) -> str:
    try:
        cmdline = " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return inherited
    if "DynamoDBLocal" in cmdline or "valerix-loopback-launcher" in cmdline:
        return DYNAMODB_LOCAL
    if "zygote.py" in cmdline or "awslambdaric" in cmdline:
        return LAMBDA
    return inherited


def cloud_processes(state: Path) -> list[CloudProcess]:
    """Every live process of this checkout's local cloud, each with the component it serves."""
    found: dict[int, CloudProcess] = {}
    for component, pid, marker in recorded_roots(state):
        try:
            root = psutil.Process(pid)
        except psutil.NoSuchProcess:
            continue
        if pid in found or not _belongs_to(root, marker):
            continue
        found[pid] = CloudProcess(component, root)
        try:
            children = root.children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        for child in children:
            if child.pid not in found:
                found[child.pid] = CloudProcess(_component_of(child, component), child)
    return list(found.values())


def lambda_environments(processes: list[CloudProcess]) -> int:
    """Execution environments alive: function processes, i.e. `awslambdaric` processes and the
    zygote's forks (the zygote itself, the fork server, is no environment)."""
    count = 0
    for entry in processes:
        if entry.component != LAMBDA:
            continue
        try:
            cmdline = " ".join(entry.process.cmdline())
            parent = entry.process.parent()
            parent_cmdline = " ".join(parent.cmdline()) if parent else ""
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if "awslambdaric" in cmdline or ("zygote.py" in cmdline and "zygote.py" in parent_cmdline):
            count += 1
    return count


def listeners(processes: list[CloudProcess]) -> list[Listener]:
    """Every socket those processes listen on: TCP in LISTEN state, and UDP sockets not connected
    to a peer (they receive from anyone who can reach the address). A process whose sockets we
    may not read raises psutil.AccessDenied: never report "nothing" for what was not looked at."""
    result = []
    for entry in processes:
        try:
            command = entry.process.name()
            connections = entry.process.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        for conn in connections:
            if not conn.laddr:
                continue
            if conn.type == socket.SOCK_STREAM and conn.status == psutil.CONN_LISTEN:
                protocol = "tcp"
            elif conn.type == socket.SOCK_DGRAM and not conn.raddr:
                protocol = "udp"
            else:
                continue
            result.append(
                Listener(entry.component, entry.process.pid, command, protocol, conn.laddr.ip, conn.laddr.port)
            )
    return result
