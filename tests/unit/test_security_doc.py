"""docs/SECURITY.md names a test for every refusal; those tests must exist, or the document
is a promise nobody checks."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SECURITY = REPO / "docs" / "SECURITY.md"
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?`|`::(\w+)`")


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def test_every_test_named_in_the_security_model_exists():
    text = SECURITY.read_text()
    checked, missing = 0, []
    for line in text.splitlines():
        current: Path | None = None  # `::name` refers to the last file named on the same line
        for match in REFERENCE.finditer(line):
            file_name, name, bare = match.groups()
            if file_name:
                current = REPO / file_name
                if not current.is_file():
                    missing.append(file_name)
                    continue
            if (name or bare) and current is not None and current.is_file():
                checked += 1
                if (name or bare) not in _test_names(current):
                    missing.append(f"{current.relative_to(REPO)}::{name or bare}")
    assert checked >= 20, f"only {checked} test names found: has the document's format changed?"
    assert not missing, f"docs/SECURITY.md names tests that do not exist: {missing}"


def test_every_refused_row_names_a_test():
    rows = [line for line in SECURITY.read_text().splitlines() if line.startswith("|") and "refused" in line.lower()]
    assert rows
    for row in rows:
        assert "`tests/" in row or "`::" in row, f"a refusal without a test: {row}"
