"""The GeoPackage module: geometry blobs, required tables, Mars CRS without authority, atomic writes, reading
layers with one error for every reader, updates in one transaction, and no other sqlite3.connect in MarsIce."""

from __future__ import annotations

import ast
import contextlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import shapely

from marsice_plugin.catalogue.footprints import read_footprint_records, read_footprints
from marsice_plugin.errors import GeoPackageError, OutputError
from marsice_plugin.gpkg import (
    APPLICATION_ID,
    Field,
    add_columns,
    connect,
    geometry_blob,
    layer_info,
    layer_names,
    parse_geometry_blob,
    read_layer,
    transaction,
    update_rows,
    write_new,
)
from marsice_plugin.mars_crs import common_crs
from marsice_plugin.results import ResultsWriter

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


# -- reading, updating, and one error for every reader ------------------------------------------------------------


def _things(tmp_path, name: str = "x.gpkg"):
    return write_new(tmp_path / name, _build)


def test_read_layer_gives_shapely_geometries_and_attributes_with_their_fid(tmp_path):
    path = _things(tmp_path)
    rows = read_layer(path, "things")
    assert [g.bounds for g, _ in rows] == [(10.0, -50.0, 11.0, -49.0), (12.0, -52.0, 13.0, -51.0)]
    assert [a for _, a in rows] == [
        {"fid": 1, "name": "a", "p": 0.5, "n": 1, "flag": 1},
        {"fid": 2, "name": "b", "p": None, "n": 2, "flag": 0},
    ]
    picked = read_layer(path, "things", ["name"], "n > ?", (1,), geometry=False)
    assert picked == [(None, {"fid": 2, "name": "b"})]
    assert [a["name"] for _, a in read_layer(path, "things", ["name"], order_by="p")] == ["b", "a"]  # NULL first
    info = layer_info(path, "things")
    assert (info.primary_key, info.geometry_column, info.attributes) == ("fid", "geom", ("name", "p", "n", "flag"))
    assert "3396190" in info.srs_definition


def test_layer_names_and_a_name_that_a_uri_would_misread(tmp_path):
    odd = tmp_path / "run #2 ?50%.gpkg"  # read-only opens go by a file: URI, where # ? % mean something
    write_new(odd, _build)
    assert layer_names(odd) == ["things"] and layer_names(odd, data_type="attributes") == []
    assert [a["name"] for _, a in read_layer(odd, "things")] == ["a", "b"]


def test_a_reader_after_a_writer_killed_mid_transaction_sees_the_last_commit(tmp_path):
    """A SIGKILLed writer leaves a hot rollback journal; the next read-only open must not refuse the file.

    (A resumed scan once stopped with "attempt to write a readonly database" on its own GeoPackage.)
    """
    path = write_new(tmp_path / "x.gpkg", _build)
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[1],
    )
    try:
        assert writer.stdout.readline().strip() == "half-written"
        journal = path.with_name(path.name + "-journal")
        assert journal.exists() and journal.stat().st_size > 0
    finally:
        writer.kill()  # SIGKILL: no rollback of any kind in the writer
        writer.wait()
    assert layer_names(path) == ["things"]
    assert [(a["name"], a["n"]) for _, a in read_layer(path, "things")] == [("a", 1), ("b", 2)]
    assert not path.with_name(path.name + "-journal").exists()
    assert add_columns(path, "things", [Field("extra", float)]) == ["extra"]  # and it can be written again


#: A writer that deletes every row and adds a thousand inside one transaction, then waits to be killed.
KILLED_WRITER = """
import sys, time
from marsice_plugin.gpkg import connect
conn = connect(sys.argv[1], read_only=False)
conn.execute("BEGIN IMMEDIATE")
conn.execute("DELETE FROM things")
conn.executemany("INSERT INTO things (name, n) VALUES (?, ?)", [(str(i), i) for i in range(1000)])
conn.execute("PRAGMA cache_size = 1")
conn.execute("UPDATE things SET name = name || 'x'")
print("half-written", flush=True)
time.sleep(60)
"""


def _bad_files(tmp_path):
    """Files a reader of layer 'footprints' cannot use, with the message each must give."""
    text = tmp_path / "notes.gpkg"
    text.write_text("not a database\n" * 200)
    plain = tmp_path / "plain.gpkg"
    with contextlib.closing(sqlite3.connect(plain)) as db:
        db.execute("CREATE TABLE footprints (product_id TEXT)")
    other = _things(tmp_path, "results.gpkg")
    hint = "give a footprints file written by `marsice search -o`"
    return [
        (tmp_path / "missing.gpkg", f"{tmp_path / 'missing.gpkg'} does not exist; {hint}"),
        (text, f"{text} is not a GeoPackage (file is not a database); {hint}"),
        (plain, f"{plain} is not a GeoPackage (no such table: gpkg_contents); {hint}"),
        (other, f"{other} has no layer 'footprints' (it holds: things); {hint}"),
    ]


def test_every_fault_of_a_file_is_one_geopackage_error_naming_what_to_give(tmp_path):
    for path, message in _bad_files(tmp_path):
        with pytest.raises(GeoPackageError) as info:
            read_layer(path, "footprints", hint="give a footprints file written by `marsice search -o`")
        assert str(info.value) == message
    path = _things(tmp_path)
    with pytest.raises(GeoPackageError) as info:
        read_layer(path, "things", ["name", "label"], hint="give a tile index")
    columns = "fid, geom, name, p, n, flag"
    assert str(info.value) == f"{path}: layer 'things' has no column 'label' (it has: {columns}); give a tile index"
    assert GeoPackageError.exit_code == 2


def test_the_two_footprint_readers_give_the_same_error_for_the_same_bad_file(tmp_path):
    """``marsice download --from`` and ``marsice sites --footprints`` read one layer: one message, one class."""
    no_product_id = tmp_path / "no_id.gpkg"

    def build(gpkg):
        srs = gpkg.add_srs(common_crs())
        gpkg.create_layer("footprints", [Field("jp2_url", str), Field("lbl_url", str)], "MULTIPOLYGON", srs)

    write_new(no_product_id, build)
    cases = [*_bad_files(tmp_path), (no_product_id, None)]
    for path, message in cases:
        errors = []
        for reader in (read_footprints, read_footprint_records):
            with pytest.raises(GeoPackageError) as info:
                reader(path)
            errors.append(str(info.value))
        assert errors[0] == errors[1] and (message is None or errors[0] == message)
    assert "has no column 'product_id'" in errors[0]


def test_cli_download_from_a_file_without_footprints_exits_2_with_the_readers_line(tmp_path, marsice_cli):
    path = _things(tmp_path, "results.gpkg")
    proc = marsice_cli("download", "--from", str(path), "--to", str(tmp_path / "cache"), "--dry-run")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"marsice: error: {path} has no layer 'footprints' (it holds: things); "
        "give a footprints file written by `marsice search -o`"
    )
    assert not (tmp_path / "cache").exists()


def test_update_rows_adds_columns_and_sets_values_in_one_transaction(tmp_path):
    path = _things(tmp_path)
    score = Field("score", float)
    assert update_rows(path, "things", "fid", {2: {"score": 0.25, "n": 7}, 9: {"score": 1.0}}, [score]) == 1
    assert [a for _, a in read_layer(path, "things", ["n", "score"])] == [
        {"fid": 1, "n": 1, "score": None},
        {"fid": 2, "n": 7, "score": 0.25},
    ]
    assert add_columns(path, "things", [score, Field("rank", float)]) == ["rank"]
    # a row that cannot be written: nothing at all changes, not even the column that came first
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TRIGGER no BEFORE UPDATE ON things WHEN NEW.fid = 2 BEGIN SELECT RAISE(ABORT, 'no'); END")
        db.commit()
    before = path.read_bytes()
    with pytest.raises(OutputError, match=r"cannot write .*: no; the file is unchanged"):
        update_rows(path, "things", "fid", {1: {"score": 0.5}, 2: {"score": 0.5}}, [Field("late", int)])
    assert path.read_bytes() == before
    with pytest.raises(GeoPackageError, match="has no column 'nope'"):
        update_rows(path, "things", "fid", {1: {"nope": 1}})
    assert path.read_bytes() == before


def test_update_through_the_results_writer_holds_its_lock(tmp_path):
    path = _things(tmp_path)
    with pytest.raises(RuntimeError, match="context manager"):
        ResultsWriter(path, ()).update_rows("things", "fid", {1: {"n": 5}})
    with ResultsWriter(path, ()) as writer:
        assert path.with_name("x.gpkg.lock").exists()
        with pytest.raises(OutputError, match="is being written by process"), ResultsWriter(path, ()):
            pass
        assert writer.update_rows("things", "fid", {1: {"n": 5}}) == 1
    assert not path.with_name("x.gpkg.lock").exists()
    assert read_layer(path, "things", ["n"])[0][1] == {"fid": 1, "n": 5}


def test_the_scan_manifest_opens_through_the_gpkg_module(tmp_path):
    """A plain SQLite file, opened read-write by connect() and changed by transaction(); a failure rolls back."""
    path = tmp_path / "m.sqlite"
    conn = connect(path, read_only=False)
    conn.execute("CREATE TABLE t (x INTEGER)")
    with transaction(conn):
        conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(ZeroDivisionError), transaction(conn):
        conn.execute("INSERT INTO t VALUES (2)")
        _ = 1 / 0
    conn.close()
    ro = connect(path)
    assert ro.execute("SELECT x FROM t").fetchall() == [(1,)]
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        ro.execute("INSERT INTO t VALUES (3)")
    ro.close()


def test_no_sqlite3_connect_outside_the_gpkg_module():
    """Every SQLite file MarsIce opens goes through marsice_plugin.gpkg.connect (or the GeoPackage class)."""
    package = Path(__file__).resolve().parents[1] / "marsice_plugin"
    found = []
    for source in sorted(package.rglob("*.py")):
        if source.parent == package / "gpkg":
            continue
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            direct = isinstance(node, ast.Attribute) and node.attr == "connect"
            direct = direct and isinstance(node.value, ast.Name) and node.value.id == "sqlite3"
            imported = isinstance(node, ast.ImportFrom) and node.module == "sqlite3"
            imported = imported and any(alias.name == "connect" for alias in node.names)
            if direct or imported:
                found.append(f"{source.relative_to(package.parent)}:{node.lineno}")
    assert found == []
    assert (package / "gpkg" / "connect.py").read_text().count("sqlite3.connect(") == 2
