"""VALERIX_LISTEN_ALL=1 is the one way to open the local cloud to the network, and it says so.

A focused check rather than a second full cloud: `make up` announces the exposure before it
starts anything, then a LocalStack of its own (throwaway state, free port) started the way
`make up` starts it shows the gateway on every interface while DynamoDB Local behind it stays on
loopback; switching the variable on a running LocalStack is refused instead of ignored.
"""

from __future__ import annotations

import socket

import psutil
import pytest

from valerix_localcloud import cli, listen, processes
from valerix_localcloud.clients import local_client
from valerix_localcloud.localstack_host import LocalStackError, LocalStackHost, prepare_dynamodb_local
from valerix_localcloud.postgres import free_port

pytestmark = pytest.mark.e2e


def test_make_up_announces_what_the_opt_in_exposes_before_starting_anything(monkeypatch, capsys):
    monkeypatch.setenv(listen.ENV_VAR, "1")
    started = []
    monkeypatch.setattr(cli, "prepare_dynamodb_local", lambda *args: started.append("first step") or 1 / 0)
    assert cli.main(["up"]) == 1
    err = capsys.readouterr().err
    assert started == ["first step"]
    assert err.index(f"WARNING: {listen.ENV_VAR}=1") < err.index("FAILED step")
    assert f"LocalStack on port {cli.PORT}: it accepts ANY credentials" in err
    assert f"exporter on port {cli.EXPORTER_PORT}" in err


def test_without_the_opt_in_make_up_says_nothing_about_exposure(monkeypatch, capsys):
    monkeypatch.delenv(listen.ENV_VAR, raising=False)
    monkeypatch.setattr(cli, "prepare_dynamodb_local", lambda *args: 1 / 0)
    assert cli.main(["up"]) == 1
    assert "WARNING" not in capsys.readouterr().err


@pytest.fixture
def exposed_localstack(tmp_path, monkeypatch):
    monkeypatch.setenv(listen.ENV_VAR, "1")
    state = tmp_path / ".valerix"
    host = LocalStackHost(state / "localstack", cli.LOCALSTACK_PYTHON, cli.PROJECT_PYTHON, port=free_port())
    prepare_dynamodb_local(host.fs_root, cli.STATE / "cache")
    try:
        host.start()
        yield state, host
    finally:
        host.stop()


def test_the_opt_in_opens_the_gateway_but_never_dynamodb_local(exposed_localstack, monkeypatch):
    state, host = exposed_localstack
    assert host.host == "0.0.0.0"
    local_client("dynamodb", host.endpoint).list_tables()  # starts DynamoDB Local

    sockets = processes.listeners(processes.cloud_processes(state))
    gateway = [s for s in sockets if s.component == processes.LOCALSTACK and s.port == host.port]
    assert [s.ip for s in gateway] == ["0.0.0.0"]
    dynamodb = [s for s in sockets if s.component == processes.DYNAMODB_LOCAL]
    assert dynamodb and all(s.loopback for s in dynamodb), [str(s) for s in dynamodb]
    others = [str(s) for s in sockets if s not in gateway and not s.loopback]
    assert others == []

    lan = [
        a.address
        for addrs in psutil.net_if_addrs().values()
        for a in addrs
        if a.family == socket.AF_INET and not a.address.startswith("127.")
    ]
    if lan:
        with socket.create_connection((lan[0], host.port), timeout=5):
            pass  # reachable from the network side, as asked

    # Dropping the variable while it runs must not leave it exposed behind a quiet "up".
    monkeypatch.delenv(listen.ENV_VAR)
    same = LocalStackHost(state / "localstack", cli.LOCALSTACK_PYTHON, cli.PROJECT_PYTHON, port=host.port)
    with pytest.raises(LocalStackError, match=r"already running on 0\.0\.0\.0.*`make down`"):
        same.start()
