"""Least privilege inside each service's database: who logs in as whom, and what each may do.

Every service database (`order_db`, `inventory_db`, each on its own server) has four logins,
each with its own Secrets Manager secret in the RDS shape `{host, port, username, password,
dbname, engine}`:

- master: RDS-generated on aws, the local server's superuser locally; read by the migrate
  function only. May do everything; used for nothing but `bootstrap()` below.
- owner, `<service>_owner`: read by the migrate function (its DB_SECRET_ARN) and the restore
  function. Owns every table; CREATE on schema `public`; CREATEDB (restore builds a fresh
  database).
- app, `<service>_app`: read by the API, the queue consumer and the sweeper (DB_SECRET_ARN).
  Exactly the DML its repository declares (`APP_PRIVILEGES`), on those tables; no DDL, no
  CREATE, no TEMP.
- reader, `<service>_backup`: read by the backup function. SELECT on every table and sequence
  of `public` (a consistent dump).

`bootstrap()` (as master) creates the three roles or resets their passwords from their secrets,
locks the database and schema down (nothing for PUBLIC), and hands any object still owned by
someone else (tables an earlier version migrated as master) to the owner. `grant()` (as the
owner, after the migrations) makes the app's and the reader's table privileges exactly what is
declared: it revokes first, so a privilege dropped from the declaration is really gone.
Both are idempotent; the migrate function runs them on every deploy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import Any

import pg8000.native
from pg8000.native import identifier, literal

__all__ = ["APP_STATEMENTS", "ROLE_LOCK_KEY", "Login", "RoleError", "bootstrap", "grant"]

# Serialises concurrent bootstraps (CREATE ROLE is not "IF NOT EXISTS"). Not the migrations' key:
# the master session holds this one while the owner's session takes the other.
ROLE_LOCK_KEY = 0x56414C4553  # "VALES"

# What an app role may be granted on a table. TRUNCATE, REFERENCES, TRIGGER and everything DDL
# stay with the owner.
APP_STATEMENTS = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"})

# Relation kinds that carry an owner of their own (indexes and owned sequences follow their table).
_RELKIND_KEYWORD = {
    "r": "TABLE",
    "p": "TABLE",
    "v": "VIEW",
    "m": "MATERIALIZED VIEW",
    "f": "FOREIGN TABLE",
    "S": "SEQUENCE",
}


class RoleError(RuntimeError):
    """The roles cannot be set up as declared (a misconfiguration, never retried)."""


@dataclasses.dataclass(frozen=True)
class Login:
    username: str
    password: str = dataclasses.field(repr=False)

    @classmethod
    def from_secret(cls, secret: Mapping[str, Any], label: str) -> Login:
        username, password = secret.get("username"), secret.get("password")
        if not username or not password:
            raise RoleError(f"the {label} secret lacks a username or password")
        return cls(str(username), str(password))


def _role_flags(conn: pg8000.native.Connection, names: list[str]) -> dict[str, dict[str, bool]]:
    rows = conn.run(
        "SELECT rolname, rolsuper, rolcreaterole, rolreplication, rolbypassrls, rolcreatedb "
        "FROM pg_roles WHERE rolname = ANY(CAST(:names AS text[]))",
        names=names,
    )
    keys = ("superuser", "createrole", "replication", "bypassrls", "createdb")
    return {r[0]: dict(zip(keys, r[1:], strict=True)) for r in rows}


def bootstrap(conn: pg8000.native.Connection, *, owner: Login, app: Login, reader: Login) -> dict[str, str]:
    """As the master user, connected to the service's database: roles, passwords, lock-down.

    Returns {"owner": name, "app": name, "reader": name}. Raises RoleError when a role name
    collides with another or with the master, or when a role already exists with powers it must
    not have (superuser, createrole, replication, bypassrls, or membership of another role):
    such a role was changed by hand and is refused rather than silently trusted.
    """
    master = conn.run("SELECT current_user")[0][0]
    dbname = conn.run("SELECT current_database()")[0][0]
    logins = {"owner": owner, "app": app, "reader": reader}
    names = [login.username for login in logins.values()]
    if len(set(names)) != len(names) or master in names:
        raise RoleError(f"owner, app and reader must be three distinct roles other than {master!r}, got {names}")

    conn.run("SELECT pg_advisory_lock(:k)", k=ROLE_LOCK_KEY)
    try:
        conn.run("BEGIN")
        try:
            existing = _role_flags(conn, names)
            for label, login in logins.items():
                # Only the owner may create databases: restore builds each restore point in a fresh one.
                createdb = "CREATEDB" if label == "owner" else "NOCREATEDB"
                verb = "ALTER" if login.username in existing else "CREATE"
                # The password is a literal (utility statements take no parameters); pg8000's
                # literal() quotes it, the server stores only its SCRAM hash.
                conn.run(
                    f"{verb} ROLE {identifier(login.username)} WITH LOGIN {createdb} PASSWORD {literal(login.password)}"
                )
            for name, flags in _role_flags(conn, names).items():
                powers = [k for k in ("superuser", "createrole", "replication", "bypassrls") if flags[k]]
                if powers:
                    raise RoleError(f"role {name} has {', '.join(powers).upper()}: refusing to use it")
            members = conn.run(
                "SELECT m.rolname, r.rolname FROM pg_auth_members a JOIN pg_roles m ON m.oid = a.member "
                "JOIN pg_roles r ON r.oid = a.roleid WHERE m.rolname = ANY(CAST(:names AS text[]))",
                names=names,
            )
            if members:
                raise RoleError(
                    "roles must not inherit others' rights: " + ", ".join(f"{m} is a member of {r}" for m, r in members)
                )

            db, own = identifier(dbname), identifier(owner.username)
            logins_sql = ", ".join(identifier(n) for n in names)
            # Nobody but these three (and the master, who owns the database) may connect.
            conn.run(f"REVOKE ALL ON DATABASE {db} FROM PUBLIC")
            conn.run(f"GRANT CONNECT ON DATABASE {db} TO {logins_sql}")
            # Only the owner creates objects; PUBLIC gets nothing (PG < 15 granted CREATE to all).
            conn.run("REVOKE ALL ON SCHEMA public FROM PUBLIC")
            conn.run(f"GRANT USAGE, CREATE ON SCHEMA public TO {own}")
            conn.run(f"GRANT USAGE ON SCHEMA public TO {identifier(app.username)}, {identifier(reader.username)}")
            _hand_over_to_owner(conn, owner.username)
            conn.run("COMMIT")
        except BaseException:
            conn.run("ROLLBACK")
            raise
    finally:
        conn.run("SELECT pg_advisory_unlock(:k)", k=ROLE_LOCK_KEY)
    return {label: login.username for label, login in logins.items()}


def _hand_over_to_owner(conn: pg8000.native.Connection, owner: str) -> None:
    """Objects of `public` owned by anyone else (an older version migrated as master) -> owner."""
    rows = conn.run(
        "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND CAST(c.relkind AS text) = ANY(CAST(:kinds AS text[])) "
        "AND pg_get_userbyid(c.relowner) <> :owner "
        # sequences owned by a column (serial/identity) follow their table
        "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = CAST('pg_class' AS regclass) "
        "AND d.objid = c.oid AND d.deptype IN ('a', 'i')) ORDER BY c.relname",
        kinds=list(_RELKIND_KEYWORD),
        owner=owner,
    )
    if not rows:
        return
    superuser = conn.run("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")[0][0]
    if not superuser:
        # RDS's master is not a superuser: ALTER ... OWNER TO needs it to be able to SET ROLE owner.
        conn.run(f"GRANT {identifier(owner)} TO CURRENT_USER")
    for name, kind in rows:
        conn.run(f"ALTER {_RELKIND_KEYWORD[kind]} public.{identifier(name)} OWNER TO {identifier(owner)}")


def grant(
    conn: pg8000.native.Connection, *, owner: str, app: str, reader: str, app_privileges: Mapping[str, Collection[str]]
) -> None:
    """As the owner, after the migrations: the app gets exactly `app_privileges`
    ({table: ("SELECT", "INSERT", ...)}), the reader SELECT on everything, now and for tables
    and sequences the owner creates later."""
    for table, privileges in app_privileges.items():
        unknown = {p.upper() for p in privileges} - APP_STATEMENTS
        if unknown or not privileges:
            raise RoleError(
                f"app privileges on {table} must be among {sorted(APP_STATEMENTS)}, got {sorted(privileges)}"
            )
    current = conn.run("SELECT current_user")[0][0]
    if current != owner:
        raise RoleError(f"grant() must run as the owner {owner!r}, not {current!r}")
    present = {
        r[0]
        for r in conn.run(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')"
        )
    }
    missing = sorted(set(app_privileges) - present)
    if missing:
        raise RoleError(f"app privileges name tables the migrations do not create: {missing}")

    own, app_id, reader_id = identifier(owner), identifier(app), identifier(reader)
    conn.run("BEGIN")
    try:
        for role in (app_id, reader_id):
            conn.run(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}")
            conn.run(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role}")
        conn.run(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader_id}")
        conn.run(f"GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO {reader_id}")
        conn.run(f"ALTER DEFAULT PRIVILEGES FOR ROLE {own} IN SCHEMA public GRANT SELECT ON TABLES TO {reader_id}")
        conn.run(f"ALTER DEFAULT PRIVILEGES FOR ROLE {own} IN SCHEMA public GRANT SELECT ON SEQUENCES TO {reader_id}")
        for table, privileges in sorted(app_privileges.items()):
            statements = sorted({p.upper() for p in privileges})
            conn.run(f"GRANT {', '.join(statements)} ON TABLE public.{identifier(table)} TO {app_id}")
            if "INSERT" in statements:
                # serial columns draw from a sequence; identity columns need no grant
                for (sequence,) in conn.run(
                    "SELECT s.relname FROM pg_depend d JOIN pg_class s ON s.oid = d.objid "
                    "WHERE d.refobjid = CAST(:t AS regclass) AND d.classid = CAST('pg_class' AS regclass) "
                    "AND s.relkind = 'S' AND d.deptype = 'a'",
                    t=f"public.{identifier(table)}",
                ):
                    conn.run(f"GRANT USAGE ON SEQUENCE public.{identifier(sequence)} TO {app_id}")
        conn.run("COMMIT")
    except BaseException:
        conn.run("ROLLBACK")
        raise
