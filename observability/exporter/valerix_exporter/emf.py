"""Parsing of CloudWatch Embedded Metric Format (EMF) log lines.

One CloudWatch log event may carry several lines; every line is judged on its own:

* a line that is a JSON object with an ``_aws`` member is an EMF document;
* a Lambda ``REPORT`` line (duration, memory, init duration) is a *report*
  (``lambda_report.py``), not EMF;
* a line that is a JSON object without ``_aws`` (a structured log line) or a line that does not
  look like JSON at all (``START``/``END``, plain text) is *ignored*;
* a line that looks like EMF but is not a valid EMF document is a *parse error* with a reason:
  ``invalid_json`` (starts with ``{`` but is not a JSON object, e.g. a truncated line),
  ``prefixed`` (EMF JSON preceded by other text: CloudWatch would not extract it either),
  ``invalid_emf`` (``_aws`` metadata malformed), ``missing_value`` / ``invalid_value``
  (a declared metric has no usable value).

Label rules: the union of the keys of *all* dimension sets of a directive becomes the label set
(values are taken from the document root), so one observation is one Prometheus sample and
coarser dimension sets are obtained with ``sum by (...)`` in PromQL instead of being counted
once per dimension set. Label names are snake_cased; the EMF namespace becomes the label
``namespace`` (the metric name prefix is always ``valerix_``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

from .lambda_report import PREFIX as REPORT_PREFIX
from .lambda_report import LambdaReport, parse_report

PARSE_ERROR_REASONS = ("invalid_json", "prefixed", "invalid_emf", "missing_value", "invalid_value")
TIME_UNITS = {"Seconds": 1.0, "Milliseconds": 1e-3, "Microseconds": 1e-6}
_RESERVED_LABELS = {"le", "quantile", "namespace", "job", "instance"}


def snake_case(name: str) -> str:
    """``HttpRequestDuration`` -> ``http_request_duration``; ``DLQDepth`` -> ``dlq_depth``."""
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    s = re.sub(r"[^A-Za-z0-9_]+", "_", s).strip("_").lower()
    s = re.sub(r"_+", "_", s)
    if not s:
        s = "unnamed"
    if s[0].isdigit():
        s = "_" + s
    return s


def label_name(dimension: str) -> str:
    name = snake_case(dimension)
    if name.startswith("__"):
        name = "dim" + name
    if name in _RESERVED_LABELS:
        name = "dim_" + name
    return name


@dataclass(frozen=True)
class MetricRecord:
    """One EMF metric of one directive of one line: all its values and its labels."""

    namespace: str
    name: str  # EMF metric name, e.g. HttpRequestDuration
    unit: str  # EMF unit, "None" when absent
    values: tuple[float, ...]
    labels: tuple[tuple[str, str], ...]  # sorted (label_name, value) pairs, without namespace
    timestamp_ms: int

    @property
    def label_dict(self) -> dict[str, str]:
        return dict(self.labels)


@dataclass
class LineResult:
    records: list[MetricRecord] = field(default_factory=list)
    reports: list[LambdaReport] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # parse error reasons
    emf_documents: int = 0
    ignored_lines: int = 0


def _numbers(value) -> list[float] | None:
    items = value if isinstance(value, list) else [value]
    out: list[float] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            return None
        if not math.isfinite(item):
            return None
        out.append(float(item))
    return out


def parse_document(doc: dict, default_timestamp_ms: int, result: LineResult) -> None:
    aws = doc.get("_aws")
    directives = aws.get("CloudWatchMetrics") if isinstance(aws, dict) else None
    if not isinstance(directives, list):
        result.errors.append("invalid_emf")
        return
    ts = aws.get("Timestamp", default_timestamp_ms)
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
        result.errors.append("invalid_emf")
        return
    result.emf_documents += 1
    for directive in directives:
        if not isinstance(directive, dict):
            result.errors.append("invalid_emf")
            continue
        namespace = directive.get("Namespace")
        dimension_sets = directive.get("Dimensions", [])
        metrics = directive.get("Metrics")
        if (
            not isinstance(namespace, str)
            or not isinstance(metrics, list)
            or not isinstance(dimension_sets, list)
            or not all(isinstance(ds, list) and all(isinstance(k, str) for k in ds) for ds in dimension_sets)
        ):
            result.errors.append("invalid_emf")
            continue
        labels: dict[str, str] = {}
        for dimension_set in dimension_sets:
            for key in dimension_set:
                name = label_name(key)
                if name in labels:
                    continue
                value = doc.get(key, "")
                labels[name] = value if isinstance(value, str) else json.dumps(value)
        label_pairs = tuple(sorted(labels.items()))
        for metric in metrics:
            if not isinstance(metric, dict) or not isinstance(metric.get("Name"), str):
                result.errors.append("invalid_emf")
                continue
            name = metric["Name"]
            unit = metric.get("Unit") or "None"
            if not isinstance(unit, str):
                unit = "None"
            if name not in doc:
                result.errors.append("missing_value")
                continue
            values = _numbers(doc[name])
            if not values:
                result.errors.append("invalid_value")
                continue
            result.records.append(MetricRecord(namespace, name, unit, tuple(values), label_pairs, int(ts)))


def parse_message(message: str, default_timestamp_ms: int) -> LineResult:
    """Parse one CloudWatch log event message (one or more lines)."""
    result = LineResult()
    for raw in message.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except ValueError:
                result.errors.append("invalid_json")
                continue
            if not isinstance(doc, dict):  # e.g. '{...} trailing' is not JSON, so this stays rare
                result.errors.append("invalid_json")
                continue
            if "_aws" not in doc:
                result.ignored_lines += 1
                continue
            parse_document(doc, default_timestamp_ms, result)
        elif '"_aws"' in line or '"CloudWatchMetrics"' in line:
            result.errors.append("prefixed")
        elif line.startswith(REPORT_PREFIX) and (report := parse_report(line)) is not None:
            result.reports.append(report)
        else:
            result.ignored_lines += 1
    return result
