"""Products on polar stereographic grids, where north is not "up": the sun in image terms, the CNN's quarter turn.

HiRISE makes every RDR poleward of ±65° on a polar stereographic grid centred on the pole (a tenth of those between
40° and 70°S). There north turns with longitude, so a sun azimuth from north must be turned by the grid's own north
before anything reads pixels by it (marsice_plugin.product.Product.image_sun_azimuth).
"""

from __future__ import annotations

import numpy as np
import pytest

from marsice_plugin.detection import DetectOptions, quarter_turns
from marsice_plugin.gpkg import read_layer
from marsice_plugin.pipeline import detect
from marsice_plugin.product import Product, open_product

from .conftest import DEMO_MODEL
from .small_rasters import MARS_EQC, write_raster

#: A real polar RDR in the index: PSP_008585_2915_COLOR, 67.89-68.56°N, 234.15-234.48°E, NORTH_AZIMUTH 35.6871
#: (clockwise from the image's right-edge axis), on a north polar stereographic grid with CENTER_LONGITUDE 0.
REAL_POLAR = {"lat": 68.2258, "lon": 234.3129, "north_azimuth": 35.6871}


def _geotiff(path, data: np.ndarray, proj4: str, x0: float, y0: float, tags=None):
    """A 0.5 m/px GeoTIFF in ``proj4`` with its upper-left corner at (x0, y0)."""
    from affine import Affine

    return write_raster(path, data, Affine(0.5, 0, x0, 0, -0.5, y0), crs=proj4, tags=tags)


def test_grid_north_of_a_polar_grid_is_the_real_labels_north_azimuth(tmp_path):
    """From the CRS alone, a raster where PSP_008585_2915 lies finds north where that RDR's label says it is
    (NORTH_AZIMUTH - 270, clockwise from up); the sun turns with it; a north-up grid turns nothing."""
    import pyproj

    polar = "+proj=stere +lat_0=90 +lat_ts=90 +lon_0=0 +x_0=0 +y_0=0 +R=3376200 +units=m +no_defs"
    x, y = pyproj.Transformer.from_crs(
        pyproj.CRS.from_proj4("+proj=longlat +R=3376200 +no_defs +type=crs"),
        pyproj.CRS.from_proj4(polar),
        always_xy=True,
    ).transform(REAL_POLAR["lon"], REAL_POLAR["lat"])
    data = np.full((64, 64), 500, np.uint16)
    tags = {"SUN_AZIMUTH_FROM_NORTH": "49.8"}
    path = _geotiff(tmp_path / "polar.tif", data, polar, x - 16, y + 16, tags=tags)
    with open_product(path) as product:
        assert product.grid_north == pytest.approx((REAL_POLAR["north_azimuth"] - 270.0) % 360.0, abs=0.05)
        assert product.image_sun_azimuth == pytest.approx((49.8 + product.grid_north) % 360.0)
        assert quarter_turns(product) == 1  # 125.7°: a quarter turn leaves north 35.7° from up
    with open_product(_geotiff(tmp_path / "eqc.tif", data, MARS_EQC, -1000.0, -2_950_000.0, tags=tags)) as product:
        assert product.grid_north == 0.0 and product.image_sun_azimuth == 49.8 and quarter_turns(product) == 0


@pytest.mark.parametrize(("north", "turns"), [(0.0, 0), (44.0, 0), (46.0, 1), (120.0, 1), (180.0, 2), (300.0, 3)])
def test_quarter_turns_bring_north_within_45_degrees_of_up(monkeypatch, north: float, turns: int):
    monkeypatch.setattr(Product, "grid_north", north)
    assert quarter_turns(Product.__new__(Product)) == turns


def test_a_polar_product_is_lit_and_scored_as_its_north_up_twin(tmp_path):
    """A polar product at 120°E (north 120° clockwise from up) with the paper's sun (297° from north) is lit from
    57° in image terms, and its label says so (SUB_SOLAR_AZIMUTH 327, NORTH_AZIMUTH 30, as a real polar RDR's pair
    would). A north-up twin lit from 57° has the same pixels; the second stage, turning crops by the sun in image
    terms, gives both the same probabilities (by the azimuth from north alone it would turn them 120° wrong). The
    chunk CNN reads the polar one turned by a quarter turn, logged."""
    import io
    import json

    from marsice_plugin.progress import Reporter
    from marsice_plugin.synthetic.product_writer import ProductGeometry, write_sample_product
    from marsice_plugin.synthetic.scene import SceneConfig

    common = dict(width=512, height=512, scale_m=0.5, seed=5, n_ice_boulder=6, nodata_margin=0.0)
    polar = write_sample_product(
        tmp_path / "polar",
        SceneConfig(**common, sun_azimuth=297.0),
        ProductGeometry(center_latitude=-68.0, center_longitude=120.0, projection="POLAR STEREOGRAPHIC"),
    )
    twin = write_sample_product(
        tmp_path / "twin", SceneConfig(**common, sun_azimuth=57.0), ProductGeometry(center_latitude=-68.0)
    )
    label = polar.label_path.read_text()
    assert "SUB_SOLAR_AZIMUTH = 327.000000" in label and "NORTH_AZIMUTH     = 30.000000" in label
    np.testing.assert_array_equal(polar.scene.dn, twin.scene.dn)
    with open_product(polar.label_path) as product:
        assert product.viewing.sun_azimuth_from_north == pytest.approx(297.0)
        assert product.grid_north == pytest.approx(120.0, abs=1e-3)
        assert product.image_sun_azimuth == pytest.approx(57.0, abs=1e-3)

    options = DetectOptions(model_path=DEMO_MODEL, chunk_size=256, search="all", all_candidates=True)
    out = io.StringIO()
    found = {
        name: detect(sample.label_path, tmp_path / f"{name}.gpkg", options, Reporter("json", out))
        for name, sample in (("polar", polar), ("twin", twin))
    }
    probs = {}
    for name, sample in (("polar", polar), ("twin", twin)):  # keyed by pixel position: the grids differ, not pixels
        with open_product(sample.label_path) as product:
            inv = ~product.transform
            probs[name] = {
                tuple(np.round(inv @ (c.geometry.centroid.x, c.geometry.centroid.y), 1)): c.probability
                for c in found[name].candidates
            }
    # the same outlines but a few near the 2 m² floor (areas are measured on each grid's own sphere and scale)
    common_keys = probs["polar"].keys() & probs["twin"].keys()
    assert len(common_keys) >= 0.9 * max(len(probs["polar"]), len(probs["twin"])) > 0
    np.testing.assert_allclose(
        [probs["polar"][k] for k in sorted(common_keys)], [probs["twin"][k] for k in sorted(common_keys)], atol=1e-4
    )
    [(_, row)] = read_layer(found["polar"].output, "products")
    assert row["sun_azimuth"] == pytest.approx(297.0) and row["sun_source"] == "label"
    messages = [json.loads(line)["message"] for line in out.getvalue().splitlines() if '"type": "log"' in line]
    turned = [m for m in messages if "chunks are turned 90° counter-clockwise for the CNN" in m]
    assert len(turned) == 1 and turned[0].startswith(polar.product_id)
    # exported chunks carry the sun's direction in their own rows and columns, which training mirrors and turns by
    from marsice_plugin.cnn.chunk_data import read_chunk_image
    from marsice_plugin.tile_export import export_tiles

    export_tiles(polar.label_path, tmp_path / "tiles", size=256, overlap=0)
    files = sorted((tmp_path / "tiles").rglob("*.tif"))
    assert len(files) == 4 and all(read_chunk_image(f)[2] == pytest.approx(57.0, abs=1e-3) for f in files)


def test_the_cnn_reads_a_turned_grid_as_the_north_up_pixels(tmp_path, monkeypatch):
    """A product whose north points right (grid north 90°) is scored as the same pixels turned a quarter
    counter-clockwise, north up: the same chunk probabilities, chunk for chunk."""
    from marsice_plugin.detection import score_chunks
    from marsice_plugin.model_registry import model_threshold
    from marsice_plugin.progress import Reporter

    rng = np.random.default_rng(3)
    data = (400 + 60 * rng.standard_normal((512, 512))).clip(5, 1000).astype(np.uint16)
    data[100:140, 300:320] = 900  # something bright off-centre, so a turn matters
    plain = _geotiff(tmp_path / "plain.tif", data, MARS_EQC, -1000.0, -2_950_000.0)
    upright = _geotiff(
        tmp_path / "upright.tif", np.ascontiguousarray(np.rot90(data, 1)), MARS_EQC, -1000.0, -2_950_000.0
    )
    from marsice_plugin.cnn.model import load_model

    model = load_model(DEMO_MODEL)
    options = DetectOptions(
        model_path=DEMO_MODEL, chunk_size=256, overlap=0, threshold=model_threshold(None, DEMO_MODEL)
    )
    with open_product(upright) as product:
        assert quarter_turns(product) == 0
        expected = {
            (s.window.row_off, s.window.col_off): s.probability
            for s in score_chunks(product, model, options, Reporter("quiet"))
        }
    monkeypatch.setattr(Product, "grid_north", 90.0)
    with open_product(plain) as product:
        assert quarter_turns(product) == 1
        got = score_chunks(product, model, options, Reporter("quiet"))
    assert len(got) == len(expected) == 4
    for s in got:  # the window at (r, c) of the turned grid lies at (512 - c - 256, r) of the upright one
        r, c = s.window.row_off, s.window.col_off
        assert s.probability == pytest.approx(expected[(512 - c - 256, r)], abs=1e-5)


def test_terrain_casts_a_polar_products_shadows_as_its_north_up_twins(tmp_path):
    """Shadows are cast on the grid, so on the polar product (north 120° from up, sun 297° from north) they fall
    where they fall on its north-up twin lit from 57° in image terms: the same shadow raster, the same slopes;
    aspect, measured from true north, is turned by the grid's north."""
    import subprocess
    import sys

    import rasterio

    from marsice_plugin.synthetic.product_writer import ProductGeometry, write_sample_product
    from marsice_plugin.synthetic.scene import SceneConfig

    common = dict(width=512, height=512, scale_m=0.5, seed=8, n_ice_boulder=4, n_craters=1, nodata_margin=0.0)
    samples = {
        "polar": write_sample_product(
            tmp_path / "polar",
            SceneConfig(**common, sun_azimuth=297.0),
            ProductGeometry(center_latitude=-68.0, center_longitude=120.0, projection="POLAR STEREOGRAPHIC"),
            dtm_factor=4,
        ),
        "twin": write_sample_product(
            tmp_path / "twin",
            SceneConfig(**common, sun_azimuth=57.0),
            ProductGeometry(center_latitude=-68.0),
            dtm_factor=4,
        ),
    }
    out = {}
    for name, sample in samples.items():
        args = ["terrain", "--dtm", str(sample.dtm_path), "--image", str(sample.label_path), "-o", str(tmp_path / name)]
        proc = subprocess.run([sys.executable, "-m", "marsice_plugin", *args], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        out[name] = {}
        for raster in ("shadow", "slope", "aspect"):
            with rasterio.open(tmp_path / name / f"{sample.product_id}_{raster}.tif") as ds:
                out[name][raster] = ds.read(1).astype(float)
    shadow = out["polar"]["shadow"] > 0
    assert 0.005 < shadow.mean() < 0.5  # the crater and boulders do cast shadows
    np.testing.assert_array_equal(shadow, out["twin"]["shadow"] > 0)
    np.testing.assert_allclose(out["polar"]["slope"], out["twin"]["slope"], atol=1e-3, equal_nan=True)
    turned = (out["twin"]["aspect"] - out["polar"]["aspect"]) % 360.0  # grid aspect minus aspect from true north
    sloped = out["polar"]["slope"] > 1.0  # the grid's north is 120° over the whole product (it turns 0.01° across)
    assert np.nanmedian(turned[sloped]) == pytest.approx(120.0, abs=0.5)
