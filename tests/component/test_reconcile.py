"""Reconciliation (issue 17 item 4) against real Postgres: each kind of problem is found and
named, a consistent system is clean, in-flight orders are not problems, and nothing is changed.

The function runs as it does in the cloud: its own settings (reader secrets of both databases,
the DLQ URLs), the reader logins `<service>_backup` (SELECT only), moto's SQS for the DLQs.
"""

from __future__ import annotations

import json
import uuid

import pytest

from tests.component.conftest import aws_client, lambda_context


@pytest.fixture
def reconcile(valerix, monkeypatch):
    from functions.common import db
    from functions.reconcile import handler, settings

    sqs = aws_client("sqs")
    dlqs = {
        name: sqs.create_queue(QueueName=f"valerix-test-{name}-dlq")["QueueUrl"] for name in ("inventory", "completion")
    }
    monkeypatch.setenv("ORDER_DB_SECRET_ARN", valerix.secret_arns["order"]["reader"])
    monkeypatch.setenv("INVENTORY_DB_SECRET_ARN", valerix.secret_arns["inventory"]["reader"])
    monkeypatch.setenv("DLQ_URLS", ",".join(f"{k}={v}" for k, v in dlqs.items()))
    monkeypatch.delenv("RECONCILE_STALE_MINUTES", raising=False)
    settings.get_settings.cache_clear()

    def run(event: dict | None = None) -> dict:
        # a fresh pool per run: the reader role's own connections, never an app one reused
        db.get_database.cache_clear()
        return handler.reconcile_handler(event or {}, lambda_context("valerix-reconcile"))

    run.dlqs = dlqs
    yield run
    settings.get_settings.cache_clear()


def confirmed(valerix, product="widget", quantity=2) -> str:
    reply = valerix.order(product, quantity)
    assert reply.status == 201, reply.body
    return reply.body["orderId"]


def named(report: dict, kind: str) -> set[str]:
    return {p.get("orderId") or p.get("queue") for p in report["problems"] if p["kind"] == kind}


def test_clean_system_is_clean(valerix, reconcile):
    confirmed(valerix)
    confirmed(valerix, "gadget", 1)
    valerix.set_stock("doohickey", 0)
    assert valerix.order("doohickey", 1).status == 409  # REJECTED reservation + REJECTED order: fine

    report = reconcile()

    assert report["status"] == "clean", report["problems"]
    assert report["problems"] == []
    assert report["counts"] == {"orders": 3, "reservations": 3}
    assert report["dlqDepths"] == {"inventory": 0, "completion": 0}
    assert set(report["problemCounts"].values()) == {0}


def test_missing_reservation_names_the_order_and_changes_nothing(valerix, reconcile):
    victim, other = confirmed(valerix), confirmed(valerix)
    valerix.inventory_db.run("DELETE FROM reservations WHERE order_id = :o", o=victim)
    before = valerix.snapshot()

    report = reconcile()

    assert report["status"] == "problems"
    assert named(report, "missing_reservation") == {victim}
    assert report["problemCounts"]["missing_reservation"] == 1
    assert other not in json.dumps(report["problems"])
    [problem] = report["problems"]
    assert victim in problem["message"] and "CONFIRMED" in problem["message"]
    assert valerix.snapshot() == before  # repairs nothing


@pytest.mark.parametrize(
    "change, words",
    [
        ("UPDATE reservations SET quantity = quantity + 1 WHERE order_id = :o", "quantity 3 instead of 2"),
        ("UPDATE reservations SET product_id = 'gadget' WHERE order_id = :o", "product 'gadget' instead of 'widget'"),
        ("UPDATE reservations SET status = 'REJECTED' WHERE order_id = :o", "status 'REJECTED' instead of 'RESERVED'"),
    ],
)
def test_reservation_of_another_product_quantity_or_status(valerix, reconcile, change, words):
    order_id = confirmed(valerix, "widget", 2)
    valerix.inventory_db.run(change, o=order_id)

    report = reconcile()

    assert named(report, "reservation_mismatch") == {order_id}
    assert words in report["problems"][0]["message"]


def test_reserved_stock_for_a_rejected_order(valerix, reconcile):
    order_id = confirmed(valerix)
    valerix.order_db.run("UPDATE orders SET status = 'REJECTED' WHERE order_id = :o", o=order_id)

    report = reconcile()

    assert named(report, "reservation_without_confirmed_order") == {order_id}


def test_reservation_without_any_order(valerix, reconcile):
    order_id = confirmed(valerix)
    valerix.order_db.run("DELETE FROM orders WHERE order_id = :o", o=order_id)
    stray = f"stray-{uuid.uuid4()}"
    valerix.inventory_db.run(
        "INSERT INTO reservations (order_id, product_id, quantity, status, reason) "
        "VALUES (:o, 'gizmo', 1, 'REJECTED', 'insufficient stock')",
        o=stray,
    )

    report = reconcile()

    assert named(report, "orphan_reservation") == {order_id, stray}


def insert_order(valerix, status: str, minutes_ago: float, product="widget", quantity=1) -> str:
    order_id = str(uuid.uuid4())
    valerix.order_db.run(
        "INSERT INTO orders (order_id, product_id, quantity, status, created_at, updated_at) "
        "VALUES (:o, :p, :q, :s, clock_timestamp() - make_interval(secs => :m * 60), clock_timestamp())",
        o=order_id,
        p=product,
        q=quantity,
        s=status,
        m=minutes_ago,
    )
    return order_id


def test_orders_pending_or_queued_too_long(valerix, reconcile):
    old_pending = insert_order(valerix, "PENDING", 6)
    old_queued = insert_order(valerix, "QUEUED", 30)
    insert_order(valerix, "QUEUED", 2)  # young: in flight
    insert_order(valerix, "CONFIRMED", 60, quantity=1)  # final; its missing reservation is another kind

    report = reconcile()

    assert named(report, "stuck_order") == {old_pending, old_queued}
    message = next(p["message"] for p in report["problems"] if p.get("orderId") == old_queued)
    assert "QUEUED for 30 min (limit 5 min)" in message
    # the limit is configurable: per run, and by the environment
    assert named(reconcile({"staleMinutes": 10}), "stuck_order") == {old_queued}
    valerix.monkeypatch.setenv("RECONCILE_STALE_MINUTES", "1")
    from functions.reconcile import settings

    settings.get_settings.cache_clear()
    assert len(named(reconcile(), "stuck_order")) == 3


def test_reservation_of_an_order_in_flight_is_not_a_problem(valerix, reconcile):
    """The reservation committed, the completion message has not arrived yet."""
    order_id = insert_order(valerix, "QUEUED", 1, "gizmo", 3)
    valerix.inventory_db.run(
        "INSERT INTO reservations (order_id, product_id, quantity, status) VALUES (:o, 'gizmo', 3, 'RESERVED')",
        o=order_id,
    )
    assert reconcile()["status"] == "clean"


def test_dead_letter_queues_must_be_empty(valerix, reconcile):
    aws_client("sqs").send_message(QueueUrl=reconcile.dlqs["completion"], MessageBody="{}")

    report = reconcile()

    assert named(report, "dlq_not_empty") == {"completion"}
    assert report["dlqDepths"] == {"inventory": 0, "completion": 1}


def test_an_order_written_between_the_two_reads_is_not_an_orphan(valerix, reconcile, monkeypatch):
    """Orders are read before reservations: an order (and its reservation) created in between
    shows up as a reservation without an order, which the re-read resolves."""
    from functions.reconcile import sources

    original = sources.reservations

    def reservations_after_a_new_order(conn, since=None):
        confirmed(valerix, "gadget", 1)
        # the reservations' snapshot starts now, after the new order committed
        yield from original(conn, since)

    monkeypatch.setattr(sources, "reservations", reservations_after_a_new_order)
    report = reconcile()
    assert report["status"] == "clean", report["problems"]
    assert report["counts"] == {"orders": 1, "reservations": 1}


def test_order_ids_in_any_case_and_many_batches_merge_correctly(valerix, reconcile, monkeypatch):
    """The merge join relies on both servers sorting alike (COLLATE "C") and on cursor batches."""
    from functions.reconcile import sources

    monkeypatch.setattr(sources, "FETCH_BATCH", 3)
    ids = ["Zeta", "alpha", "Alpha", "béta", "beta", "_x", "0-1", "ä"] + [str(uuid.uuid4()) for _ in range(7)]
    for order_id in ids:
        valerix.order_db.run(
            "INSERT INTO orders (order_id, product_id, quantity, status) VALUES (:o, 'widget', 1, 'CONFIRMED')",
            o=order_id,
        )
        valerix.inventory_db.run(
            "INSERT INTO reservations (order_id, product_id, quantity, status) VALUES (:o, 'widget', 1, 'RESERVED')",
            o=order_id,
        )

    report = reconcile()

    assert report["status"] == "clean", report["problems"]
    assert report["counts"] == {"orders": len(ids), "reservations": len(ids)}


def test_metrics_count_every_kind_and_the_run(valerix, reconcile, capsys):
    order_id = confirmed(valerix)
    valerix.inventory_db.run("DELETE FROM reservations WHERE order_id = :o", o=order_id)
    capsys.readouterr()

    reconcile()

    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    value = lambda v: v[0] if isinstance(v, list) else v  # noqa: E731 - Powertools writes [value]
    problems = {d["kind"]: value(d["ReconcileProblems"]) for d in docs if "ReconcileProblems" in d}
    from functions.reconcile.checks import KINDS

    assert problems == {kind: (1 if kind == "missing_reservation" else 0) for kind in KINDS}
    assert all(d["service"] == "reconcile" for d in docs)
    [run] = [d for d in docs if "ReconcileRuns" in d]
    assert run["outcome"] == "problems" and value(run["ReconcileRuns"]) == 1


def test_the_reconciler_logs_in_read_only(valerix, reconcile, monkeypatch):
    """It connects with the reader secrets: a write through its own connection is refused."""
    from pg8000.exceptions import DatabaseError

    from functions.reconcile import sources

    attempts = []

    def try_to_write(conn, since=None):
        attempts.append(conn.run("SELECT current_user")[0][0])
        with pytest.raises(DatabaseError):  # read-only transaction (and no INSERT grant)
            conn.run(
                "INSERT INTO reservations (order_id, product_id, quantity, status) "
                "VALUES ('x', 'widget', 1, 'RESERVED')"
            )
        yield from ()

    monkeypatch.setattr(sources, "reservations", try_to_write)
    with pytest.raises(Exception, match="failed transaction"):
        reconcile()  # the aborted transaction cannot go on: the run fails rather than report half
    assert attempts == ["inventory_backup"]
    assert valerix.count("inventory", "reservations") == 0


@pytest.mark.parametrize(
    "event, field",
    [
        ({"staleMinutes": 0}, "staleMinutes"),
        ({"staleMinutes": "soon"}, "staleMinutes"),
        ({"staleMinutes": True}, "staleMinutes"),
        ({"repair": True}, "repair"),
    ],
)
def test_bad_events_are_refused_naming_the_field(valerix, reconcile, event, field):
    from functions.common.settings import SettingsError

    with pytest.raises(SettingsError, match=field):
        reconcile(event)


def test_since_limits_the_check_to_recent_orders_and_reservations(valerix, reconcile):
    old = insert_order(valerix, "CONFIRMED", 60)  # no reservation: a problem, but an old one
    old_with_new_reservation = insert_order(valerix, "QUEUED", 30)
    recent = confirmed(valerix)
    valerix.inventory_db.run("DELETE FROM reservations WHERE order_id = :o", o=recent)
    # a reservation made now for an order older than the window: not an orphan (re-read by id)
    valerix.inventory_db.run(
        "INSERT INTO reservations (order_id, product_id, quantity, status) VALUES (:o, 'widget', 1, 'RESERVED')",
        o=old_with_new_reservation,
    )
    since = valerix.order_db.run("SELECT clock_timestamp() - interval '5 minutes'")[0][0]

    report = reconcile({"since": since.isoformat()})

    assert report["since"] == since.isoformat()
    assert named(report, "missing_reservation") == {recent}
    assert old not in json.dumps(report) and named(report, "orphan_reservation") == set()
    assert named(report, "stuck_order") == {old_with_new_reservation}  # read by id, still judged
    assert named(reconcile(), "missing_reservation") == {old, recent}


@pytest.mark.parametrize("value", ["yesterday", "2026-01-01T00:00:00", 1700000000])
def test_since_must_be_a_timestamp_with_an_offset(valerix, reconcile, value):
    from functions.common.settings import SettingsError

    with pytest.raises(SettingsError, match="since"):
        reconcile({"since": value})
