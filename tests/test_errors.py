"""Every MarsIce error class lives in errors.py, so QGIS shows each by its own name.

The QGIS side never imports the core: it gets the error's class *name* from the CLI's ``--progress json``
error event and looks the class up in :mod:`marsice_plugin.errors` (``child_process.error_class``). A class
defined in another module would reach QGIS as a plain MarsIceError. The package is read with ``ast``, so
no module (TensorFlow, QGIS) is imported to check it.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from marsice_plugin import errors
from marsice_plugin.child_process import error_class, error_text, run_marsice
from marsice_plugin.errors import MarsIceError, TilingError, TrainingDataError

from .conftest import REPO

PACKAGE = REPO / "marsice_plugin"

#: Every MarsIceError subclass in errors.py, by name.
ERROR_CLASSES = {
    name: cls
    for name, cls in inspect.getmembers(errors, inspect.isclass)
    if issubclass(cls, MarsIceError) and cls.__module__ == errors.__name__
}


def _base_names(node: ast.ClassDef) -> set[str]:
    """The names a class derives from (``X`` of ``class C(X)`` or ``class C(errors.X)``)."""
    names = set()
    for base in node.bases:
        if isinstance(base, ast.Name):
            names.add(base.id)
        elif isinstance(base, ast.Attribute):
            names.add(base.attr)
    return names


def _error_classes_outside_errors_py() -> list[str]:
    """``path:line Class`` for every class outside errors.py that derives, at any depth, from MarsIceError."""
    classes: list[tuple[Path, ast.ClassDef]] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        classes += [(path, node) for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
    errorish = set(ERROR_CLASSES)
    outside: dict[str, str] = {}
    grew = True
    while grew:  # a class deriving from a class deriving from MarsIceError, in any order of modules
        grew = False
        for path, node in classes:
            if path.name == "errors.py" and path.parent == PACKAGE:
                continue
            if _base_names(node) & errorish and node.name not in outside:
                outside[node.name] = f"{path.relative_to(REPO)}:{node.lineno} {node.name}"
                errorish.add(node.name)
                grew = True
    return sorted(outside.values())


def test_the_walk_sees_the_package_and_the_hierarchy() -> None:
    assert len(ERROR_CLASSES) >= 15 and "MarsIceError" in ERROR_CLASSES
    assert {"TilingError", "TrainingDataError", "ProductError", "LabelError"} <= set(ERROR_CLASSES)


def test_every_marsice_error_class_is_defined_in_errors_py() -> None:
    assert _error_classes_outside_errors_py() == []


def test_the_moved_classes_are_still_importable_where_they_were_raised() -> None:
    from marsice_plugin import grid
    from marsice_plugin.cnn import chunk_data

    assert grid.TilingError is TilingError and chunk_data.TrainingDataError is TrainingDataError
    # bad options and bad training data are bad input: exit 2, as before the move
    assert TilingError.exit_code == TrainingDataError.exit_code == 2


@pytest.mark.parametrize("name", sorted(ERROR_CLASSES))
def test_child_process_maps_every_error_back_to_its_own_class(name: str) -> None:
    cls = ERROR_CLASSES[name]
    assert error_class(name) is cls
    assert error_text(cls("the message says what to do")) == f"{name}: the message says what to do"


def test_names_that_are_no_marsice_error_become_the_root() -> None:
    for name in ("ValueError", "os", "child_process", "", None, 2, "__class__"):
        assert error_class(name) is MarsIceError


def test_an_error_named_by_a_real_child_arrives_as_its_class_with_its_message(tmp_path: Path) -> None:
    """TilingError, once outside errors.py, crossed the process boundary as a plain MarsIceError."""
    python = tmp_path / "python"
    python.write_text(
        "#!/usr/bin/python3\nimport json, sys\n"
        'print(json.dumps({"type": "error", "error": "TilingError", "exit_code": 2,'
        ' "message": "chunk size 4 px is too small; use at least 8 (the paper used 1024)"}), flush=True)\n'
        "sys.exit(2)\n"
    )
    python.chmod(0o755)
    with pytest.raises(TilingError) as info:
        run_marsice(["tile", "P.LBL", "--size", "4"], lambda event: None, lambda: False, python=python)
    assert error_text(info.value) == "TilingError: chunk size 4 px is too small; use at least 8 (the paper used 1024)"
