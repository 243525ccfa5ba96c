"""Products on the 180° meridian: outlines split there, not spanning the globe; sites grouped across it.

A HiRISE product centred at 179.99°E has a ring that, transformed to the common CRS (east longitude -180..180), jumps
from +180 to -180. Taken as drawn it is a band round the planet (deg² instead of 1e-4 deg²) that "covers" every site at
its latitude. The generated products here are the same scene written at 10°E and with a bright patch on the meridian;
the site tests build results rows as the writer does and as runs before the split wrote them (torn).
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import numpy as np
import pyproj
import pytest
import shapely
from rasterio.windows import Window

from marsice_plugin.catalogue.footprints import write_footprints
from marsice_plugin.catalogue.mars_time import mars_year_start
from marsice_plugin.catalogue.ode import product_from_ode
from marsice_plugin.catalogue.records import CatalogueProduct, east_180
from marsice_plugin.detection import detections_from_scores
from marsice_plugin.gpkg import parse_geometry_blob
from marsice_plugin.product import open_product
from marsice_plugin.result_layers import RESULT_LAYERS, ChunkScore
from marsice_plugin.results import ResultsWriter
from marsice_plugin.sites.build import build_sites
from marsice_plugin.sites.coverage import longitude_arc
from marsice_plugin.sites.geometry import from_local
from marsice_plugin.synthetic.product_writer import ProductGeometry, write_sample_product
from marsice_plugin.synthetic.scene import SceneConfig
from marsice_plugin.vectors import continuous, lonlat_centre, split_antimeridian, to_lonlat, window_footprint

from .catalogue_http import real_products

GEOD = pyproj.Geod(a=3396190.0, b=3396190.0)  # the common CRS's sphere
SCENE = SceneConfig(width=1024, height=1024, seed=3)


def geodesic_area(geom) -> float:
    return abs(GEOD.geometry_area_perimeter(geom)[0])


def vertices(geom) -> np.ndarray:
    return shapely.get_coordinates(geom)


def torn(geom):
    """The outline as a run before the split wrote it: every vertex wrapped into -180..180 on its own."""
    return shapely.transform(geom, lambda xy: np.column_stack([(xy[:, 0] + 180.0) % 360.0 - 180.0, xy[:, 1]]))


# -- generated products: footprints, chunks and candidates ---------------------------------------------------------


@pytest.fixture(scope="module")
def products(tmp_path_factory: pytest.TempPathFactory):
    """The same scene at 10°E and with its largest ice patch centred on the 180° meridian (equirectangular)."""
    out = tmp_path_factory.mktemp("antimeridian")
    ten = write_sample_product(out / "ten", SCENE, ProductGeometry(center_longitude=10.0))
    with contextlib.closing(sqlite3.connect(ten.truth_path)) as db:
        ice = [parse_geometry_blob(b) for (b,) in db.execute("SELECT geom FROM ice_truth")]
    with open_product(ten.label_path) as p:
        patch = max(ice, key=lambda g: g.area).centroid
        (lon,), _ = to_lonlat(p.crs, [patch.x], [patch.y])
    meridian = write_sample_product(out / "meridian", SCENE, ProductGeometry(center_longitude=10.0 + 180.0 - lon))
    return ten, meridian


def _detect_rows(sample) -> tuple[dict, dict]:
    """Result rows of a product whose four 512 px chunks all score 0.9 (no model: the geometry is under test).

    Also each candidate row by the pixel (column, row) of its outline's centroid, to pair it with its twin in the
    same scene written elsewhere.
    """
    with open_product(sample.label_path) as p:
        chunks = [
            ChunkScore(i, j, Window(512 * j, 512 * i, 512, 512), 0.9, False, "", 0.0)
            for i in range(2)
            for j in range(2)
        ]
        result = detections_from_scores(p, chunks, 0.35, "none")
        rows = result.rows
        pixels = [~p.transform @ (c.geometry.centroid.x, c.geometry.centroid.y) for c in result.candidates]
    by_pixel = {(round(x, 2), round(y, 2)): row for (x, y), row in zip(pixels, rows["ice_candidates"], strict=True)}
    return rows, by_pixel


def test_product_footprint_on_the_meridian_is_split_and_as_small_as_elsewhere(products) -> None:
    ten, meridian = products
    outlines = {}
    for name, sample in (("ten", ten), ("meridian", meridian)):
        with open_product(sample.label_path) as p:
            outlines[name] = window_footprint(p.transform, p.crs, 0, 0, p.width, p.height, densify=32)
            if name == "meridian":
                xs, ys = p.transform @ (np.array([0, p.width, p.width, 0]), np.array([0, 0, p.height, p.height]))
                as_drawn = shapely.Polygon(np.column_stack(to_lonlat(p.crs, xs, ys)))
                centre = p.center_lonlat()
    assert as_drawn.area > 1.0  # the bug: the ring taken as drawn is a band round the planet (deg²)
    foot = outlines["meridian"]
    assert foot.geom_type == "MultiPolygon" and len(foot.geoms) == 2
    assert np.all(np.abs(vertices(foot)[:, 0]) <= 180.0)
    assert foot.area == pytest.approx(outlines["ten"].area, rel=1e-6) and foot.area < 2e-4  # 512 m x 512 m
    assert geodesic_area(foot) == pytest.approx(geodesic_area(outlines["ten"]), rel=1e-6)
    # the pieces together are the footprint: joined again they are the 10°E one moved by the longitude difference
    joined = shapely.union_all(continuous(foot, 180.0).geoms)
    moved = shapely.affinity.translate(outlines["ten"], joined.centroid.x - outlines["ten"].centroid.x, 0.0)
    assert joined.geom_type == "Polygon" and joined.symmetric_difference(moved).area < 1e-12
    lon, lat = lonlat_centre(foot)
    assert abs(abs(lon) - 180.0) < 0.01 and east_180(lon - centre[0]) == pytest.approx(0.0, abs=1e-9)
    assert lat == pytest.approx(centre[1], abs=1e-6)


def test_polar_stereographic_product_on_the_meridian_is_split(tmp_path: Path) -> None:
    """Near the pole a straight chunk edge is curved in lon/lat; the split keeps the densified outline."""
    areas = {}
    for lon in (10.0, 179.999):
        geometry = ProductGeometry(center_longitude=lon, center_latitude=-80.0, projection="POLAR STEREOGRAPHIC")
        sample = write_sample_product(tmp_path / str(lon), SceneConfig(width=256, height=256, seed=5), geometry)
        with open_product(sample.label_path) as p:
            areas[lon] = window_footprint(p.transform, p.crs, 0, 0, p.width, p.height, densify=32)
    foot = areas[179.999]
    assert foot.geom_type == "MultiPolygon" and np.all(np.abs(vertices(foot)[:, 0]) <= 180.0)
    assert geodesic_area(foot) == pytest.approx(geodesic_area(areas[10.0]), rel=1e-6)


def test_result_rows_on_the_meridian_are_split_multipolygons_like_the_same_product_at_10e(products, tmp_path) -> None:
    ten, meridian = products
    rows_ten, twins = _detect_rows(ten)
    rows, candidates = _detect_rows(meridian)
    for layer in ("chunks", "products"):
        assert len(rows[layer]) == len(rows_ten[layer])
        for (geom, _), (geom_ten, _) in zip(rows[layer], rows_ten[layer], strict=True):
            assert geom.geom_type == "MultiPolygon" and np.all(np.abs(vertices(geom)[:, 0]) <= 180.0)
            assert geom.area < 2e-4  # at most the product (deg²): never a band round the planet
            assert geodesic_area(geom) == pytest.approx(geodesic_area(geom_ten), rel=1e-6)
    # every patch outlined on the meridian is its 10°E twin (same pixels), with the same tiny outline and area.
    # (Not the same count: a patch whose bounding rectangle is 3.0 times as long as wide, the elongation limit, is
    # kept or dropped by the rounding of its product-CRS coordinates, far from or at the projection's centre.)
    assert len(candidates) > 50 and len(set(twins) - set(candidates)) <= 1
    for pixel, (geom, attrs) in candidates.items():
        geom_ten, attrs_ten = twins[pixel]
        assert geom.geom_type == "MultiPolygon" and np.all(np.abs(vertices(geom)[:, 0]) <= 180.0)
        assert geodesic_area(geom) == pytest.approx(geodesic_area(geom_ten), rel=1e-6)
        assert attrs["area_m2"] == pytest.approx(attrs_ten["area_m2"], rel=1e-6)
        assert geom.area < 1e-6 and abs(abs(attrs["centroid_lon"]) - 180.0) < 0.02  # the product is 0.013° wide
    assert sum(len(g.geoms) == 2 for g, _ in candidates.values()) >= 1, "the largest ice patch lies on the meridian"
    for geom, attrs in rows["chunks"]:  # the chunk centre is on the meridian, not at 0°E (the mean of ±180)
        assert abs(abs(attrs["longitude"]) - 180.0) < 0.02 and attrs["latitude"] == pytest.approx(-50.0, abs=0.01)
        assert lonlat_centre(geom) == pytest.approx((attrs["longitude"], attrs["latitude"]))

    with ResultsWriter(tmp_path / "results.gpkg", RESULT_LAYERS) as writer:
        writer.write_product(meridian.product_id, rows)
    with contextlib.closing(sqlite3.connect(tmp_path / "results.gpkg")) as db:
        types = dict(db.execute("SELECT table_name, geometry_type_name FROM gpkg_geometry_columns"))
        blobs = [b for layer in types for (b,) in db.execute(f'SELECT geom FROM "{layer}"')]
    assert types == {"chunks": "MULTIPOLYGON", "ice_candidates": "MULTIPOLYGON", "products": "MULTIPOLYGON"}
    written = [parse_geometry_blob(b) for b in blobs]
    assert all(g.geom_type == "MultiPolygon" and np.all(np.abs(vertices(g)[:, 0]) <= 180.0) for g in written)


# -- catalogue footprints ------------------------------------------------------------------------------------------


def test_ode_footprint_torn_across_the_meridian_is_written_split(tmp_path) -> None:
    """An ODE polygon whose ring jumps from +180 to -180 is split, not written as a band round the planet."""
    raw = real_products()[0]
    raw.update(
        pdsid="ESP_012345_1300_RED",
        Westernmost_longitude="179.98",
        Easternmost_longitude="180.02",
        Footprint_C0_geometry="POLYGON ((-179.98 -50.3, 179.98 -50.3, 179.98 -50.1, -179.98 -50.1, -179.98 -50.3))",
    )
    record = product_from_ode(raw)
    foot = record.footprint()
    assert foot.geom_type == "MultiPolygon" and foot.area == pytest.approx(0.04 * 0.2)
    assert np.all(np.abs(vertices(foot)[:, 0]) <= 180.0) and not record.footprint_approximate
    out = write_footprints(tmp_path / "fp.gpkg", [record])
    with contextlib.closing(sqlite3.connect(out)) as db:
        ((blob, approximate),) = db.execute("SELECT geom, footprint_approximate FROM footprints").fetchall()
    written = parse_geometry_blob(blob)
    assert approximate == 0 and written.equals(foot) and not written.intersects(shapely.Point(31.4, -50.2))


# -- sites ---------------------------------------------------------------------------------------------------------

LAT = -50.2
MERIDIAN, FAR = 180.0, 31.4  # a place on the meridian and one on the far side, at the same latitude


def disc(lon0: float, east_m: float = 0.0, radius_m: float = 4.0):
    return from_local(shapely.Point(east_m, 0.0).buffer(radius_m, 32), lon0, LAT)


def square(lon0: float, half_m: float):
    return from_local(shapely.box(-half_m, -half_m, half_m, half_m), lon0, LAT)


#: (product id, Ls, place, patch offset east in m): MY 33 throughout
OBSERVATIONS = (
    ("ESP_030001_1297_RED", 100.0, FAR, 0.0),
    ("ESP_030101_1297_RED", 150.0, MERIDIAN, 0.0),  # the patch straddles the meridian
    ("ESP_030201_1297_RED", 165.0, MERIDIAN, 3.0),  # the same patch seen again, 3 m east
    ("ESP_030301_1297_RED", 170.0, FAR, 2.0),
)
UNPROCESSED = ("ESP_030401_1297_RED", 160.0, MERIDIAN)


def _write(path: Path, outline) -> Path:
    """Results rows as the writer gives them; ``outline`` turns a continuous lon/lat outline into the stored one."""
    with ResultsWriter(path, RESULT_LAYERS) as writer:
        for pid, ls, lon0, east in OBSERVATIONS:
            common = {"product_id": pid, "ls": ls, "incidence": 62.0, "scale_m": 0.5, "sun_azimuth": 297.0}
            patch = disc(lon0, east)
            lon, lat = lonlat_centre(split_antimeridian(patch))
            cand = {**common, "candidate_id": f"{pid}:1", "max_probability": 0.9, "centroid_lat": lat}
            writer.write_product(
                pid,
                {
                    "products": [(outline(square(lon0, 1500.0)), {**common, "max_probability": 0.9})],
                    "chunks": [(outline(square(lon0, 256.0)), {**common, "probability": 0.9})],
                    "ice_candidates": [(outline(patch), {**cand, "centroid_lon": lon})],
                },
            )
    return path


def _catalogue(path: Path) -> Path:
    """The footprint layer: every processed product and one nobody processed, given as ODE gives a torn polygon."""
    records = []
    for pid, ls, lon0, *_ in (*OBSERVATIONS, UNPROCESSED):
        foot = square(lon0, 1500.0)
        b = foot.bounds
        records.append(
            CatalogueProduct(
                product_id=pid,
                observation_id=pid[:15],
                product_type="RED",
                source="ode",
                start_time=mars_year_start(33),
                mars_year=33,
                ls=ls,
                min_lat=b[1],
                max_lat=b[3],
                min_lon=b[0],
                max_lon=b[2],
                footprint_wkt=torn(foot).wkt,
            )
        )
    return write_footprints(path, records)


@pytest.mark.parametrize("stored", ["split", "torn"])
def test_sites_group_across_the_meridian_and_far_products_do_not_cover_them(tmp_path, stored) -> None:
    """Split outlines (this writer) and torn ones (runs before it) give the same sites and transitions."""
    outline = split_antimeridian if stored == "split" else torn
    results = _write(tmp_path / "results.gpkg", outline)
    built = build_sites(
        [results], tmp_path / "sites.gpkg", footprints=_catalogue(tmp_path / "fp.gpkg"), measure_contrast=False
    )
    assert len(built.sites) == 2
    by_place = {round(abs(s.centroid_lon)): s for s in built.sites}
    meridian, far = by_place[180], by_place[31]
    assert meridian.products == ["ESP_030101_1297_RED", "ESP_030201_1297_RED"]  # one site across the meridian
    assert meridian.site_id.endswith("_180.0000E") and abs(abs(meridian.centroid_lon) - 180.0) < 1e-4
    assert far.products == ["ESP_030001_1297_RED", "ESP_030301_1297_RED"]
    # the site outline: split at ±180, a few metres across (two 4 m discs 3 m apart), not a band round the planet
    assert np.all(np.abs(vertices(meridian.geometry)[:, 0]) <= 180.0) and len(meridian.geometry.geoms) == 2
    assert np.pi * 16.0 < meridian.area_m2 < 2 * np.pi * 16.0
    assert 0 < geodesic_area(meridian.geometry) < 2 * np.pi * 16.0

    def history(site) -> list[tuple]:
        return [(o.product_id, o.processed, o.detected, o.transition) for o in built.observations[site.site_id]]

    assert history(far) == [
        ("ESP_030001_1297_RED", True, True, "first in Mars Year"),
        ("ESP_030301_1297_RED", True, True, "persisted"),  # not 'appeared' after the meridian products' 'absence'
    ]
    assert history(meridian) == [
        ("ESP_030101_1297_RED", True, True, "first in Mars Year"),
        ("ESP_030401_1297_RED", False, None, "not yet processed"),  # its catalogue footprint, torn as ODE gave it
        ("ESP_030201_1297_RED", True, True, "persisted"),
    ]
    with contextlib.closing(sqlite3.connect(tmp_path / "sites.gpkg")) as db:
        transitions = [t for (t,) in db.execute("SELECT transition FROM site_observations")]
        (blob,) = db.execute("SELECT geom FROM sites WHERE site_id = ?", (meridian.site_id,)).fetchone()
    assert "appeared" not in transitions and len(transitions) == 5
    assert parse_geometry_blob(blob).equals(meridian.geometry)


def test_catalogue_search_box_of_sites_on_the_meridian_is_an_arc_across_it() -> None:
    """Sites at 179.99°E and -179.99°E are metres apart: the search box crosses 180°, it is not the whole band."""
    west, east = longitude_arc([(179.98, 179.995), (-179.995, -179.98)])
    assert (west, east) == pytest.approx((179.98, 180.02))
    assert longitude_arc([(31.3, 31.5)]) == pytest.approx((31.3, 31.5))
    assert longitude_arc([(0.0, 10.0), (120.0, 130.0), (240.0, 250.0)]) is None  # spread round the planet
