"""docs/ARCHITECTURE.md stays true to the tree: every file and folder it names exists, every
`path.py:name` is defined there, every Lambda handler it names resolves, and nothing the stack,
the local-cloud plugin or the tests folder adds is missing from it."""

from __future__ import annotations

import ast
import importlib
import re
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "ARCHITECTURE.md"
TEXT = DOC.read_text()
# Top-level folders of the repository a named path may start with (generated ones such as
# .valerix/ are described, not shipped, so they are not checked).
TOP_LEVEL = ("functions", "infra", "localcloud", "observability", "scripts", "tests", "web", "docs")
# A file named without its folder, e.g. `zygote.py` next to `localcloud/valerix_localcloud/executor.py`
BARE_FILE = re.compile(r"^[\w-]+\.(py|java|sql)$")
PATH = re.compile(r"^[\w.*-]+(/[\w.*-]+)*/?$")
HANDLER = re.compile(r"^functions(\.\w+)+\.\w+_handler$")
HANDLER_LITERAL = re.compile(r"\"(functions\.\w+\.handler\.\w+)\"")


def code_spans() -> list[str]:
    return re.findall(r"`([^`\n]+)`", TEXT)


def named_paths() -> list[tuple[str, str | None]]:
    """(path, symbol or None) for every code span that names a repository path."""
    found = []
    for span in code_spans():
        path, _, symbol = span.partition(":")
        if not PATH.match(path) or "<" in span:
            continue
        if (path.split("/")[0] in TOP_LEVEL and "/" in path) or BARE_FILE.match(path):
            found.append((path, symbol or None))
    return sorted(set(found), key=str)


def layout_paths() -> list[str]:
    """Folders and files of the "## Layout" block, each resolved against the entry it describes:
    `functions/` then `  order/` then `app.py · handler.py` give functions/order/app.py, ..."""
    block = TEXT.split("## Layout", 1)[1].split("```", 2)[1]
    paths, top, current = [], "", ""
    for line in block.splitlines():
        if not line.strip():
            continue
        entry, description = line[:27].strip(), line[27:]
        if entry and not line.startswith(" "):
            top = current = entry
            paths.append(entry)
        elif entry:
            current = top + entry
            paths.append(current)
        if "." in current.rsplit("/", 1)[-1]:  # an entry that is a file (`  __init__.py`)
            continue
        description = re.sub(r"`[^`]*`", "", description)  # `make up`, `functions.<service>...`
        for token in re.findall(r"[\w*-]+(?:/[\w*-]*)*\.(?:py|sql|java)\b|[\w-]+/(?![\w-])", description):
            paths.append(current + token.replace("NNN", "*"))
    return paths


def _exists(path: str) -> bool:
    if "/" not in path:  # a bare file name: somewhere in the source tree
        return any(any((REPO / top).glob(f"**/{path}")) for top in TOP_LEVEL)
    return any(REPO.glob(path)) if "*" in path else (REPO / path).exists()


def test_the_doc_names_paths_at_all():
    """Guards the extraction below: a change of markup must not make every check pass vacuously."""
    assert len(named_paths()) > 30
    assert len(layout_paths()) > 40


@pytest.mark.parametrize("path", sorted(set(layout_paths())))
def test_every_path_of_the_layout_exists(path):
    assert _exists(path), f"docs/ARCHITECTURE.md's layout names {path}, which is not in the repository"


@pytest.mark.parametrize(("path", "symbol"), named_paths())
def test_every_named_path_exists_and_defines_what_it_names(path, symbol):
    assert _exists(path), f"docs/ARCHITECTURE.md names `{path}`, which is not in the repository"
    if symbol:
        tree = ast.parse((REPO / path).read_text())
        defined = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
        defined |= {
            target.id
            for node in tree.body
            if isinstance(node, (ast.Assign, ast.AnnAssign))
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(target, ast.Name)
        }
        assert symbol in defined, f"`{path}:{symbol}`: {path} defines no {symbol}"


def named_handlers() -> list[str]:
    return sorted({span for span in code_spans() if HANDLER.match(span)})


@pytest.mark.parametrize("handler", named_handlers())
def test_every_named_handler_resolves(handler):
    """What the Lambda runtime does with the handler string: import the module, look the name up."""
    module, _, name = handler.rpartition(".")
    assert callable(getattr(importlib.import_module(module), name, None)), f"{handler} does not resolve"


def stack_handlers() -> set[str]:
    """The handler strings of every function the CDK app defines."""
    found = set()
    for source in [*REPO.glob("infra/*.py"), *REPO.glob("infra/constructs/*.py")]:
        found |= set(HANDLER_LITERAL.findall(source.read_text()))
    # The backup construct builds its handlers as f"functions.backup.handler.{handler}".
    backup = (REPO / "infra" / "constructs" / "local_backup.py").read_text()
    assert 'handler=f"functions.backup.handler.{handler}"' in backup
    found |= {f"functions.backup.handler.{name}" for name in re.findall(r"\"(\w+_handler)\"", backup)}
    return found


def test_every_function_of_the_stack_is_in_the_handler_table():
    handlers = stack_handlers()
    assert len(handlers) >= 13
    assert handlers - set(named_handlers()) == set()


def test_every_local_cloud_entry_point_is_described():
    """What valerix_localcloud plugs into LocalStack (plux entry points) is in the doc's table."""
    project = tomllib.loads((REPO / "localcloud" / "pyproject.toml").read_text())["project"]
    targets = [target for group in project["entry-points"].values() for target in group.values()]
    assert targets
    spans = set(code_spans())
    for target in targets:
        module, _, name = target.partition(":")
        assert f"localcloud/{module.replace('.', '/')}.py" in spans, f"{module} is not named"
        assert name in spans, f"the entry point {target} is not described"


def test_every_test_folder_is_described():
    folders = sorted(path.parent.name for path in REPO.glob("tests/*/test_*.py"))
    tests_section = TEXT.split("## Tests", 1)[1]
    for folder in set(folders):
        assert f"`tests/{folder}/`" in tests_section, f"tests/{folder}/ is not described under ## Tests"
