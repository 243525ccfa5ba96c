"""Zonal attributes on known polygons and the ranking of an ice patch against a sunlit bright-dust decoy."""

from __future__ import annotations

import math

import numpy as np

from marsice_plugin.synthetic.illumination import cast_shadows, lambert
from marsice_plugin.terrain.derivatives import aspect_degrees, poleward_facing, shadow_mask, slope_degrees
from marsice_plugin.terrain.ranking import combined_rank_value, terrain_score
from marsice_plugin.terrain.zonal import circular_mean_deg, sunward_ring, zonal_attributes


def test_zonal_on_south_facing_plane() -> None:
    rows, _ = np.mgrid[0:50, 0:50].astype(np.float64)
    h = 100.0 + rows * math.tan(math.radians(10.0))  # rises southward... so it faces north
    h = h[::-1].copy()  # now falls southward: faces south, poleward at -50°
    slope, aspect = slope_degrees(h, 1.0), aspect_degrees(h, 1.0)
    mask = np.zeros_like(h, dtype=bool)
    mask[20:30, 20:30] = True
    shadow = np.zeros_like(mask)
    shadow[10:20, 20:30] = True  # shade just north of the patch: the sunward side for a northern sun
    attrs = zonal_attributes(
        mask,
        slope=slope,
        aspect=aspect,
        poleward=poleward_facing(aspect, -50.0),
        shadow=shadow,
        height=h,
        azimuth_deg=0.0,
        ring_px=5,
    )
    assert abs(attrs.mean_slope - 10.0) < 1e-3 and abs(attrs.max_slope - 10.0) < 1e-3
    assert abs(attrs.mean_aspect - 180.0) < 1e-3
    assert attrs.poleward_fraction == 1.0
    assert attrs.shadow_fraction == 0.0
    assert attrs.sunward_shade_fraction == 1.0
    assert abs(attrs.elevation - float(h[20:30, 20:30].mean())) < 1e-9
    assert math.isnan(attrs.image_shadow_fraction)


def test_sunward_ring_and_circular_mean() -> None:
    mask = np.zeros((20, 20), dtype=bool)
    mask[10, 10] = True
    ring = sunward_ring(mask, 90.0, 3)  # sun in the east
    assert np.flatnonzero(ring).tolist() == [10 * 20 + 11, 10 * 20 + 12, 10 * 20 + 13]
    assert (
        abs(circular_mean_deg(np.array([350.0, 10.0])) - 0.0) < 1e-9
        or abs(circular_mean_deg(np.array([350.0, 10.0])) - 360.0) < 1e-9
    )


def test_ranking_puts_shaded_poleward_ice_above_sunlit_dust() -> None:
    n, scale = 200, 1.0
    rows, cols = np.mgrid[0:n, 0:n].astype(np.float64)
    h = 30.0 * np.exp(-((rows - 100) ** 2 + (cols - 100) ** 2) / (2 * 20.0**2))  # a 30 m knob
    az, inc, lat = 300.0, 70.0, -55.0  # a band-typical sun from the north-west
    slope, aspect = slope_degrees(h, scale), aspect_degrees(h, scale)
    shade = shadow_mask(h, scale, az, inc)
    image = lambert(h, scale, az, inc) * ~cast_shadows(h, scale, az, inc) + 0.05
    d_row, d_col = -math.cos(math.radians(az)), math.sin(math.radians(az))
    ice = np.zeros((n, n), dtype=bool)
    r, c = round(100 - 40 * d_row), round(100 - 40 * d_col)  # behind the knob, away from the sun
    ice[r - 4 : r + 4, c - 4 : c + 4] = True
    dust = np.zeros((n, n), dtype=bool)
    r, c = round(100 + 25 * d_row), round(100 + 25 * d_col)  # on the sunlit, sun-facing flank
    dust[r - 4 : r + 4, c - 4 : c + 4] = True
    common = dict(slope=slope, aspect=aspect, poleward=poleward_facing(aspect, lat), shadow=shade, height=h)
    a_ice = zonal_attributes(ice, **common, azimuth_deg=az, ring_px=10, image=image)
    a_dust = zonal_attributes(dust, **common, azimuth_deg=az, ring_px=10, image=image)
    s_ice, s_dust = terrain_score(a_ice), terrain_score(a_dust)
    assert a_ice.poleward_fraction == 1.0 and a_dust.poleward_fraction == 0.0
    assert a_ice.shadow_fraction > 0.5 and a_dust.shadow_fraction == 0.0
    assert s_ice > 0.6 and s_dust < 0.1
    p = 0.8
    assert combined_rank_value(p, s_ice) > combined_rank_value(p, s_dust)
    assert combined_rank_value(p, 0.0) == p * 0.2 and combined_rank_value(p, 1.0) == p
