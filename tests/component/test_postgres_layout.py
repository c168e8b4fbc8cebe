"""Where the local Postgres servers keep their files, run for real (Debian's binaries).

As root, initdb/pg_ctl run as `postgres`, which may not enter the checkout (a clone under a
mode-700 folder like /root) nor the private `.valerix/`: the server's files then live in a
0700 directory owned by `postgres` outside the checkout, recorded so a later `down` finds it.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from valerix_localcloud.postgres import PostgresServer, root_server_dir

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the root layout only applies to root")


@pytest.fixture
def private_checkout(tmp_path):
    """A folder only root may enter, like /root, holding a `.valerix/pg` state directory."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    home.chmod(0o700)
    state = home / "clone" / ".valerix" / "pg"
    state.mkdir(parents=True, mode=0o700)
    return state


@as_root
def test_root_runs_postgres_from_inside_a_folder_postgres_cannot_enter(private_checkout):
    server = PostgresServer(private_checkout / "order", "order_db", fsync=False)
    try:
        server.start()
        conn = server.connect()
        assert conn.run("SELECT current_database()") == [["order_db"]]
        conn.close()

        postgres = pwd.getpwnam("postgres")
        assert server.server_dir == root_server_dir(server.directory)
        assert not server.server_dir.is_relative_to(private_checkout.parent.parent)
        info = server.server_dir.stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (postgres.pw_uid, 0o700)

        state = json.loads(server.state_file.read_text())
        assert state["server_dir"] == str(server.server_dir), "recorded so `make down` finds it"
        assert stat.S_IMODE(server.state_file.stat().st_mode) == 0o600
        assert server.state_file.stat().st_uid == 0, "the password file is root's, not postgres's"

        # A fresh object (what `make down` builds) finds and stops the same server.
        again = PostgresServer(private_checkout / "order", "order_db")
        assert again.data_dir == server.data_dir and again.is_running()
        again.stop()
        assert not server.is_running()
    finally:
        server.destroy()
    assert not server.server_dir.exists() and not server.directory.exists()


@pytest.fixture
def open_folder():
    """A folder `postgres` may enter (pytest's own tmp_path, under /tmp/pytest-of-root, is 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="valerix-pg-layout-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@as_root
def test_a_cluster_from_the_old_layout_is_stopped_moved_and_keeps_its_data(open_folder):
    """Older versions kept root's clusters inside the checkout, owned by `postgres`."""
    state = open_folder / "pg" / "order"
    old = PostgresServer(state, "order_db", fsync=False)
    state.mkdir(parents=True)
    state.parent.chmod(0o755)
    # Record the in-checkout location, start, then forget it was recorded: the old layout.
    (state / "server.json").write_text(
        json.dumps({"password": "pw-old-layout-123", "port": 0, "server_dir": str(state)})
    )
    old.start()
    conn = old.connect()
    conn.run("CREATE TABLE kept (v text)")
    conn.run("INSERT INTO kept VALUES ('an order')")
    conn.close()
    legacy_data = old.data_dir
    assert legacy_data == state / "data"
    (state / "server.json").write_text(json.dumps({"password": old.password, "port": old.port}))

    new = PostgresServer(state, "order_db", fsync=False)
    try:
        new.start()
        assert new.data_dir != legacy_data and not legacy_data.exists()
        conn = new.connect()
        assert conn.run("SELECT v FROM kept") == [["an order"]]
        conn.close()
    finally:
        new.destroy()
        shutil.rmtree(state, ignore_errors=True)


@as_root
def test_a_fresh_clone_at_the_same_path_sets_the_old_cluster_aside_and_starts(open_folder):
    """As root the data outlives the checkout; a new clone at the same path has no password for
    it. CI failed here: `make up` on a fresh clone answered 'password authentication failed'."""
    state = open_folder / "clone" / ".valerix" / "pg" / "order"
    old = PostgresServer(state, "order_db", fsync=False)
    new = PostgresServer(state, "order_db", fsync=False)
    try:
        old.start()
        conn = old.connect()
        conn.run("CREATE TABLE kept (v text)")
        conn.close()
        # The old checkout is deleted while its server still runs; a new clone takes its place.
        shutil.rmtree(open_folder / "clone")

        new.start()

        assert new.orphaned_data is not None and (new.orphaned_data / "PG_VERSION").exists()
        assert new.orphaned_data.parent == new.server_dir
        assert new.password and new.password != old.password
        conn = new.connect()
        assert conn.run("SELECT to_regclass('kept')") == [[None]], "a new cluster, not the old one"
        conn.close()
    finally:
        new.destroy()
