"""Slope, aspect (with grid convergence), poleward flag and shadow masks against analytic values."""

from __future__ import annotations

import math

import numpy as np

from marsice_plugin.synthetic.illumination import cast_shadows
from marsice_plugin.terrain.derivatives import (
    aspect_degrees,
    derive,
    grid_convergence,
    lattice_convergence,
    poleward_facing,
    self_shadow,
    shadow_mask,
    slope_degrees,
)

MARS_SOUTH_POLAR = "+proj=stere +lat_0=-90 +lat_ts=-90 +lon_0=0 +k=1 +x_0=0 +y_0=0 +R=3396190 +units=m +no_defs"
MARS_EQC = "+proj=eqc +lat_ts=-50 +lon_0=0 +x_0=0 +y_0=0 +R=3396190 +units=m +no_defs"


def angle_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs((np.asarray(a) - np.asarray(b) + 180.0) % 360.0 - 180.0)


def plane(shape: tuple[int, int], scale: float, slope_deg: float, downslope_az_deg: float) -> np.ndarray:
    """Plane falling by tan(slope) per metre toward grid azimuth ``downslope_az_deg`` (clockwise from up)."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    east, north = cols * scale, -rows * scale
    az = math.radians(downslope_az_deg)
    return -math.tan(math.radians(slope_deg)) * (east * math.sin(az) + north * math.cos(az))


def test_plane_slope_and_aspect_exact_on_north_up_grid() -> None:
    for slope_deg, az in [(5.0, 0.0), (20.0, 135.0), (33.0, 181.0), (12.5, 300.0)]:
        h = plane((40, 50), 1.0, slope_deg, az)
        assert np.max(np.abs(slope_degrees(h, 1.0) - slope_deg)) < 1e-3
        assert np.max(angle_diff(aspect_degrees(h, 1.0), az)) < 1e-3


def test_cone_slope_and_aspect_within_one_degree() -> None:
    n, scale, slope_deg = 201, 2.0, 25.0
    rows, cols = np.mgrid[0:n, 0:n].astype(np.float64)
    dx, dy = (cols - 100) * scale, (100 - rows) * scale  # east, north of the apex
    r = np.hypot(dx, dy)
    h = 500.0 - r * math.tan(math.radians(slope_deg))
    keep = r > 6 * scale  # central differences straddle the apex within a few pixels
    keep[[0, -1], :] = keep[:, [0, -1]] = False
    slope_err = np.abs(slope_degrees(h, scale) - slope_deg)[keep]
    aspect_err = angle_diff(aspect_degrees(h, scale), np.degrees(np.arctan2(dx, dy)))[keep]
    assert slope_err.max() < 1.0
    assert aspect_err.max() < 1.0


def test_equirectangular_convergence_is_zero() -> None:
    xs = np.array([0.0, 1.0e5, -2.0e5])
    ys = np.array([-2.9e6, -3.0e6, -3.1e6])
    assert np.max(np.abs(grid_convergence(MARS_EQC, xs, ys))) < 1e-6


def test_polar_stereographic_aspect_corrected_to_true_north() -> None:
    # a grid near 70°S, 60°E: true north (away from the south pole) points along grid azimuth atan2(x, y)
    lon, lat = math.radians(60.0), -70.0
    rho = 2 * 3396190.0 * math.tan(math.radians(90.0 + lat) / 2)
    x0, y0 = rho * math.sin(lon), rho * math.cos(lon)
    scale = 1.0
    transform = (scale, 0.0, x0, 0.0, -scale, y0)
    h = plane((60, 80), scale, 15.0, 200.0)  # falls toward grid azimuth 200°
    rows, cols = np.mgrid[0:60, 0:80]
    xs, ys = x0 + (cols + 0.5) * scale, y0 - (rows + 0.5) * scale
    expected = (200.0 - np.degrees(np.arctan2(xs, ys))) % 360.0
    aspect = aspect_degrees(h, scale, crs=MARS_SOUTH_POLAR, transform=transform)
    err = angle_diff(aspect, expected)
    assert err.max() < 0.01
    assert abs(float(np.median(expected)) - 140.0) < 0.1  # the correction is 60°, not a rounding
    assert np.max(np.abs(slope_degrees(h, scale) - 15.0)) < 1e-3


def test_poleward_flag_follows_hemisphere() -> None:
    aspect = np.array([0.0, 89.0, 91.0, 180.0, 269.0, 271.0, np.nan])
    assert poleward_facing(aspect, -50.0).tolist() == [False, False, True, True, True, False, False]
    assert poleward_facing(aspect, 50.0).tolist() == [True, True, False, False, False, True, False]


def test_cast_shadow_of_a_wall_has_analytic_length() -> None:
    h = np.zeros((120, 60))
    h[40:50, :] = 10.0  # a 10 m high east-west ridge, 1 m/px
    az, inc = 0.0, 60.0  # sun in the north, 30° above the horizon: shadow 10/tan 30° = 17.3 m southward
    mask = shadow_mask(h, 1.0, az, inc)
    column = mask[:, 30]
    shadowed_rows = np.flatnonzero(column[50:]) + 50
    # the ridge edge is row 49; rows up to 17 m (floor of 17.3 m) beyond it are shaded
    assert shadowed_rows.min() == 50 and shadowed_rows.max() == 49 + 17
    assert not column[:40].any()
    assert not column[40:49].any()  # the ridge top is lit


def test_shadow_mask_matches_renderer_on_rough_terrain() -> None:
    rng = np.random.default_rng(3)
    h = np.cumsum(np.cumsum(rng.normal(size=(128, 128)), axis=0), axis=1) * 0.05
    for az, inc in [(295.0, 70.0), (120.0, 55.0)]:
        ours = shadow_mask(h, 0.5, az, inc)
        renderer = cast_shadows(h, 0.5, az, inc)
        assert np.array_equal(ours & renderer, renderer)  # every rendered cast shadow is in our mask
        assert ours.mean() > 0.01


def test_lattice_convergence_matches_every_pixel_and_strips_match_the_whole_grid() -> None:
    """The convergence interpolated from the 64-px lattice is the per-pixel one within 1e-6 degrees, also on a polar
    grid that straddles the 180th meridian (-180/+180 between lattice nodes), and a strip's values are the whole
    grid's bit for bit (each pixel's value depends on its own row and column only)."""
    rho = 2 * 3396190.0 * math.tan(math.radians(90.0 - 67.0) / 2)
    for lon in (60.0, 180.0):
        x0, y0 = rho * math.sin(math.radians(lon)), rho * math.cos(math.radians(lon))
        transform = (0.5, 0.0, x0 - 100.0, 0.0, -0.5, y0 + 60.0)
        whole = lattice_convergence(MARS_SOUTH_POLAR, transform, 0, 300, 400)
        rows, cols = np.mgrid[0:300, 0:400]
        exact = grid_convergence(MARS_SOUTH_POLAR, x0 - 100.0 + (cols + 0.5) * 0.5, y0 + 60.0 - (rows + 0.5) * 0.5)
        assert angle_diff(whole, exact).max() < 1e-6
        if lon == 180.0:  # the grid really crosses the line where the convergence jumps from -180 to +180
            assert exact.min() < -179.0 and exact.max() > 179.0
        strip = lattice_convergence(MARS_SOUTH_POLAR, transform, 77, 90, 400)
        assert np.array_equal(strip, whole[77:167])
    # an equirectangular grid: the lattice's numerical noise is an exact 0
    eqc = lattice_convergence(MARS_EQC, (0.25, 0.0, 1.0e5, 0.0, -0.25, -2.9e6), 0, 50, 70)
    assert eqc.shape == (50, 70) and not eqc.any()


def test_derive_gives_the_three_functions_values_bit_for_bit() -> None:
    rng = np.random.default_rng(4)
    h = (np.cumsum(np.cumsum(rng.normal(size=(90, 120)), axis=0), axis=1) * 0.1).astype(np.float32)
    transform = (1.0, 0.0, 1.2e6, 0.0, -1.0, 0.8e6)
    slope, aspect, shade = derive(h, 0.5, 297.0, 70.0, crs=MARS_SOUTH_POLAR, transform=transform, row_offset=5)
    assert np.array_equal(slope, slope_degrees(h, 0.5))
    expected = aspect_degrees(h, 0.5, crs=MARS_SOUTH_POLAR, transform=transform, row_offset=5)
    assert np.array_equal(aspect, expected, equal_nan=True)
    assert np.array_equal(shade, self_shadow(h, 0.5, 297.0, 70.0)) and 0.02 < shade.mean() < 0.98
    # self shadow is where the Lambert term (the renderer's shading) is zero
    from marsice_plugin.synthetic.illumination import lambert

    assert np.array_equal(shade, lambert(h, 0.5, 297.0, 70.0) <= 0.0)


def test_poleward_flag_of_float32_aspects_equals_the_general_formula() -> None:
    aspect = np.concatenate([np.linspace(0.0, 360.0, 720_001), [89.99999, 90.00001, 269.99998, np.nan]])
    aspect = aspect.astype(np.float32)
    for latitude in (-50.0, 50.0):
        pole = 180.0 if latitude < 0 else 0.0
        general = np.abs((aspect.astype(np.float64) - pole + 180.0) % 360.0 - 180.0) < 90.0
        assert np.array_equal(poleward_facing(aspect, latitude), general & ~np.isnan(aspect))


def test_tiled_shadow_march_equals_the_renderers_march() -> None:
    """The streamed march (tiles, repeated offsets skipped, each tile stopped once no higher terrain in reach can
    shade it) gives the renderer's shadows pixel for pixel: gentle terrain with one tall block, six suns."""
    from marsice_plugin.terrain.stream import cast_shadows_rows

    rng = np.random.default_rng(1)
    h = (np.cumsum(np.cumsum(rng.normal(size=(300, 1100)), axis=0), axis=1) * 0.003).astype(np.float32)
    h[120:135, 300:700] += 30.0
    relief = float(h.max() - h.min())
    for az, inc in [(297.0, 70.0), (20.0, 80.0), (90.0, 60.0), (200.0, 75.0), (45.0, 50.0), (180.0, 30.0)]:
        expected = cast_shadows(h, 0.5, az, inc)
        assert 0.0 < expected.mean() < 1.0
        assert np.array_equal(cast_shadows_rows(h, 0, 300, 300, 0.5, az, inc, relief), expected)
        assert np.array_equal(cast_shadows_rows(h, 70, 150, 300, 0.5, az, inc, relief), expected[70:220])
