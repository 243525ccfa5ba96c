"""A catalogue footprint that cannot be read: kept as the lat/lon box, and marked approximate with a note.

Before, :meth:`CatalogueProduct.footprint` fell back to the box silently and the footprint layer said
``footprint_approximate = 0``, so a user read a box as the image edge. ODE answers are replayed from the real
response shapes in ``tests/data/ode`` by the local server of ``tests/catalogue_http.py`` (127.0.0.1 only).
"""

from __future__ import annotations

import contextlib
import sqlite3

import pytest
import shapely

from marsice_plugin.catalogue.footprints import write_footprints
from marsice_plugin.catalogue.records import CatalogueProduct, box_footprint
from marsice_plugin.catalogue.search import SearchQuery
from marsice_plugin.catalogue.sources import find_products
from marsice_plugin.gpkg import parse_geometry_blob

from .catalogue_http import LocalServer, real_products

BROKEN = "POLYGON ((0.044 -0.237, 0.025 -0.239, -0.03"  # an answer cut short inside the polygon


def test_unreadable_ode_footprint_is_the_box_marked_approximate_with_a_warning(tmp_path) -> None:
    products = [p for p in real_products() if p["pdsid"].endswith("_RED")]
    products[1]["Footprint_C0_geometry"] = BROKEN  # ESP_023817_1800_RED
    warnings: list[str] = []
    with LocalServer() as server:
        server.products = products
        found, used = find_products(
            SearchQuery(lat=(-5.0, 5.0)), "ode", ode_url=f"{server.base}/many/live2/", warn=warnings.append
        )
    by_id = {p.product_id: p for p in found}
    assert used == "ode" and sorted(by_id) == sorted(p["pdsid"] for p in products)
    assert warnings == [
        "1 of 3 ODE footprints could not be read; they are kept as latitude/longitude boxes marked "
        "footprint_approximate = 1 (see footprint_note)"
    ]
    broken = by_id["ESP_023817_1800_RED"]
    assert broken.footprint_approximate and broken.footprint_wkt is None
    assert broken.footprint_note.startswith(f"lat/lon box: the catalogue's footprint {BROKEN!r} could not be read")
    assert broken.footprint().equals(box_footprint(broken.min_lon, broken.min_lat, broken.max_lon, broken.max_lat))
    readable = [p for p in found if p is not broken]
    assert not any(p.footprint_approximate for p in readable)

    out = write_footprints(tmp_path / "fp.gpkg", found)
    with contextlib.closing(sqlite3.connect(out)) as db:
        sql = "SELECT product_id, footprint_approximate, footprint_note, geom FROM footprints"
        rows = {r[0]: r[1:] for r in db.execute(sql)}
    assert {pid: r[0] for pid, r in rows.items()} == {p.product_id: int(p is broken) for p in found}
    _, note, blob = rows["ESP_023817_1800_RED"]
    assert note == broken.footprint_note
    box = parse_geometry_blob(blob)  # ODE's 359.863..359.978 east: the box at -0.137..-0.022
    assert box.bounds == pytest.approx((-0.137, -0.007, -0.022, 0.208))


@pytest.mark.parametrize(
    ("wkt", "problem"),
    [
        (BROKEN, "not valid WKT"),
        ("no polygon here", "not valid WKT"),
        ("POINT (0.01 0.02)", "a Point, not a polygon"),
        ("POLYGON ((0 0, 1 0, 1 100, 0 0))", "coordinates outside longitude -360..360 / latitude -90..90"),
    ],
)
def test_footprint_layer_marks_an_unreadable_footprint_of_any_source(tmp_path, wkt: str, problem: str) -> None:
    """A record built by any source (or by hand) with a string that is not a footprint: the box, flagged."""
    record = CatalogueProduct(
        "ESP_023817_1800_RED", "ESP_023817_1800", "RED", "bundled", min_lat=-0.007, max_lat=0.208,
        min_lon=-0.137, max_lon=-0.022, footprint_wkt=wkt,
    )  # fmt: skip
    out = write_footprints(tmp_path / "fp.gpkg", [record])
    with contextlib.closing(sqlite3.connect(out)) as db:
        ((approximate, note, blob),) = db.execute("SELECT footprint_approximate, footprint_note, geom FROM footprints")
    assert approximate == 1 and problem in note and wkt[:20] in note
    box = parse_geometry_blob(blob)
    assert (
        box.geom_type == "MultiPolygon"
        and box.symmetric_difference(shapely.box(-0.137, -0.007, -0.022, 0.208)).area < 1e-12
    )
    assert record.flag_unreadable_footprint() and record.footprint_approximate and problem in record.footprint_note


def test_the_footprint_layer_reads_back_beside_its_writer(tmp_path) -> None:
    """What ``marsice search -o`` writes, both readers give back: the records of ``sites --footprints`` (exact
    polygons, times, angles) and the rows of ``download --from`` (ids, URLs, listed sizes)."""
    import datetime as dt

    from marsice_plugin.catalogue.footprints import read_footprint_records, read_footprints

    record = CatalogueProduct(
        "ESP_023817_1800_RED", "ESP_023817_1800", "RED", "ode",
        start_time=dt.datetime(2011, 7, 30, 10, 2, 3, tzinfo=dt.UTC), mars_year=30, ls=351.25, local_time=15.5,
        incidence=48.5, emission=3.25, min_lat=-0.007, max_lat=0.208, min_lon=-0.137, max_lon=-0.022,
        map_scale=0.25, footprint_wkt="POLYGON ((-0.137 -0.007, -0.022 -0.007, -0.03 0.208, -0.13 0.2, -0.137 -0.007))",
        jp2_url="https://hirise.example/ESP_023817_1800_RED.JP2", lbl_url="https://hirise.example/ESP_023817_1800_RED.LBL",
    )  # fmt: skip
    path = write_footprints(tmp_path / "fp.gpkg", [record])
    (back,) = read_footprint_records(path)
    assert back.source == "footprints:fp.gpkg" and back.start_time == record.start_time
    same = ("product_id", "observation_id", "product_type", "mars_year", "ls", "local_time", "incidence", "emission",
            "min_lat", "max_lat", "map_scale", "footprint_approximate", "jp2_url", "lbl_url")  # fmt: skip
    assert {n: getattr(back, n) for n in same} == {n: getattr(record, n) for n in same}
    assert shapely.from_wkt(back.footprint_wkt).equals(shapely.from_wkt(record.footprint_wkt))
    (row,) = read_footprints(path)
    assert (row.product_id, row.jp2_url, row.lbl_url, row.jp2_kbytes) == (
        record.product_id, record.jp2_url, record.lbl_url, None,
    )  # fmt: skip
