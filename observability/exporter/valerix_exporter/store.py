"""Aggregated metric state: counters, histograms, gauges, raw latency samples.

Everything here is plain data so that it can be persisted (``to_dict``/``from_dict``) together
with the log checkpoints in one atomic snapshot: a restart resumes the totals and continues after
the checkpoint, so no log line is ever counted twice.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import deque
from dataclasses import dataclass, field

from .emf import PARSE_ERROR_REASONS, TIME_UNITS, MetricRecord, snake_case
from .lambda_report import LambdaReport

PREFIX = "valerix_"
# Buckets suited to the order API's 2 s budget of its synchronous inventory call.
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0)

COUNTER, HISTOGRAM, GAUGE = "counter", "histogram", "gauge"
MIB = 1024 * 1024  # Lambda's "MB" in REPORT lines and MemorySize are MiB
# Families fed by Lambda's REPORT lines (one per invocation), labelled by function name.
LAMBDA_DURATION = "valerix_lambda_duration_seconds"
LAMBDA_INIT_DURATION = "valerix_lambda_init_duration_seconds"
LAMBDA_MEMORY_SIZE = "valerix_lambda_memory_size_bytes"
LAMBDA_MAX_MEMORY_USED = "valerix_lambda_max_memory_used_bytes"
CIRCUIT_STATES = {0: "closed", 1: "half_open", 2: "open"}

Labels = tuple  # tuple[tuple[str, str], ...]


def prometheus_name(emf_name: str, unit: str) -> tuple[str, str]:
    """Return (family name, type). Counter families carry ``_total`` in their sample names."""
    base = PREFIX + snake_case(emf_name)
    if unit == "Count":
        if base.endswith("_total"):
            base = base[: -len("_total")]
        return base, COUNTER
    if unit in TIME_UNITS:
        if not base.endswith("_seconds"):
            base += "_seconds"
        return base, HISTOGRAM
    return base, GAUGE


@dataclass
class Family:
    name: str
    kind: str
    help: str
    # counter: labels -> float; gauge: labels -> [value, ts_ms];
    # histogram: labels -> [bucket counts (non-cumulative, last = +Inf), sum, count]
    series: dict = field(default_factory=dict)
    persistent: bool = True


class MetricStore:
    def __init__(self, buckets=DEFAULT_BUCKETS, sample_retention_s: float = 300.0, max_samples: int = 50000):
        self.buckets = tuple(float(b) for b in buckets)
        self.families: dict[str, Family] = {}
        self.sample_retention_ms = int(sample_retention_s * 1000)
        # raw HttpRequestDuration samples: (ts_ms, service, seconds)
        self.samples: deque = deque(maxlen=max_samples)
        self.circuit: list | None = None  # [ts_ms, state]
        # raw REPORT durations for the summary's p50/p95: (ts_ms, function, duration_ms), pruned
        # like `samples`; cold starts' init durations: (ts_ms, function, init_ms), the newest kept
        self.report_samples: deque = deque(maxlen=max_samples)
        self.init_samples: deque = deque(maxlen=2000)
        self.queues: dict[str, dict] = {}  # volatile: logical queue -> {"depth", "dlqDepth", ...}
        self._self_metrics()

    # ---- exporter self metrics -------------------------------------------------------
    def _self_metrics(self) -> None:
        self.family(
            "valerix_exporter_parse_errors", COUNTER, "Log lines that looked like EMF but could not be used, by reason."
        )
        self.family(
            "valerix_exporter_log_events", COUNTER, "CloudWatch log events read, by result (processed, duplicate)."
        )
        self.family("valerix_exporter_emf_documents", COUNTER, "EMF documents parsed.")
        self.family(
            "valerix_exporter_ignored_lines",
            COUNTER,
            "Log lines that are not EMF (START/END/REPORT, structured logs, text).",
        )
        self.family(
            "valerix_exporter_dropped_records",
            COUNTER,
            "EMF metrics not exported, by reason (namespace, type_conflict).",
        )
        # known series start at 0 so that rate()/sum() work before the first occurrence
        for reason in PARSE_ERROR_REASONS:
            self.inc("valerix_exporter_parse_errors", (("reason", reason),), 0)
        for result in ("processed", "duplicate"):
            self.inc("valerix_exporter_log_events", (("result", result),), 0)
        for reason in ("namespace", "type_conflict"):
            self.inc("valerix_exporter_dropped_records", (("reason", reason),), 0)
        self.inc("valerix_exporter_emf_documents", (), 0)
        self.inc("valerix_exporter_ignored_lines", (), 0)

    def family(self, name: str, kind: str, help_text: str, persistent: bool = True) -> Family:
        fam = self.families.get(name)
        if fam is None:
            fam = self.families[name] = Family(name, kind, help_text, persistent=persistent)
        return fam

    def inc(self, name: str, labels: Labels = (), amount: float = 1.0) -> None:
        series = self.families[name].series
        series[labels] = series.get(labels, 0.0) + amount

    # ---- ingestion -------------------------------------------------------------------
    def ingest(self, record: MetricRecord) -> None:
        name, kind = prometheus_name(record.name, record.unit)
        fam = self.families.get(name)
        if fam is None:
            fam = self.family(name, kind, f"EMF metric {record.name} (unit {record.unit}).")
        elif fam.kind != kind:
            self.inc("valerix_exporter_dropped_records", (("reason", "type_conflict"),))
            return
        labels = tuple(sorted((("namespace", record.namespace), *record.labels)))
        if kind == COUNTER:
            amount = sum(v for v in record.values if v >= 0)
            fam.series[labels] = fam.series.get(labels, 0.0) + amount
        elif kind == HISTOGRAM:
            factor = TIME_UNITS[record.unit]
            state = fam.series.get(labels)
            if state is None:
                state = fam.series[labels] = [[0] * (len(self.buckets) + 1), 0.0, 0]
            for value in record.values:
                seconds = value * factor
                state[0][bisect.bisect_left(self.buckets, seconds)] += 1
                state[1] += seconds
                state[2] += 1
                if record.name == "HttpRequestDuration":
                    self.samples.append((record.timestamp_ms, record.label_dict.get("service", ""), seconds))
        else:
            current = fam.series.get(labels)
            if current is None or record.timestamp_ms >= current[1]:
                fam.series[labels] = [record.values[-1], record.timestamp_ms]
        self._track_circuit(record)

    def observe(self, name: str, labels: Labels, seconds: float) -> None:
        state = self.families[name].series.get(labels)
        if state is None:
            state = self.families[name].series[labels] = [[0] * (len(self.buckets) + 1), 0.0, 0]
        state[0][bisect.bisect_left(self.buckets, seconds)] += 1
        state[1] += seconds
        state[2] += 1

    def ingest_report(self, function: str, report: LambdaReport, timestamp_ms: int) -> None:
        """One invocation's REPORT line: duration and init duration (histograms), the function's
        MemorySize (gauge) and the highest Max Memory Used seen so far (gauge)."""
        self.family(LAMBDA_DURATION, HISTOGRAM, "Lambda invocation duration (REPORT Duration), per function.")
        self.family(LAMBDA_INIT_DURATION, HISTOGRAM, "Cold start init duration (REPORT Init Duration), per function.")
        self.family(LAMBDA_MEMORY_SIZE, GAUGE, "Configured memory of the function (REPORT Memory Size).")
        self.family(
            LAMBDA_MAX_MEMORY_USED, GAUGE, "Highest REPORT Max Memory Used of the function's invocations seen so far."
        )
        labels = (("function", function),)
        self.observe(LAMBDA_DURATION, labels, report.duration_ms / 1000)
        self.report_samples.append((timestamp_ms, function, report.duration_ms))
        if report.init_duration_ms is not None:
            self.observe(LAMBDA_INIT_DURATION, labels, report.init_duration_ms / 1000)
            self.init_samples.append((timestamp_ms, function, report.init_duration_ms))
        if report.memory_size_mb is not None:
            current = self.families[LAMBDA_MEMORY_SIZE].series.get(labels)
            if current is None or timestamp_ms >= current[1]:  # the newest configuration wins
                self.families[LAMBDA_MEMORY_SIZE].series[labels] = [report.memory_size_mb * MIB, timestamp_ms]
        if report.max_memory_used_mb is not None:
            used = report.max_memory_used_mb * MIB
            peak = self.families[LAMBDA_MAX_MEMORY_USED].series.get(labels)
            if peak is None or used > peak[0]:
                self.families[LAMBDA_MAX_MEMORY_USED].series[labels] = [used, timestamp_ms]

    def _track_circuit(self, record: MetricRecord) -> None:
        state = None
        if record.name == "CircuitState":
            state = CIRCUIT_STATES.get(int(record.values[-1]), "unknown")
        elif record.name == "CircuitTransitions":
            state = record.label_dict.get("to_state")
        if state is not None and (self.circuit is None or record.timestamp_ms >= self.circuit[0]):
            self.circuit = [record.timestamp_ms, state]

    def prune_samples(self, now_ms: int | None = None) -> None:
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        horizon = now_ms - self.sample_retention_ms
        for samples in (self.samples, self.report_samples):
            if samples and min(s[0] for s in samples) < horizon:
                kept = [s for s in samples if s[0] >= horizon]
                samples.clear()
                samples.extend(kept)

    # ---- queues (volatile, re-polled after a restart) -------------------------------
    def set_queues(self, queues: dict[str, dict]) -> None:
        self.queues = queues

    # ---- persistence -----------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "buckets": list(self.buckets),
            "families": [
                {
                    "name": f.name,
                    "kind": f.kind,
                    "help": f.help,
                    "series": [[list(map(list, labels)), value] for labels, value in f.series.items()],
                }
                for f in self.families.values()
                if f.persistent
            ],
            "samples": [list(s) for s in self.samples],
            "reportSamples": [list(s) for s in self.report_samples],
            "initSamples": [list(s) for s in self.init_samples],
            "circuit": self.circuit,
        }

    def load_dict(self, data: dict) -> None:
        if tuple(data.get("buckets", ())) != self.buckets:
            raise ValueError("histogram buckets changed since the snapshot was written")
        for f in data.get("families", []):
            fam = self.family(f["name"], f["kind"], f["help"])
            fam.series = {tuple(tuple(p) for p in labels): value for labels, value in f["series"]}
        self.samples.clear()
        self.samples.extend(tuple(s) for s in data.get("samples", []))
        # absent from snapshots written before REPORT lines were read
        self.report_samples.clear()
        self.report_samples.extend(tuple(s) for s in data.get("reportSamples", []))
        self.init_samples.clear()
        self.init_samples.extend(tuple(s) for s in data.get("initSamples", []))
        self.circuit = data.get("circuit")

    # ---- queries used by the summary -------------------------------------------------
    def sum_by(self, family: str, label: str, where: dict | None = None) -> dict[str, float]:
        fam = self.families.get(family)
        out: dict[str, float] = {}
        if fam is None:
            return out
        for labels, value in fam.series.items():
            d = dict(labels)
            if where and any(d.get(k) != v for k, v in where.items()):
                continue
            total = value if fam.kind == COUNTER else value[2] if fam.kind == HISTOGRAM else value[0]
            key = d.get(label, "")
            out[key] = out.get(key, 0.0) + total
        return out


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _num(x: float) -> float | int:
    return int(x) if float(x).is_integer() else round(x, 3)


def build_summary(
    store: MetricStore,
    now: float | None = None,
    window_s: int = 30,
    series_step_s: int = 5,
    series_points: int = 60,
    percentile_window_s: int = 300,
) -> dict:
    """The ``/api/summary`` document (shape fixed in docs/ARCHITECTURE.md)."""
    now = time.time() if now is None else now
    now_ms = int(now * 1000)
    window_ms = window_s * 1000

    order = sorted((s[0], s[2] * 1000.0) for s in store.samples if s[1] == "order")
    ts = [s[0] for s in order]
    prefix = [0.0]
    for _, ms in order:
        prefix.append(prefix[-1] + ms)

    def window(end_ms: int) -> tuple[float | None, int]:
        lo = bisect.bisect_right(ts, end_ms - window_ms)
        hi = bisect.bisect_right(ts, end_ms)
        n = hi - lo
        return ((prefix[hi] - prefix[lo]) / n if n else None), n

    average, samples = window(now_ms + 5000)  # tolerate a little clock skew into the future
    step_ms = series_step_s * 1000
    series = []
    for k in range(series_points - 1, -1, -1):  # oldest first, the last point is "now"
        end = now_ms - k * step_ms
        avg, n = (average, samples) if k == 0 else window(end)
        series.append({"t": end // 1000, "averageMs": None if avg is None else round(avg, 1), "samples": n})

    invocations = store.sum_by("valerix_http_requests", "service")
    errors = store.sum_by("valerix_http_requests", "service", {"status_class": "5xx"})
    for svc, n in store.sum_by("valerix_queue_records", "service").items():
        invocations[svc] = invocations.get(svc, 0.0) + n
    for svc, n in store.sum_by("valerix_queue_records", "service", {"outcome": "failed"}).items():
        errors[svc] = errors.get(svc, 0.0) + n
    cold = store.sum_by("valerix_cold_start", "service")
    horizon = now_ms - percentile_window_s * 1000
    durations: dict[str, list[float]] = {}
    for t, svc, seconds in store.samples:
        if t >= horizon:
            durations.setdefault(svc, []).append(seconds * 1000.0)
    services = {"order", "inventory", "gremlin"} | set(invocations) | set(cold) | set(durations)
    services.discard("")
    functions = {}
    for svc in sorted(services):
        values = sorted(durations.get(svc, []))
        p50, p95 = percentile(values, 0.5), percentile(values, 0.95)
        functions[svc] = {
            "invocations": _num(invocations.get(svc, 0)),
            "errors": _num(errors.get(svc, 0)),
            "p50Ms": None if p50 is None else round(p50, 1),
            "p95Ms": None if p95 is None else round(p95, 1),
            "coldStarts": _num(cold.get(svc, 0)),
        }

    lambdas = lambda_summary(store, horizon)

    def by(family: str, label: str) -> dict:
        return {k: _num(v) for k, v in sorted(store.sum_by(family, label).items())}

    return {
        "generatedAt": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z",
        "orderLatency": {
            "windowSeconds": window_s,
            "averageMs": None if average is None else round(average, 1),
            "samples": samples,
            "seriesStepSeconds": series_step_s,
            "series": series,
        },
        "functions": functions,
        "lambdas": lambdas,
        "percentileWindowSeconds": percentile_window_s,
        "orders": by("valerix_order_outcomes", "status"),
        "fallbacks": by("valerix_fallbacks", "reason"),
        "gremlinInjections": by("valerix_gremlin_injections", "mode"),
        "circuitState": store.circuit[1] if store.circuit else "closed",
        "queues": {name: dict(q) for name, q in sorted(store.queues.items())},
    }


def lambda_summary(store: MetricStore, horizon_ms: int) -> dict:
    """Per function, from its REPORT lines: memory (peak used against MemorySize), cold starts and
    their init duration, invocations, and p50/p95 of Duration over the samples newer than
    `horizon_ms` (None when there are none)."""

    def per_function(family: str) -> dict[str, list]:
        fam = store.families.get(family)
        return {} if fam is None else {dict(labels).get("function", ""): value for labels, value in fam.series.items()}

    durations_hist = per_function(LAMBDA_DURATION)
    sizes = per_function(LAMBDA_MEMORY_SIZE)
    peaks = per_function(LAMBDA_MAX_MEMORY_USED)
    inits_hist = per_function(LAMBDA_INIT_DURATION)
    recent: dict[str, list[float]] = {}
    for t, function, ms in store.report_samples:
        if t >= horizon_ms:
            recent.setdefault(function, []).append(ms)
    inits: dict[str, list[tuple[int, float]]] = {}
    for t, function, ms in store.init_samples:
        inits.setdefault(function, []).append((t, ms))

    out = {}
    for function in sorted(set(durations_hist) | set(sizes) | set(peaks)):
        size = sizes[function][0] / MIB if function in sizes else None
        peak = peaks[function][0] / MIB if function in peaks else None
        values = sorted(recent.get(function, []))
        p50, p95 = percentile(values, 0.5), percentile(values, 0.95)
        cold = sorted(inits.get(function, []))
        init_values = sorted(ms for _, ms in cold)
        init_p50 = percentile(init_values, 0.5)
        out[function] = {
            "invocations": durations_hist[function][2] if function in durations_hist else 0,
            "memorySizeMb": None if size is None else _num(size),
            "maxMemoryUsedMb": None if peak is None else _num(peak),
            "memoryUsedPercent": round(100 * peak / size, 1) if size and peak is not None else None,
            "coldStarts": inits_hist[function][2] if function in inits_hist else 0,
            "initLastMs": round(cold[-1][1], 1) if cold else None,
            "initP50Ms": None if init_p50 is None else round(init_p50, 1),
            "initMaxMs": round(init_values[-1], 1) if init_values else None,
            "p50Ms": None if p50 is None else round(p50, 1),
            "p95Ms": None if p95 is None else round(p95, 1),
            "samples": len(values),
        }
    return out
