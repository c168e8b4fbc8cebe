"""AWS-realistic INIT of every function: a fresh interpreter (no fork server) imports the handler
from the AWS bundle (infra/bundling.py) and looks it up, as the Lambda runtime does at INIT.

The AWS bundle's wheels are for CPython 3.12 (the declared runtime). Where this machine has no
3.12 (Debian 12 has 3.11), its compiled wheels (pydantic-core, cryptography's cffi backend) cannot
load, so the closest stand-in is used and said so: the same bundle layout — `functions/` plus the
same pinned requirements as manylinux wheels, flat in one directory, nothing from a virtualenv —
with the wheels for the interpreter that runs here (`bundle_for(python)`).

Used by `make bench` (`aws_init_ms`, `bundle_mb`) and by the parity test
(tests/infra/test_infra_aws_init.py). As a script: prints the numbers as JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from infra import bundling

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REPEATS = 5  # fresh interpreters per function; the median is reported

# What the child runs: import + handler lookup (the runtime's INIT for this handler), timed inside
# the child so interpreter start-up (not ours to cut) is reported apart. Both wall and CPU time:
# on this shared machine the wall time includes waiting for a core; the CPU time is what the
# import costs uncontended, as in a Lambda INIT (one process, its own vCPU share).
PROBE = r"""
import importlib, json, sys, time
started, cpu_started = time.perf_counter(), time.process_time()
module_name, _, attribute = sys.argv[1].rpartition(".")
handler = getattr(importlib.import_module(module_name), attribute)
assert callable(handler), sys.argv[1]
init_ms = (time.perf_counter() - started) * 1000
cpu_ms = (time.process_time() - cpu_started) * 1000
print(json.dumps({"init_ms": init_ms, "cpu_ms": cpu_ms, "python": sys.version.split()[0],
                  "modules": len(sys.modules), "fastapi": "fastapi" in sys.modules}))
"""


@dataclass(frozen=True)
class Bundle:
    path: Path
    python: str  # the interpreter that can import it
    note: str  # what it is, in words, for the report


def python_version(python: str) -> str:
    return subprocess.run(
        [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True, check=True
    ).stdout.strip()


def _importable(bundle: Path, python: str) -> bool:
    result = subprocess.run(
        [python, "-s", "-c", "import pydantic_core, cryptography.hazmat.bindings._rust"],
        cwd=bundle,
        env=_child_env(bundle, {}),
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode == 0


def _wheels_for(version: str) -> Path:
    """requirements.txt as manylinux wheels for CPython `version`, flat (as for the AWS bundle)."""
    digest = hashlib.sha256(
        f"{bundling.LAMBDA_PLATFORM}|cp{version}|".encode() + bundling.REQUIREMENTS.read_bytes()
    ).hexdigest()[:20]
    final = bundling.BUILD_ROOT / f"wheels-cp{version.replace('.', '')}-{digest}"
    if (final / ".valerix-complete").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final.parent))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--platform",
            bundling.LAMBDA_PLATFORM,
            "--only-binary=:all:",
            "--python-version",
            version,
            "--implementation",
            "cp",
            "--no-compile",
            "--disable-pip-version-check",
            "--quiet",
            "--require-hashes",
            "-r",
            str(bundling.REQUIREMENTS),
            "-t",
            str(tmp),
        ],
        check=True,
    )
    shutil.rmtree(tmp / "bin", ignore_errors=True)
    (tmp / ".valerix-complete").write_text("ok\n")
    try:
        os.rename(tmp, final)
    except OSError:  # a concurrent run won
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def bundle_for(python: str = sys.executable) -> Bundle:
    """The AWS bundle if `python` can import it, else its twin with wheels for `python`."""
    aws, _ = bundling.stage_function_bundle("aws")
    if _importable(aws, python):
        return Bundle(aws, python, f"the AWS bundle under Python {python_version(python)}")
    version = python_version(python)
    twin = bundling.BUILD_ROOT / f"{aws.name}-twin-cp{version.replace('.', '')}"
    if not (twin / ".valerix-complete").exists():
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=bundling.BUILD_ROOT))
        shutil.copytree(_wheels_for(version), tmp, dirs_exist_ok=True)
        shutil.copytree(aws / "functions", tmp / "functions")
        (tmp / ".valerix-complete").write_text("ok\n")
        try:
            os.rename(tmp, twin)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    return Bundle(
        twin,
        python,
        f"the AWS bundle's layout with Python {version} wheels of the same pins (its "
        f"python{bundling.LAMBDA_PYTHON_VERSION} wheels cannot load under {version})",
    )


def bundle_mb(path: Path) -> float:
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and "__pycache__" not in f.parts)
    return round(size / 2**20, 1)


def _child_env(bundle: Path, extra: dict[str, str]) -> dict[str, str]:
    # Nothing of this machine's Python setup leaks in: only the bundle is on the path (like
    # /var/task), and no bytecode is written into it.
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(bundle), "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
    env.update(extra)
    return env


def lambda_env(name: str, variables: dict[str, str] | None = None, region: str = "us-east-1") -> dict[str, str]:
    """The function's variables and what the Lambda runtime sets (INIT makes no network call;
    credentials are placeholders)."""
    return {
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        **(variables or {}),
    }


def compile_bundle(bundle: Bundle) -> None:
    """Bytecode for `bundle.python`, written once, as a bundle that ships it would have."""
    subprocess.run(
        [bundle.python, "-m", "compileall", "-q", "-j", "0", str(bundle.path)], capture_output=True, check=False
    )


def init_once(bundle: Bundle, handler: str, env: dict[str, str]) -> dict:
    # LAMBDA_TASK_ROOT (the code's directory, /var/task on AWS) as the runtime sets it: with it,
    # a function whose tracing is on imports the X-Ray SDK at INIT, as it does on AWS.
    env = {"LAMBDA_TASK_ROOT": str(bundle.path), **env}
    result = subprocess.run(
        [bundle.python, "-s", "-c", PROBE, handler],
        cwd=bundle.path,
        env=_child_env(bundle.path, env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{handler} failed to initialise from {bundle.path}:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure(
    bundle: Bundle,
    functions: dict[str, tuple[str, dict[str, str]]],
    repeats: int = DEFAULT_REPEATS,
) -> dict[str, dict[str, float]]:
    """Per function (name -> (handler, environment)): median CPU ms and median wall ms of INIT,
    a fresh interpreter each time."""
    compile_bundle(bundle)
    results = {}
    for name, (handler, env) in functions.items():
        probes = [init_once(bundle, handler, lambda_env(name, env)) for _ in range(repeats)]
        results[name] = {
            "cpu_ms": round(statistics.median(p["cpu_ms"] for p in probes), 1),
            "wall_ms": round(statistics.median(p["init_ms"] for p in probes), 1),
        }
    return results


def template_functions(template: dict) -> dict[str, tuple[str, dict[str, str]]]:
    """The project's functions in a synthesized template: name -> (handler, plain env values)."""
    found = {}
    for logical_id, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        handler = props.get("Handler")
        if resource.get("Type") != "AWS::Lambda::Function" or not str(handler).startswith("functions."):
            continue
        name = props.get("FunctionName") if isinstance(props.get("FunctionName"), str) else logical_id
        variables = props.get("Environment", {}).get("Variables", {})
        # tokens (Ref/GetAtt of queues, tables, secrets) become placeholders: INIT reads none of them
        found[name] = (
            handler,
            {k: v if isinstance(v, str) else f"placeholder-{k.lower()}" for k, v in variables.items()},
        )
    return found


def main() -> int:
    template = json.loads(Path(sys.argv[1]).read_text()) if len(sys.argv) > 1 else None
    if template is None:
        print("usage: aws_init.py <synthesized template.json>", file=sys.stderr)
        return 2
    bundle = bundle_for()
    aws, _ = bundling.stage_function_bundle("aws")
    print(
        json.dumps(
            {
                "bundle": str(bundle.path),
                "note": bundle.note,
                "bundle_mb": bundle_mb(aws),
                "aws_init_ms": measure(bundle, template_functions(template)),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
