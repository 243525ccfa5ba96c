"""Products too small or empty to chunk, and a DTM that misses the image (issue 12, remaining cases)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from .conftest import DEMO_MODEL, REPO
from .test_bad_input import _copy_product, _geotiff, _one_error_line

MARS_EQC = "+proj=eqc +lat_ts=-50 +lon_0=180 +R=3384416.5 +units=m +no_defs"


def _marsice(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "marsice_plugin", *args], capture_output=True, text=True, cwd=REPO, timeout=300
    )


def test_one_pixel_image_is_refused_by_detect(tmp_path):
    """A chunk padded out of one pixel holds no scene: refused, not scored (a score would be noise)."""
    _geotiff(tmp_path / "one.tif", np.full((1, 1), 300, np.uint16), MARS_EQC)
    out = tmp_path / "out"
    proc = _marsice("detect", str(tmp_path / "one.tif"), "-o", str(out / "o.gpkg"), "--model", str(DEMO_MODEL))
    assert proc.returncode == 2, proc.stderr
    _one_error_line(proc, "one.tif is 1x1 px, too small to cut into chunks (at least 8 px on each side)")
    assert not out.exists()


@pytest.mark.parametrize("shape", [(1, 1), (1, 900), (7, 300)])
def test_image_thinner_than_a_chunk_is_refused_by_tile(tmp_path, shape):
    _geotiff(tmp_path / "thin.tif", np.full(shape, 300, np.uint16), MARS_EQC)
    out = tmp_path / "tiles"
    proc = _marsice("tile", str(tmp_path / "thin.tif"), "-o", str(out))
    assert proc.returncode == 2, proc.stderr
    _one_error_line(proc, f"thin.tif is {shape[1]}x{shape[0]} px, too small to cut into chunks")
    assert not out.exists()


def test_smallest_image_gives_one_chunk_of_its_own_size(tmp_path):
    """The well-defined lower end: an 8 x 8 px raster is one 8 x 8 chunk in the tile index."""
    data = np.random.default_rng(0).integers(100, 900, (8, 8)).astype(np.uint16)
    _geotiff(tmp_path / "tiny.tif", data, MARS_EQC)
    proc = _marsice("tile", str(tmp_path / "tiny.tif"), "-o", str(tmp_path / "tiles"))
    assert proc.returncode == 0, proc.stderr
    con = sqlite3.connect(tmp_path / "tiles" / "tiny_tiles.gpkg")
    rows = con.execute("SELECT row_off, col_off, width, height, out_width, out_height, skipped FROM tiles").fetchall()
    con.close()
    assert rows == [(0, 0, 8, 8, 8, 8, 0)]
    assert [p.name for p in (tmp_path / "tiles" / "tiny_tiles").iterdir()] == ["r000_c000.tif"]


@pytest.mark.parametrize("command", ["detect", "tile"])
def test_label_of_an_empty_image_is_refused(small_product, tmp_path, command):
    label, _ = _copy_product(small_product, tmp_path / "p")
    text = label.read_text()
    assert "LINES                      = 384" in text
    label.write_text(text.replace("LINES                      = 384", "LINES                      = 0"))
    out = tmp_path / ("o.gpkg" if command == "detect" else "tiles")
    proc = _marsice(command, str(label), "-o", str(out))
    assert proc.returncode == 2, proc.stderr
    _one_error_line(proc, "image size 512x0 is empty")
    assert not out.exists()


@pytest.mark.parametrize("command", ["detect", "tile"])
def test_empty_raster_is_refused(tmp_path, command):
    """GDAL will not create a 0-pixel GeoTIFF; a VRT can claim 0 x 5 pixels."""
    (tmp_path / "empty.vrt").write_text(
        f'<VRTDataset rasterXSize="0" rasterYSize="5"><SRS>{MARS_EQC}</SRS>'
        "<GeoTransform>1000, 0.5, 0, -2000, 0, -0.5</GeoTransform>"
        '<VRTRasterBand dataType="UInt16" band="1"/></VRTDataset>'
    )
    out = tmp_path / ("o.gpkg" if command == "detect" else "tiles")
    proc = _marsice(command, str(tmp_path / "empty.vrt"), "-o", str(out))
    assert proc.returncode == 2, proc.stderr
    _one_error_line(proc, "empty.vrt: GDAL cannot open it as a raster", "0 x 5")
    assert not out.exists()


def test_dtm_of_another_place_and_crs_is_refused_by_terrain(small_product, tmp_path):
    """An image at -50° and the DTM of a product at -45.3° (its own standard parallel): no overlap."""
    from marsice_plugin.synthetic.product_writer import ProductGeometry, write_sample_product
    from marsice_plugin.synthetic.scene import SceneConfig

    config = SceneConfig(width=256, height=256, seed=4, n_craters=1, n_boulders=20)
    image = small_product
    other = write_sample_product(
        tmp_path / "other", config, ProductGeometry(center_latitude=-45.3, center_longitude=100.0), dtm_factor=4
    )
    from marsice_plugin.result_layers import RESULT_LAYERS
    from marsice_plugin.results import ResultsWriter

    results = tmp_path / "results.gpkg"  # a real (empty) results file: the candidates are checked before the DTM
    with ResultsWriter(results, RESULT_LAYERS) as writer:
        writer.write_product("ESP_000000_0000_RED", {})
    before = results.read_bytes()
    out = tmp_path / "terrain"
    proc = _marsice(
        "terrain", "--dtm", str(other.dtm_path), "--image", str(image.label_path), "--candidates", str(results),
        "-o", str(out),
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    _one_error_line(proc, f"DTM {other.dtm_path} does not overlap the image", "pick the DTM of the same observation")
    assert not out.exists()
    assert results.read_bytes() == before


def test_one_pixel_image_is_refused_by_terrain(small_product, tmp_path):
    """Inside the DTM, in the product's CRS, with the sun given: still too small for slopes."""
    import rasterio
    from affine import Affine

    from marsice_plugin.product import open_product

    sample = small_product
    with open_product(sample.label_path) as p:
        crs, transform = p.crs.to_wkt(), p.transform @ Affine.translation(128, 128)
    with rasterio.open(
        tmp_path / "one.tif", "w", driver="GTiff", width=1, height=1, count=1, dtype="uint16", crs=crs,
        transform=transform, nodata=0,
    ) as ds:  # fmt: skip
        ds.write(np.full((1, 1), 300, np.uint16), 1)
        ds.update_tags(SUN_AZIMUTH_FROM_NORTH="297", INCIDENCE_ANGLE="70")
    out = tmp_path / "terrain"
    proc = _marsice("terrain", "--dtm", str(sample.dtm_path), "--image", str(tmp_path / "one.tif"), "-o", str(out))
    assert proc.returncode == 2, proc.stderr
    _one_error_line(proc, "one.tif is 1x1 px, too small for slopes and co-registration (at least 8 px on each side)")
    assert not out.exists()


# -- a DTM given as the image, and rasters larger than any product (issue 26, item 7) ---------------------


@pytest.mark.parametrize("command", ["detect", "tile"])
def test_dtm_given_as_the_image_is_refused(small_product, tmp_path, command):
    """The committed product's DTM: what ``marsice sample --dtm`` writes, a 128 x 96 post DTEEC_...IMG (PC_REAL)."""
    dtm = small_product.dtm_path
    out = tmp_path / ("o.gpkg" if command == "detect" else "tiles")
    proc = _marsice(command, str(dtm), "-o", str(out), *(["--model", str(DEMO_MODEL)] if command == "detect" else []))
    assert proc.returncode == 2, proc.stderr
    _one_error_line(
        proc,
        f"{dtm} looks like a DTM (elevations), not an image: pass it to marsice terrain --dtm "
        f"(its PRODUCT_ID {dtm.stem} is a HiRISE DTM id)",
    )
    assert not out.exists()
    # the same file is what terrain --dtm reads: the refusal points to a command that takes it
    from marsice_plugin.terrain.dem import read_dtm

    heights, _, _ = read_dtm(dtm)
    assert heights.shape == (96, 128) and np.isfinite(heights).any()


def test_dtm_label_is_refused_before_its_image_is_looked_for():
    """A detached DTM label (its ^IMAGE file absent here): the label's PRODUCT_ID decides."""
    from marsice_plugin.errors import ProductError
    from marsice_plugin.product import open_product

    from .conftest import DATA

    label = DATA / "DTEEC_008669_1705_009025_1705_A01.partial.lbl"
    with pytest.raises(ProductError, match="looks like a DTM \\(elevations\\), not an image: pass it to marsice"):
        open_product(label)


def _float_raster(path, values, unit=None, nodata=None):
    import rasterio
    from affine import Affine

    with rasterio.open(
        path, "w", driver="GTiff", width=values.shape[1], height=values.shape[0], count=1, dtype="float32",
        crs=MARS_EQC, transform=Affine(0.5, 0, 1000.0, 0, -0.5, -2000.0), nodata=nodata,
    ) as ds:  # fmt: skip
        ds.write(values.astype(np.float32), 1)
        if unit:
            ds.update_tags(1, UNIT=unit)
            ds.units = (unit,)
    return path


def _relief(low, high, shape=(300, 400)):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return low + (high - low) * (0.5 + 0.5 * np.sin(xx / 37.0) * np.cos(yy / 53.0))


@pytest.mark.parametrize(
    ("values", "unit", "evidence"),
    [
        (_relief(-2500.0, -2400.0), None, "it holds values down to -2500, below anything an image holds"),
        (_relief(1200.0, 1300.0), "metre", "its band unit is 'metre'"),
        (
            _relief(3_389_000.0, 3_390_000.0),
            None,
            "it holds values up to 3.39e+06, a height or radius in metres rather than I/F or DNs",
        ),
    ],
)
def test_float_elevation_rasters_are_refused(tmp_path, values, unit, evidence):
    from marsice_plugin.errors import ProductError
    from marsice_plugin.product import open_product

    path = _float_raster(tmp_path / "heights.tif", values, unit)
    with pytest.raises(ProductError) as caught:
        open_product(path)
    assert str(caught.value) == (
        f"{path} looks like a DTM (elevations), not an image: pass it to marsice terrain --dtm ({evidence})"
    )


def test_float_reflectance_and_dn_rasters_are_images(tmp_path):
    """I/F (0..~1, ISIS special values and NaN no-data among it) and DNs stored as floats are read as images."""
    from marsice_plugin.product import open_product

    reflectance = _relief(0.02, 0.3)
    reflectance[:, :40] = np.nan
    reflectance[100:110, 200:210] = -3.4028226550889045e38  # ISIS NULL
    reflectance[5, 5] = -0.004  # calibration noise around zero
    dn = np.rint(_relief(3.0, 1021.0))
    for name, values, nodata in (("iof.tif", reflectance, float("nan")), ("dn.tif", dn, 0.0)):
        path = _float_raster(tmp_path / name, values, nodata=nodata)
        with open_product(path) as product:
            assert np.array_equal(product.read(0, 0, 300, 400), values.astype(np.float32), equal_nan=True)


@pytest.mark.parametrize("command", ["detect", "tile"])
def test_raster_claiming_a_million_pixels_a_side_is_refused_before_any_allocation(tmp_path, command):
    """It ended in 'internal error: MemoryError' while reading its first band of rows (1024 x 10^6 px)."""
    vrt = tmp_path / "huge.vrt"
    vrt.write_text(
        f'<VRTDataset rasterXSize="1000000" rasterYSize="1000000"><SRS>{MARS_EQC}</SRS>'
        "<GeoTransform>1000, 0.5, 0, -2000, 0, -0.5</GeoTransform>"
        '<VRTRasterBand dataType="UInt16" band="1"/></VRTDataset>'
    )
    out = tmp_path / ("o.gpkg" if command == "detect" else "tiles")
    proc = _marsice(command, str(vrt), "-o", str(out), *(["--model", str(DEMO_MODEL)] if command == "detect" else []))
    assert proc.returncode == 2, proc.stderr
    _one_error_line(
        proc, f"{vrt} claims 1000000x1000000 px, more than any HiRISE product (at most 200,000 px a side, about 40 Gpx)"
    )
    assert not out.exists()


def test_label_claiming_more_than_the_limit_is_refused_before_its_image_is_opened(small_product, tmp_path):
    from marsice_plugin.errors import ProductError
    from marsice_plugin.product import open_product

    label, image = _copy_product(small_product, tmp_path / "p")
    text = label.read_text()
    label.write_text(text.replace("LINES                      = 384", "LINES                      = 250000"))
    image.unlink()  # never looked at: the size is refused first
    with pytest.raises(ProductError, match=r"claims 512x250000 px, more than any HiRISE product"):
        open_product(label)
