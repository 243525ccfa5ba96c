"""docs/errors.md is backed by tests: every table row names tests, and every named test exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from .conftest import REPO

DOC = REPO / "docs" / "errors.md"
TESTS = REPO / "tests"
REFERENCE = re.compile(r"`(test_\w+\.py)(?:::(\w+))?`")


def _table_rows(text: str) -> list[list[str]]:
    rows = [line for line in text.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    assert cells[0] == ["bad input", "what the user sees (exit code)", "test"]
    assert set(cells[1][0]) == {"-"}
    return cells[2:]


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def test_every_row_names_a_test_and_every_named_test_exists():
    text = DOC.read_text()
    rows = _table_rows(text)
    assert len(rows) >= 40
    for row in rows:
        assert len(row) == 3, row
        assert REFERENCE.search(row[2]), f"row without a test: {row[0]}"
    references = REFERENCE.findall(text)
    missing = []
    for file_name, function in references:
        path = TESTS / file_name
        if not path.exists():
            missing.append(file_name)
        elif function and function not in _test_functions(path):
            missing.append(f"{file_name}::{function}")
    assert not missing, f"docs/errors.md names tests that do not exist: {missing}"


def test_the_issue_cases_all_have_a_row():
    """The bad inputs issue 12 lists, by a word of their row."""
    first_cells = " ".join(row[0] for row in _table_rows(DOC.read_text())).lower()
    for case in (
        "truncated", "image file is missing", "sizes disagree", "not map-projected", "unknown projection",
        "earth crs", "under 8 px", "empty image", "entirely no-data", "8-bit and 16-bit", "not a keras model",
        "lambda", "model input", "misses the image", "disk full", "two runs", "html", "status: error", "http 4xx",
        "invalid json", "huge", "another host", "absolute paths", "shorter than announced", "longer than announced",
        "tile", "terrain", "download` mid-file", "--debug",
    ):  # fmt: skip
        assert case in first_cells, case
