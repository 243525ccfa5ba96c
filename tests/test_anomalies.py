"""Isolated bright outliers and special pixels: repaired and counted; real patches left alone."""

from __future__ import annotations

import numpy as np
import pytest

from marsice_plugin.anomalies import find_outliers, max3, min3, noise_sigma, opening3, repair


def _surface(shape=(128, 128), noise=3.0, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (400 + 50 * np.sin(xx / 19.0) + 30 * np.cos(yy / 23.0) + rng.normal(0, noise, shape)).astype(np.float32)


def test_min_max_filters_match_scipy():
    from scipy import ndimage

    a = _surface((37, 53), seed=1)
    assert np.array_equal(min3(a), ndimage.minimum_filter(a, 3, mode="nearest"))
    assert np.array_equal(max3(a), ndimage.maximum_filter(a, 3, mode="nearest"))
    assert np.array_equal(opening3(a), ndimage.grey_opening(a, size=(3, 3), mode="nearest"))


def test_noise_estimate_is_robust_to_terrain_and_outliers():
    a = _surface(noise=5.0, seed=2)
    a[::7, ::5] = 1000  # many outliers do not inflate it
    assert noise_sigma(a, np.ones(a.shape, bool), row_step=1) == pytest.approx(5.0, rel=0.2)


@pytest.mark.parametrize(
    "spots",
    [
        [(20, 20)],  # one pixel
        [(50, 50), (50, 51), (51, 50), (51, 51)],  # 2 x 2
        [(80, 30), (80, 31), (80, 32), (80, 33)],  # 1 x 4 streak
        [(100, 100), (101, 101)],  # diagonal pair
    ],
)
def test_small_groups_at_ordinary_dns_are_repaired_and_counted(spots):
    a = _surface(seed=3)
    clean = a.copy()
    for r, c in spots:
        a[r, c] = 800  # an ordinary DN, no special value
    valid = np.ones(a.shape, bool)
    out, report = repair(a, valid)
    assert report.outlier_pixels == len(spots) and report.special_pixels == 0
    for r, c in spots:
        assert abs(out[r, c] - clean[r, c]) < 20
    untouched = np.ones(a.shape, bool)
    for r, c in spots:
        untouched[r, c] = False
    assert np.array_equal(out[untouched], a[untouched])


def test_group_larger_than_max_pixels_is_not_an_outlier():
    a = _surface(seed=4)
    a[30, 30:35] = 800  # five pixels in a row
    out, report = repair(a, np.ones(a.shape, bool))
    assert report.outlier_pixels == 0 and np.array_equal(out, a)


def test_real_patch_of_several_metres_survives_with_its_jagged_edge():
    a = _surface((160, 160), seed=5)
    yy, xx = np.mgrid[0:160, 0:160]
    patch = (yy - 80) ** 2 + (xx - 80) ** 2 <= 49  # 7 m across at 0.5 m/px
    patch[80, 88] = True  # a one-pixel protrusion on the edge
    patch[73, 80:82] = False  # a notch
    a[patch] += 250
    a[20, 140] = 900  # an isolated hot pixel elsewhere
    out, report = repair(a, np.ones(a.shape, bool))
    assert report.outlier_pixels == 1
    assert np.array_equal(out[patch], a[patch])
    outliers, _ = find_outliers(a, np.ones(a.shape, bool))
    assert not (outliers & patch).any()


def test_threshold_follows_the_noise():
    quiet, noisy = _surface(noise=2.0, seed=6), _surface(noise=25.0, seed=6)
    for a in (quiet, noisy):
        a[60, 60] += 150
    assert repair(quiet, np.ones(quiet.shape, bool))[1].outlier_pixels == 1
    # 150 DN is 6 sigma in a 25-DN noise image: an ordinary bright pixel there, left alone
    assert repair(noisy, np.ones(noisy.shape, bool))[1].outlier_pixels == 0


def test_special_pixels_take_the_mean_of_valid_neighbours_and_nodata_the_median():
    a = _surface(seed=7)
    a[40, 40] = 1023
    a[41, 41] = 1022
    a[:, :8] = 0
    nodata = a == 0
    valid = ~nodata & ~np.isin(a, (1022, 1023))
    out, report = repair(a, valid, nodata=nodata)
    assert report.special_pixels == 2
    window = a[38:43, 38:43][valid[38:43, 38:43]]
    assert out[40, 40] == pytest.approx(window.mean(), abs=1e-3)
    assert np.all(out[:, :8] == out[0, 0]) and 300 < out[0, 0] < 500


def test_large_saturated_area_falls_back_to_the_chunk_median():
    a = _surface(seed=8)
    a[40:60, 40:60] = 1022
    valid = a != 1022
    out, report = repair(a, valid)
    assert report.special_pixels == 400
    assert np.isfinite(out).all() and out[50, 50] == pytest.approx(np.median(a[::4, ::4][valid[::4, ::4]]))
