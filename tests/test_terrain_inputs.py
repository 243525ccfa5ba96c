"""Co-registration of a shifted image and the clear errors for unusable DTMs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

from marsice_plugin.errors import TerrainError
from marsice_plugin.product import open_product
from marsice_plugin.synthetic.product_writer import write_sample_product
from marsice_plugin.synthetic.scene import SceneConfig
from marsice_plugin.terrain.coregistration import hillshade, phase_correlate
from marsice_plugin.terrain.dem import dtm_on_image_grid


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("terrain_inputs")
    sp = write_sample_product(out, SceneConfig(width=1024, height=1024, seed=3), dtm_factor=4)
    with open_product(sp.label_path) as p:
        heights = dtm_on_image_grid(sp.dtm_path, p.crs, p.transform, p.width, p.height)
        image = p.read(0, 0, p.height, p.width).astype(np.float32)
        grid = (p.crs, p.transform, p.width, p.height)
        sun = (p.viewing.sun_azimuth_from_north, p.viewing.incidence_angle)
    image[image == 0] = np.nan
    return sp, heights, image, grid, sun


def _shift_grid(a: np.ndarray, d_row: float, d_col: float) -> np.ndarray:
    """``a`` moved by whole pixels: out[r, c] = a[r - d_row, c - d_col]; NaN where uncovered (the known shift)."""
    dr, dc = round(d_row), round(d_col)
    out = np.full(a.shape, np.nan, dtype=np.float32)
    rows, cols = a.shape
    if abs(dr) >= rows or abs(dc) >= cols:
        return out
    out[max(dr, 0) : rows + min(dr, 0), max(dc, 0) : cols + min(dc, 0)] = a[
        max(-dr, 0) : rows + min(-dr, 0), max(-dc, 0) : cols + min(-dc, 0)
    ]
    return out


def test_coregistration_recovers_known_shift(sample) -> None:
    _, heights, image, _, (az, inc) = sample
    shade = hillshade(heights, 0.5, az, inc)
    zero = phase_correlate(image, shade)
    assert zero.aligned and abs(zero.d_row) < 0.5 and abs(zero.d_col) < 0.5
    moved = phase_correlate(_shift_grid(image, 3, -5), shade)
    assert moved.aligned and moved.peak_ratio > 4.0
    assert abs(moved.d_row - 3) < 0.5 and abs(moved.d_col + 5) < 0.5


def test_coregistration_refuses_on_noise(sample) -> None:
    _, heights, _, _, (az, inc) = sample
    noise = np.random.default_rng(1).normal(size=heights.shape)
    result = phase_correlate(noise, hillshade(heights, 0.5, az, inc))
    assert not result.aligned and result.peak_ratio < 2.0


def _dem(path: Path, crs: str, values: np.ndarray, origin: tuple[float, float], nodata: float | None = None) -> Path:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=values.shape[1],
        height=values.shape[0],
        count=1,
        dtype="float32",
        crs=CRS.from_string(crs),
        transform=from_origin(*origin, 2.0, 2.0),
        nodata=nodata,
    ) as ds:
        ds.write(values.astype(np.float32), 1)
    return path


def test_bad_dtms_get_clear_errors(sample, tmp_path: Path) -> None:
    sp, _, _, (crs, transform, width, height), _ = sample
    x0, y0 = transform.c, transform.f
    flat = np.zeros((256, 256))
    mars = crs.to_wkt()
    far = _dem(tmp_path / "far.tif", mars, flat, (x0 + 1.0e6, y0))
    with pytest.raises(TerrainError, match="does not overlap the image"):
        dtm_on_image_grid(far, crs, transform, width, height)
    earth = _dem(tmp_path / "earth.tif", "+proj=eqc +R=6371007 +units=m +no_defs", flat, (x0, y0))
    with pytest.raises(TerrainError, match="Earth CRS"):
        dtm_on_image_grid(earth, crs, transform, width, height)
    moon = _dem(tmp_path / "moon.tif", "+proj=eqc +R=1737400 +units=m +no_defs", flat, (x0, y0))
    with pytest.raises(TerrainError, match="radius 1737400 m, not Mars"):
        dtm_on_image_grid(moon, crs, transform, width, height)
    empty = _dem(tmp_path / "empty.tif", mars, np.full((256, 256), -3.4028226550889045e38), (x0, y0))
    with pytest.raises(TerrainError, match="only NoData"):
        dtm_on_image_grid(empty, crs, transform, width, height)
    with pytest.raises(TerrainError, match="does not exist"):
        dtm_on_image_grid(tmp_path / "missing.IMG", crs, transform, width, height)
    # the real HiRISE-style DTM resamples onto the image grid with its MISSING_CONSTANT masked
    h = dtm_on_image_grid(sp.dtm_path, crs, transform, width, height)
    assert np.nanmin(h) > -1.0e4 and np.isfinite(h).mean() > 0.8


def test_upsampling_onto_the_image_grid_equals_gdals_warper_bit_for_bit(sample, monkeypatch) -> None:
    """The DTM onto grids in its own CRS, as fine as the image's or finer (with NoData margins, fractional shifts and
    parts off the DTM): the two-gather bilinear gives the warper's values and NoData pixels exactly."""
    from affine import Affine

    from marsice_plugin.terrain.dem import DtmSource

    sp, _, _, (crs, transform, _, _), _ = sample
    grids = [
        transform,
        transform @ Affine.translation(-3, 700),  # past the DTM's bottom and left edges
        transform @ Affine.translation(517.5, -20.25),  # half and quarter pixels, above its top
        transform @ Affine.scale(0.5),  # 2x finer than the image
    ]
    with DtmSource(sp.dtm_path) as dtm:
        assert dtm._upsampled(crs, transform, 400, 600) is not None  # the fast path serves the image grid
        assert dtm._upsampled(crs, transform @ Affine.scale(8), 40, 60) is None  # a coarser grid is GDAL's
        fast = [dtm.on_grid(crs, t, 400, 600) for t in grids]
        monkeypatch.setattr(DtmSource, "_upsampled", lambda *args: None)
        warped = [dtm.on_grid(crs, t, 400, 600) for t in grids]
    for f, w in zip(fast, warped, strict=True):
        assert np.array_equal(f, w, equal_nan=True)
    gaps = np.concatenate([np.isnan(f).ravel() for f in fast])
    assert 0.05 < gaps.mean() < 0.6  # the comparison covers NoData and heights both
