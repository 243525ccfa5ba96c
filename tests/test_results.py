"""The single results writer: append, idempotent replace, crash mid-write, concurrent writers."""

from __future__ import annotations

import math
import sqlite3
import subprocess
import sys
import textwrap

import pyproj
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


def test_extent_grows_with_new_products_and_shrinks_on_rerun(tmp_path):
    path = tmp_path / "r.gpkg"

    def shifted(pid, x0):
        return {"things": [(shapely.box(x0, -50, x0 + 1, -49), {"product_id": pid, "value": 0.0})]}

    with ResultsWriter(path, LAYERS) as w:
        w.write_product("A", shifted("A", 10))
        assert _content(path)[1] == (10.0, 11.0)
        w.write_product("B", shifted("B", -5))  # appended: the extent grows to cover both
        assert _content(path)[1] == (-5.0, 11.0)
        w.write_product("B", shifted("B", 3))  # rerun of B moves it: the extent is recomputed, not kept
        assert _content(path)[1] == (3.0, 11.0)


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


def test_polar_and_equirectangular_products_share_one_layer(tmp_path):
    """Products in different projections land in the common CRS at their own place; the file validates."""
    from marsice_plugin.mars_crs import local_radius
    from marsice_plugin.pipeline import DetectOptions, detect
    from marsice_plugin.synthetic.product_writer import ProductGeometry, write_sample_product
    from marsice_plugin.synthetic.scene import SceneConfig

    from .conftest import DEMO_MODEL

    config = SceneConfig(width=1024, height=1024, seed=5, n_boulders=100, n_craters=1)
    places = {"POLAR STEREOGRAPHIC": (-67.5, 200.0), "EQUIRECTANGULAR": (-45.0, 20.0)}
    out = tmp_path / "results.gpkg"
    ids = {}
    for projection, (lat, lon) in places.items():
        sample = write_sample_product(
            tmp_path / projection.split()[0], config, ProductGeometry(lat, lon, projection=projection), orbit=len(ids)
        )
        ids[sample.product_id] = (lat, lon)
        detect(sample.label_path, out, DetectOptions(model_path=DEMO_MODEL))
    conn = sqlite3.connect(out)
    rows = conn.execute("SELECT product_id, latitude, longitude, geom FROM products").fetchall()
    conn.close()
    assert {r[0] for r in rows} == set(ids)
    from marsice_plugin.gpkg import parse_geometry_blob

    for pid, lat, lon, blob in rows:
        want_lat, want_lon = ids[pid]
        assert lat == pytest.approx(want_lat, abs=1e-3)
        assert lon % 360 == pytest.approx(want_lon, abs=1e-3)
        footprint = parse_geometry_blob(blob)
        assert footprint.contains(shapely.Point(((want_lon + 180) % 360) - 180, want_lat))
        # 1024 px at 0.5 m: 512 m × 512 m in the projection; polar stereographic true at the pole stretches
        # lengths by k = 2 / (1 + sin|lat|) at 67.5°, equirectangular is true at its standard parallel (45°)
        k = 2 / (1 + math.sin(math.radians(67.5))) if want_lat < -65 else 1.0
        area = abs(pyproj.Geod(a=3396190, b=3396190).geometry_area_perimeter(footprint)[0])
        # and measuring on the common sphere rescales lengths from the product's own (local-radius) sphere
        ratio = 3396190 / local_radius(want_lat if want_lat < -65 else -45.0)
        assert area == pytest.approx(512**2 / k**2 * ratio**2, rel=0.002)
    proc = subprocess.run(
        ["/usr/bin/python3", "/usr/lib/python3/dist-packages/osgeo_utils/samples/validate_gpkg.py", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
