"""Fixtures shared by every test folder.

`postgres` gives each test session real PostgreSQL servers (Debian's binaries, throwaway
clusters under .valerix/test-pg, fsync off); tests get a clean database per test via
`order_db` / `inventory_db` helpers in the component conftest.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from valerix_localcloud.postgres import PostgresServer

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_STATE = REPO_ROOT / ".valerix" / "test-pg" / str(os.getpid())


@pytest.fixture(scope="session")
def postgres_servers():
    """Two real Postgres servers, like the two RDS instances: {"order": ..., "inventory": ...}."""
    servers = {
        "order": PostgresServer(TEST_STATE / "order", "order_db", fsync=False),
        "inventory": PostgresServer(TEST_STATE / "inventory", "inventory_db", fsync=False),
    }
    for server in servers.values():
        server.start()
    yield servers
    for server in servers.values():
        server.destroy()
    shutil.rmtree(TEST_STATE, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _one_botocore_loader_per_process():
    """Every boto3/botocore session of the test process shares one data loader, as every client
    of a Lambda environment shares functions/common/aws.py's one session there. Tests reset the
    functions' clients between tests, and Powertools and the inventory client make sessions of
    their own: each new session parsed the JSON service models again, about half the CPU of the
    component tests. The models are read-only data; the loader caches them per instance."""
    import botocore.loaders
    import botocore.session

    loaders: dict = {}
    create_loader = botocore.loaders.create_loader

    def shared_loader(search_path_string=None):
        if search_path_string not in loaders:
            loaders[search_path_string] = create_loader(search_path_string)
        return loaders[search_path_string]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(botocore.session, "create_loader", shared_loader)
        yield


@pytest.fixture
def fake_aws_credentials(monkeypatch):
    """Never touch real AWS: fake credentials, no profile (the exporter tests under moto)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def prometheus_factory(tmp_path_factory):
    """``start(targets=[...], **kw) -> PrometheusServer`` (a real Prometheus, stopped afterwards).

    Reusable against any exporter URL, e.g. the local cloud's ``metrics_url``:
    ``prom = prometheus_factory(["127.0.0.1:9108"]); prom.wait_for("sum(valerix_order_outcomes_total)", ...)``
    """
    from tests.obs_prometheus import PrometheusServer

    started: list[PrometheusServer] = []

    def start(targets, **kwargs) -> PrometheusServer:
        server = PrometheusServer(targets, tmp_path_factory.mktemp("prometheus"), **kwargs)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


class LocalCloud:
    """What `make up` wrote to .valerix/outputs.json, plus clients that only talk to it."""

    def __init__(self, outputs: dict) -> None:
        self.outputs = outputs
        self.api_url: str = outputs["api_url"]
        self.web_url: str = outputs["web_url"]
        self.metrics_url: str = outputs["metrics_url"]
        self.admin_api_key: str = outputs["admin_api_key"]
        self.endpoint_url: str = outputs["endpoint_url"]
        self.stack: dict = outputs["stack"]

    def client(self, service: str, **config):
        from valerix_localcloud.clients import local_client

        return local_client(service, self.endpoint_url, **config)

    def db(self, service: str):
        """A pg8000 connection to the local cloud's own database of `service`."""
        import pg8000.native

        secret = self.outputs["databases"][service]
        return pg8000.native.Connection(
            user=secret["username"],
            password=secret["password"],
            host=secret["host"],
            port=int(secret["port"]),
            database=secret["dbname"],
            timeout=10,
            ssl_context=False,  # loopback, no TLS (see valerix_localcloud.postgres.PostgresServer.connect)
        )


@pytest.fixture(scope="session")
def localcloud():
    """The running local cloud; brought up here (and down afterwards) when it isn't running.

    Set VALERIX_KEEP_UP=1 to leave a cloud this fixture started running after the tests.
    """
    import json
    import subprocess
    import sys

    from valerix_localcloud import cli

    started_here = False
    if not (cli.OUTPUTS_FILE.exists() and cli.localstack().pid()):
        result = subprocess.run(
            [sys.executable, "-m", "valerix_localcloud", "up"], cwd=REPO_ROOT, env=_localcloud_env(), check=False
        )
        assert result.returncode == 0, "`make up` failed: see the step output above"
        started_here = True
    cloud = LocalCloud(json.loads(cli.OUTPUTS_FILE.read_text()))
    yield cloud
    if started_here and os.environ.get("VALERIX_KEEP_UP") != "1":
        subprocess.run(
            [sys.executable, "-m", "valerix_localcloud", "down"], cwd=REPO_ROOT, env=_localcloud_env(), check=False
        )


def _localcloud_env() -> dict:
    return dict(os.environ)


@pytest.fixture(autouse=True)
def _fresh_settings():
    """The functions parse their settings once per execution environment (functools.cache);
    each test is a new environment, whatever it did to os.environ."""
    yield
    from functions.common import settings

    settings.get_settings.cache_clear()
    settings.runtime.cache_clear()


# Placement under pytest-xdist (`make test`: -n 4 --dist loadgroup --no-loadscope-reorder).
# A group runs on one worker, in collection order; work starts in collection order. Groups are
# named from the node id alone, because the scheduler only sees node ids (and xdist 3.8's own
# `xdist_group` mark no longer reaches them under pytest 9.2: it rewrites `item._nodeid`, which
# pytest 9.2 no longer reads).
LOCALCLOUD_GROUP = "localcloud"
LOCALCLOUD_FILES = ("tests/e2e/", "tests/browser/", "tests/lifecycle/test_up_down.py")
NO_CLOUD_FILES = ("tests/browser/test_report_pages.py",)  # charts of synthetic runs, no cloud
FRESH_CLONE_FILE = "tests/lifecycle/test_up_fresh_clone.py"
SYNTH_GROUP = "cdk-synth"  # tests/infra: the CDK app synthesized once per target (session fixtures)


def xdist_group(nodeid: str) -> str | None:
    path = nodeid.split("::", 1)[0]
    if path == FRESH_CLONE_FILE:
        # Each builds and deploys a clone of its own (own ports, Postgres, folder): a worker each,
        # beside the local-cloud worker, since they take minutes.
        return f"fresh-clone-{nodeid.split('::', 1)[1]}"
    if path.startswith(LOCALCLOUD_FILES) and path not in NO_CLOUD_FILES:
        return LOCALCLOUD_GROUP  # one worker, one local cloud (the session's `localcloud` fixture)
    if path.startswith("tests/infra/"):
        return SYNTH_GROUP
    return None


RANKS = {LOCALCLOUD_GROUP: 0, SYNTH_GROUP: 2}


def _rank(item) -> tuple[int, bool]:
    group = xdist_group(item.nodeid)
    rank = 3 if group is None else RANKS.get(group, 1)  # fresh clones: 1
    return rank, "lifecycle" in Path(str(item.fspath)).parts  # the test that stops the cloud: last


def pytest_collection_modifyitems(config, items):
    """Local-cloud tests first (on one worker), the lifecycle test that stops the cloud last among
    them; the fresh-clone tests next, each on a worker of its own; the CDK synth tests together;
    the rest wherever a worker is free. Without xdist the same order, one by one."""
    _give_every_test_its_own_id(items)
    for item in items:
        if ("localcloud" in item.fixturenames or item.get_closest_marker("e2e")) and not (
            xdist_group(item.nodeid) == LOCALCLOUD_GROUP or item.nodeid.startswith(FRESH_CLONE_FILE)
        ):
            raise pytest.UsageError(
                f"{item.nodeid} runs on the local cloud: put it in tests/e2e/ "
                "(tests/conftest.py runs every local-cloud test on one worker)"
            )
    items.sort(key=_rank)


def _give_every_test_its_own_id(items) -> None:
    """pytest 9.2 builds a test's id from its callspec; schemathesis' per-operation cases have none,
    so every operation of one fuzz test had the same id. pytest-xdist schedules by id and ran only
    the first of them (11 cases silently skipped under TEST_WORKERS=2). Each such case gets its
    name's bracket (the operation) as the id's parameter -- through the private `_id`, the only
    place pytest 9.2 reads the id from -- and any id still shared stops the session."""
    counts = Counter(item.nodeid for item in items)
    for item in items:
        if counts[item.nodeid] > 1 and item.name.endswith("]") and "[" in item.name:
            item._id = item._id.with_params(item.name[item.name.index("[") + 1 : -1])
    shared = sorted(nodeid for nodeid, n in Counter(item.nodeid for item in items).items() if n > 1)
    if shared:
        raise pytest.UsageError(f"tests sharing an id (pytest-xdist would run one of each): {shared}")


@pytest.hookimpl(optionalhook=True, tryfirst=True)  # before xdist's own
def pytest_xdist_make_scheduler(config, log):
    """--dist loadgroup, with the groups of `xdist_group` above."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class PlacedScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group(nodeid) or nodeid

    return PlacedScheduling(config, log)
