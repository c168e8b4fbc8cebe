"""Fixtures shared by every test folder.

`postgres` gives each test session real PostgreSQL servers (Debian's binaries, throwaway
clusters under .valerix/test-pg, fsync off); tests get a clean database per test via
`order_db` / `inventory_db` helpers in the component conftest.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from valerix_localcloud.postgres import PostgresServer

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_STATE = REPO_ROOT / ".valerix" / "test-pg" / str(os.getpid())


@pytest.fixture(scope="session")
def postgres_servers():
    """Two real Postgres servers, like the two RDS instances: {"order": ..., "inventory": ...}."""
    servers = {
        "order": PostgresServer(TEST_STATE / "order", "order_db", fsync=False),
        "inventory": PostgresServer(TEST_STATE / "inventory", "inventory_db", fsync=False),
    }
    for server in servers.values():
        server.start()
    yield servers
    for server in servers.values():
        server.destroy()
    shutil.rmtree(TEST_STATE, ignore_errors=True)
