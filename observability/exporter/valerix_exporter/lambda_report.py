"""Lambda's own per-invocation line, the ``REPORT`` line, in Lambda terms.

AWS writes one at the end of every invocation (and the local cloud's executor writes the same
shape), tab-separated::

    REPORT RequestId: 1f0c...\tDuration: 12.34 ms\tBilled Duration: 13 ms\tMemory Size: 512 MB\t
    Max Memory Used: 143 MB\tInit Duration: 245.10 ms

``Init Duration`` is only there for the first invocation of an execution environment (a cold
start). Fields this parser does not know (``XRAY TraceId``, ``Restore Duration``, ...) are
skipped. A line that starts like a REPORT line but has no usable ``Duration`` is not one.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

PREFIX = "REPORT RequestId:"
# "<Field Name>: <number> <unit>" between tabs; the unit says how to read the number.
_FIELD = re.compile(r"([A-Za-z][A-Za-z ]*?):\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|MB)\b")
_REQUEST_ID = re.compile(r"^REPORT RequestId:\s*([^\s]+)")


@dataclass(frozen=True)
class LambdaReport:
    request_id: str
    duration_ms: float
    billed_duration_ms: float | None = None
    memory_size_mb: int | None = None
    max_memory_used_mb: int | None = None
    init_duration_ms: float | None = None  # present on a cold start only

    @property
    def cold_start(self) -> bool:
        return self.init_duration_ms is not None


def parse_report(line: str) -> LambdaReport | None:
    """The REPORT line's numbers, or None when `line` is not a usable REPORT line."""
    line = line.strip()
    match = _REQUEST_ID.match(line)
    if not match:
        return None
    fields: dict[str, float] = {}
    for name, number, _unit in _FIELD.findall(line[match.end() :]):
        value = float(number)
        if math.isfinite(value):
            fields.setdefault(name.strip(), value)
    if "Duration" not in fields:
        return None

    def mb(name: str) -> int | None:
        return int(fields[name]) if name in fields else None

    return LambdaReport(
        request_id=match.group(1),
        duration_ms=fields["Duration"],
        billed_duration_ms=fields.get("Billed Duration"),
        memory_size_mb=mb("Memory Size"),
        max_memory_used_mb=mb("Max Memory Used"),
        init_duration_ms=fields.get("Init Duration"),
    )


def function_of(log_group: str) -> str:
    """`/aws/lambda/<function>` -> `<function>` (the group name itself otherwise)."""
    return log_group.rsplit("/", 1)[-1] if log_group.startswith("/aws/lambda/") else log_group
