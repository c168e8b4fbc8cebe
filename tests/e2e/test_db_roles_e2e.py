"""The deployed functions log into Postgres as their service's app role (issue 13 item 5).

The test side keeps the master login (`outputs["databases"]`) to look at the servers; the
functions must not use it.
"""

from __future__ import annotations

import json

import pg8000.native
import pytest
from pg8000.exceptions import DatabaseError

from infra.outputs import INVENTORY_DB_SECRET_ARN, ORDER_DB_SECRET_ARN

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("closed_circuit")]


def _sessions(localcloud, service: str) -> list[tuple[str, str]]:
    """(user, application_name) of every client session on the service's server but ours."""
    conn = localcloud.db(service)
    try:
        return [
            tuple(r)
            for r in conn.run(
                "SELECT usename, application_name FROM pg_stat_activity "
                "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
            )
        ]
    finally:
        conn.close()


def _app_secret(localcloud, service: str) -> dict:
    arn = localcloud.stack[{"order": ORDER_DB_SECRET_ARN, "inventory": INVENTORY_DB_SECRET_ARN}[service]]
    return json.loads(localcloud.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"])


def test_functions_connect_as_the_app_role_never_as_master(localcloud, api):
    product = api.new_product(stock=5)
    assert api.order(product, 2).status_code == 201
    assert api.http.get("/health/order").status_code == 200
    for service in ("order", "inventory"):
        master = localcloud.outputs["databases"][service]["username"]
        sessions = _sessions(localcloud, service)
        functions = {user for user, app in sessions if app == f"valerix-{service}"}
        assert functions == {f"{service}_app"}, sessions
        assert not [s for s in sessions if s[0] == master], f"someone else uses the master login: {sessions}"


def test_the_app_secret_cannot_change_the_schema(localcloud):
    """What a stolen run-time secret allows: its DML, nothing else."""
    secret = _app_secret(localcloud, "order")
    assert secret["username"] == "order_app" and len(secret["password"]) >= 30
    conn = pg8000.native.Connection(
        user=secret["username"],
        password=secret["password"],
        host=secret["host"],
        port=int(secret["port"]),
        database=secret["dbname"],
        timeout=10,
    )
    try:
        for sql in (
            "DROP TABLE orders",
            "CREATE TABLE stolen (x int)",
            "TRUNCATE orders",
            "ALTER TABLE orders ADD COLUMN x int",
            "SELECT * FROM schema_migrations",
        ):
            with pytest.raises(DatabaseError, match="42501"):
                conn.run(sql)
        assert conn.run("SELECT count(*) FROM orders")[0][0] >= 0
    finally:
        conn.close()
