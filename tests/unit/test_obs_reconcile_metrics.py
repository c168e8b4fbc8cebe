"""The reconciler's EMF lines, read by the exporter, are what the ReconcileProblems rule reads:
the gauge `valerix_reconcile_problems{kind,service="reconcile"}`, back to 0 after a clean run."""

from __future__ import annotations

from tests.unit.test_obs_emf_parser import exposition, feed, lines_of
from valerix_exporter.store import MetricStore


def test_reconcile_metrics_become_the_gauge_the_alert_reads(capsys, monkeypatch):
    from functions.reconcile.checks import KINDS
    from functions.reconcile.service import emit_metrics

    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Valerix")
    store = MetricStore()
    counts = dict.fromkeys(KINDS, 0)
    emit_metrics({**counts, "missing_reservation": 2})
    assert feed(store, lines_of(capsys)) == []

    samples = exposition(store)
    gauge = "valerix_reconcile_problems{{kind={},namespace=Valerix,service=reconcile}}"
    assert samples[gauge.format("missing_reservation")] == 2
    assert samples[gauge.format("stuck_order")] == 0
    assert samples["valerix_reconcile_runs_total{namespace=Valerix,outcome=problems,service=reconcile}"] == 1

    emit_metrics(counts)  # the next run is clean
    assert feed(store, lines_of(capsys)) == []
    samples = exposition(store)
    assert all(samples[gauge.format(kind)] == 0 for kind in KINDS)
    assert samples["valerix_reconcile_runs_total{namespace=Valerix,outcome=clean,service=reconcile}"] == 1
