"""The single results writer: append, idempotent replace, crash mid-write, concurrent writers."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pytest
import shapely

from marsice_plugin.errors import OutputError
from marsice_plugin.gpkg import Field
from marsice_plugin.results import LayerSpec, ResultsWriter

from .conftest import REPO

FIELDS = [Field("product_id", str), Field("value", float)]
LAYERS = [LayerSpec("things", "POLYGON", FIELDS, "test layer")]


def _rows(pid, n, value):
    return {"things": [(shapely.box(i, -50, i + 0.5, -49.5), {"product_id": pid, "value": value}) for i in range(n)]}


def _content(path):
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT product_id, value FROM things ORDER BY fid").fetchall()
    extent = conn.execute("SELECT min_x, max_x FROM gpkg_contents WHERE table_name='things'").fetchone()
    conn.close()
    return rows, extent


def test_append_keeps_other_products_and_rerun_replaces(tmp_path):
    path = tmp_path / "r.gpkg"
    with ResultsWriter(path, LAYERS) as w:
        w.write_product("A", _rows("A", 2, 1.0))
        w.write_product("B", _rows("B", 3, 2.0))
    with ResultsWriter(path, LAYERS) as w:
        assert w.write_product("A", _rows("A", 1, 5.0)) == {"things": 1}
    rows, extent = _content(path)
    assert sorted(rows) == [("A", 5.0), ("B", 2.0), ("B", 2.0), ("B", 2.0)]
    assert extent == (0.0, 2.5)
    assert not (tmp_path / "r.gpkg.lock").exists()


def test_crash_mid_write_leaves_file_as_before(tmp_path):
    path = tmp_path / "r.gpkg"
    with ResultsWriter(path, LAYERS) as w:
        w.write_product("A", _rows("A", 2, 1.0))
    before = _content(path)
    # a child deletes A's rows inside the transaction, then dies without committing (like a kill -9)
    script = textwrap.dedent(
        f"""
        import os, shapely
        from marsice_plugin import gpkg
        from tests.test_results import LAYERS, _rows
        from marsice_plugin.results import ResultsWriter
        real_insert = gpkg.GeoPackage.insert
        def dying_insert(self, *args, **kwargs):
            real_insert(self, *args, **kwargs)
            os._exit(9)
        gpkg.GeoPackage.insert = dying_insert
        with ResultsWriter({str(path)!r}, LAYERS) as w:
            w.write_product("A", _rows("A", 7, 9.0))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 9, proc.stderr
    assert (tmp_path / "r.gpkg.lock").exists()  # left behind by the dead writer
    assert _content(path) == before
    # the next writer takes over the stale lock and works normally
    with ResultsWriter(path, LAYERS) as w:
        w.write_product("A", _rows("A", 1, 3.0))
    assert _content(path)[0] == [("A", 3.0)]


def test_second_concurrent_writer_is_refused(tmp_path):
    path = tmp_path / "r.gpkg"
    with ResultsWriter(path, LAYERS) as first:
        first.write_product("A", _rows("A", 1, 1.0))
        with pytest.raises(OutputError, match=r"is being written by process \d+"), ResultsWriter(path, LAYERS):
            pass
    with ResultsWriter(path, LAYERS, wait_s=1.0) as again:
        again.write_product("B", _rows("B", 1, 1.0))
    assert len(_content(path)[0]) == 2
