"""The bundled offline catalogue: the paper's selection counted two independent ways, and its layer."""

from __future__ import annotations

import gzip
import sqlite3

import pyproj
import pytest
import shapely

from marsice_plugin.catalogue.index import BUNDLED_PATH, catalogue_sun_azimuth, load_bundled
from marsice_plugin.catalogue.search import SearchQuery
from marsice_plugin.errors import CatalogueError
from marsice_plugin.gpkg import parse_geometry_blob


def independent_counts() -> tuple[int, int, int]:
    """Counted straight from the file's text with no MarsIce code: (centre rule, intersect rule, rows)."""
    centre = intersect = rows = 0
    with gzip.open(BUNDLED_PATH, "rb") as fh:
        lines = [line.decode() for line in fh if not line.startswith(b"#")]
    header = lines[0].strip().split(",")
    col = {name: header.index(name) for name in ("ls", "min_lat", "max_lat")}
    for line in lines[1:]:
        fields = line.rstrip("\n").split(",")
        rows += 1
        ls, lo, hi = (float(fields[col[k]]) for k in ("ls", "min_lat", "max_lat"))
        if not 140 <= ls <= 200:
            continue
        if -60 <= (lo + hi) / 2 <= -40:
            centre += 1
        if hi >= -60 and lo <= -40:
            intersect += 1
    return centre, intersect, rows


@pytest.fixture(scope="module")
def red():
    return load_bundled("RED")


def test_paper_selection_matches_an_independent_count(red):
    centre, intersect, rows = independent_counts()
    assert len(red) == rows == 71157
    by_search = sum(1 for _ in SearchQuery(lat=(-60, -40), ls=(140, 200)).filter(red))
    by_search_intersect = sum(1 for _ in SearchQuery(lat=(-60, -40), ls=(140, 200), lat_rule="intersect").filter(red))
    assert by_search == centre
    assert by_search_intersect == intersect
    # The figures measured on the full source index (issue 4): the bundled file keeps them.
    assert (centre, intersect) == (1409, 1421)


def test_bundled_file_is_small_and_red_records_are_marked_approximate(red):
    assert BUNDLED_PATH.stat().st_size < 4_000_000
    p = next(p for p in red if p.product_id == "ESP_011319_1305_RED")
    assert p.footprint_approximate and "COLOR" in p.footprint_note
    assert p.jp2_url == (
        "https://hirise-pds.lpl.arizona.edu/PDS/RDR/ESP/ORB_011300_011399/ESP_011319_1305/ESP_011319_1305_RED.JP2"
    )
    assert p.lbl_url == p.jp2_url[:-3] + "LBL"
    assert p.uncompressed_bytes is None  # the COLOR product's size says nothing about the RED one
    color = {c.product_id: c for c in load_bundled("COLOR")}["ESP_011319_1305_COLOR"]
    assert color.uncompressed_bytes > 0 and color.footprint_note == "lat/lon box of the product"
    assert (color.ls, color.min_lat, color.max_lat) == (p.ls, p.min_lat, p.max_lat)
    with pytest.raises(CatalogueError, match="no DTMs"):
        load_bundled("DTM")


def test_footprint_layer_of_the_paper_selection(red, tmp_path):
    from marsice_plugin.catalogue.footprints import write_footprints

    chosen = list(SearchQuery(lat=(-60, -40), ls=(140, 200)).filter(red))
    out = write_footprints(tmp_path / "fp.gpkg", chosen)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fp.gpkg"]  # nothing else left behind
    with sqlite3.connect(out) as db:
        (srs_id,) = db.execute("SELECT srs_id FROM gpkg_geometry_columns WHERE table_name='footprints'").fetchone()
        (wkt, org) = db.execute("SELECT definition, organization FROM gpkg_spatial_ref_sys WHERE srs_id=?",
                                (srs_id,)).fetchone()  # fmt: skip
        rows = db.execute("SELECT product_id, ls, centre_lat, footprint_approximate, geom FROM footprints").fetchall()
    crs = pyproj.CRS.from_wkt(wkt)
    assert org == "NONE" and "EPSG" not in wkt and "IAU" not in wkt
    assert crs.ellipsoid.semi_major_metre == pytest.approx(3396190.0)
    assert crs.is_geographic
    assert len(rows) == 1409
    by_id = {p.product_id: p for p in chosen}
    for pid, ls, centre_lat, approx, blob in rows:
        geom = parse_geometry_blob(blob)
        assert isinstance(geom, shapely.MultiPolygon)
        assert approx == 1 and ls == by_id[pid].ls
        assert -60 <= centre_lat <= -40
        minx, miny, maxx, maxy = geom.bounds
        assert miny == pytest.approx(by_id[pid].min_lat) and maxy == pytest.approx(by_id[pid].max_lat)
        assert -180 <= minx <= maxx <= 180


@pytest.mark.parametrize("label", ["ESP_011707_1440_COLOR.LBL", "ESP_013951_1955_RED.LBL", "PSP_010737_2050_COLOR.LBL"])
def test_sun_azimuth_agrees_with_each_real_label(label):
    """The catalogue's sun azimuth is (SUB_SOLAR_AZIMUTH - NORTH_AZIMUTH) mod 360 of the index, to 0.1°; the real
    labels here say the same, and a product of an observation takes its COLOR row's value."""
    from pathlib import Path

    from marsice_plugin.labels import read_label

    parsed = read_label(Path(__file__).parent / "data" / label)
    assert catalogue_sun_azimuth(parsed.product_id) == pytest.approx(parsed.sun_azimuth_from_north, abs=0.051)
    observation = parsed.product_id.rsplit("_", 1)[0]
    assert catalogue_sun_azimuth(f"{observation}_IRB") == catalogue_sun_azimuth(f"{observation}_RED")
    assert catalogue_sun_azimuth("ESP_999999_1300_RED") is None  # not an observation of the archive
    assert catalogue_sun_azimuth("my_mosaic") is None  # not a product id


def test_sun_azimuths_in_the_papers_band_are_the_papers(red):
    """The paper: in its band the sun comes from 290-303° (mid-afternoon, west-north-west)."""
    band = [p.sun_azimuth for p in red if p.sun_azimuth is not None and p.ls is not None and 140 <= p.ls <= 200
            and p.max_lat is not None and p.max_lat >= -70 and p.min_lat <= -40]  # fmt: skip
    assert len(band) > 500
    inside = sum(290 <= a <= 303 for a in band) / len(band)
    assert 290 <= sorted(band)[len(band) // 2] <= 303 and inside > 0.5
