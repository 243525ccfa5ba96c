"""Second-stage crops: where they are cut, how they are turned so the sun is at the top, what the channels hold."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from marsice_plugin.patches.crops import (
    CROP_PX,
    CROP_SCALE_M,
    SUNWARD_SHIFT,
    crop_centre,
    crop_input,
    source_side,
    toward_sun,
)


def _scene(offset_rc: tuple[int, int], size: int = 240, scale_m: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """A flat grey image (DN 100) with a 4 m bright square (DN 300) ``offset_rc`` pixels from the centre."""
    grey = np.full((size, size), 100.0, np.float32)
    half = max(1, int(2.0 / scale_m))
    r, c = size // 2 + offset_rc[0], size // 2 + offset_rc[1]
    grey[r - half : r + half, c - half : c + half] = 300.0
    return grey, np.ones_like(grey, bool)


def _brightest(crop: np.ndarray) -> tuple[float, float]:
    rows, cols = np.nonzero(crop[..., 0] > 1.0)
    return float(rows.mean()), float(cols.mean())


@pytest.mark.parametrize("azimuth", [0.0, 45.0, 90.0, 180.0, 297.0])
def test_a_patch_on_the_sunward_side_lands_at_the_top_and_an_anti_sun_one_at_the_bottom(azimuth):
    d_row, d_col = toward_sun(azimuth)
    for sign, top in ((1, True), (-1, False)):
        grey, valid = _scene((round(sign * 30 * d_row), round(sign * 30 * d_col)))
        centre = ((grey.shape[0] - 1) / 2, (grey.shape[1] - 1) / 2)
        crop = crop_input(grey, valid, np.zeros_like(valid), centre, 0.5, azimuth)
        row, col = _brightest(crop)
        mid = (CROP_PX - 1) / 2
        assert abs(col - mid) < 2.0  # on the sun's axis, whatever the azimuth
        assert (row - mid) == pytest.approx(-30.0 if top else 30.0, abs=2.0)


def test_crop_is_32_m_of_ground_at_any_product_scale_and_relative_to_the_median():
    # east of the centre by 8 m, sun from the north (no turn): 16 crop pixels right of the middle at both scales
    for scale in (0.25, 0.5):
        grey, valid = _scene((0, round(8.0 / scale)), size=400, scale_m=scale)
        centre = ((grey.shape[0] - 1) / 2, (grey.shape[1] - 1) / 2)
        crop = crop_input(grey * 3.0, valid, np.zeros_like(valid), centre, scale, 0.0)  # gain: no effect
        row, col = _brightest(crop)
        assert col - (CROP_PX - 1) / 2 == pytest.approx(8.0 / CROP_SCALE_M, abs=1.0)
        assert abs(row - (CROP_PX - 1) / 2) < 1.0
        assert crop[2, 2, 0] == pytest.approx(0.0, abs=1e-4)  # background / median - 1
        assert crop[..., 0].max() == pytest.approx(2.0, abs=0.05)  # 300 / 100 - 1


def test_crop_centre_moves_toward_the_sun_and_the_window_holds_the_turned_crop():
    row, col = crop_centre(500.0, 500.0, 0.5, 90.0)  # sun from the east: context to the east
    assert row == pytest.approx(500.0) and col == pytest.approx(500.0 + SUNWARD_SHIFT * CROP_PX)
    assert source_side(0.5) >= CROP_PX * np.sqrt(2) and source_side(0.25) >= 2 * CROP_PX * np.sqrt(2)


def test_product_crop_outlines_the_candidate_below_the_middle(small_product):
    """The candidate's own channel: its outline sits anti-sunward of the crop centre, by the sunward shift."""
    from marsice_plugin.patches.stage import product_crop
    from marsice_plugin.product import open_product

    with open_product(small_product.label_path) as product:
        x, y = product.transform @ (200.5, 150.5)
        square = shapely.box(x - 2.0, y - 2.0, x + 2.0, y + 2.0)  # 4 m: 8 x 8 pixels at 0.5 m
        crop = product_crop(product, square)
    assert crop.shape == (CROP_PX, CROP_PX, 2) and crop.dtype == np.float32
    rows, cols = np.nonzero(crop[..., 1] > 0.5)
    assert len(rows) == pytest.approx(64, rel=0.25)  # 16 m² at 0.5 m per crop pixel
    mid = (CROP_PX - 1) / 2
    assert rows.mean() - mid == pytest.approx(SUNWARD_SHIFT * CROP_PX, abs=1.0)
    assert abs(cols.mean() - mid) < 1.0
    assert np.isfinite(crop).all() and crop[..., 0].min() >= -1.0 and crop[..., 0].max() <= 3.0
