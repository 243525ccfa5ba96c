"""Pixel values from the data, not the container: one scene in six containers scores the same, bad pixels refused.

The same generated scene is written as its JPEG2000 with the PDS3 label, as a uint16 GeoTIFF of the 10-bit DNs with
and without GDAL's NBITS=10, as an 8-bit copy (DN / 4), as a 16-bit full-range copy (DN × 64) and as float32 I/F
(DN × SCALING_FACTOR + OFFSET) with ISIS NULL in the no-data margin and ISIS saturation where the label has its
saturation values. The demo model scores every chunk of each; the probabilities agree within 0.05 (a uint16 GeoTIFF
used to be divided by 65535 and scored a constant).
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from marsice_plugin.chunk_reader import ChunkReader
from marsice_plugin.cnn.model import load_model
from marsice_plugin.detection import DetectOptions, detect_product
from marsice_plugin.errors import ProductError
from marsice_plugin.normalisation import DN_MAX, ISIS_NULL_FLOAT
from marsice_plugin.product import open_product
from marsice_plugin.synthetic.containers import CONTAINERS, ISIS_SATURATION, write_containers

from .conftest import DEMO_MODEL

MARS_EQC = "+proj=eqc +lat_ts=-50 +lon_0=180 +R=3384416.5 +units=m +no_defs"


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A 1024 × 1024 px generated product at 0.5 m/px with planted ice, and its six containers."""
    from marsice_plugin.synthetic.product_writer import write_sample_product
    from marsice_plugin.synthetic.scene import SceneConfig

    out = tmp_path_factory.mktemp("containers")
    sample = write_sample_product(
        out, SceneConfig(width=1024, height=1024, seed=11, n_ice_boulder=8, n_boulders=300, n_craters=2)
    )
    return sample, write_containers(sample, out)


def _geotiff(path, data, crs, transform, **options):
    with rasterio.open(
        path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1, dtype=data.dtype,
        crs=crs, transform=transform, tiled=True, **options,
    ) as ds:  # fmt: skip
        ds.write(data, 1)


def _scores(path, model):
    options = DetectOptions(model_path=DEMO_MODEL, threshold=0.6, chunk_size=512, overlap=256)
    with open_product(path) as product:
        found = detect_product(product, model, options)
        scale = product.pixel_scale
    return {(c.chunk_row, c.chunk_col): c.probability for c in found.chunks}, scale


def test_six_containers_of_one_scene_score_within_0_05(scene):
    sample, paths = scene
    model = load_model(DEMO_MODEL)
    scores = {name: _scores(paths[name], model) for name in CONTAINERS}
    reference, label_scale = scores["jp2_label"]
    assert label_scale.identity  # a HiRISE RDR reads exactly as the shipped models were trained on it
    scored = [p for p in reference.values() if p is not None]
    assert len(scored) >= 6 and max(scored) - min(scored) > 0.3  # a scene with something to tell apart
    worst = {}
    for name in CONTAINERS[1:]:
        probabilities, _ = scores[name]
        assert probabilities.keys() == reference.keys()
        assert [k for k, p in probabilities.items() if p is None] == [k for k, p in reference.items() if p is None]
        worst[name] = max(abs(probabilities[k] - p) for k, p in reference.items() if p is not None)
    assert max(worst.values()) <= 0.05, worst
    # the scales each container was given: bit depth from NBITS or from the pixels; the float's measured stretch
    assert scores["uint16_nbits10"][1].gain == scores["uint16"][1].gain == 1.0
    assert scores["uint8"][1].gain == pytest.approx(DN_MAX / 255)
    assert scores["uint16_full_range"][1].gain == pytest.approx(DN_MAX / 65535)
    float_scale = scores["float32_iof_isis"][1]
    dn = sample.scene.dn[sample.scene.dn > 2]
    dn_back = (dn * sample.scene.scaling_factor + sample.scene.offset) * float_scale.gain + float_scale.offset
    assert np.median(np.abs(dn_back - dn)) < 10  # the float's stretch lands within 10 DN of the label's DNs


def test_six_containers_agree_at_a_reduced_level_too(scene):
    """The shipped models read level 1 or 2: a GeoTIFF has no JPEG2000 levels, so the reader computes the level the
    decoder would give (the 5/3 wavelet low-pass, special and null pixels entering as their DNs). A block average
    there used to differ by up to 0.15 in probability (bench/real_pixels.py)."""
    from marsice_plugin.detection import score_chunks
    from marsice_plugin.progress import Reporter

    _, paths = scene
    model = load_model(DEMO_MODEL)
    options = DetectOptions(model_path=DEMO_MODEL, threshold=0.6, chunk_size=512, overlap=256, read_level=1)

    def level1(name):
        with open_product(paths[name]) as product:
            return {
                (c.chunk_row, c.chunk_col): c.probability
                for c in score_chunks(product, model, options, Reporter("quiet"))
            }

    reference = level1("jp2_label")
    assert len([p for p in reference.values() if p is not None]) >= 6
    for name in CONTAINERS[1:]:
        probabilities = level1(name)
        assert probabilities.keys() == reference.keys()
        worst = max(abs(probabilities[k] - p) for k, p in reference.items() if p is not None)
        assert worst <= 0.05, (name, worst)


def test_isis_special_pixels_of_a_float_raster_are_no_data_and_saturation(scene):
    sample, paths = scene
    with open_product(paths["float32_iof_isis"]) as product:
        grey, nodata, special = product.read_rows(0, product.height)
    dn = sample.scene.dn
    assert np.array_equal(nodata, dn == 0)
    assert np.array_equal(special, np.isin(dn, list(ISIS_SATURATION)))


def _refused(path, match):
    """Refused when its scale is asked for (detect asks before its first chunk) and by the reader's first band."""
    with open_product(path) as product, pytest.raises(ProductError, match=match):
        _ = product.pixel_scale
    with open_product(path) as product, pytest.raises(ProductError, match=match):
        next(iter(ChunkReader(product, 256)))


def test_a_raster_of_one_value_is_refused(tmp_path):
    data = np.full((600, 600), 500, np.uint16)
    _geotiff(tmp_path / "flat.tif", data, MARS_EQC, rasterio.Affine(0.5, 0, 1000.0, 0, -0.5, -2000.0), nodata=0)
    _refused(tmp_path / "flat.tif", r"every valid pixel holds the same value \(500; 360,000 read across it\)")


def test_a_raster_without_valid_pixels_is_refused(tmp_path):
    data = np.zeros((600, 600), np.uint16)
    _geotiff(tmp_path / "empty.tif", data, MARS_EQC, rasterio.Affine(0.5, 0, 1000.0, 0, -0.5, -2000.0), nodata=0)
    _refused(tmp_path / "empty.tif", "no valid pixel in .* pixels read across it")


def test_a_float_raster_without_finite_values_is_refused(tmp_path):
    data = np.full((600, 600), np.nan, np.float32)
    data[:100] = np.inf
    data[100:200] = ISIS_NULL_FLOAT
    _geotiff(tmp_path / "nan.tif", data, MARS_EQC, rasterio.Affine(0.5, 0, 1000.0, 0, -0.5, -2000.0))
    _refused(tmp_path / "nan.tif", "a float raster with no finite valid value")


def test_float_stretch_follows_the_whole_image_not_one_bright_cluster(tmp_path, monkeypatch):
    """A large float raster's stretch comes from a sample: a compact bright cluster (1,600 px, 0.04 % of the image, so
    under its 99.9th percentile) that a coarse sample window holds whole used to set the 99.9th percentile of the
    sample and squeeze the image's DNs fourfold; the finer grid of floats keeps the image's own percentiles. (This
    2048 px raster stands for one over STRETCH_WHOLE_PIXELS, which is lowered to make it sampled.)"""
    from marsice_plugin import normalisation
    from marsice_plugin.normalisation import STRETCH_DN, sample_windows

    from .small_rasters import write_raster

    monkeypatch.setattr(normalisation, "STRETCH_WHOLE_PIXELS", 0)
    rng = np.random.default_rng(2)
    image = rng.uniform(0.02, 0.2, (2048, 2048)).astype(np.float32)
    image[314:354, 314:354] = 0.9  # inside the coarse grid's window at rows and columns 274-402
    path = write_raster(tmp_path / "iof.tif", image)
    lo, hi = np.percentile(image, (0.1, 99.9))
    with open_product(path) as product:
        assert product.pixel_sample()[1] < image.size // 2  # sampled, not read whole
        scale = product.pixel_scale
    assert scale.gain * hi + scale.offset == pytest.approx(STRETCH_DN[1], abs=3.0)
    assert scale.gain * lo + scale.offset == pytest.approx(STRETCH_DN[0], abs=3.0)
    coarse = np.concatenate(
        [
            image[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width].ravel()
            for w in sample_windows(2048, 2048, 8, 128)
        ]
    )
    assert np.percentile(coarse, 99.9) == pytest.approx(0.9)  # what the old grid's stretch was pulled to


def test_float_raster_up_to_the_limit_is_stretched_from_every_pixel(tmp_path):
    """Up to STRETCH_WHOLE_PIXELS a float raster's percentiles come from every valid pixel, so its stretch is the
    image's own, to the last digit, however its bright pixels lie; no-data stays out."""
    from marsice_plugin.normalisation import ISIS_NULL_FLOAT, STRETCH_DN, STRETCH_WHOLE_PIXELS, stretch_windows

    from .small_rasters import write_raster

    assert STRETCH_WHOLE_PIXELS >= 2048 * 1500
    windows, step = stretch_windows(2048, 1500)
    assert step == 1 and sum(int(w.width) * int(w.height) for w in windows) == 2048 * 1500  # every pixel, once
    rng = np.random.default_rng(5)
    image = rng.uniform(0.02, 0.2, (1500, 2048)).astype(np.float32)
    image[700:760, 1000:1060] = 0.3 + 0.4 * rng.random((60, 60)).astype(np.float32)  # one bright cluster
    image[:40] = ISIS_NULL_FLOAT  # no-data rows stay out of the percentiles
    path = write_raster(tmp_path / "iof.tif", image)
    valid = image[40:]
    lo, hi = np.percentile(valid.astype(np.float64), (0.1, 99.9))
    with open_product(path) as product:
        values, read = product.pixel_sample()
        scale = product.pixel_scale
    assert read == image.size and values.size == valid.size
    assert scale.gain * lo + scale.offset == pytest.approx(STRETCH_DN[0], abs=1e-3)
    assert scale.gain * hi + scale.offset == pytest.approx(STRETCH_DN[1], abs=1e-3)


def test_large_float_raster_is_sampled_at_every_fourth_pixel_across_its_windows(tmp_path, monkeypatch):
    """Over STRETCH_WHOLE_PIXELS (lowered here, so that a small raster stands for a large one) a float raster's
    stretch comes from windows of 256 px read at every 4th pixel of every 4th row: exact pixel values (nearest, never
    averages), spread across each window rather than packed into small dense ones."""
    from marsice_plugin import normalisation
    from marsice_plugin.normalisation import STRETCH_SAMPLE_STEP, STRETCH_SAMPLE_WINDOW

    from .small_rasters import write_raster

    assert (STRETCH_SAMPLE_STEP, STRETCH_SAMPLE_WINDOW) == (4, 256)
    monkeypatch.setattr(normalisation, "STRETCH_WHOLE_PIXELS", 0)
    image = np.random.default_rng(3).uniform(0.02, 0.2, (1500, 2048)).astype(np.float32)
    path = write_raster(tmp_path / "iof.tif", image)
    with open_product(path) as product:
        values, read = product.pixel_sample()
    expected = image[2::4, 2::4]  # the centre pixel of every 4 x 4 block of each window
    assert read == expected.size
    np.testing.assert_array_equal(np.sort(values), np.sort(expected.ravel().astype(np.float64)))
