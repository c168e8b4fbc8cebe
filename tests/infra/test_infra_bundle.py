"""Lambda bundles: for target=aws each function's asset contains its handler module and every
third-party top-level module its handler imports (transitively through `functions.*`),
as Linux CPython 3.12 wheels; for target=local the asset is the `functions/` package only."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

FUNCTION_HANDLERS = {
    "Valerix-order-api": "functions.order.handler.api_handler",
    "Valerix-order-completion": "functions.order.handler.completion_handler",
    "Valerix-order-migrate": "functions.order.handler.migrate_handler",
    "Valerix-inventory-api": "functions.inventory.handler.api_handler",
    "Valerix-inventory-queue": "functions.inventory.handler.queue_handler",
    "Valerix-inventory-migrate": "functions.inventory.handler.migrate_handler",
    "Valerix-gremlin": "functions.gremlin.handler.api_handler",
}
STDLIB = set(sys.stdlib_module_names) | {"__future__"}
FORBIDDEN_IN_BUNDLE = {".venv", "node_modules", "tests", "infra", "localcloud", "web", ".git", "cdk.out"}


def bundle_dir(synth, function_name: str) -> Path:
    fn = next(r for r in synth.of_type("AWS::Lambda::Function").values()
              if r["Properties"].get("FunctionName") == function_name)  # fmt: skip
    key = fn["Properties"]["Code"]["S3Key"]
    asset_hash = key.removesuffix(".zip")
    source = synth.assets["files"][asset_hash]["source"]
    assert source["packaging"] == "zip"
    path = synth.outdir / source["path"]
    assert path.is_dir()
    return path


def module_file(root: Path, dotted: str) -> Path | None:
    base = root.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _catches_import_error(node: ast.Try) -> bool:
    for handler in node.handlers:
        names = [handler.type] if not isinstance(handler.type, ast.Tuple) else list(handler.type.elts)
        if any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError") for n in names):
            return True
    return False


def imports_of(path: Path, package: str) -> list[str]:
    """Absolute module names imported by a file (skipping TYPE_CHECKING-only and optional imports)."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for statement in node.orelse:
                visit(statement)
            return
        if isinstance(node, ast.Try) and _catches_import_error(node):
            return
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.append(module)
            found.extend(f"{module}.{alias.name}" for alias in node.names)  # may be submodules
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return found


def third_party_imports(root: Path, handler_module: str) -> dict[str, str]:
    """Top-level third-party module -> a `functions` module that imports it."""
    seen: set[str] = set()
    todo = [handler_module]
    third_party: dict[str, str] = {}
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = module_file(root, module)
        if path is None:
            continue
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for imported in imports_of(path, package):
            top = imported.split(".")[0]
            if top == "functions":
                # include parent packages (their __init__ runs on import)
                parts = imported.split(".")
                todo.extend(".".join(parts[:i]) for i in range(1, len(parts) + 1))
            elif top and top not in STDLIB:
                third_party.setdefault(top, module)
    return third_party


def present_in_bundle(root: Path, top: str) -> bool:
    return (
        (root / top).is_dir()
        or (root / f"{top}.py").is_file()
        or any(root.glob(f"{top}.*.so"))
        or any(root.glob(f"{top}.so"))
    )


def dist_infos(root: Path) -> set[str]:
    return {re.sub(r"[-_.]+", "-", p.name.split("-")[0]).lower() for p in root.glob("*.dist-info")}


@pytest.mark.parametrize("function_name", sorted(FUNCTION_HANDLERS))
def test_aws_bundle_contains_everything_its_handler_imports(aws_synth, function_name):
    root = bundle_dir(aws_synth, function_name)
    fn = next(r for r in aws_synth.of_type("AWS::Lambda::Function").values()
              if r["Properties"].get("FunctionName") == function_name)  # fmt: skip
    handler = fn["Properties"]["Handler"]
    assert handler == FUNCTION_HANDLERS[function_name]
    module, _, attribute = handler.rpartition(".")

    path = module_file(root, module)
    assert path is not None, f"{module} is not in the bundle (functions/ not written yet?)"
    tree = ast.parse(path.read_text())
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    defined |= {t.id for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign))
                for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
                if isinstance(t, ast.Name)}  # fmt: skip
    # or built on lookup: `__getattr__ = lazy_attributes(globals(), <attribute>=builder)`
    # (functions/common/lazy.py; tests/infra/test_infra_aws_init.py looks every handler up)
    defined |= {
        keyword.arg
        for n in tree.body
        if isinstance(n, ast.Assign)
        and isinstance(n.value, ast.Call)
        and getattr(n.value.func, "id", None) == "lazy_attributes"
        for keyword in n.value.keywords
    }
    assert attribute in defined, f"{handler}: {attribute} is not defined at module level"

    imports = third_party_imports(root, module)
    assert "aws_lambda_powertools" in imports or module.startswith("functions.gremlin"), imports
    missing = {top: by for top, by in imports.items() if not present_in_bundle(root, top)}
    assert not missing, f"{function_name}: modules imported but not bundled: {missing}"

    # Each imported module's distribution (as installed in the project venv) ships its metadata too.
    distributions = importlib.metadata.packages_distributions()
    bundled = dist_infos(root)
    for top in imports:
        for dist in distributions.get(top, []):
            assert re.sub(r"[-_.]+", "-", dist).lower() in bundled, f"{top}: distribution {dist} not bundled"


def test_aws_bundle_has_linux_cp312_binaries_and_nothing_from_the_repo(aws_synth):
    root = bundle_dir(aws_synth, "Valerix-order-api")
    top_level = {p.name for p in root.iterdir()}
    assert "functions" in top_level
    assert not top_level & FORBIDDEN_IN_BUNDLE
    assert not (root / "bin").exists()
    extensions = list(root.rglob("*.so"))
    assert extensions, "pydantic_core ships a compiled extension"
    for so in extensions:
        name = so.name
        assert "cpython-311" not in name and "darwin" not in name, so
        if "cpython" in name:
            assert "cpython-312-x86_64-linux-gnu" in name, so
    assert not list((root / "functions").rglob("__pycache__"))
    # one asset shared by every function (same code, one upload)
    assert len({bundle_dir(aws_synth, n) for n in FUNCTION_HANDLERS}) == 1


def test_local_bundle_is_only_the_functions_package(local_synth):
    root = bundle_dir(local_synth, "Valerix-order-api")
    assert {p.name for p in root.iterdir()} == {"functions"}
    assert (root / "functions" / "__init__.py").is_file()
    for name, handler in FUNCTION_HANDLERS.items():
        assert module_file(root, handler.rpartition(".")[0]) is not None, name
