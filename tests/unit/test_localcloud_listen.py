"""Loopback by default, LAN only by an explicit opt-in, and a socket finder that sees offenders."""

from __future__ import annotations

import subprocess
import sys

import pytest

from valerix_localcloud import listen, processes


@pytest.mark.parametrize("value", ["1", "true", "YES", " yes "])
def test_explicit_yes_opens_every_interface(value):
    assert listen.listen_all({listen.ENV_VAR: value})
    assert listen.bind_host({listen.ENV_VAR: value}) == "0.0.0.0"


@pytest.mark.parametrize("value", [None, "", "0", "false", "no", "2", "on-the-lan-please"])
def test_anything_else_stays_on_loopback(value):
    environ = {} if value is None else {listen.ENV_VAR: value}
    assert not listen.listen_all(environ)
    assert listen.bind_host(environ) == "127.0.0.1"


@pytest.mark.parametrize(
    "address, loopback",
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("::ffff:10.0.0.1", False),
        ("fe80::1%eth0", False),
        ("", False),
        ("localhost", False),
    ],
)
def test_loopback_addresses(address, loopback):
    assert listen.is_loopback(address) is loopback


def test_the_warning_names_what_is_exposed(monkeypatch, capsys):
    monkeypatch.delenv(listen.ENV_VAR, raising=False)
    assert listen.announce(4566, 9108) is False
    assert capsys.readouterr().err == ""

    monkeypatch.setenv(listen.ENV_VAR, "1")
    assert listen.announce(4566, 9108) is True
    warning = capsys.readouterr().err
    for words in (
        "WARNING",
        "every network interface",
        "port 4566",
        "ANY credentials",
        "Lambda functions",
        "Secrets Manager",
        "admin API key",
        "gremlin",
        "exporter on port 9108",
        f"Unset {listen.ENV_VAR}",
    ):
        assert words in warning, words


@pytest.fixture
def fake_cloud(tmp_path):
    """A state folder whose recorded 'exporter' listens on every interface and whose
    'LocalStack' has a child listening on loopback."""
    state = tmp_path / ".valerix"
    (state / "exporter").mkdir(parents=True)
    (state / "localstack").mkdir(parents=True)
    server = (
        "import socket,sys,time\n"
        "s=socket.socket(); s.bind((sys.argv[1], 0)); s.listen()\n"
        "print(s.getsockname()[1], flush=True); time.sleep(120)\n"
    )
    parent = (
        "import subprocess,sys,time\n"
        "c=subprocess.Popen([sys.executable,'-c',sys.argv[1],'127.0.0.1'],stdout=sys.stdout)\n"
        "time.sleep(120)\n"
    )
    started = [
        subprocess.Popen(
            [sys.executable, "-c", server, "0.0.0.0"], cwd=state / "exporter", stdout=subprocess.PIPE, text=True
        ),
        subprocess.Popen(
            [sys.executable, "-c", parent, server], cwd=state / "localstack", stdout=subprocess.PIPE, text=True
        ),
    ]
    ports = [int(p.stdout.readline()) for p in started if p.stdout is not None]
    (state / "exporter" / "exporter.pid").write_text(str(started[0].pid))
    (state / "localstack" / "localstack.pid").write_text(str(started[1].pid))
    yield state, ports
    for process in started:
        for child in processes.psutil.Process(process.pid).children(recursive=True):
            child.kill()
        process.kill()
        process.wait()


def test_the_socket_finder_sees_every_recorded_process_and_its_children(fake_cloud):
    state, (exposed_port, child_port) = fake_cloud
    found = {
        (item.component, item.ip, item.port, item.loopback)
        for item in processes.listeners(processes.cloud_processes(state))
    }
    assert ("exporter", "0.0.0.0", exposed_port, False) in found
    assert ("LocalStack", "127.0.0.1", child_port, True) in found


def test_a_recorded_pid_of_an_unrelated_process_is_not_ours(tmp_path):
    state = tmp_path / ".valerix"
    (state / "exporter").mkdir(parents=True)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=tmp_path)
    try:
        (state / "exporter" / "exporter.pid").write_text(str(stranger.pid))
        assert processes.cloud_processes(state) == []
    finally:
        stranger.kill()
        stranger.wait()


def _running_host(tmp_path, monkeypatch, listen_all: bool, recorded: str | None):
    """A LocalStackHost whose recorded LocalStack 'runs' (the pid is this test process)."""
    import os

    from valerix_localcloud.localstack_host import LocalStackHost

    monkeypatch.setenv(listen.ENV_VAR, "1" if listen_all else "0")
    host = LocalStackHost(tmp_path / "localstack", tmp_path / "python", tmp_path / "python", port=1)
    host.state_dir.mkdir(parents=True)
    host.pid_file.write_text(str(os.getpid()))
    if recorded is not None:
        host.host_file.write_text(recorded)
    return host


@pytest.mark.parametrize(
    "listen_all, recorded, message",
    [
        (False, "0.0.0.0", r"already running on 0\.0\.0\.0:1, not 127\.0\.0\.1: run `make down`"),
        (True, "127.0.0.1", r"already running on 127\.0\.0\.1:1, not 0\.0\.0\.0: run `make down`"),
        (False, None, r"started by an older `make up`, which listened on every network interface"),
    ],
)
def test_a_running_localstack_on_another_interface_is_never_reused(
    tmp_path, monkeypatch, listen_all, recorded, message
):
    from valerix_localcloud.localstack_host import LocalStackError

    host = _running_host(tmp_path, monkeypatch, listen_all, recorded)
    with pytest.raises(LocalStackError, match=message):
        host.start(timeout=1)


@pytest.fixture
def taken_port():
    """A port another program answers on (a listening socket of this test)."""
    import socket

    with socket.socket() as other:
        other.bind((listen.LOOPBACK, 0))
        other.listen()
        yield other.getsockname()[1]


def test_localstack_never_starts_on_a_port_another_program_answers(tmp_path, taken_port):
    """Another checkout's local cloud on the port would pass the health check: `make up` would
    then deploy into it. It is refused, naming the port and the way out, and nothing is started."""
    from valerix_localcloud.localstack_host import LocalStackHost

    host = LocalStackHost(tmp_path / "localstack", tmp_path / "python", tmp_path / "python", port=taken_port)
    with pytest.raises(
        listen.PortTaken, match=rf"port {taken_port} is taken by another program.*VALERIX_LOCALSTACK_PORT"
    ):
        host.start(timeout=1)
    assert host.pid() is None and not host.pid_file.exists()


def test_the_exporter_never_starts_on_a_port_another_program_answers(tmp_path, monkeypatch, taken_port):
    """Its health check (GET /metrics) would be answered by the other exporter."""
    from valerix_localcloud import cli

    monkeypatch.setattr(cli, "EXPORTER_PORT", taken_port)
    monkeypatch.setattr(cli, "exporter_dir", lambda: tmp_path / "exporter")
    started = []
    monkeypatch.setattr(cli.subprocess, "Popen", lambda *args, **kwargs: started.append(args))
    with pytest.raises(listen.PortTaken, match=rf"port {taken_port} is taken.*VALERIX_EXPORTER_PORT"):
        cli.start_exporter({})
    assert started == []


def test_prometheus_never_starts_on_a_port_another_program_answers(tmp_path, monkeypatch, taken_port):
    """Its readiness check would be answered by the other checkout's Prometheus."""
    from valerix_localcloud import prometheus

    monkeypatch.setattr(prometheus, "binary", lambda: "/usr/bin/prometheus")
    started = []
    monkeypatch.setattr(prometheus.subprocess, "Popen", lambda *args, **kwargs: started.append(args))
    server = prometheus.LocalPrometheus(tmp_path / ".valerix", taken_port, "127.0.0.1:1")
    with pytest.raises(listen.PortTaken, match=rf"port {taken_port} is taken.*{prometheus.PORT_VAR}"):
        server.start(timeout=1)
    assert started == [] and not server.pid_file.exists()
