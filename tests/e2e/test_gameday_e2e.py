"""`make gameday` against the local cloud (issue 17 item 6): a short run of the shipped scenario
writes a scorecard whose numbers are this run's (checked against both databases and the run's
own order records), an SLO the system cannot meet is reported as failing and named, and the
gremlin is all off afterwards — also when the run is interrupted in the middle of a fault.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from infra.outputs import WEBSITE_BUCKET_NAME
from tests.sigint import with_sigint_ignored

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
STATE = REPO / ".valerix"
SCORECARD, ORDERS = STATE / "gameday-scorecard.json", STATE / "gameday-orders.json"
SCALE = "0.25"  # the shipped scenario's ~3 min of load in ~50 s


@pytest.fixture(scope="module", autouse=True)
def leave_it_healthy(api):
    """Whatever happens here, the next module finds the gremlin off and order's circuit closed
    (a run that ends in a fault phase leaves the circuit open)."""
    yield
    api.gremlin_off()
    api.wait_circuit("closed", timeout=90, probe=True)


def gameday(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gameday.py"), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_gremlin_all_off(api) -> None:
    shown = api.http.get("/gremlin").json()
    assert not any(mode.get("enabled") for name, mode in shown.items() if isinstance(mode, dict)), shown


def published(localcloud) -> dict:
    s3 = localcloud.client("s3")
    body = s3.get_object(Bucket=localcloud.stack[WEBSITE_BUCKET_NAME], Key="gameday/scorecard.json")["Body"]
    return json.loads(body.read())


def rows(localcloud, service: str, sql: str, **params) -> list:
    conn = localcloud.db(service)
    try:
        return conn.run(sql, **params)
    finally:
        conn.close()


def test_a_short_game_day_scores_this_runs_own_orders(localcloud, api, closed_circuit):
    result = gameday("--scale", SCALE)
    card = json.loads(SCORECARD.read_text())
    failed = [s["name"] for s in card["slos"] if not s["pass"]]
    assert result.returncode == (1 if failed else 0), result.stdout + result.stderr
    for name in failed:  # each failing SLO is named; a passing one is not
        assert f"SLO failed: {name}" in result.stdout
    assert result.stdout.count("SLO failed:") == len(failed)
    # what the system guarantees whatever the machine's speed: nothing lost, stock exact, clean
    assert {s["id"]: s["pass"] for s in card["slos"] if s["id"] != "latency"} == {
        "lost": True,
        "stock": True,
        "reconcile": True,
    }, result.stdout

    # the shipped scenario's phases in order; the database outage really happened
    phases = {p["name"]: p for p in card["phases"]}
    assert list(phases) == [
        "steady",
        "inventory-latency",
        "database-outage",
        "database-slow",
        "crash-after-commit",
        "inventory-errors",
        "recovery",
    ]
    assert phases["database-outage"]["fault"] == "database unreachable"
    assert phases["database-outage"]["answers"]["202"] > 0  # the outage queued orders

    # the numbers are the run's own records ...
    records = json.loads(ORDERS.read_text())
    assert card["totals"]["orders"] == len(records) == sum(p["orders"] for p in card["phases"])
    assert Counter(r["phase"] for r in records) == {name: p["orders"] for name, p in phases.items() if p["orders"]}
    for name, phase in phases.items():
        assert sum(phase["answers"].values()) == phase["orders"], name
        assert phase["answers"]["202"] == sum(1 for r in records if r["phase"] == name and r["http_status"] == 202)

    # ... and agree with the databases: every order final as recorded, stock moved by the confirmed quantities
    products = list(card["stock"])
    stored = {
        row[0]: row
        for row in rows(
            localcloud,
            "order",
            "SELECT order_id, product_id, quantity, status FROM orders WHERE product_id = ANY(:p)",
            p=products,
        )
    }
    assert len(stored) == sum(1 for r in records if r["http_status"] in (201, 202, 409))
    for record in records:
        assert stored[record["order_id"]][3] == record["final_status"], record
    statuses = Counter(row[3] for row in stored.values())
    assert (card["totals"]["confirmed"], card["totals"]["rejected"]) == (statuses["CONFIRMED"], statuses["REJECTED"])
    stock = dict(
        rows(localcloud, "inventory", "SELECT product_id, stock FROM products WHERE product_id = ANY(:p)", p=products)
    )
    for product, numbers in card["stock"].items():
        confirmed = sum(row[2] for row in stored.values() if row[1] == product and row[3] == "CONFIRMED")
        assert numbers["final"] == stock[product]
        assert numbers["initial"] - numbers["final"] == numbers["confirmedQuantity"] == confirmed, product
    assert card["reconcile"]["status"] == "clean" and card["reconcile"]["counts"]["orders"] >= len(stored)

    # written for the operator, published where the dashboard reads it, the gremlin left off
    markdown = SCORECARD.with_suffix(".md").read_text()
    assert all(f"| {name} |" in markdown for name in phases)
    assert published(localcloud) == card
    assert_gremlin_all_off(api)


def test_an_slo_the_system_cannot_meet_fails_and_is_named(localcloud, api, closed_circuit, tmp_path):
    scenario = tmp_path / "impossible.toml"
    scenario.write_text("""
name = "impossible"
[load]
rate = 3
[slo]
answer_within_ms = 1   # no order is answered within a millisecond
[[phases]]
name = "steady"
seconds = 3
[[phases]]
name = "database-outage"
seconds = 4
gremlin = { database = { fault = "unreachable" } }
""")
    result = gameday("--scenario", str(scenario))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "SLO failed: answers within 0.001 s — 0.0 % (0 of " in result.stdout
    assert "SLO failed: lost orders" not in result.stdout  # only the failing one is named
    card = json.loads(SCORECARD.read_text())
    assert card["scenario"] == "impossible" and card["status"] == "fail"
    latency = next(s for s in card["slos"] if s["id"] == "latency")
    assert latency["pass"] is False and latency["actual"] == f"0.0 % (0 of {card['totals']['orders']})"
    assert card["totals"]["orders"] > 0
    assert "**FAIL: answers within 0.001 s**" in SCORECARD.with_suffix(".md").read_text()
    assert published(localcloud)["status"] == "fail"
    assert_gremlin_all_off(api)


@pytest.mark.usefixtures("gremlin_off_around")  # a run that failed to stop must not leave its outage on
@pytest.mark.parametrize(
    "stop_with, sigint_ignored_by_parent",
    [(signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGINT, True)],
    ids=["ctrl-c", "sigterm", "ctrl-c-with-sigint-ignored-at-start"],  # e.g. started under nohup
)
def test_an_interrupted_game_day_leaves_the_gremlin_off(
    localcloud, api, closed_circuit, tmp_path, stop_with, sigint_ignored_by_parent
):
    scenario = tmp_path / "long.toml"
    scenario.write_text("""
name = "long"
[load]
rate = 2
[[phases]]
name = "steady"
seconds = 2
[[phases]]
name = "outage"
seconds = 600
gremlin = { database = { fault = "unreachable" }, latency = { delayMs = 500, every = 5 } }
""")
    before = SCORECARD.read_bytes() if SCORECARD.exists() else None
    command = [sys.executable, "-u", str(REPO / "scripts" / "gameday.py"), "--scenario", str(scenario)]
    if sigint_ignored_by_parent:  # an ignored signal stays ignored across exec: Python installs no ctrl-C handler
        command = with_sigint_ignored(command)
    process = subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    try:
        deadline = time.monotonic() + 120
        while True:  # the outage phase announces itself after its gremlin was switched on
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line.startswith("==> outage:"):
                break
        shown = api.http.get("/gremlin").json()
        assert shown["database"]["enabled"] and shown["latency"]["enabled"], shown  # the fault is on now
        time.sleep(2)
        process.send_signal(stop_with)
        try:
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail(f"the game day went on for 60 s after {stop_with.name}:\n{process.stderr.read()[-3000:]}")
        assert code == 130
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "gremlin: all off" in process.stderr.read()
    assert_gremlin_all_off(api)
    assert (SCORECARD.read_bytes() if SCORECARD.exists() else None) == before  # no scorecard of a cut-short run


def test_make_up_seeds_the_scorecard_and_a_redeploy_keeps_the_latest(localcloud):
    """The dashboard's panel never meets a 404: `make up` puts this checkout's latest scorecard (or
    a "none yet" one) into a bucket without one, and leaves a newer one alone when it redeploys."""
    from urllib.parse import urlparse

    from valerix_localcloud import cli

    s3, bucket = localcloud.client("s3"), localcloud.stack[WEBSITE_BUCKET_NAME]

    def shown() -> dict:  # through the S3 website, as the browser fetches it
        host = f"{bucket}.s3-website.localhost.localstack.cloud:{urlparse(localcloud.endpoint_url).port}"
        response = httpx.get(f"{localcloud.endpoint_url}/gameday/scorecard.json", headers={"Host": host}, timeout=10)
        assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
        return response.json()

    before = s3.get_object(Bucket=bucket, Key="gameday/scorecard.json")["Body"].read()
    try:
        s3.delete_object(Bucket=bucket, Key="gameday/scorecard.json")
        cli.upload_website(localcloud.stack, localcloud.metrics_url)
        assert shown() == (json.loads(SCORECARD.read_text()) if SCORECARD.exists() else {"status": "none"})

        newer = {"status": "pass", "scenario": "e2e-marker", "slos": [], "phases": []}
        s3.put_object(
            Bucket=bucket, Key="gameday/scorecard.json", Body=json.dumps(newer).encode(), ContentType="application/json"
        )
        cli.upload_website(localcloud.stack, localcloud.metrics_url)
        assert shown() == newer
    finally:
        s3.put_object(
            Bucket=bucket,
            Key="gameday/scorecard.json",
            Body=before,
            ContentType="application/json",
            CacheControl="no-store",
        )
