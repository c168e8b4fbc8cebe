"""How many connections each database takes, and the budget that keeps every function within it.

Pure Python (no CDK import): the stack, the local cloud (`make up` starts the local Postgres
servers with `stack_max_connections(...)`) and the tests read the same numbers from here.

## max_connections

RDS's default for PostgreSQL is `LEAST(DBInstanceClassMemory / 9531392, 5000)`, where
DBInstanceClassMemory is the class memory *minus* what the OS and RDS's own processes take, so
the class's nominal memory only gives an upper bound (112 for a 1 GiB db.t4g.micro, whose real
default is in the 80s). An upper bound cannot prove `connections <= max_connections`, so the
stack does not rely on RDS's default: it sets `max_connections` itself in the instances'
parameter group, to 3/4 of that upper bound (84 on db.t4g.micro; a quarter of the memory left
to the OS and RDS is at least what they take on the small classes). The number is then exact,
the same on AWS and on the local Postgres servers, and never above RDS's default. Context
`dbMaxConnections` sets another value (required for a class not listed below; refused above
the class's upper bound, where connections would run the instance out of memory).

## The connection budget (BUDGET below)

Every function that connects to a database is listed with the most execution environments it
may run (its reserved concurrency: Lambda never runs more) and the connections one environment
may hold per database: `DB_POOL_MAX`, enforced by functions/common/db.py, or 1 for code that
opens one connection at a time and closes it (migrations, backup, restore). Per database:

    proxied = sum of environments x connections of the functions that connect through RDS Proxy
    direct  = sum of environments x connections of the functions that connect to the instance
    percent = floor((max_connections - RESERVED - direct) x 100 / max_connections)
              the proxy's MaxConnectionsPercent: everything the direct ones and the reserve leave
    proxy   = floor(max_connections x percent / 100)   the most connections the proxy opens

    required:  proxied <= proxy   and   proxy + direct <= max_connections - RESERVED

so `max environments x connections per environment <= max_connections - reserve` holds even if
every client connection of the proxy were pinned to a database connection of its own (a
transaction in flight, an advisory lock): the proxy's multiplexing is headroom, not part of
the proof. Without a proxy (target=local) `proxied + direct <= max_connections - RESERVED`
follows from the same two lines. Synth fails with `ConnectionBudgetError` when a configuration
breaks them; tests/infra/test_infra_db_proxy.py recomputes them from the synthesized template.

With the defaults (db.t4g.micro, max_connections 84, RESERVED 6):

    order_db      proxied 20x2 OrderApi + 4x5 OrderCompletion + 1x1 OrderSweeper        = 61
                  direct  1 OrderMigrate + 1 Reconcile + 1 Backup + 1 BackupRestore      =  4
    inventory_db  proxied 10x2 InventoryApi + 20x1 InventoryReserve + 4x5 InventoryQueue = 60
                  direct  1 InventoryMigrate + 1 Reconcile + 1 Backup + 1 BackupRestore  =  4
    percent = floor((84 - 6 - 4) x 100 / 84) = 88;  proxy = floor(84 x 0.88) = 73
    61 <= 73, 60 <= 73;  73 + 4 = 77 <= 78

A bigger instance class raises max_connections and leaves room to raise the reserved
concurrency below; reserved concurrency also needs account headroom (README, "Deploying to AWS").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

GIB = 1024**3
RDS_POSTGRES_BYTES_PER_CONNECTION = 9531392
RDS_POSTGRES_CONNECTION_CAP = 5000
DEFAULT_INSTANCE_CLASS = "t4g.micro"
# The stack's max_connections is this share of the class's memory-formula upper bound.
PINNED_SHARE_NUMERATOR, PINNED_SHARE_DENOMINATOR = 3, 4

# Connections no function may count on:
#   3  superuser_reserved_connections (PostgreSQL's default, kept by RDS): only superusers may
#      use them, i.e. rdsadmin (RDS's own monitoring and maintenance), never the functions;
#   3  an operator's sessions as the master user during an incident (on RDS the master is not a
#      superuser, so it needs ordinary slots).
RESERVED_CONNECTIONS = 6

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
            f"unknown RDS instance class {instance_class!r}: pass the max_connections the stack "
            "should set for it as context dbMaxConnections"
        )
    return min(CLASS_MEMORY_GIB[key] * GIB // RDS_POSTGRES_BYTES_PER_CONNECTION, RDS_POSTGRES_CONNECTION_CAP)


def max_connections(instance_class: str, override: int | None = None) -> int:
    """The `max_connections` the stack sets for `instance_class` (see the module docstring)."""
    if override is not None:
        key = instance_class.removeprefix("db.")
        if key in CLASS_MEMORY_GIB and override > postgres_max_connections_upper_bound(instance_class):
            raise ValueError(
                f"dbMaxConnections {override} is above what db.{key}'s memory allows "
                f"({postgres_max_connections_upper_bound(instance_class)}): connections would run it out of memory"
            )
        return override
    upper = postgres_max_connections_upper_bound(instance_class)
    return upper * PINNED_SHARE_NUMERATOR // PINNED_SHARE_DENOMINATOR


def stack_max_connections(context: Mapping[str, Any]) -> int:
    """`max_connections` of the stack's databases from CDK context (`dbInstanceClass`,
    `dbMaxConnections`, as in cdk.json): what the local Postgres servers run with."""
    override = context.get("dbMaxConnections")
    return max_connections(
        str(context.get("dbInstanceClass") or DEFAULT_INSTANCE_CLASS),
        int(override) if override not in (None, "") else None,
    )


# ---------------------------------------------------------------------------- the budget


@dataclass(frozen=True)
class DbUse:
    """How one function uses the databases it connects to."""

    databases: tuple[str, ...]  # service names: order, inventory
    environments: int  # its reserved concurrency
    connections: int  # per environment and database
    via_proxy: bool  # through the RDS Proxy (target=aws); False: straight to the instance
    pooled: bool  # `connections` is DB_POOL_MAX (the pool enforces it); False: one at a time
    why: str


_API = "API: one request per environment; a health probe that outlived its request may hold the second"
BUDGET: dict[str, DbUse] = {
    "OrderApi": DbUse(("order",), 20, 2, True, True, _API),
    "OrderCompletion": DbUse(
        ("order",), 4, 5, True, True, "SQS consumer: up to 10 records of a batch at once, 5 of them in a transaction"
    ),
    "OrderSweeper": DbUse(("order",), 1, 1, True, True, "every minute, one query"),
    "InventoryApi": DbUse(("inventory",), 10, 2, True, True, _API),
    "InventoryReserve": DbUse(
        ("inventory",), 20, 1, True, True, "one reservation per invocation; as many environments as the order API"
    ),
    "InventoryQueue": DbUse(
        ("inventory",), 4, 5, True, True, "SQS consumer: batches of 5 records, handled concurrently"
    ),
    # Direct: the proxy logs in only as the app role (least privilege); these use the owner,
    # master or reader login, hold session-level locks or snapshots the proxy would pin anyway,
    # and run rarely.
    "OrderMigrate": DbUse(("order",), 1, 1, False, False, "master session closed before the owner's opens"),
    "InventoryMigrate": DbUse(("inventory",), 1, 1, False, False, "master session closed before the owner's opens"),
    "Reconcile": DbUse(("order", "inventory"), 1, 1, False, True, "one read-only snapshot per database"),
    "Backup": DbUse(("order", "inventory"), 1, 1, False, False, "one database dumped at a time"),
    "BackupRestore": DbUse(
        ("order", "inventory"), 1, 1, False, False, "one connection at a time (create database, then load into it)"
    ),
}


class ConnectionBudgetError(ValueError):
    """A configuration would let the functions open more connections than a database allows."""


@dataclass(frozen=True)
class DatabaseBudget:
    database: str
    max_connections: int
    proxied: int
    direct: int
    proxy_percent: int

    @property
    def proxy_connections(self) -> int:
        return self.max_connections * self.proxy_percent // 100

    @property
    def available(self) -> int:
        return self.max_connections - RESERVED_CONNECTIONS


def database_budget(database: str, max_conn: int, uses: Mapping[str, DbUse] | None = None) -> DatabaseBudget:
    """The numbers of one database; raises ConnectionBudgetError naming what does not fit."""
    uses = BUDGET if uses is None else uses
    mine = {key: use for key, use in uses.items() if database in use.databases}
    proxied = sum(u.environments * u.connections for u in mine.values() if u.via_proxy)
    direct = sum(u.environments * u.connections for u in mine.values() if not u.via_proxy)
    available = max_conn - RESERVED_CONNECTIONS
    percent = (available - direct) * 100 // max_conn if max_conn > 0 else 0
    budget = DatabaseBudget(database, max_conn, proxied, direct, max(percent, 0))
    fix = (
        "lower the reserved concurrency or DB_POOL_MAX of its functions in "
        "infra/constructs/db_limits.py BUDGET, or choose a bigger dbInstanceClass"
    )
    if percent < 1 or budget.proxy_connections + direct > available:
        raise ConnectionBudgetError(
            f"{database}_db: max_connections {max_conn} leaves {available} after {RESERVED_CONNECTIONS} "
            f"reserved, and the direct connections alone need {direct}: {fix}"
        )
    if proxied > budget.proxy_connections:
        raise ConnectionBudgetError(
            f"{database}_db: its functions may hold {proxied} connections through RDS Proxy, but with "
            f"max_connections {max_conn} the proxy may open only {budget.proxy_connections} "
            f"(MaxConnectionsPercent {percent}: what {RESERVED_CONNECTIONS} reserved and {direct} direct "
            f"connections leave): {fix}"
        )
    return budget


def check_budget(max_conn: int, databases: tuple[str, ...] = ("order", "inventory")) -> dict[str, DatabaseBudget]:
    for key, use in BUDGET.items():
        if use.environments < 1 or use.connections < 1 or (not use.pooled and use.connections != 1):
            raise ConnectionBudgetError(
                f"BUDGET[{key!r}]: environments and connections must be >= 1 "
                "(and 1 connection for code that is not pooled)"
            )
    return {db: database_budget(db, max_conn) for db in databases}
