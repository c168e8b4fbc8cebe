"""Nothing `make up` started listens beyond loopback (issue 14): a laptop on someone else's Wi-Fi
must not offer LocalStack (any credentials accepted, Lambdas run as this user), DynamoDB Local,
the databases or the exporter to the network.

The processes are this checkout's own, found from the PIDs `make up` recorded under .valerix
and their process trees (other clouds may run on the machine: they are not looked at).
"""

from __future__ import annotations

import socket
import uuid

import httpx
import psutil
import pytest

from infra.outputs import WEBSITE_BUCKET_NAME
from valerix_localcloud import cli, processes

pytestmark = pytest.mark.e2e


def _lan_addresses() -> list[str]:
    return [
        address.address
        for addresses in psutil.net_if_addrs().values()
        for address in addresses
        if address.family == socket.AF_INET and not address.address.startswith("127.")
    ]


def test_every_socket_of_the_local_cloud_is_loopback(localcloud):
    # DynamoDB Local starts on LocalStack's first DynamoDB call, the runtimes on the first invoke:
    # make sure both exist before looking.
    localcloud.client("dynamodb").list_tables()
    assert httpx.get(f"{localcloud.api_url}/products", timeout=30).status_code == 200

    cloud = processes.cloud_processes(cli.STATE)
    sockets = processes.listeners(cloud)
    components = {listener.component for listener in sockets}
    # Every server `make up` runs was found (else this test would pass by looking at nothing).
    assert {
        processes.LOCALSTACK,
        processes.DYNAMODB_LOCAL,
        processes.EXPORTER,
        processes.PROMETHEUS,
        "order_db",
        "inventory_db",
    } <= components, sorted(map(str, sockets))
    ports = {listener.port for listener in sockets}
    assert {cli.PORT, cli.EXPORTER_PORT, cli.prometheus().port} <= ports
    assert {int(db["port"]) for db in localcloud.outputs["databases"].values()} <= ports
    assert any(entry.component == processes.LAMBDA for entry in cloud)

    exposed = [str(listener) for listener in sockets if not listener.loopback]
    assert exposed == [], "listening beyond loopback:\n" + "\n".join(exposed)


def test_the_local_cloud_cannot_be_reached_from_the_network_side(localcloud):
    addresses = _lan_addresses()
    if not addresses:
        pytest.skip("this machine has no non-loopback IPv4 address to try")
    ports = [cli.PORT, cli.EXPORTER_PORT, cli.prometheus().port] + [
        int(db["port"]) for db in localcloud.outputs["databases"].values()
    ]
    reachable = []
    for address in addresses:
        for port in ports:
            with socket.socket() as sock:
                sock.settimeout(2)
                if sock.connect_ex((address, port)) == 0:
                    reachable.append(f"{address}:{port}")
    assert reachable == []


def test_the_exporter_lets_only_the_dashboard_read_it_from_a_browser(localcloud):
    bucket = localcloud.stack[WEBSITE_BUCKET_NAME]
    dashboard = localcloud.web_url.rstrip("/")
    assert bucket in dashboard
    allowed = httpx.get(f"{localcloud.metrics_url}/api/summary", headers={"Origin": dashboard}, timeout=10)
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == dashboard
    other = f"http://{uuid.uuid4().hex[:8]}.example"
    refused = httpx.get(f"{localcloud.metrics_url}/api/summary", headers={"Origin": other}, timeout=10)
    assert "access-control-allow-origin" not in refused.headers
    preflight = httpx.options(
        f"{localcloud.metrics_url}/api/summary",
        headers={"Origin": other, "Access-Control-Request-Method": "GET"},
        timeout=10,
    )
    assert preflight.status_code == 403
