"""Sites over time: grouping, repeat coverage, transitions, dust flags and the sites GeoPackage.

The inputs are results GeoPackages written through the real results writer from known geometry: the same ground
seen at several Ls values, a patch present and then gone, and a footprint catalogue as ``marsice search -o``
writes it (with one observation nobody has processed yet).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import shapely

from marsice_plugin.catalogue.footprints import write_footprints
from marsice_plugin.catalogue.index import rdr_urls
from marsice_plugin.catalogue.mars_time import mars_year, mars_year_start, solar_longitude
from marsice_plugin.catalogue.records import CatalogueProduct
from marsice_plugin.gpkg import Field, parse_geometry_blob
from marsice_plugin.result_layers import CANDIDATES_LAYER, CHUNKS_LAYER, PRODUCT_FIELDS, RESULT_LAYERS
from marsice_plugin.results import LayerSpec, ResultsWriter
from marsice_plugin.sites.build import build_sites, request_window
from marsice_plugin.sites.geometry import from_local, to_local
from marsice_plugin.sites.grouping import group_candidates, site_id_for
from marsice_plugin.sites.inputs import CandidateRow
from marsice_plugin.sites.seasons import dust_context, low_contrast, relative_contrast

LON0, LAT0 = 31.4, -50.2  # the site
FAR_EAST_M = 400.0  # a second, unrelated patch in the first product


def time_at(year: int, ls: float) -> dt.datetime:
    """The Earth time at which Mars Year ``year`` reaches ``ls`` (to within half a day)."""
    when = mars_year_start(year)
    while solar_longitude(when) < ls:
        when += dt.timedelta(hours=12)
    return when.replace(microsecond=0)


def disc(east_m: float, north_m: float, radius_m: float = 4.0) -> shapely.Polygon:
    """A patch outline ``radius_m`` across, centred east/north of the site point, in lon/lat."""
    return from_local(shapely.Point(east_m, north_m).buffer(radius_m, 32), LON0, LAT0)


def box_around(half_m: float, east_m: float = 0.0) -> shapely.Polygon:
    return from_local(shapely.box(east_m - half_m, -half_m, east_m + half_m, half_m), LON0, LAT0)


#: (product id, Mars Year, Ls, patch offsets east/north in m or None, chunk probability over the site)
SEQUENCE = (
    ("ESP_030001_1297_RED", 33, 150.0, [(0.0, 0.0), (FAR_EAST_M, 0.0)], 0.95),
    ("ESP_030101_1297_RED", 33, 165.0, [(6.0, -3.0)], 0.88),
    ("ESP_030301_1297_RED", 33, 185.0, [], 0.21),
    ("ESP_056001_1297_RED", 34, 190.0, [], 0.15),
)
UNPROCESSED = ("ESP_030201_1297_RED", 33, 175.0)
ELSEWHERE = ("ESP_030401_1297_RED", 33, 195.0)  # its footprint misses the site


def record(pid: str, year: int, ls: float, footprint: shapely.Polygon) -> CatalogueProduct:
    jp2, lbl = rdr_urls(pid)
    b = footprint.bounds
    return CatalogueProduct(
        product_id=pid,
        observation_id=pid[:15],
        product_type="RED",
        source="ode",
        start_time=time_at(year, ls),
        mars_year=year,
        ls=ls,
        local_time=15.2,
        incidence=62.0,
        emission=3.0,
        min_lat=b[1],
        max_lat=b[3],
        min_lon=b[0],
        max_lon=b[2],
        map_scale=0.5,
        footprint_wkt=footprint.wkt,
        jp2_url=jp2,
        lbl_url=lbl,
    )


def write_results(path: Path, sequence=SEQUENCE, products_layer: LayerSpec | None = None, extra=None) -> Path:
    """One results GeoPackage holding every product of ``sequence``, written through the results writer."""
    layers = RESULT_LAYERS if products_layer is None else (CHUNKS_LAYER, CANDIDATES_LAYER, products_layer)
    with ResultsWriter(path, layers) as writer:
        for pid, _year, ls, patches, chunk_p in sequence:
            common = {"product_id": pid, "ls": ls, "incidence": 62.0, "scale_m": 0.5, "sun_azimuth": 297.0}
            footprint = box_around(1500.0)
            chunk = box_around(256.0)
            cands = []
            for i, (e, n) in enumerate(patches, start=1):
                geom = disc(e, n)
                cands.append(
                    (
                        geom,
                        {
                            **common,
                            "candidate_id": f"{pid}:{i}",
                            "max_probability": chunk_p - 0.01 * i,
                            "centroid_lat": geom.centroid.y,
                            "centroid_lon": geom.centroid.x,
                        },
                    )
                )
            product = {**common, "category": "several" if patches else "none", "max_probability": chunk_p}
            product.update((extra or {}).get(pid, {}))
            writer.write_product(
                pid,
                {
                    "products": [(footprint, product)],
                    "chunks": [(chunk, {**common, "probability": chunk_p, "chunk_row": 0, "chunk_col": 0})],
                    "ice_candidates": cands,
                },
            )
    return path


def write_catalogue(path: Path) -> Path:
    records = [record(pid, year, ls, box_around(1500.0)) for pid, year, ls, _, _ in SEQUENCE]
    records.append(record(*UNPROCESSED, box_around(1500.0)))
    records.append(record(*ELSEWHERE, box_around(300.0, east_m=5000.0)))
    return write_footprints(path, records)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sites")
    results = write_results(tmp / "results.gpkg")
    catalogue = write_catalogue(tmp / "footprints.gpkg")
    out = tmp / "sites.gpkg"
    result = build_sites(
        [results], out, tolerance_m=20.0, footprints=catalogue, plots_dir=tmp / "plots", pull_missing=tmp / "q.txt"
    )
    return tmp, result


def _table(path: Path, sql: str) -> list[dict]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute(sql)]


def test_same_ground_at_several_ls_is_one_site_with_its_observations_and_transitions(built) -> None:
    tmp, result = built
    assert len(result.sites) == 2  # the patch seen twice, and the unrelated patch seen once
    site = next(s for s in result.sites if len(s.members) == 2)
    assert [m.candidate_id for m in site.members] == ["ESP_030001_1297_RED:1", "ESP_030101_1297_RED:1"]
    assert abs(site.centroid_lat - LAT0) < 1e-4 and abs(site.centroid_lon - LON0) < 1e-4
    assert site.site_id == site_id_for(site.centroid_lat, site.centroid_lon)
    assert site.site_id.startswith("site_50.20") and site.site_id.endswith("E") and "S_031.40" in site.site_id

    rows = _table(tmp / "sites.gpkg", f"SELECT * FROM site_observations WHERE site_id = '{site.site_id}' ORDER BY fid")
    got = [(r["product_id"], r["mars_year"], r["ls"], r["processed"], r["detected"], r["transition"]) for r in rows]
    assert got == [
        ("ESP_030001_1297_RED", 33, 150.0, 1, 1, "first in Mars Year"),
        ("ESP_030101_1297_RED", 33, 165.0, 1, 1, "persisted"),
        ("ESP_030201_1297_RED", 33, 175.0, 0, None, "not yet processed"),
        ("ESP_030301_1297_RED", 33, 185.0, 1, 0, "disappeared"),
        ("ESP_056001_1297_RED", 34, 190.0, 1, 0, "first in Mars Year"),
    ]
    by_pid = {r["product_id"]: r for r in rows}
    gone = by_pid["ESP_030301_1297_RED"]
    assert gone["previous_product_id"] == "ESP_030101_1297_RED"
    assert gone["probability"] == pytest.approx(0.21) and gone["chunk_probability"] == pytest.approx(0.21)
    assert gone["dusty"] == 0 and gone["caveat"] is None
    seen = by_pid["ESP_030001_1297_RED"]
    assert seen["probability"] == pytest.approx(0.94) and seen["candidate_ids"] == "ESP_030001_1297_RED:1"
    assert seen["local_time"] == pytest.approx(15.2) and seen["map_scale"] == 0.5 and seen["incidence"] == 62.0
    assert seen["start_time"].startswith(str(time_at(33, 150.0).date()))
    assert seen["web_url"] == "https://www.uahirise.org/ESP_030001_1297"
    assert seen["jp2_url"].endswith("/RDR/ESP/ORB_030000_030099/ESP_030001_1297/ESP_030001_1297_RED.JP2")
    assert "ESP_030401_1297_RED" not in by_pid  # its footprint does not reach the site

    # the MY 34 global dust storm began near Ls 186: the Ls 190 absence is flagged, not read as melt
    storm = by_pid["ESP_056001_1297_RED"]
    assert storm["dusty"] == 1 and "MY 34 global dust storm" in storm["dust_note"]
    assert "not proof of melt" in storm["caveat"]


def test_sites_layer_attributes_geometry_and_crs(built) -> None:
    tmp, result = built
    site = next(s for s in result.sites if len(s.members) == 2)
    (row,) = _table(tmp / "sites.gpkg", f"SELECT * FROM sites WHERE site_id = '{site.site_id}'")
    assert (row["n_observations"], row["n_processed"], row["n_detected"], row["n_not_processed"]) == (5, 4, 2, 1)
    assert (row["ls_min"], row["ls_max"], row["detected_ls_min"], row["detected_ls_max"]) == (150, 190, 150, 165)
    assert (row["mars_year_min"], row["mars_year_max"], row["mars_years"]) == (33, 34, "33,34")
    assert row["products"] == "ESP_030001_1297_RED,ESP_030101_1297_RED"
    assert row["detections"].startswith("ESP_030001_1297_RED Ls 150.0 MY 33 p 0.94; ESP_030101_1297_RED Ls 165.0")
    assert row["web_urls"].split() == [
        "https://www.uahirise.org/ESP_030001_1297",
        "https://www.uahirise.org/ESP_030101_1297",
    ]
    assert len(row["jp2_urls"].split()) == 2 and row["n_dusty"] == 1 and row["n_caveats"] == 1
    # seen Ls 150-165, clean absence at 185: the request window brackets the disappearance, padded by 5°
    assert (row["request_ls_start"], row["request_ls_end"]) == (145.0, 190.0)
    assert Path(row["plot"]).is_file() and Path(row["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    geom = parse_geometry_blob(row["geom"])
    assert geom.geom_type == "MultiPolygon" and geom.contains(shapely.Point(LON0, LAT0))
    # two 4 m discs 6.7 m apart: union area between one and two discs
    disc_area = math.pi * 16.0
    assert disc_area < row["area_m2"] < 2 * disc_area
    contents = {r["table_name"]: r for r in _table(tmp / "sites.gpkg", "SELECT * FROM gpkg_contents")}
    assert contents["site_observations"]["data_type"] == "attributes"
    (srs,) = _table(
        tmp / "sites.gpkg",
        "SELECT s.definition FROM gpkg_geometry_columns g JOIN gpkg_spatial_ref_sys s USING (srs_id) "
        "WHERE g.table_name = 'sites'",
    )
    assert "Mars" in srs["definition"] and "3396190" in srs["definition"] and "EPSG" not in srs["definition"]


def test_queue_lists_unprocessed_observations_and_ids_are_stable(built, tmp_path) -> None:
    tmp, result = built
    assert (tmp / "q.txt").read_text() == "ESP_030201_1297_RED\n"
    assert result.queued == ["ESP_030201_1297_RED"]
    again = build_sites(
        [tmp / "results.gpkg"],
        tmp_path / "again.gpkg",
        footprints=tmp / "footprints.gpkg",
        pull_missing=tmp_path / "queue.gpkg",
        measure_contrast=False,
    )
    assert [s.site_id for s in again.sites] == [s.site_id for s in result.sites]
    queued = _table(tmp_path / "queue.gpkg", "SELECT product_id, jp2_url FROM footprints")
    assert queued == [{"product_id": "ESP_030201_1297_RED", "jp2_url": rdr_urls("ESP_030201_1297_RED")[0]}]


def test_coregistration_offset_in_products_layer_is_applied(tmp_path) -> None:
    """A product 60 m off joins the site only through the offset its products row records."""
    fields = [*PRODUCT_FIELDS, Field("offset_east_m", float), Field("offset_north_m", float)]
    layer = dataclasses.replace(next(s for s in RESULT_LAYERS if s.name == "products"), fields=fields)
    seq = (SEQUENCE[0][:3] + ([(0.0, 0.0)], 0.9), ("ESP_030101_1297_RED", 33, 165.0, [(60.0, 0.0)], 0.9))
    plain = write_results(tmp_path / "plain.gpkg", seq, layer)
    shifted = write_results(tmp_path / "shifted.gpkg", seq, layer, extra={seq[1][0]: {"offset_east_m": -59.0}})
    assert len(build_sites([plain], tmp_path / "a.gpkg", catalogue="none", measure_contrast=False).sites) == 2
    joined = build_sites([shifted], tmp_path / "b.gpkg", catalogue="none", measure_contrast=False).sites
    assert len(joined) == 1 and len(joined[0].members) == 2


def _cand(cid: str, geom) -> CandidateRow:
    return CandidateRow(cid, cid.split(":")[0], geom, 0.9)


def test_grouping_tolerance_transitivity_and_antimeridian() -> None:
    a, b = _cand("A:1", disc(0, 0, 2.0)), _cand("B:1", disc(30, 0, 2.0))  # outlines 26 m apart
    assert len(group_candidates([a, b], 20.0)) == 2
    assert len(group_candidates([a, b], 30.0)) == 1
    chain = [_cand(f"P{i}:1", disc(15.0 * i, 0, 2.0)) for i in range(4)]  # each 11 m from the next
    (site,) = group_candidates(chain, 12.0)
    assert len(site.members) == 4
    # two patches 8 m apart on either side of the 180° meridian are one site
    east = from_local(shapely.Point(-4.0, 0).buffer(2.0), 180.0, -45.0)
    west = shapely.affinity.translate(from_local(shapely.Point(4.0, 0).buffer(2.0), 180.0, -45.0), -360.0, 0.0)
    (site,) = group_candidates([_cand("E:1", east), _cand("W:1", west)], 10.0)
    assert abs(abs(site.centroid_lon) - 180.0) < 1e-6 and site.site_id.endswith("_180.0000E")
    local = to_local(site.geometry, 180.0, -45.0)
    assert local.bounds[2] - local.bounds[0] == pytest.approx(12.0, abs=0.1)


def test_dust_periods_and_low_contrast_flags() -> None:
    assert dust_context(34, 186.5).dusty and not dust_context(33, 186.5).dusty
    assert not dust_context(34, 150.0).dusty and dust_context(28, 280.0).dusty
    regional = dust_context(33, 220.0)
    assert not regional.dusty and "A-storm" in regional.note
    assert not dust_context(None, 190.0).dusty  # a global storm needs the Mars Year
    assert low_contrast(82.0, None) and not low_contrast(60.0, None)
    flat = 0.2 + 0.001 * np.random.default_rng(1).standard_normal(10_000)  # a hazy, featureless image
    textured = 0.2 * (1.0 + 0.3 * np.random.default_rng(1).standard_normal(10_000))
    assert relative_contrast(textured) > 0.5
    assert relative_contrast(flat) < 0.08 and low_contrast(60.0, relative_contrast(flat))


def test_request_window_wraps_and_without_sightings() -> None:
    from marsice_plugin.sites.observations import Observation

    def obs(ls: float, detected: bool) -> Observation:
        return Observation("s", "P", "P", None, 33, ls, None, None, None, True, detected)

    # seen at Ls 350 and never seen gone later in the season: 20° after it, padded, past 360 (wraps through Ls 0)
    assert request_window([obs(350.0, True), obs(5.0, False)]) == (345.0, 375.0)
    assert request_window([obs(150.0, False)]) == (None, None)
    assert request_window([obs(150.0, True)]) == (145.0, 175.0)


def test_mars_year_of_generated_times() -> None:
    assert mars_year(time_at(34, 190.0), 190.0) == 34


def test_cli_with_the_bundled_catalogue_lists_a_real_observation_as_not_yet_processed(tmp_path, marsice_cli) -> None:
    """A patch placed inside a real observation's footprint: the bundled catalogue must list that observation."""
    from marsice_plugin.catalogue.index import load_bundled

    real = next(p for p in load_bundled("RED") if p.product_id == "ESP_011319_1305_RED")
    centre = real.footprint().centroid
    pid = "ESP_090001_1305_RED"
    attrs = {"product_id": pid, "ls": 175.0, "incidence": 60.0, "scale_m": 0.5}
    with ResultsWriter(tmp_path / "r.gpkg", RESULT_LAYERS) as writer:
        writer.write_product(
            pid,
            {
                "products": [(centre.buffer(0.01), attrs)],
                "ice_candidates": [
                    (centre.buffer(5e-5), {**attrs, "candidate_id": f"{pid}:1", "max_probability": 0.8})
                ],
            },
        )
    proc = marsice_cli(
        "--progress", "json", "sites", str(tmp_path / "r.gpkg"), "-o", str(tmp_path / "s.gpkg"),
        "--catalogue", "bundled", "--pull-missing", str(tmp_path / "q.txt"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["type"] == "result" and result["outputs"]["catalogue"] == "bundled"
    assert real.product_id in (tmp_path / "q.txt").read_text().split()
    (row,) = _table(tmp_path / "s.gpkg", f"SELECT * FROM site_observations WHERE product_id = '{real.product_id}'")
    assert (row["mars_year"], row["ls"], row["processed"], row["transition"]) == (29, 179.846, 0, "not yet processed")
    assert row["footprint_approximate"] == 1 and row["catalogue"] == "bundled"
    bad = marsice_cli("sites", str(tmp_path / "missing.gpkg"), "-o", str(tmp_path / "x.gpkg"))
    assert bad.returncode == 2 and "marsice detect" in bad.stderr and not (tmp_path / "x.gpkg").exists()


def test_transitions_compare_with_the_previous_processed_observation_of_the_same_year() -> None:
    from marsice_plugin.sites.observations import Observation, assign_transitions

    def obs(pid: str, year: int | None, ls: float, detected: bool | None) -> Observation:
        return Observation("s", pid, pid, None, year, ls, None, None, None, detected is not None, detected)

    rows = [
        obs("a", 30, 140.0, False),
        obs("b", 30, 150.0, None),  # not processed: skipped over
        obs("c", 30, 160.0, True),
        obs("d", 30, 170.0, False),
        obs("e", 30, 175.0, False),
        obs("f", 31, 150.0, True),
        obs("g", None, 150.0, True),
    ]
    assign_transitions(rows)
    assert [(r.transition, r.previous_product_id) for r in rows] == [
        ("first in Mars Year", None),
        ("not yet processed", None),
        ("appeared", "a"),
        ("disappeared", "c"),
        ("still absent", "d"),
        ("first in Mars Year", None),
        ("first in Mars Year", None),
    ]
