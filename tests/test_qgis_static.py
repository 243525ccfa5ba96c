"""Static checks that the plugin is written for Qt 6 / QGIS 4 as well as QGIS 3.22 (no QGIS 4 to run here).

QGIS 4 runs on Qt 6 (PyQt6): PyQt5 modules are gone, ``exec_()`` is gone, Qt enums must be scoped
(``Qt.AlignmentFlag.AlignLeft``), ``QVariant`` type codes are replaced by ``QMetaType``, and the unscoped
QGIS 3 enums (``QgsProcessingParameterNumber.Double``, ``QgsProcessing.TypeVectorPolygon``, ``QgsWkbTypes``...)
are removed in favour of ``Qgis.*`` scoped ones. The plugin may use an old enum only as the QGIS 3.22
fallback inside ``except AttributeError``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from .conftest import REPO

PLUGIN = REPO / "marsice_plugin" / "qgisplugin"
SOURCES = sorted(PLUGIN.rglob("*.py"))

#: Nested classes (not enums) that keep their name in QGIS 4.
NESTED_CLASSES = {("QgsProcessingContext", "LayerDetails")}


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _inside_attribute_error_fallback(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Whether ``node`` sits in the body of an ``except AttributeError`` handler."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.ExceptHandler) and node.type is not None:
            names = [node.type] if not isinstance(node.type, ast.Tuple) else list(node.type.elts)
            if any(isinstance(n, ast.Name) and n.id == "AttributeError" for n in names):
                return True
    return False


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(REPO)}:{getattr(node, 'lineno', '?')}"


def test_the_plugin_has_sources_to_check() -> None:
    assert len(SOURCES) >= 10 and PLUGIN / "compat.py" in SOURCES


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PLUGIN)))
def test_qt_is_imported_through_qgis_pyqt_only(path: Path) -> None:
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        else:
            continue
        for module in modules:
            top = module.split(".")[0]
            assert top not in {"PyQt4", "PyQt5", "PyQt6", "sip", "PySide2", "PySide6"}, _where(path, node)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PLUGIN)))
def test_no_qgis3_only_api_without_a_fallback(path: Path) -> None:
    tree = _tree(path)
    parents = _parents(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        where = _where(path, node)
        assert node.attr != "exec_", f"{where}: exec_() is gone in PyQt6; call exec()"
        if not isinstance(node.value, ast.Name):
            continue
        owner = node.value.id
        assert owner != "QVariant", f"{where}: QVariant type codes are gone in QGIS 4; use QMetaType"
        if owner == "Qt":  # Qt 6 enums are scoped: Qt.<Enum>.<Member>
            assert isinstance(parents.get(node), ast.Attribute), f"{where}: unscoped Qt.{node.attr}"
        is_member = owner.startswith("Qgs") and node.attr[:1].isupper() and (owner, node.attr) not in NESTED_CLASSES
        called = isinstance(parents.get(node), ast.Call) and parents[node].func is node
        if is_member and not called:
            assert _inside_attribute_error_fallback(node, parents), (
                f"{where}: {owner}.{node.attr} is a QGIS 3 enum removed in QGIS 4; take it from compat.py"
            )


def test_the_core_package_never_imports_qgis() -> None:
    for path in sorted((REPO / "marsice_plugin").rglob("*.py")):
        if PLUGIN in path.parents:
            continue
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""] if node.level == 0 else []
            else:
                continue
            assert not any(m.split(".")[0] == "qgis" for m in modules), _where(path, node)
