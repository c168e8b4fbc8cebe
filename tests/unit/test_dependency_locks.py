"""The lock files: every requirement pinned with hashes (pip's --require-hashes refuses anything
else), the locks agree with what the pyproject files declare, and the project venv runs the
functions with the very versions the AWS bundle ships. And no code edits sys.path: the project's
packages are installed (make deps)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
LOCKS = {
    "requirements.txt": ("pyproject.toml", None),
    "requirements-dev.txt": ("pyproject.toml", "dev"),
    "requirements-localstack.txt": ("localcloud/pyproject.toml", "localstack"),
    "observability/exporter/requirements.txt": ("observability/exporter/pyproject.toml", None),
}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def locked(lock: str) -> dict[str, tuple[str, int]]:
    """{name: (version, number of hashes)} of a lock file (markers ignored: one entry per name
    and version is enough here)."""
    entries: dict[str, tuple[str, int]] = {}
    name = None
    for line in (REPO / lock).read_text().splitlines():
        if match := PIN.match(line):
            name = canonicalize_name(match.group(1))
            entries[name] = (match.group(2), 0)
        elif line.strip().startswith("--hash=sha256:") and name is not None:
            version, hashes = entries[name]
            entries[name] = (version, hashes + 1)
        elif line and not line.startswith((" ", "#")):
            raise AssertionError(f"{lock}: not a pinned requirement: {line!r}")
    return entries


def declared(pyproject: str, extra: str | None) -> list[Requirement]:
    project = tomllib.loads((REPO / pyproject).read_text())["project"]
    names = project["optional-dependencies"][extra] if extra else project["dependencies"]
    return [Requirement(spec) for spec in names]


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_locked_requirement_is_pinned_with_its_hashes(lock):
    entries = locked(lock)
    assert entries, f"{lock} pins nothing"
    assert {name: v for name, (v, hashes) in entries.items() if hashes == 0} == {}


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_the_lock_holds_what_the_pyproject_declares(lock):
    pyproject, extra = LOCKS[lock]
    entries = locked(lock)
    for requirement in declared(pyproject, extra):
        name = canonicalize_name(requirement.name)
        assert name in entries, f"{pyproject} declares {requirement}, {lock} does not lock it: `make lock`"
        version, _ = entries[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{lock} locks {name}=={version}, {pyproject} asks for {requirement}: `make lock`"
        )


def test_the_project_venv_runs_the_functions_with_the_bundled_versions():
    runtime, dev = locked("requirements.txt"), locked("requirements-dev.txt")
    differ = {
        name: (version, dev.get(name, ("missing", 0))[0])
        for name, (version, _) in runtime.items()
        if dev.get(name, ("missing", 0))[0] != version
    }
    assert differ == {}, "requirements-dev.txt must be compiled with -c requirements.txt (`make lock`)"


def test_the_uv_that_installs_the_locks_is_the_locked_uv_with_its_hashes():
    """pip installs uv from requirements-uv.txt, uv installs the other locks (Makefile)."""
    entries = locked("requirements-uv.txt")
    assert set(entries) == {"uv"}
    version, hashes = entries["uv"]
    assert hashes > 0
    assert version == locked("requirements-dev.txt")["uv"][0], "`make lock`"


def test_the_unused_validation_extra_is_not_bundled():
    assert "fastjsonschema" not in locked("requirements.txt")


def test_no_code_edits_sys_path():
    """The packages are installed (make deps): imports need no path edits. The one exception is
    the local Lambda runtime, which puts the function's code folder on sys.path as AWS's does."""
    allowed = {"localcloud/valerix_localcloud/zygote.py"}
    edits = re.compile(r"sys\.path\s*(\.(insert|append|extend|remove|pop)\(|\[[^\]]*\]\s*=|\+=|=[^=])")
    offenders = [
        str(path.relative_to(REPO))
        for top in ("functions", "infra", "scripts", "tests", "localcloud", "observability")
        for path in (REPO / top).rglob("*.py")
        if str(path.relative_to(REPO)) not in allowed and edits.search(path.read_text())
    ]
    assert offenders == []
