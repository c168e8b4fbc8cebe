"""Synthetic `make verify` / `make bench` runs, for the report and chart tests (no local cloud)."""

from __future__ import annotations

import random
from pathlib import Path

from scripts import verify

REPO = Path(__file__).resolve().parents[1]


def verify_run(seed: int, per_phase: int, every: int) -> verify.Report:
    """A synthetic `make verify` run: every `every`th order of a phase is affected."""
    rng = random.Random(seed)
    report = verify.Report(started_at=1_700_000_000.0)
    t = report.started_at
    for phase in verify.PHASES:
        report.gremlin_marks.append({"phase": phase, "at": t, "label": f"{phase} on", "on": True})
        for i in range(per_phase):
            t += 0.1
            affected = i % every == every - 1
            status = {"latency": 202, "crash": 202, "error": 202}[phase] if affected else 201
            latency = 2010.0 + rng.random() * 20 if affected and phase == "latency" else rng.uniform(20, 400)
            report.orders.append(
                verify.OrderRecord(
                    phase,
                    "p",
                    1,
                    t,
                    latency_ms=latency,
                    http_status=status,
                    first_status="QUEUED" if status == 202 else "CONFIRMED",
                    order_id=f"o{phase}{i}",
                    final_status="CONFIRMED",
                )
            )
        t += 3
        report.gremlin_marks.append({"phase": phase, "at": t, "label": "gremlin off", "on": False})
    report.initial_stock = {"p": 1000}
    report.final_stock = {"p": 1000 - len(report.orders)}
    verify.summarize(report)
    return report


def bench_samples(seed: int) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    samples, marks, t = [], [], 1_700_000_000.0
    for phase, n, centre, answer in (
        ("happy", 50, 100, "201"),
        ("baseline", 70, 40, "201"),
        ("circuit_open", 30, 150, "202"),
        ("fallback", 16, 2000, "202"),
    ):
        if phase in ("circuit_open", "fallback"):
            marks.append({"phase": phase, "at": t, "label": "gremlin on", "on": True})
        for _ in range(n):
            t += 0.05
            samples.append(
                {"phase": phase, "sent_at": t, "latency_ms": rng.uniform(0.5, 1.5) * centre, "answer": answer}
            )
        if phase in ("circuit_open", "fallback"):
            marks.append({"phase": phase, "at": t + 1, "label": "gremlin off", "on": False})
        t += 5
    return samples, marks
