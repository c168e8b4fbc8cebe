"""Least privilege in the databases (issue 13 item 5), against the real Postgres servers.

The `valerix` fixture has already run both migrate handlers the way a deploy does (master
bootstraps the roles, the owner migrates and grants); every handler then runs as its service's
app role. These tests log in with each role's own secret and try what an attacker holding that
secret would try.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pg8000.native
import pytest
from pg8000.exceptions import DatabaseError

from functions.common.roles import RoleError
from tests.component.conftest import aws_client, role_secrets

INSUFFICIENT_PRIVILEGE = "42501"


def login(
    postgres_servers: Any, service: str, label: str, *, server: str | None = None, database: str | None = None
) -> pg8000.native.Connection:
    """Connect with `service`'s `label` role (owner/app/reader/master), to `server`'s Postgres."""
    secret = role_secrets(postgres_servers[service], service)[label]
    target = postgres_servers[server or service]
    return pg8000.native.Connection(
        user=secret["username"],
        password=secret["password"],
        host="127.0.0.1",
        port=target.port,
        database=database or target.dbname,
        timeout=10,
    )


def sqlstate(exc: BaseException) -> str | None:
    return exc.args[0].get("C") if isinstance(exc, DatabaseError) and isinstance(exc.args[0], dict) else None


def refused(conn: pg8000.native.Connection, sql: str, **params: Any) -> str:
    """Run `sql`, expect Postgres to refuse it; return the SQLSTATE."""
    with pytest.raises(DatabaseError) as caught:
        conn.run(sql, **params)
    state = sqlstate(caught.value)
    assert state is not None, caught.value
    return state


@pytest.fixture
def order_app(valerix, postgres_servers):
    conn = login(postgres_servers, "order", "app")
    yield conn
    conn.close()


@pytest.fixture
def inventory_app(valerix, postgres_servers):
    conn = login(postgres_servers, "inventory", "app")
    yield conn
    conn.close()


# ------------------------------------------------------------------------------ the app role


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE stolen (x int)",
        "CREATE TEMP TABLE stolen (x int)",
        "CREATE SCHEMA stolen",
        "CREATE VIEW stolen AS SELECT * FROM orders",
        "DROP TABLE orders",
        "ALTER TABLE orders ADD COLUMN x int",
        "ALTER TABLE orders DROP CONSTRAINT orders_quantity_check",
        "CREATE INDEX stolen ON orders (reason)",
        "TRUNCATE orders",
        "SELECT * FROM schema_migrations",
        "DELETE FROM schema_migrations",
        "CREATE ROLE stolen LOGIN PASSWORD 'x'",
        "CREATE DATABASE stolen",
        "ALTER ROLE order_app SUPERUSER",
    ],
)
def test_order_app_role_cannot_change_the_schema_or_escalate(order_app, valerix, sql):
    assert refused(order_app, sql) == INSUFFICIENT_PRIVILEGE
    # and nothing changed
    assert [
        r[0] for r in valerix.order_db.run("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
    ] == ["orders", "schema_migrations"]


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM products",  # inventory declares no DELETE anywhere
        "DELETE FROM reservations",
        "DROP TABLE reservations",
        "ALTER TABLE products DROP CONSTRAINT products_stock_check",
        "TRUNCATE reservations",
        "CREATE TABLE stolen (x int)",
        "UPDATE schema_migrations SET version = 'x'",
    ],
)
def test_inventory_app_role_is_limited_to_its_declared_dml(inventory_app, valerix, sql):
    before = valerix.snapshot()
    assert refused(inventory_app, sql) == INSUFFICIENT_PRIVILEGE
    assert valerix.snapshot() == before


def test_app_roles_can_do_their_dml(order_app, inventory_app, valerix):
    order_id = f"o-{uuid.uuid4().hex[:8]}"
    order_app.run(
        "INSERT INTO orders (order_id, product_id, quantity, status) VALUES (:o, 'widget', 1, 'PENDING')", o=order_id
    )
    order_app.run("UPDATE orders SET status = 'CONFIRMED' WHERE order_id = :o", o=order_id)
    assert order_app.run("SELECT status FROM orders WHERE order_id = :o", o=order_id) == [["CONFIRMED"]]
    order_app.run("DELETE FROM orders WHERE order_id = :o", o=order_id)

    inventory_app.run(
        "INSERT INTO reservations (order_id, product_id, quantity, status) VALUES (:o, 'widget', 2, 'RESERVED')",
        o=order_id,
    )
    inventory_app.run("UPDATE products SET stock = stock - 2 WHERE product_id = 'widget'")
    inventory_app.run("INSERT INTO products (product_id, name, stock) VALUES ('new', 'New', 1)")
    assert valerix.stock("widget") == 98 and valerix.stock("new") == 1


@pytest.mark.parametrize("service, other", [("order", "inventory"), ("inventory", "order")])
def test_app_role_cannot_reach_the_other_service_database(valerix, postgres_servers, service, other):
    # Each database has its own server (as on RDS): the other service's roles do not exist there.
    with pytest.raises(DatabaseError) as caught:
        login(postgres_servers, service, "app", server=other)
    assert sqlstate(caught.value) in ("28P01", "28000")


def test_nothing_but_the_service_roles_may_connect(valerix, postgres_servers):
    conn = postgres_servers["order"].connect()
    try:
        conn.run("CREATE ROLE intruder LOGIN PASSWORD 'intruder-pw'")
        with pytest.raises(DatabaseError) as caught:
            pg8000.native.Connection(
                user="intruder",
                password="intruder-pw",
                host="127.0.0.1",
                port=postgres_servers["order"].port,
                database="order_db",
                timeout=10,
            )
        assert sqlstate(caught.value) == INSUFFICIENT_PRIVILEGE  # CONNECT is not granted to PUBLIC
    finally:
        conn.run("DROP ROLE intruder")
        conn.close()


def test_run_time_functions_connect_as_the_app_role(valerix, postgres_servers):
    assert valerix.order("widget", 2).status == 201
    for service in ("order", "inventory"):
        conn = postgres_servers[service].connect()
        try:
            users = {
                r[0]
                for r in conn.run(
                    "SELECT usename FROM pg_stat_activity WHERE application_name = :a", a=f"valerix-{service}"
                )
            }
        finally:
            conn.close()
        assert users == {f"{service}_app"}


# ------------------------------------------------------------------------------ owner, reader, bootstrap


def test_migrations_run_as_the_owner_who_owns_every_table(valerix):
    for db, service in ((valerix.order_db, "order"), (valerix.inventory_db, "inventory")):
        owners = {r[0]: r[1] for r in db.run("SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public'")}
        assert set(owners.values()) == {f"{service}_owner"}, owners
        flags = db.run(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles WHERE rolname = :r",
            r=f"{service}_owner",
        )
        assert flags == [[False, False, True, False]]  # CREATEDB: restore builds a fresh database


def test_bootstrap_is_idempotent_and_follows_the_secrets(valerix, postgres_servers):
    def privileges() -> list:
        return valerix.order_db.run(
            "SELECT grantee, table_name, privilege_type FROM information_schema.role_table_grants "
            "WHERE table_schema = 'public' AND grantee <> 'order_owner' ORDER BY 1, 2, 3"
        )

    before = privileges()
    assert valerix.migrate("order")["applied"] == []
    assert valerix.migrate("order")["applied"] == []
    assert privileges() == before
    assert ["order_app", "orders", "DELETE"] in before and ["order_backup", "orders", "SELECT"] in before
    assert not [p for p in before if p[0] == "order_app" and p[1] == "schema_migrations"]

    # A new password in the app secret (rotation) is what the role accepts after the next deploy.
    arn = valerix.secret_arns["order"]["app"]
    secret = role_secrets(postgres_servers["order"], "order")["app"]
    aws_client("secretsmanager").put_secret_value(
        SecretId=arn, SecretString=json.dumps({**secret, "password": "n3w-pw"})
    )
    valerix.migrate("order")
    pg8000.native.Connection(
        user="order_app",
        password="n3w-pw",
        host="127.0.0.1",
        port=postgres_servers["order"].port,
        database="order_db",
        timeout=10,
    ).close()
    with pytest.raises(DatabaseError):
        login(postgres_servers, "order", "app")
    aws_client("secretsmanager").put_secret_value(SecretId=arn, SecretString=json.dumps(secret))
    valerix.migrate("order")
    login(postgres_servers, "order", "app").close()


def test_grants_drifted_by_hand_are_taken_back(valerix, order_app):
    valerix.order_db.run("GRANT TRUNCATE, REFERENCES ON orders TO order_app")
    valerix.order_db.run("GRANT INSERT ON schema_migrations TO order_app")
    valerix.migrate("order")
    assert refused(order_app, "TRUNCATE orders") == INSUFFICIENT_PRIVILEGE
    assert refused(order_app, "INSERT INTO schema_migrations (version) VALUES ('x')") == INSUFFICIENT_PRIVILEGE


def test_tables_an_older_version_migrated_as_master_are_handed_to_the_owner(valerix):
    valerix.order_db.run("ALTER TABLE orders OWNER TO CURRENT_USER")
    valerix.order_db.run("CREATE SEQUENCE legacy_seq")
    valerix.migrate("order")
    owners = dict(
        valerix.order_db.run(
            "SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN ('r', 'S')"
        )
    )
    assert owners == {"orders": "order_owner", "schema_migrations": "order_owner", "legacy_seq": "order_owner"}


@pytest.mark.parametrize("power", ["SUPERUSER", "CREATEROLE", "BYPASSRLS"])
def test_a_role_given_powers_by_hand_is_refused(valerix, power):
    valerix.order_db.run(f"ALTER ROLE order_app {power}")
    try:
        with pytest.raises(RoleError, match=power):
            valerix.migrate("order")
    finally:
        valerix.order_db.run(f"ALTER ROLE order_app NO{power}")


def test_a_role_made_member_of_another_is_refused(valerix):
    valerix.order_db.run("GRANT order_owner TO order_app")
    try:
        with pytest.raises(RoleError, match="order_app is a member of order_owner"):
            valerix.migrate("order")
    finally:
        valerix.order_db.run("REVOKE order_owner FROM order_app")


def test_the_reader_dumps_and_the_owner_restores(valerix, postgres_servers):
    """The backup function's logins: a dump as the reader, a verified restore as the owner."""
    from functions.backup import databases, pgdump
    from functions.backup.settings import migrations_dir
    from functions.common.db import DbSecret
    from functions.common.settings import DbTls

    no_tls = DbTls(mode="disable")  # the test servers listen on loopback without TLS (target=local)

    assert valerix.order("widget", 3).status == 201
    secrets = role_secrets(postgres_servers["inventory"], "inventory")
    reader = DbSecret.from_json(secrets["reader"])
    owner = DbSecret.from_json(secrets["owner"])

    with databases.connection(reader, tls=no_tls) as conn:
        catalogue, data = pgdump.dump_database(conn)
        assert refused(conn, "UPDATE products SET stock = 0") == INSUFFICIENT_PRIVILEGE
    dump = pgdump.Dump({**catalogue, "format": pgdump.PAYLOAD_FORMAT}, data)
    fresh = f"inventory_db_restore_roles_{uuid.uuid4().hex[:6]}"
    databases.create_database(owner, fresh, tls=no_tls)
    try:
        with databases.connection(owner, fresh, tls=no_tls) as conn:
            pgdump.load(conn, dump, migrations_dir("inventory"))
            report = pgdump.verify(conn, dump)
        assert report["reservations"]["rows"] == 1 and report["products"]["rows"] == 4
    finally:
        databases.drop_database(owner, fresh, tls=no_tls)
    # the app role can neither create databases nor drop the owner's
    with pytest.raises(Exception, match="permission denied"):
        databases.create_database(DbSecret.from_json(secrets["app"]), fresh, tls=no_tls)
