"""The Python API (``marsice_plugin.api``): search, detect, sites and read_results as GeoDataFrames.

Two generated 1024 × 1024 px products of the same ground at Ls 150 and 165 (the same seed renders the same
terrain; one planted 8 m patch makes the demo model flag its chunk), each detected once into a file; the first
is also detected in memory, so the two paths of ``detect`` are compared on the same product and model.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pandas
import pytest
import shapely

from marsice_plugin import api
from marsice_plugin.catalogue.footprints import FOOTPRINT_FIELDS
from marsice_plugin.errors import GeoPackageError
from marsice_plugin.gpkg import read_layer
from marsice_plugin.product import open_product
from marsice_plugin.result_layers import RESULT_LAYERS
from marsice_plugin.sites.build import SITE_FIELDS
from marsice_plugin.synthetic.product_writer import ProductGeometry, write_sample_product
from marsice_plugin.synthetic.scene import SceneConfig
from marsice_plugin.vectors import to_lonlat

from .conftest import DEMO_MODEL, REPO
from .test_sites import time_at

PATCH_ROW, PATCH_COL = 500.0, 520.0
LAYERS = [spec.name for spec in RESULT_LAYERS]
PROVENANCE = ["run_id", "run_time"]  # differ between two runs by design


@pytest.fixture(scope="module")
def ground(tmp_path_factory):
    """Two products of the same ground, each detected into its own GeoPackage, the first also in memory."""
    root = tmp_path_factory.mktemp("api")
    # the ground of test_sites_end_to_end (same seed: same terrain), the patch bright at both Ls
    config = SceneConfig(
        1024, 1024, seed=11, incidence=65.0, n_ice_boulder=2, ice_at=((PATCH_ROW, PATCH_COL, 8.0, 1.2),)
    )
    products = [
        write_sample_product(
            root / str(orbit),
            config,
            ProductGeometry(
                center_latitude=-50.2, center_longitude=31.4, solar_longitude=ls, start_time=time_at(33, ls)
            ),
            orbit=orbit,
        )
        for orbit, ls in ((30001, 150.0), (30101, 165.0))
    ]
    before = sorted(root.rglob("*"))
    in_memory = api.detect(products[0].label_path, model=DEMO_MODEL)
    wrote_nothing = sorted(root.rglob("*")) == before
    outputs = [root / f"results_{k}.gpkg" for k in range(len(products))]
    written = [api.detect(p.label_path, out, model=DEMO_MODEL) for p, out in zip(products, outputs, strict=True)]
    return {
        "products": products,
        "outputs": outputs,
        "in_memory": in_memory,
        "written": written[0],
        "wrote_nothing": wrote_nothing,
    }


def test_importing_the_package_loads_no_heavy_library():
    """``import marsice_plugin`` (what QGIS does) stays cheap; the API loads geopandas, not TensorFlow."""
    heavy = ["geopandas", "pandas", "pyogrio", "tensorflow", "keras", "rasterio"]
    code = (
        "import json, sys\n"
        "import marsice_plugin\n"
        f"heavy = {heavy!r}\n"
        "plain = [m for m in heavy if m in sys.modules]\n"
        "from marsice_plugin import api\n"
        "print(json.dumps([plain, [m for m in heavy if m in sys.modules]]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    plain, with_api = json.loads(proc.stdout)
    assert plain == []
    assert with_api == ["geopandas", "pandas"]  # pyogrio on the first read, TensorFlow on the first detect


def test_detect_in_memory_gives_the_rows_detect_writes(ground):
    memory, written = ground["in_memory"], ground["written"]
    assert ground["wrote_nothing"]  # the in-memory path wrote no file (no GeoPackage, no lock, no side output)
    assert list(memory) == list(written) == LAYERS
    for spec in RESULT_LAYERS:
        a, b = memory[spec.name], written[spec.name]
        assert list(a.columns) == list(b.columns) == [f.name for f in spec.fields] + ["geometry"]
        assert len(a) == len(b) > 0
        pandas.testing.assert_frame_equal(a.drop(columns=PROVENANCE), b.drop(columns=PROVENANCE), check_exact=True)
        assert a.geometry.geom_equals_exact(b.geometry, tolerance=0.0).all()
        assert (a["product_id"] == ground["products"][0].product_id).all()
    chunks = memory["chunks"]
    assert str(chunks["chunk_row"].dtype) == "Int64" and str(chunks["above_threshold"].dtype) == "boolean"
    assert chunks["above_threshold"].any()  # the planted patch is flagged
    assert memory["products"]["category"].iloc[0] in ("one", "several")


def test_frames_are_in_the_mars_crs_not_an_earth_one(ground):
    for name, layer in ground["in_memory"].items():
        crs = layer.crs
        assert crs == api.layer_crs(), name
        assert crs.to_epsg() is None and crs != "EPSG:4326"
        assert crs.is_geographic and "Mars" in crs.ellipsoid.name and crs.ellipsoid.semi_major_metre == 3396190.0
        assert "Mars (2015)" in crs.to_wkt()
    for layer in ground["written"].values():
        assert layer.crs == api.layer_crs()
    candidates = ground["in_memory"]["ice_candidates"]
    bounds = candidates.geometry.bounds  # x is east longitude, y planetocentric latitude, in degrees
    assert ((bounds["miny"] + 50.2).abs() < 0.5).all() and ((bounds["minx"] - 31.4).abs() < 0.5).all()


def test_read_results_gives_every_layer_as_the_file_holds_it(ground):
    path = ground["outputs"][0]
    frames = api.read_results(path)
    assert list(frames) == LAYERS  # the file's layer_styles table (QGIS styles) is not a layer
    for spec in RESULT_LAYERS:
        rows = read_layer(path, spec.name)  # the project's own reader, independent of GDAL
        layer = frames[spec.name]
        assert len(layer) == len(rows)
        for (geom, attrs), (_, got) in zip(rows, layer.iterrows(), strict=True):
            assert shapely.equals_exact(geom, got.geometry, tolerance=0.0)
            for f in spec.fields:
                expected, value = attrs[f.name], got[f.name]
                if expected is None:
                    assert pandas.isna(value), f.name
                else:
                    assert value == (bool(expected) if f.type is bool else expected), f.name


def test_read_results_of_a_missing_or_foreign_file_says_what_to_give(tmp_path):
    with pytest.raises(GeoPackageError, match=r"nothing\.gpkg does not exist; give a GeoPackage written by marsice"):
        api.read_results(tmp_path / "nothing.gpkg")
    text = tmp_path / "notes.gpkg"
    text.write_text("not a GeoPackage\n")
    with pytest.raises(GeoPackageError, match=r"notes\.gpkg is not a GeoPackage .*written by marsice"):
        api.read_results(text)


def test_detect_takes_a_model_or_fast_not_both(tmp_path):
    with pytest.raises(ValueError, match="a model or fast=True, not both"):
        api.detect(tmp_path / "any.LBL", model=DEMO_MODEL, fast=True)  # refused before the product is opened


def test_search_of_the_bundled_catalogue_gives_the_documented_band():
    """README: 1,409 observations with image centre in -60..-40 at Ls 140..200 (bundled catalogue)."""
    found = api.search(lat=(-60, -40), ls=(140, 200), source="bundled")
    assert len(found) == 1409 and found["product_id"].is_unique
    assert list(found.columns) == [f.name for f in FOOTPRINT_FIELDS] + ["geometry"]
    assert (found["source"] == "bundled").all() and (found["product_type"] == "RED").all()
    assert found["centre_lat"].between(-60, -40).all() and found["ls"].between(140, 200).all()
    assert found.crs == api.layer_crs()
    bounds = found.geometry.bounds
    assert bounds["miny"].min() >= -61 and bounds["maxy"].max() <= -39  # degrees of latitude, on Mars
    assert str(found["mars_year"].dtype) == "Int64" and str(found["footprint_approximate"].dtype) == "boolean"


def test_sites_on_two_detect_outputs_group_the_patch_seen_twice(ground, tmp_path):
    a, b = ground["products"]
    with open_product(a.label_path) as product:
        x, y = product.transform @ (PATCH_COL, PATCH_ROW)
        lon, lat = to_lonlat(product.crs, [x], [y])
    patch = shapely.Point(float(lon[0]), float(lat[0]))

    found = api.sites(ground["outputs"], catalogue="none", measure_contrast=False)
    assert list(found.columns) == [f.name for f in SITE_FIELDS] + ["geometry"]
    assert found.crs == api.layer_crs()
    (site,) = [row for _, row in found.iterrows() if row.geometry.buffer(1e-5).contains(patch)]
    assert site["products"] == f"{a.product_id},{b.product_id}"
    assert site["n_processed"] == site["n_detected"] == 2 and site["detected_ls_min"] == 150.0
    assert site["site_id"].startswith("site_50.")

    kept = tmp_path / "sites.gpkg"
    again = api.sites(ground["outputs"], kept, catalogue="none", measure_contrast=False)
    pandas.testing.assert_frame_equal(again, found, check_exact=True)
    observations = api.read_results(kept)["site_observations"]
    assert not hasattr(observations, "geometry") or "geometry" not in observations.columns
    assert set(observations.loc[observations["site_id"] == site["site_id"], "product_id"]) == {
        a.product_id,
        b.product_id,
    }
