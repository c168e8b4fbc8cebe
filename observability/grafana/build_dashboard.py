"""Generates dashboards/valerix.json (run: python observability/grafana/build_dashboard.py).

Every query references metrics the exporter exports; tests/component/test_obs_config.py checks that against
the exporter's real output, and that the committed JSON is what this script produces.
"""

from __future__ import annotations

import json
from pathlib import Path

DS = {"type": "prometheus", "uid": "valerix-prometheus"}
OUT = Path(__file__).resolve().parent / "dashboards" / "valerix.json"
ORDER_AVG_30S = (
    'sum(rate(valerix_http_request_duration_seconds_sum{service="order"}[30s]))'
    ' / sum(rate(valerix_http_request_duration_seconds_count{service="order"}[30s]))'
)
_ids = iter(range(1, 1000))


def target(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> dict:
    t = {"datasource": DS, "expr": expr, "legendFormat": legend or "__auto", "refId": ref, "range": not instant}
    if instant:
        t["instant"] = True
    return t


def panel(
    title: str, kind: str, pos: tuple, targets: list, unit: str = "short", description: str = "", **extra
) -> dict:
    x, y, w, h = pos
    p = {
        "id": next(_ids),
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [dict(t, refId=chr(ord("A") + i)) for i, t in enumerate(targets)],
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
    }
    if kind == "timeseries":
        p["fieldConfig"]["defaults"]["custom"] = {"lineWidth": 1, "fillOpacity": 10, "showPoints": "never"}
        p["options"] = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    for key, value in extra.items():
        if key == "defaults":
            p["fieldConfig"]["defaults"].update(value)
        else:
            p[key] = value
    return p


def thresholds(*steps) -> dict:
    return {"thresholds": {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}}


def build() -> dict:
    rate = "$__rate_interval"
    panels = [
        panel(
            "Order API avg latency (30 s)",
            "stat",
            (0, 0, 5, 5),
            [target(ORDER_AVG_30S, "avg 30s")],
            "s",
            "Rolling 30 s average of the order API; alert OrderApiLatencyHigh above 1 s.",
            defaults=thresholds((None, "green"), (0.5, "yellow"), (1, "red")),
            options={"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "background"},
        ),
        panel(
            "Circuit breaker (order -> inventory)",
            "stat",
            (5, 0, 5, 5),
            [target('max(valerix_circuit_state{service="order"})', "state")],
            "none",
            "0 closed, 1 half-open, 2 open",
            defaults={
                **thresholds((None, "green"), (1, "yellow"), (2, "red")),
                "mappings": [
                    {
                        "type": "value",
                        "options": {
                            "0": {"text": "closed", "color": "green"},
                            "1": {"text": "half-open", "color": "yellow"},
                            "2": {"text": "open", "color": "red"},
                        },
                    }
                ],
            },
            options={"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "background"},
        ),
        panel(
            "Orders by final status (total)",
            "stat",
            (10, 0, 6, 5),
            [target("sum by (status) (valerix_order_outcomes_total)", "{{status}}")],
            "short",
            options={"reduceOptions": {"calcs": ["lastNotNull"]}, "textMode": "value_and_name"},
        ),
        panel(
            "Dead-letter queues",
            "stat",
            (16, 0, 4, 5),
            [target('sum(valerix_queue_depth{kind="dlq"})', "DLQ messages")],
            "short",
            "Messages in the DLQs; alert DlqNotEmpty above 0.",
            defaults=thresholds((None, "green"), (1, "red")),
            options={"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "background"},
        ),
        panel(
            "Exporter",
            "stat",
            (20, 0, 4, 5),
            [
                target('sum(up{job="valerix-exporter"})', "up"),
                target("sum(valerix_exporter_parse_errors_total)", "parse errors"),
            ],
            "short",
            options={"reduceOptions": {"calcs": ["lastNotNull"]}, "textMode": "value_and_name"},
        ),
        panel(
            "Order API latency percentiles",
            "timeseries",
            (0, 5, 12, 8),
            [
                target(
                    "histogram_quantile(0.50, sum by (le) "
                    f'(rate(valerix_http_request_duration_seconds_bucket{{service="order"}}[{rate}])))',
                    "p50",
                ),
                target(
                    "histogram_quantile(0.95, sum by (le) "
                    f'(rate(valerix_http_request_duration_seconds_bucket{{service="order"}}[{rate}])))',
                    "p95",
                ),
                target(
                    "histogram_quantile(0.99, sum by (le) "
                    f'(rate(valerix_http_request_duration_seconds_bucket{{service="order"}}[{rate}])))',
                    "p99",
                ),
                target(ORDER_AVG_30S, "avg (30 s)"),
            ],
            "s",
            "From the exporter's histogram (buckets up to 10 s; 2 s = inventory call budget).",
        ),
        panel(
            "p95 latency by service and route",
            "timeseries",
            (12, 5, 12, 8),
            [
                target(
                    "histogram_quantile(0.95, sum by (le, service, route) "
                    f"(rate(valerix_http_request_duration_seconds_bucket[{rate}])))",
                    "{{service}} {{route}}",
                ),
            ],
            "s",
        ),
        panel(
            "Orders by status",
            "timeseries",
            (0, 13, 12, 8),
            [
                target(
                    f"sum by (status, path) (increase(valerix_order_outcomes_total[{rate}]))", "{{status}} ({{path}})"
                ),
            ],
            "short",
            "Order outcomes per interval: CONFIRMED / QUEUED / REJECTED, sync or via the queue.",
        ),
        panel(
            "HTTP requests by status class",
            "timeseries",
            (12, 13, 12, 8),
            [
                target(
                    f"sum by (service, status_class) (rate(valerix_http_requests_total[{rate}]))",
                    "{{service}} {{status_class}}",
                ),
            ],
            "reqps",
        ),
        panel(
            "Inventory call duration p95 by outcome",
            "timeseries",
            (0, 21, 12, 8),
            [
                target(
                    "histogram_quantile(0.95, sum by (le, outcome) "
                    f"(rate(valerix_inventory_call_duration_seconds_bucket[{rate}])))",
                    "{{outcome}}",
                ),
            ],
            "s",
            "The order service's synchronous call to inventory (hard 2 s budget).",
        ),
        panel(
            "Fallbacks to the queue by reason",
            "timeseries",
            (12, 21, 12, 8),
            [
                target(f"sum by (reason) (increase(valerix_fallbacks_total[{rate}]))", "{{reason}}"),
            ],
            "short",
        ),
        panel(
            "Circuit breaker state",
            "timeseries",
            (0, 29, 12, 8),
            [
                target("max by (service) (valerix_circuit_state)", "{{service}} state (0 closed, 1 half-open, 2 open)"),
                target(f"sum by (to_state) (increase(valerix_circuit_transitions_total[{rate}]))", "-> {{to_state}}"),
            ],
            "short",
            defaults={"min": 0},
        ),
        panel(
            "Queue and DLQ depth",
            "timeseries",
            (12, 29, 12, 8),
            [
                target("max by (queue, kind) (valerix_queue_depth)", "{{queue}} {{kind}}"),
                target("max by (queue, kind) (valerix_queue_in_flight)", "{{queue}} {{kind}} in flight"),
            ],
            "short",
            defaults={"min": 0},
        ),
        panel(
            "Gremlin injections by mode",
            "timeseries",
            (0, 37, 8, 8),
            [
                target(f"sum by (mode) (increase(valerix_gremlin_injections_total[{rate}]))", "{{mode}}"),
            ],
            "short",
            "Chaos injected into inventory: latency, error, crash before/after commit.",
        ),
        panel(
            "Idempotent replays and queue records",
            "timeseries",
            (8, 37, 8, 8),
            [
                target(
                    f"sum by (service, source) (increase(valerix_idempotent_replays_total[{rate}]))",
                    "replay {{service}} {{source}}",
                ),
                target(
                    f"sum by (service, outcome) (increase(valerix_queue_records_total[{rate}]))",
                    "records {{service}} {{outcome}}",
                ),
            ],
            "short",
        ),
        panel(
            "Cold starts",
            "timeseries",
            (16, 37, 8, 8),
            [
                target(f"sum by (function_name) (increase(valerix_cold_start_total[{rate}]))", "{{function_name}}"),
            ],
            "short",
        ),
    ]
    return {
        "uid": "valerix-overview",
        "title": "Valerix — orders, latency, resilience",
        "description": "EMF metrics of the Valerix functions via the valerix exporter",
        "tags": ["valerix"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "5s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-15m", "to": "now"},
        "timepicker": {"refresh_intervals": ["5s", "10s", "30s", "1m", "5m"]},
        "templating": {"list": []},
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [],
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(OUT)
