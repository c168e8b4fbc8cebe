"""`make gameday` without a cloud: the scenario is data and is checked before anything runs; the
SLOs and the scorecard are computed from the run's own records (issue 17 item 6)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest

from scripts import gameday
from scripts.order_load import InvariantResult, OrderRecord, Violation

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.toml"
    path.write_text(textwrap.dedent(text))
    return path


# --- the scenario ---------------------------------------------------------------------------


def test_the_shipped_scenario_is_steady_load_faults_with_a_database_outage_then_recovery():
    scenario = gameday.load_scenario(gameday.SCENARIO_FILE)
    phases = scenario.phases
    assert phases[0].gremlin is None and phases[-1].gremlin is None  # steady first, recovery last
    faults = [p.gremlin for p in phases[1:-1]]
    assert all(faults), "every phase between steady and recovery injects a fault"
    assert {"database": {"fault": "unreachable"}} in faults
    assert {mode for fault in faults for mode in fault} >= {"latency", "error", "crash", "database"}
    assert (scenario.slo.answer_within_ms, scenario.slo.answer_share, scenario.slo.max_lost_orders) == (2200, 0.99, 0)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ("""[[phases]]\nname = "a"\nseconds = -1\n""", "phases.0.seconds"),
        ("""[[phases]]\nname = "a"\nseconds = 5\ngremlin = { meltdown = {} }\n""", "phases.0.gremlin"),
        ("""[[phases]]\nname = "a"\nseconds = 5\ngremlin = { database = { fault = "slow" } }\n""", "delayMs"),
        ("""[[phases]]\nname = "a"\nseconds = 5\ngremlin = {}\n""", "phases.0.gremlin"),
        ("""[[phases]]\nname = "a"\nseconds = 5\n[[phases]]\nname = "a"\nseconds = 5\n""", "repeated: a"),
        ("""[[phases]]\nname = "<script>"\nseconds = 5\n""", "phases.0.name"),
        ("""[slo]\nanswer_share = 1.5\n[[phases]]\nname = "a"\nseconds = 5\n""", "slo.answer_share"),
        ("""[load]\nrate = 0\n[[phases]]\nname = "a"\nseconds = 5\n""", "load.rate"),
        ("""phases = []\n""", "phases"),
        ("""surprise = 1\n[[phases]]\nname = "a"\nseconds = 5\n""", "surprise"),
        ("""[[phases]\n""", "not valid TOML"),
    ],
)
def test_a_bad_scenario_is_refused_naming_what_is_wrong(tmp_path, body, named):
    path = write(tmp_path, 'name = "t"\n' + body)
    with pytest.raises(gameday.ScenarioError) as refused:
        gameday.load_scenario(path)
    assert named in str(refused.value)


def test_a_bad_scenario_stops_the_command_before_it_touches_the_cloud(tmp_path, monkeypatch, capsys):
    def no_cloud():
        raise AssertionError("the local cloud was asked for")

    monkeypatch.setattr(gameday, "running_cloud_outputs", no_cloud)
    path = write(tmp_path, 'name = "t"\n[[phases]]\nname = "a"\nseconds = 5\ngremlin = { latency = {} }\n')
    assert gameday.main(["--scenario", str(path)]) == gameday.EXIT_ERROR
    err = capsys.readouterr().err
    assert "phases.0.gremlin" in err and "latency.delayMs" in err


def test_durations_scale_and_every_fault_switches_itself_off_after_its_phase(tmp_path):
    scenario = gameday.load_scenario(
        write(
            tmp_path,
            """
        name = "t"
        [load]
        rate = 3
        [[phases]]
        name = "calm"
        seconds = 40
        [[phases]]
        name = "both"
        seconds = 25
        rate = 7
        gremlin = { latency = { delayMs = 3000, every = 2 }, error = { expiresInSeconds = 5 } }
        [[phases]]
        name = "tiny"
        seconds = 2
        gremlin = { database = { fault = "unreachable" } }
        """,
        )
    )
    calm, both, tiny = gameday.plan(scenario, 0.1)
    assert (calm.seconds, both.seconds, tiny.seconds) == (4.0, 2.5, 1.0)  # never below 1 s
    assert (calm.rate, both.rate) == (3, 7)
    assert calm.document() is None
    assert both.document() == {
        "latency": {"delayMs": 3000, "every": 2, "expiresInSeconds": 3 + 60},
        "error": {"expiresInSeconds": 5},
    }  # its own expiry is kept
    assert tiny.document() == {"database": {"fault": "unreachable", "expiresInSeconds": 1 + 60}}
    assert both.gremlin == {"latency": {"delayMs": 3000, "every": 2}, "error": {"expiresInSeconds": 5}}


def test_faults_are_described_in_words():
    assert gameday.describe_gremlin(None) == "none"
    assert gameday.describe_gremlin({"latency": {"delayMs": 3000, "every": 3}}) == "latency 3000 ms, every 3rd"
    assert gameday.describe_gremlin({"database": {}}) == "database unreachable"
    assert (
        gameday.describe_gremlin({"crash": {"when": "after-commit", "every": 12}}) == "crash after-commit, every 12th"
    )
    assert gameday.describe_gremlin({"error": {"statusCode": 503, "percentage": 20}}) == "error HTTP 503, 20 %"


# --- SLOs and the scorecard, from the run's records ------------------------------------------


def record(
    phase: str, n: int, latency_ms: float = 100.0, status: int = 201, final: str | None = "CONFIRMED", **extra
) -> OrderRecord:
    return OrderRecord(
        phase,
        "p-1",
        2,
        1_700_000_000.0 + n,
        latency_ms=latency_ms,
        http_status=status,
        order_id=f"o-{phase}-{n}",
        final_status=final,
        **extra,
    )


CLEAN_RECONCILE = {
    "status": "clean",
    "problems": [],
    "problemCounts": {"missing_reservation": 0},
    "counts": {"orders": 100, "reservations": 99},
    "since": "2023-11-14T22:13:15+00:00",
}


def a_run(orders: list[OrderRecord], violations: Sequence[Violation] = (), reconcile=CLEAN_RECONCILE) -> gameday.Run:
    run = gameday.Run(
        started_at=1_700_000_000.0,
        orders=orders,
        initial_stock={"p-1": 1000},
        invariants=InvariantResult(
            {"p-1": 1000 - 2 * sum(o.final_status == "CONFIRMED" for o in orders)}, list(violations)
        ),
        reconcile=reconcile,
        finished_at=1_700_000_300.0,
    )
    return run


def slo(results: list[dict], slo_id: str) -> dict:
    [found] = [s for s in results if s["id"] == slo_id]
    return found


def test_the_latency_slo_counts_answers_within_the_threshold(tmp_path):
    spec = gameday.SloSpec()
    orders = [record("steady", n) for n in range(99)] + [record("faulty", 99, latency_ms=2300, status=202)]
    met = gameday.evaluate(a_run(orders), spec)
    assert slo(met, "latency")["pass"] is True
    assert slo(met, "latency")["actual"] == "99.0 % (99 of 100)"

    orders[0] = record("steady", 0, latency_ms=2201)
    missed = slo(gameday.evaluate(a_run(orders), spec), "latency")
    assert missed["pass"] is False and missed["actual"] == "98.0 % (98 of 100)"
    assert any("o-steady-0" in d and "2201 ms" in d for d in missed["details"])

    # a request that got no answer at all is not "within" however fast it failed
    orders = [record("steady", n) for n in range(99)] + [
        OrderRecord("steady", "p-1", 1, 0.0, latency_ms=3.0, error="ConnectError()")
    ]
    assert slo(gameday.evaluate(a_run(orders), gameday.SloSpec(answer_share=1.0)), "latency")["pass"] is False
    assert slo(gameday.evaluate(a_run([]), spec), "latency")["pass"] is False  # no orders proves nothing


def test_lost_orders_are_unanswered_requests_and_accepted_orders_never_final():
    orders = [record("steady", n) for n in range(10)]
    assert slo(gameday.evaluate(a_run(orders), gameday.SloSpec()), "lost")["pass"] is True
    orders[3] = record("outage", 3, status=502, final=None)
    orders[4] = record("outage", 4, status=202, final="QUEUED")
    violations = [
        Violation("no_answer", "order request got no valid answer: 502 None"),
        Violation("not_final", "order o-outage-4 never reached a final state (QUEUED)", "o-outage-4"),
    ]
    lost = slo(gameday.evaluate(a_run(orders, violations), gameday.SloSpec()), "lost")
    assert lost["pass"] is False and lost["actual"] == "2 of 10"
    assert "order o-outage-4 never reached a final state (QUEUED)" in lost["details"]
    # the threshold is the scenario's
    assert slo(gameday.evaluate(a_run(orders, violations), gameday.SloSpec(max_lost_orders=2)), "lost")["pass"]


def test_stock_and_reconciliation_fail_on_their_own_findings():
    orders = [record("steady", n) for n in range(5)]
    stock = Violation("stock", "p-1: stock moved by 12 but confirmed quantities sum to 10", "p-1")
    results = gameday.evaluate(a_run(orders, [stock]), gameday.SloSpec())
    assert slo(results, "stock")["pass"] is False and slo(results, "stock")["details"] == [stock.message]
    assert slo(results, "lost")["pass"] is True

    problem = {
        "kind": "missing_reservation",
        "orderId": "o-steady-1",
        "message": "order o-steady-1 is CONFIRMED (2 x p-1) but has no reservation",
    }
    unclean = dict(CLEAN_RECONCILE, status="problems", problems=[problem], problemCounts={"missing_reservation": 1})
    result = slo(gameday.evaluate(a_run(orders, reconcile=unclean), gameday.SloSpec()), "reconcile")
    assert result["pass"] is False and result["actual"].startswith("missing_reservation 1")
    assert result["details"] == [f"missing_reservation: {problem['message']}"]

    failed = a_run(orders, reconcile=None)
    failed.reconcile_error = "Valerix-reconcile failed (DatabaseUnavailable): order database unreachable"
    result = slo(gameday.evaluate(failed, gameday.SloSpec()), "reconcile")
    assert result["pass"] is False and result["actual"] == "could not run"
    assert "order database unreachable" in result["details"][0]


def test_the_scorecard_holds_each_phase_s_own_numbers_and_names_the_failing_slo(tmp_path):
    scenario = gameday.load_scenario(
        write(
            tmp_path,
            """
        name = "t"
        [[phases]]
        name = "steady"
        seconds = 10
        [[phases]]
        name = "outage"
        seconds = 10
        gremlin = { database = { fault = "unreachable" } }
        """,
        )
    )
    phases = gameday.plan(scenario, 1.0)
    orders = (
        [record("steady", n) for n in range(6)]
        + [record("outage", n, latency_ms=40, status=202) for n in range(3)]
        + [record("outage", 3, latency_ms=2500, status=202, final="QUEUED")]
    )
    run = a_run(orders, [Violation("not_final", "order o-outage-3 never reached a final state (QUEUED)", "o-outage-3")])
    run.windows = {"steady": (1_700_000_000.0, 1_700_000_010.0), "outage": (1_700_000_010.0, 1_700_000_020.0)}
    card = gameday.scorecard(scenario, phases, 1.0, run)

    assert card["status"] == "fail"
    assert [(s["id"], s["pass"]) for s in card["slos"]] == [
        ("latency", False),
        ("lost", False),
        ("stock", True),
        ("reconcile", True),
    ]
    steady, outage = card["phases"]
    assert (steady["orders"], steady["answers"]["201"], steady["confirmed"], steady["lost"]) == (6, 6, 6, 0)
    assert (outage["orders"], outage["answers"]["202"], outage["confirmed"], outage["lost"]) == (4, 4, 3, 1)
    assert outage["fault"] == "database unreachable" and outage["withinTargetShare"] == 0.75
    assert outage["startedAt"] == "2023-11-14T22:13:30Z"
    assert card["totals"] == {
        "orders": 10,
        "accepted": 10,
        "confirmed": 9,
        "rejected": 0,
        "lost": 1,
        "withinTarget": 9,
        "p50Ms": 100.0,
        "p99Ms": 2500.0,
    }
    assert card["stock"] == {"p-1": {"initial": 1000, "final": 982, "confirmedQuantity": 18}}

    md = gameday.markdown(card, [], None)
    assert "**FAIL: answers within 2.2 s, lost orders**" in md
    assert "| outage | database unreachable | 10 | 4 | 0 | 4 | 0 | 0 | 75.0 % |" in md
    assert "### Why lost orders failed" in md
