"""`make status`: every component of this checkout's local cloud, its state and where it answers.

Each check really asks the component (LocalStack's health endpoint, a Postgres connection, the
exporter's /healthz, a TCP connect to DynamoDB Local) rather than trusting a PID file.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from valerix_localcloud import processes
from valerix_localcloud import prometheus as prometheus_server
from valerix_localcloud.listen import accepts_connections
from valerix_localcloud.localstack_host import LocalStackHost
from valerix_localcloud.postgres import PostgresServer

UP, DOWN, IDLE = "up", "down", "idle"


@dataclasses.dataclass
class Component:
    name: str
    state: str
    url: str = ""
    detail: str = ""


def _http_json(url: str, timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return exc.code, {}


def localstack_components(ls: LocalStackHost) -> list[Component]:
    pid = ls.pid()
    if not pid:
        return [Component("LocalStack", DOWN, ls.endpoint, "not running (`make up`)")]
    try:
        _, health = _http_json(f"{ls.endpoint}/_localstack/health")
    except (OSError, ValueError) as exc:
        return [Component("LocalStack", DOWN, ls.endpoint, f"pid {pid} does not answer: {exc}")]
    version = health.get("version", "?")
    found = [Component("LocalStack", UP, ls.endpoint, f"pid {pid}, version {version}")]
    # "running" = started and serving; "available" = would start on first use (not listed).
    for service, state in sorted(health.get("services", {}).items()):
        if state != "available":
            found.append(Component(f"  {service}", UP if state == "running" else DOWN, "", state))
    return found


def dynamodb_local_component(cloud: list[processes.CloudProcess]) -> Component:
    for entry in cloud:
        if entry.component != processes.DYNAMODB_LOCAL:
            continue
        try:
            args = entry.process.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        port = int(args[args.index("-port") + 1]) if "-port" in args else 0
        url = f"http://127.0.0.1:{port}" if port else ""
        state = UP if port and accepts_connections(port) else DOWN
        return Component("DynamoDB Local", state, url, f"pid {entry.process.pid}, behind LocalStack")
    return Component("DynamoDB Local", IDLE, "", "not started (LocalStack starts it on the first DynamoDB call)")


def database_component(server: PostgresServer) -> Component:
    if not server.data_dir.exists():
        return Component(server.dbname, DOWN, "", f"no cluster in {server.data_dir}")
    try:
        state = json.loads(server.state_file.read_text())
        server.password, server.port = state["password"], state["port"]
    except (OSError, ValueError, KeyError):
        return Component(server.dbname, DOWN, "", f"no state in {server.state_file}")
    url = f"postgresql://{server.secret()['username']}@127.0.0.1:{server.port}/{server.dbname}"
    try:
        server.connect().close()
    except Exception as exc:  # noqa: BLE001 - any failure means "not serving"
        return Component(server.dbname, DOWN, url, f"no connection: {exc.__class__.__name__}")
    return Component(server.dbname, UP, url, "accepts connections")


def exporter_component(url: str, pid_file: Path) -> Component:
    try:
        status, body = _http_json(f"{url}/healthz")
    except (OSError, ValueError):
        running = "pid file present" if pid_file.exists() else "not running"
        return Component("exporter", DOWN, url, f"does not answer ({running})")
    groups = len(body.get("logGroups", []))
    return Component(
        "exporter",
        UP if status == 200 else DOWN,
        url,
        f"{body.get('status', '?')}, {body.get('polls', 0)} polls, {groups} log groups",
    )


def prometheus_component(state_dir: Path) -> Component:
    server = prometheus_server.LocalPrometheus(state_dir, prometheus_server.port(), "")
    answers, detail = server.health()
    return Component("Prometheus", UP if answers else DOWN, server.url, detail)


def collect(
    state_dir: Path,
    ls: LocalStackHost,
    databases: list[PostgresServer],
    exporter_url: str,
    outputs: dict[str, Any] | None,
) -> list[Component]:
    cloud = processes.cloud_processes(state_dir)
    components = localstack_components(ls)
    dynamodb = dynamodb_local_component(cloud)
    if components[0].state == DOWN and dynamodb.state == IDLE:
        dynamodb = Component(dynamodb.name, DOWN, "", "LocalStack is down")
    components.append(dynamodb)
    components += [database_component(server) for server in databases]
    components.append(exporter_component(exporter_url, state_dir / "exporter" / "exporter.pid"))
    components.append(prometheus_component(state_dir))
    environments = processes.lambda_environments(cloud)
    components.append(Component("Lambda environments", UP if environments else IDLE, "", f"{environments} running"))
    if outputs:
        components.append(Component("API", "", outputs.get("api_url", ""), "API Gateway REST API"))
        components.append(Component("dashboard", "", outputs.get("web_url", ""), "S3 website"))
    return components


def render(components: list[Component]) -> str:
    width = max(len(c.name) for c in components)
    lines = [f"{'component':{width}}  {'state':5}  url / detail"]
    for c in components:
        where = "  ".join(part for part in (c.url, f"({c.detail})" if c.detail else "") if part)
        lines.append(f"{c.name:{width}}  {c.state:5}  {where}".rstrip())
    return "\n".join(lines)


def healthy(components: list[Component]) -> bool:
    """Everything up (idle parts, started on demand, are fine)."""
    return all(c.state != DOWN for c in components)
