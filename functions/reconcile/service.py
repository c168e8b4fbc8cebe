"""One reconciliation run: read, compare, emit metrics, return the report. Repairs nothing.

Report (the function's answer; scripts/reconcile.py prints it and writes it to
.valerix/reconcile-report.json / .md):

    {"status": "clean" | "problems", "checkedAt": "<order server time, ISO>",
     "staleMinutes": 5, "since": null | "<ISO>", "counts": {"orders": n, "reservations": n},
     "dlqDepths": {"inventory": 0, "completion": 0},
     "problemCounts": {"<kind>": n, ...every kind...},
     "problems": [{"kind", "message", "orderId"?, "queue"?, "details"?}, ...]}

`problems` lists at most MAX_LISTED problems (the counts are complete; `truncated` says how
many were left out), so one bad day cannot make the answer larger than Lambda's 6 MB limit.

Metrics (EMF, service `reconcile`): `ReconcileProblems` (unit None, i.e. a gauge: the number
found by this run) for every kind, 0 included, so a fixed problem clears the alert;
`ReconcileRuns` (Count, dimension `outcome` = clean | problems).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

from functions.common.observability import MetricUnit, get_logger, put_metric
from functions.reconcile import checks, sources
from functions.reconcile.settings import ReconcileSettings

SERVICE = "reconcile"
MAX_LISTED = 1000
logger = get_logger(SERVICE)


def reconcile(
    settings: ReconcileSettings, *, stale_minutes: int | None = None, since: dt.datetime | None = None
) -> dict[str, Any]:
    """`since`: only orders and reservations created since then (a bounded, cheaper check; the
    scheduled run checks everything). The DLQs are always checked."""
    stale = stale_minutes or settings.stale_minutes
    stale_after = dt.timedelta(minutes=stale)
    order_db = sources.database(settings.order_secret_arn, settings)
    inventory_db = sources.database(settings.inventory_secret_arn, settings)

    # Orders first, reservations second, both streamed at once (see sources.py for why).
    with contextlib.ExitStack() as stack:
        order_conn = stack.enter_context(sources.snapshot(order_db))
        # The transaction's first query fixes the orders' snapshot: before the reservations' one.
        now = sources.now(order_conn)
        inventory_conn = stack.enter_context(sources.snapshot(inventory_db))
        comparison = checks.compare(
            sources.orders(order_conn, since),
            sources.reservations(inventory_conn, since),
            now=now,
            stale_after=stale_after,
        )

    problems = comparison.problems
    if comparison.unmatched:
        late = sources.orders_by_id(order_db, [r.order_id for r in comparison.unmatched])
        for reservation in comparison.unmatched:
            order = late.get(reservation.order_id)
            if order is not None:
                comparison.orders += 1
            problems.extend(checks.check_pair(order, reservation, now=now, stale_after=stale_after))

    depths = sources.dlq_depths(settings.dlq_urls)
    problems.extend(checks.dlq_problems(depths))

    problem_counts = dict.fromkeys(checks.KINDS, 0)
    for problem in problems:
        problem_counts[problem.kind] += 1
    report: dict[str, Any] = {
        "status": "problems" if problems else "clean",
        "checkedAt": now.isoformat(),
        "staleMinutes": stale,
        "since": since.isoformat() if since is not None else None,
        "counts": {"orders": comparison.orders, "reservations": comparison.reservations},
        "dlqDepths": depths,
        "problemCounts": problem_counts,
        "problems": [p.as_dict() for p in problems[:MAX_LISTED]],
    }
    if len(problems) > MAX_LISTED:
        report["truncated"] = len(problems) - MAX_LISTED

    emit_metrics(problem_counts)
    if problems:
        # Named, never repaired: an operator decides (refund, re-reserve, redrive).
        logger.warning(
            "reconciliation found problems",
            extra={"problem_counts": problem_counts, "problems": report["problems"][:20]},
        )
    else:
        logger.info("reconciliation clean", extra={"counts": report["counts"]})
    return report


def emit_metrics(problem_counts: dict[str, int]) -> None:
    """One gauge per kind (0 included, so the alert clears) and the run with its outcome."""
    for kind, count in problem_counts.items():
        put_metric("ReconcileProblems", MetricUnit.NoUnit, count, service=SERVICE, kind=kind)
    outcome = "problems" if any(problem_counts.values()) else "clean"
    put_metric("ReconcileRuns", MetricUnit.Count, 1, service=SERVICE, outcome=outcome)
