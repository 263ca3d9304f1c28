"""docs/security.md names a test for every requirement: each named test must exist."""

from __future__ import annotations

import ast
import re

from tests.helpers import REPO

SECURITY = REPO / "docs" / "security.md"
#: `tests/x.py::test_name`, and `::test_name` continuing the file named last on the same line.
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)?::(test_\w+)`")


def named_tests() -> list[tuple[str, str]]:
    found = []
    for line in SECURITY.read_text().splitlines():
        current = None
        for path, name in REFERENCE.findall(line):
            current = path or current
            assert current, f"{name} has no file before it: {line}"
            found.append((current, name))
    return found


def test_every_test_the_security_page_names_exists():
    references = named_tests()
    assert len(references) > 50
    missing = []
    for path, name in references:
        tree = ast.parse((REPO / path).read_text())
        names = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
        if name not in names:
            missing.append(f"{path}::{name}")
    assert not missing, missing


def test_every_table_row_names_a_test():
    rows = [
        line
        for line in SECURITY.read_text().splitlines()
        if line.startswith("| ") and not line.startswith(("| requirement", "|---"))
    ]
    assert rows
    assert [row for row in rows if not REFERENCE.search(row)] == []
