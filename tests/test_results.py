"""The single results writer: append, idempotent replace, crash mid-write, concurrent writers."""

from __future__ import annotations

import math
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pyproj
import pytest
import shapely

from marsice_plugin.errors import OutputError
from marsice_plugin.gpkg import Field, parse_geometry_blob
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
    from marsice_plugin.detection import DetectOptions
    from marsice_plugin.mars_crs import local_radius
    from marsice_plugin.pipeline import detect
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


def test_lock_of_a_reused_pid_is_taken_over_and_a_live_holders_is_not(tmp_path):
    """The lock names this test's own (alive) pid: another start time or boot id means the pid was reused."""
    from marsice_plugin.results import boot_id, lock_record, process_start

    path, lock = tmp_path / "r.gpkg", tmp_path / "r.gpkg.lock"
    me, host, start, boot = os.getpid(), socket.gethostname(), process_start(os.getpid()), boot_id()
    assert start is not None and boot is not None
    assert lock_record() == f"{me} {host} {start} {boot}\n"
    stale = {"another start time": f"{me} {host} {int(start) + 1} {boot}\n", "another boot": f"{me} {host} {start} x\n"}
    for value, (why, text) in enumerate(stale.items()):
        lock.write_text(text)
        with ResultsWriter(path, LAYERS) as w:  # taken over at once (wait_s=0 would refuse a live lock)
            w.write_product("A", _rows("A", 1, float(value)))
        assert not lock.exists(), why
    assert _content(path)[0] == [("A", 1.0)]
    before = path.read_bytes()
    for live in [lock_record(), f"{me} {host}\n"]:  # this very process, in the new and the old lock format
        lock.write_text(live)
        with pytest.raises(OutputError, match=rf"is being written by process {me} "), ResultsWriter(path, LAYERS):
            pass
        assert lock.read_text() == live
    assert path.read_bytes() == before


def test_unwritable_folder_is_an_output_error_not_an_internal_one(tmp_path):
    """The writer's own lock in a folder nothing can be created in (/proc, even for root): exit 4, clear text."""
    (tmp_path / "plain").write_text("a file, not a folder")
    for path in (Path("/proc/marsice-results/r.gpkg"), tmp_path / "plain" / "r.gpkg"):
        with pytest.raises(OutputError, match=rf"cannot write {path}: .*; the file is unchanged") as info:
            ResultsWriter(path, LAYERS).__enter__()
        assert info.value.exit_code == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain"]


def test_a_polygon_layer_of_an_older_file_becomes_multipolygon_when_a_product_is_added(tmp_path):
    """Files written before outlines were split at 180° hold POLYGON layers; appending upgrades them whole."""
    import pyogrio

    from marsice_plugin.gpkg import parse_geometry_blob

    path = tmp_path / "old.gpkg"
    with ResultsWriter(path, LAYERS) as w:  # the older, POLYGON schema
        w.write_product("A", _rows("A", 2, 1.0))
    multi = [LayerSpec("things", "MULTIPOLYGON", FIELDS, "test layer")]
    split = shapely.MultiPolygon([shapely.box(179.5, -50, 180, -49.5), shapely.box(-180, -50, -179.5, -49.5)])
    with ResultsWriter(path, multi) as w:
        w.write_product("B", {"things": [(split, {"product_id": "B", "value": 2.0})]})
    conn = sqlite3.connect(path)
    try:
        declared = conn.execute("SELECT geometry_type_name FROM gpkg_geometry_columns WHERE table_name='things'")
        assert declared.fetchone() == ("MULTIPOLYGON",)
        (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name='things'").fetchone()
        assert "geom MULTIPOLYGON" in sql
        geoms = {pid: parse_geometry_blob(b) for pid, b in conn.execute("SELECT product_id, geom FROM things")}
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()
    assert {g.geom_type for g in geoms.values()} == {"MultiPolygon"}
    assert geoms["B"].equals(split)
    rows, _ = _content(path)
    assert sorted(rows) == [("A", 1.0), ("A", 1.0), ("B", 2.0)]
    assert pyogrio.read_info(path, layer="things")["geometry_type"] == "MultiPolygon"  # as GDAL reads it


def _rtree_and_features(path):
    conn = sqlite3.connect(path)
    try:
        index = sorted(conn.execute("SELECT id, minx, maxx, miny, maxy FROM rtree_things_geom"))
        features = sorted(
            (fid, *(lambda b: (b[0], b[2], b[1], b[3]))(parse_geometry_blob(blob).bounds))
            for fid, blob in conn.execute("SELECT fid, geom FROM things")
        )
        extension = conn.execute("SELECT extension_name FROM gpkg_extensions WHERE table_name='things'").fetchall()
    finally:
        conn.close()
    return index, features, extension


def test_every_layer_gets_an_rtree_index_kept_in_step_by_the_writer(tmp_path):
    """The gpkg_rtree_index extension: filled on creation, on append, on rerun; GDAL sees and validates it."""
    path = tmp_path / "r.gpkg"
    with ResultsWriter(path, LAYERS) as w:
        w.write_product("A", _rows("A", 2, 1.0))
        w.write_product("B", _rows("B", 3, 2.0))
    with ResultsWriter(path, LAYERS) as w:
        w.write_product("A", _rows("A", 1, 5.0))  # a rerun: A's rows deleted and written again
    index, features, extension = _rtree_and_features(path)
    assert len(features) == 4 and [tuple(pytest.approx(v) for v in row) for row in index] == features
    assert extension == [("gpkg_rtree_index",)]
    code = (
        "import sys\nfrom osgeo import ogr\nds = ogr.Open(sys.argv[1])\nlayer = ds.GetLayerByName('things')\n"
        "layer.SetSpatialFilterRect(0.9, -50, 1.1, -49.5)\n"
        "print(layer.TestCapability(ogr.OLCFastSpatialFilter), layer.GetFeatureCount())\n"
    )
    proc = subprocess.run(["/usr/bin/python3", "-c", code, str(path)], capture_output=True, text=True)
    # GDAL uses the index, and one box starts at x = 1
    assert proc.returncode == 0 and proc.stdout.split() == ["True", "1"], proc.stderr
    validate = "/usr/lib/python3/dist-packages/osgeo_utils/samples/validate_gpkg.py"
    proc = subprocess.run(["/usr/bin/python3", validate, str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_file_without_an_rtree_gets_one_filled_when_a_product_is_added(tmp_path):
    from marsice_plugin.gpkg import parse_geometry_blob  # noqa: F401 - used by _rtree_and_features

    path = tmp_path / "old.gpkg"
    with ResultsWriter(path, LAYERS) as w:
        w.write_product("A", _rows("A", 2, 1.0))
    conn = sqlite3.connect(path)  # as a file written before layers had an index
    with conn:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall():
            conn.execute(f'DROP TRIGGER "{name}"')
        conn.execute("DROP TABLE rtree_things_geom")
        conn.execute("DELETE FROM gpkg_extensions")
    conn.close()
    with ResultsWriter(path, LAYERS) as w:
        w.write_product("B", _rows("B", 1, 2.0))
    index, features, extension = _rtree_and_features(path)
    assert len(features) == 3 and [tuple(pytest.approx(v) for v in row) for row in index] == features
    assert extension == [("gpkg_rtree_index",)]
