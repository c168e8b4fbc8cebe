"""Docker-free Lambda asset bundling.

The asset root of every function is a staged directory that contains the `functions/`
package (handlers are `functions.<service>.handler.<name>`), and nothing else from the
repository (no .venv, tests, node_modules ...).

* target=local: only `functions/` (the local executor runs handlers in the project venv).
* target=aws: `functions/` plus Linux wheels of `requirements.txt`, installed with
  `pip install --require-hashes --platform manylinux2014_x86_64 --only-binary=:all:
  --python-version 3.12 --implementation cp -t <dir>`. requirements.txt is a lock file
  resolved for every platform (`make lock`): it holds the hashes of these wheels too, so pip
  refuses any file that is not the one locked. The wheel install is cached under
  `.valerix/cdk-build/` keyed by the hash of requirements.txt, so only the first synth needs
  the package index.

Staged directories are content-addressed and written atomically (temp dir + rename), so
concurrent synths (tests, `cdk synth`) never see half-written bundles. The asset hash is
computed here (`AssetHashType.CUSTOM`), which spares CDK from fingerprinting ~60 MB of
wheels on every synth.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = REPO_ROOT / "functions"
REQUIREMENTS = REPO_ROOT / "requirements.txt"
BUILD_ROOT = Path(os.environ.get("VALERIX_CDK_BUILD_DIR", REPO_ROOT / ".valerix" / "cdk-build"))

LAMBDA_PLATFORM = "manylinux2014_x86_64"
LAMBDA_PYTHON_VERSION = "3.12"

_IGNORED_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", "tests"}
_IGNORED_SUFFIXES = (".pyc", ".pyo")
_COMPLETE_MARKER = ".valerix-complete"


def _included(path: Path, root: Path) -> bool:
    rel = path.relative_to(root)
    if any(part in _IGNORED_DIRS or part.startswith(".") for part in rel.parts):
        return False
    return not path.name.endswith(_IGNORED_SUFFIXES)


def _functions_files(functions_dir: Path) -> list[Path]:
    if not functions_dir.is_dir():
        raise FileNotFoundError(f"{functions_dir} does not exist: nothing to bundle")
    return sorted(p for p in functions_dir.rglob("*") if p.is_file() and _included(p, functions_dir))


def functions_hash(functions_dir: Path = FUNCTIONS_DIR) -> str:
    digest = hashlib.sha256()
    for path in _functions_files(functions_dir):
        digest.update(path.relative_to(functions_dir).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def requirements_hash(requirements: Path = REQUIREMENTS) -> str:
    digest = hashlib.sha256()
    digest.update(f"{LAMBDA_PLATFORM}|cp{LAMBDA_PYTHON_VERSION}|".encode())
    digest.update(requirements.read_bytes())
    return digest.hexdigest()


def _copy_functions(functions_dir: Path, dest: Path) -> None:
    for path in _functions_files(functions_dir):
        target = dest / "functions" / path.relative_to(functions_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)


def _publish(tmp: Path, final: Path) -> Path:
    """Atomically move a finished staging dir into place (or keep a concurrent winner's)."""
    (tmp / _COMPLETE_MARKER).write_text("ok\n")
    try:
        os.rename(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (final / _COMPLETE_MARKER).exists():
            raise
    return final


def _prune(prefix: str, keep: Path, keep_count: int = 2) -> None:
    """Drop old staged bundles of the same kind (keeps the newest few)."""
    siblings = sorted(
        (p for p in BUILD_ROOT.glob(f"{prefix}*") if p.is_dir() and p != keep and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in siblings[keep_count - 1 :]:
        shutil.rmtree(old, ignore_errors=True)


def install_lambda_wheels(requirements: Path = REQUIREMENTS) -> Path:
    """Linux (manylinux2014 x86_64, CPython 3.12) wheels of requirements.txt, cached."""
    final = BUILD_ROOT / "wheels" / requirements_hash(requirements)[:20]
    if (final / _COMPLETE_MARKER).exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final.parent))
    cmd = [
        sys.executable, "-m", "pip", "install",
        "--platform", LAMBDA_PLATFORM,
        "--only-binary=:all:",
        "--python-version", LAMBDA_PYTHON_VERSION,
        "--implementation", "cp",
        "--no-compile",
        "--disable-pip-version-check",
        "--quiet",
        "--require-hashes",
        "-r", str(requirements),
        "-t", str(tmp),
    ]  # fmt: skip
    print(f"[valerix bundling] installing Lambda wheels: {' '.join(cmd)}", file=sys.stderr)
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"pip install of Lambda wheels failed:\n{result.stdout}\n{result.stderr}")
    # `bin/` holds console scripts with a build-host shebang: useless in Lambda.
    shutil.rmtree(tmp / "bin", ignore_errors=True)
    return _publish(tmp, final)


def stage_function_bundle(target: str) -> tuple[Path, str]:
    """Stage the asset directory for `target`; returns (directory, asset hash)."""
    fhash = functions_hash()
    if target == "local":
        asset_hash = hashlib.sha256(f"local|{fhash}".encode()).hexdigest()
        final = BUILD_ROOT / f"bundle-local-{asset_hash[:20]}"
        if not (final / _COMPLETE_MARKER).exists():
            BUILD_ROOT.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=BUILD_ROOT))
            _copy_functions(FUNCTIONS_DIR, tmp)
            _publish(tmp, final)
            _prune("bundle-local-", final)
        return final, asset_hash
    if target == "aws":
        wheels = install_lambda_wheels()
        asset_hash = hashlib.sha256(f"aws|{requirements_hash()}|{fhash}".encode()).hexdigest()
        final = BUILD_ROOT / f"bundle-aws-{asset_hash[:20]}"
        if not (final / _COMPLETE_MARKER).exists():
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=BUILD_ROOT))
            shutil.copytree(wheels, tmp, dirs_exist_ok=True)
            (tmp / _COMPLETE_MARKER).unlink(missing_ok=True)
            if (tmp / "functions").exists():
                raise RuntimeError("a requirement installs a top-level `functions` package")
            _copy_functions(FUNCTIONS_DIR, tmp)
            _publish(tmp, final)
            _prune("bundle-aws-", final)
        return final, asset_hash
    raise ValueError(f"unknown target {target!r}")
