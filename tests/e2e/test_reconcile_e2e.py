"""`make reconcile` on the local cloud (issue 17 item 4): the deployed reconcile function reads
both databases with their reader logins; the script exits 0 when clean and non-zero, naming the
order, when a reservation is removed behind the system's back.

Other e2e tests share this cloud and may leave problems of their own (reservations made by
invoking the reserve function directly, orders left QUEUED on purpose). So this module makes
its own product and orders, asserts only about them, and proves the clean case on a window that
holds nothing but its own orders (`--since`, taken just before they were placed). The one
reservation it removes is put back exactly as it was, and checked clean again.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from infra.outputs import RECONCILE_FUNCTION_NAME

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
REPORT = REPO / ".valerix" / "reconcile-report.json"


def make_reconcile(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-s", "reconcile", f"RECONCILE_ARGS={' '.join(args)}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ},
        check=False,
    )


@pytest.fixture(scope="module")
def own_orders(localcloud, api):
    if RECONCILE_FUNCTION_NAME not in localcloud.stack:
        pytest.fail("the reconcile function is not deployed (no ReconcileFunctionName output): run `make up`")
    api.gremlin_off()
    conn = localcloud.db("order")
    try:
        started = conn.run("SELECT clock_timestamp() - interval '1 second'")[0][0]
    finally:
        conn.close()
    product = api.new_product(stock=10, name="Reconcile e2e")
    ids = []
    for quantity in (2, 3):
        response = api.order(product, quantity)
        assert response.status_code in (201, 202), response.text
        ids.append(response.json()["orderId"])
    final = api.wait_final(ids)
    assert {o["status"] for o in final.values()} == {"CONFIRMED"}, final
    return started.isoformat(), ids


def test_make_reconcile_is_clean_for_a_consistent_set_of_orders(own_orders):
    since, _ids = own_orders
    result = make_reconcile("--since", since)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "clean: no problems" in result.stdout
    report = json.loads(REPORT.read_text())
    assert report["status"] == "clean" and report["since"] is not None
    assert report["counts"]["orders"] >= 2
    # written for the operator only
    for path in (REPORT, REPORT.with_suffix(".md")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_a_reservation_removed_behind_its_back_is_named(localcloud, own_orders):
    since, (victim, bystander) = own_orders
    conn = localcloud.db("inventory")
    try:
        columns = ["order_id", "product_id", "quantity", "status", "reason", "created_at"]
        [row] = conn.run(f"SELECT {', '.join(columns)} FROM reservations WHERE order_id = :o", o=victim)
        conn.run("DELETE FROM reservations WHERE order_id = :o", o=victim)
        try:
            full = make_reconcile()  # everything: other tests' leftovers may be named too
            windowed = make_reconcile("--since", since)
        finally:
            conn.run(
                f"INSERT INTO reservations ({', '.join(columns)}) VALUES (:a, :b, :c, :d, :e, :f)",
                **dict(zip("abcdef", row, strict=True)),
            )
    finally:
        conn.close()

    for result in (full, windowed):
        assert result.returncode != 0, result.stdout
        lines = [line for line in result.stdout.splitlines() if victim in line]
        assert lines == [f"missing_reservation: order {victim} is CONFIRMED (2 x {row[1]}) but has no reservation"], (
            result.stdout
        )
        assert bystander not in result.stdout
    assert "1 problem(s); nothing was repaired" in windowed.stdout
    report = json.loads(REPORT.read_text())
    assert [p["orderId"] for p in report["problems"]] == [victim]
    assert victim in REPORT.with_suffix(".md").read_text()

    # the run's gauge reaches the real Prometheus of `make up`: the alert fires for the kind
    wait_for_alert(localcloud.outputs["prometheus_url"], "missing_reservation")

    # put back exactly as it was: clean again
    again = make_reconcile("--since", since)
    assert again.returncode == 0, again.stdout + again.stderr


def wait_for_alert(prometheus_url: str, kind: str, timeout: float = 90.0) -> None:
    deadline, alerts = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        alerts = httpx.get(f"{prometheus_url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        if any(
            a["labels"].get("alertname") == "ReconcileProblems"
            and a["labels"].get("kind") == kind
            and a["state"] == "firing"
            for a in alerts
        ):
            return
        time.sleep(1)
    pytest.fail(f"ReconcileProblems{{kind={kind}}} never fired: {alerts}")


def test_a_bad_option_is_refused_before_anything_runs():
    result = make_reconcile("--stale-minutes", "0")
    assert result.returncode != 0
    assert "--stale-minutes must be >= 1" in result.stderr


def test_the_deployed_reconciler_logs_in_as_the_reader_roles(localcloud, own_orders):
    """Its warm environment keeps its connections: they belong to `<service>_backup` (SELECT only)."""
    assert make_reconcile("--since", own_orders[0]).returncode == 0
    for service in ("order", "inventory"):
        conn = localcloud.db(service)
        try:
            users = {
                r[0]
                for r in conn.run("SELECT usename FROM pg_stat_activity WHERE application_name = 'valerix-reconcile'")
            }
        finally:
            conn.close()
        assert users == {f"{service}_backup"}, (service, users)
