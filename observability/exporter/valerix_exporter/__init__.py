"""Valerix EMF -> Prometheus exporter.

Follows CloudWatch Logs log groups, parses CloudWatch Embedded Metric Format (EMF) lines
written by Powertools Metrics, and serves the aggregated metrics in Prometheus exposition
format on ``/metrics`` plus a small JSON summary (``/api/summary``) for the web dashboard.
"""

__version__ = "1.0.0"
