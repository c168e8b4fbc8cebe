"""Connection limits of RDS for PostgreSQL instance classes (used by the alarms; one place).

RDS sets `max_connections` to `LEAST(DBInstanceClassMemory / 9531392, 5000)` by default.
DBInstanceClassMemory is the class memory *minus* what the OS and the RDS processes reserve,
so the class's nominal memory gives an upper bound, not the exact value: read the real one with
`SHOW max_connections;` and pass it as context `dbMaxConnections` when precision matters.
"""

from __future__ import annotations

GIB = 1024**3
RDS_POSTGRES_BYTES_PER_CONNECTION = 9531392
RDS_POSTGRES_CONNECTION_CAP = 5000

# Nominal memory (GiB) of the classes this stack is likely to use. Unknown classes need
# `dbMaxConnections` rather than a guess.
_SIZES_BURSTABLE = {"micro": 1, "small": 2, "medium": 4, "large": 8, "xlarge": 16, "2xlarge": 32}
_SIZES_GENERAL = {"large": 8, "xlarge": 16, "2xlarge": 32, "4xlarge": 64}
_SIZES_MEMORY = {"large": 16, "xlarge": 32, "2xlarge": 64, "4xlarge": 128}
CLASS_MEMORY_GIB: dict[str, int] = {
    **{f"{family}.{size}": gib for family in ("t3", "t4g") for size, gib in _SIZES_BURSTABLE.items()},
    **{f"{family}.{size}": gib for family in ("m5", "m6g", "m6i", "m7g") for size, gib in _SIZES_GENERAL.items()},
    **{f"{family}.{size}": gib for family in ("r5", "r6g", "r6i", "r7g") for size, gib in _SIZES_MEMORY.items()},
}


def postgres_max_connections_upper_bound(instance_class: str) -> int:
    """`max_connections` RDS would set if the whole class memory counted (an upper bound)."""
    key = instance_class.removeprefix("db.")
    if key not in CLASS_MEMORY_GIB:
        raise ValueError(
            f"unknown RDS instance class {instance_class!r} for the connection alarm: pass its "
            "max_connections (SHOW max_connections) as context dbMaxConnections"
        )
    return min(CLASS_MEMORY_GIB[key] * GIB // RDS_POSTGRES_BYTES_PER_CONNECTION, RDS_POSTGRES_CONNECTION_CAP)
