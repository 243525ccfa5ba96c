"""GeoPackage writer: binary geometry, required tables, Mars CRS without authority, atomic writes."""

from __future__ import annotations

import sqlite3

import pytest
import shapely

from marsice_plugin.errors import OutputError
from marsice_plugin.gpkg import APPLICATION_ID, Field, geometry_blob, parse_geometry_blob, write_new
from marsice_plugin.mars_crs import common_crs

FIELDS = [Field("name", str), Field("p", float), Field("n", int), Field("flag", bool)]


def _build(gpkg):
    srs = gpkg.add_srs(common_crs())
    gpkg.create_layer("things", FIELDS, "POLYGON", srs)
    gpkg.insert(
        "things",
        FIELDS,
        [
            (shapely.box(10, -50, 11, -49), {"name": "a", "p": 0.5, "n": 1, "flag": True}),
            (shapely.box(12, -52, 13, -51), {"name": "b", "p": None, "n": 2, "flag": False}),
        ],
    )


def test_geometry_blob_round_trip():
    poly = shapely.Polygon([(30.1, -50.2), (30.3, -50.2), (30.3, -50.0), (30.1, -50.2)])
    blob = geometry_blob(poly, 100000)
    assert blob[:2] == b"GP" and blob[3] == 0b11
    assert int.from_bytes(blob[4:8], "little") == 100000
    assert parse_geometry_blob(blob).equals(poly)


def test_written_file_structure(tmp_path):
    path = write_new(tmp_path / "x.gpkg", _build)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    (definition, org) = conn.execute(
        "SELECT definition, organization FROM gpkg_spatial_ref_sys WHERE srs_id=100000"
    ).fetchone()
    assert "AUTHORITY" not in definition and org == "NONE"
    assert "3396190" in definition
    extent = conn.execute("SELECT min_x, min_y, max_x, max_y FROM gpkg_contents WHERE table_name='things'").fetchone()
    assert extent == (10.0, -52.0, 13.0, -49.0)
    rows = conn.execute("SELECT name, p, n, flag FROM things ORDER BY fid").fetchall()
    assert rows == [("a", 0.5, 1, 1), ("b", None, 2, 0)]
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    assert [p.name for p in tmp_path.iterdir()] == ["x.gpkg"]


def test_failed_build_leaves_nothing(tmp_path):
    target = tmp_path / "y.gpkg"
    target.write_bytes(b"previous")

    def broken(gpkg):
        _build(gpkg)
        raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(OutputError, match="disk I/O error"):
        write_new(target, broken)
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["y.gpkg"]
