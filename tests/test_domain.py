"""The domain check: a generated product lies inside the model's training domain, a gradient or noise raster outside.

Each product's ``domain_distance`` and ``in_domain`` land in the ``products`` layer; ``detect`` warns about a product
outside. The references come from the shipped model cards (``bench/domain_reference.py --write-card``).
"""

from __future__ import annotations

import io
import json
import sqlite3

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS

from marsice_plugin.cnn.domain import STATISTICS, input_statistics, load_reference
from marsice_plugin.detection import DetectOptions
from marsice_plugin.model_registry import MODELS_DIR, card_path
from marsice_plugin.patches.model import PATCH_MODEL_NAME
from marsice_plugin.pipeline import detect
from marsice_plugin.product import open_product
from marsice_plugin.progress import Reporter

from .conftest import DEMO_MODEL


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A 2048 × 1024 px generated product (two 1024 px chunks) and its CRS and transform."""
    from marsice_plugin.synthetic.product_writer import write_sample_product
    from marsice_plugin.synthetic.scene import SceneConfig

    out = tmp_path_factory.mktemp("domain")
    sample = write_sample_product(out, SceneConfig(width=2048, height=1024, seed=5, nodata_margin=0.0))
    with open_product(sample.label_path) as product:
        return sample, CRS.from_wkt(product.crs.to_wkt()), product.transform


def _raster(path, data, crs, transform):
    with rasterio.open(
        path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1, dtype=data.dtype,
        crs=crs, transform=transform, nodata=0,
    ) as ds:  # fmt: skip
        ds.write(data, 1)
    return path


def _detect(product, out):
    err = io.StringIO()
    detect(product, out, DetectOptions(model_path=DEMO_MODEL, threshold=0.6), Reporter("text", stderr=err))
    with sqlite3.connect(out) as db:
        rows = db.execute("SELECT product_id, domain_distance, in_domain FROM products ORDER BY fid").fetchall()
    return rows, err.getvalue()


def test_every_shipped_card_holds_a_reference_with_99_percent_of_generated_products_inside():
    for model in sorted(MODELS_DIR.glob("*.keras")):
        if model.name == PATCH_MODEL_NAME:  # the second stage reads crops, not chunks: no chunk domain reference
            continue
        entry = json.loads(card_path(model).read_text())["domain_reference"]
        assert set(entry["statistics"]) == set(STATISTICS)
        products = entry["generated_products"]
        assert products["count"] >= 20 and products["inside"] >= 0.99 * products["count"]
        assert load_reference(model).threshold == entry["threshold"] > 1.0


def test_a_generated_product_is_in_domain(generated, tmp_path):
    sample, _, _ = generated
    rows, err = _detect(sample.label_path, tmp_path / "o.gpkg")
    ((_, distance, inside),) = rows
    assert inside == 1 and 0.0 <= distance <= load_reference(DEMO_MODEL).threshold
    assert "outside what the model was trained on" not in err


@pytest.mark.parametrize("kind", ["gradient", "noise"])
def test_a_gradient_or_noise_raster_is_out_of_domain_with_a_warning(generated, tmp_path, kind):
    _, crs, transform = generated
    rows_, cols = np.mgrid[0:1024, 0:2048]
    if kind == "gradient":  # smooth, no texture at all
        data = (100 + 800 * (cols / 2047.0) * (0.5 + 0.5 * rows_ / 1023.0)).astype(np.uint16)
    else:  # every pixel independent, full range
        data = np.random.default_rng(0).integers(1, 1024, (1024, 2048)).astype(np.uint16)
    path = _raster(tmp_path / f"{kind}.tif", data, crs, transform)
    rows, err = _detect(path, tmp_path / "o.gpkg")
    ((_, distance, inside),) = rows
    threshold = load_reference(DEMO_MODEL).threshold
    assert inside == 0 and distance > 1.4 * threshold
    (line,) = [line for line in err.splitlines() if "outside what the model was trained on" in line]
    assert line.startswith(f"warning: {kind}: its pixels lie outside what the model was trained on (domain distance ")
    assert "do not trust them" in line


def test_a_product_at_a_scale_no_model_was_trained_on_is_out_of_domain_with_a_warning(generated, tmp_path):
    """The generated product's own pixels (inside by their statistics) written at 3 m/px, as a browse image is."""
    from affine import Affine

    sample, crs, transform = generated
    with rasterio.open(sample.image_path) as ds:
        data = ds.read(1)
    coarse = transform @ Affine.scale(6.0)  # 0.5 m/px -> 3 m/px
    rows, err = _detect(_raster(tmp_path / "coarse.tif", data, crs, coarse), tmp_path / "o.gpkg")
    ((_, distance, inside),) = rows
    assert inside == 0 and distance <= load_reference(DEMO_MODEL).threshold  # the pixels alone would pass
    (line,) = [line for line in err.splitlines() if "ground scale" in line]
    assert line.startswith("warning: coarse: its ground scale of 3.00 m/px lies outside the 0.2-0.6 m/px")
    assert "its pixels lie outside" not in line and line.endswith("do not trust them")


def test_the_statistics_see_texture_and_contrast():
    flat = np.full((64, 64), 0.4, np.float32)
    noisy = np.random.default_rng(1).uniform(0, 1, (64, 64)).astype(np.float32)
    f, n = input_statistics(flat), input_statistics(noisy)
    assert f.tolist() == pytest.approx([0.4, 0.0, 0.0, 0.0, 0.0, 1.0, 4.0], abs=1e-6)
    assert n[1] > 0.25 and n[2] > 0.03 and n[3] > 0.03 and n[4] > 0.25
    assert abs(n[5]) < 0.05 and n[6] == pytest.approx(1.0, abs=0.05)  # white noise: no neighbour correlation
    ramp = np.tile(np.linspace(0.2, 0.6, 64, dtype=np.float32), (64, 1))
    assert input_statistics(ramp)[6] == pytest.approx(4.0, rel=0.02)  # a smooth ramp: differences grow with lag


def test_a_results_file_from_before_the_domain_fields_gains_them(generated, tmp_path):
    sample, crs, transform = generated
    out = tmp_path / "o.gpkg"
    _detect(sample.label_path, out)
    with sqlite3.connect(out) as db:  # the file as an older MarsIce wrote it
        db.execute("ALTER TABLE products DROP COLUMN domain_distance")
        db.execute("ALTER TABLE products DROP COLUMN in_domain")
        for column in ("search", "search_threshold", "outlined", "patch_model", "patch_threshold", "sun_source"):
            db.execute(f"ALTER TABLE products DROP COLUMN {column}")  # added since too
    noise = np.random.default_rng(2).integers(1, 1024, (1024, 2048)).astype(np.uint16)
    rows, _ = _detect(_raster(tmp_path / "noise.tif", noise, crs, transform), out)
    assert [(pid, inside) for pid, _, inside in rows] == [(sample.product_id, None), ("noise", 0)]
    with sqlite3.connect(out) as db:
        searched = db.execute(
            "SELECT search, search_threshold, patch_model, sun_source FROM products ORDER BY fid"
        ).fetchall()
    # the noise raster has no label, no sun metadata and an id the catalogue does not know: its sun is assumed,
    # the typical HiRISE sun at its latitude
    assert searched == [(None, None, None, None), ("flagged", 0.6, "marsice_patch_64.keras", "latitude")]
