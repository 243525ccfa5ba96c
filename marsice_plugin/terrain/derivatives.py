"""Slope, aspect, poleward-facing flag and shadow masks of a height grid on a map-projected (north-up) grid.

Why aspect needs a correction: map grids are north-up only along their central meridian. On a polar
stereographic grid "up" points to true north only on the central meridian; elsewhere true north is rotated by the
grid convergence (up to 180° across a polar grid), so a grid aspect would call an equator-facing slope
poleward-facing. The convergence is measured numerically from the grid's own CRS (a short step north through
pyproj), which is exact for any projection and zero for equirectangular grids.
"""

from __future__ import annotations

import math

import numpy as np
import pyproj

from marsice_plugin.synthetic.illumination import cast_shadows, lambert

__all__ = [
    "aspect_degrees",
    "cast_shadows",
    "grid_convergence",
    "poleward_facing",
    "self_shadow",
    "slope_degrees",
]


def _gradients(height: np.ndarray, scale_m: float) -> tuple[np.ndarray, np.ndarray]:
    """dz/d(east) and dz/d(north) along the grid axes (rows run southward)."""
    d_row, d_col = np.gradient(height.astype(np.float64), scale_m)
    return d_col, -d_row


def slope_degrees(height: np.ndarray, scale_m: float) -> np.ndarray:
    """Slope in degrees from central differences (one-sided at the edges); float32."""
    dz_de, dz_dn = _gradients(height, scale_m)
    return np.degrees(np.arctan(np.hypot(dz_de, dz_dn))).astype(np.float32)


def grid_convergence(crs: pyproj.CRS | str, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Grid azimuth (degrees clockwise from grid up) of true north at projected points ``xs, ys``.

    Found by stepping 1e-4° north in latitude on the CRS's own sphere and projecting back: no formula per
    projection is needed, and an equirectangular grid gives 0 everywhere. Points at the pole itself get 0.
    """
    crs = pyproj.CRS(crs)
    geo = crs.geodetic_crs
    to_geo = pyproj.Transformer.from_crs(crs, geo, always_xy=True)
    to_grid = pyproj.Transformer.from_crs(geo, crs, always_xy=True)
    lon, lat = to_geo.transform(np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64))
    step = np.where(lat > 89.9, -1e-4, 1e-4)  # step south at the north pole, read the direction backwards
    x2, y2 = to_grid.transform(lon, lat + step)
    dx, dy = (x2 - xs) * np.sign(step), (y2 - ys) * np.sign(step)
    gamma = np.degrees(np.arctan2(dx, dy))
    gamma = np.where(np.hypot(dx, dy) > 0, gamma, 0.0)
    return np.asarray(gamma, dtype=np.float64)


def aspect_degrees(
    height: np.ndarray,
    scale_m: float,
    crs: pyproj.CRS | str | None = None,
    transform: tuple[float, float, float, float, float, float] | None = None,
    row_offset: int = 0,
) -> np.ndarray:
    """Downslope direction in degrees clockwise from true north, 0..360; NaN on flat pixels.

    Without ``crs``/``transform`` the grid is taken as north-up (true for equirectangular products). With them
    (``transform`` in affine/GDAL order ``(a, b, c, d, e, f)``: x = a·col + b·row + c, y = d·col + e·row + f) the
    grid convergence is subtracted pixel by pixel, so aspect is relative to true north on polar grids.
    ``row_offset`` is the first row of ``height`` on that grid (a strip of it): the pixel centres are computed as for
    the whole grid, so a strip's aspects equal the whole grid's bit for bit.
    """
    dz_de, dz_dn = _gradients(height, scale_m)
    aspect = np.degrees(np.arctan2(-dz_de, -dz_dn))
    if crs is not None and transform is not None:
        a, b, c, d, e, f = transform
        rows, cols = np.mgrid[row_offset : row_offset + height.shape[0], 0 : height.shape[1]]
        xs = a * (cols + 0.5) + b * (rows + 0.5) + c
        ys = d * (cols + 0.5) + e * (rows + 0.5) + f
        aspect = aspect - grid_convergence(crs, xs, ys)
    aspect = np.mod(aspect, 360.0)
    flat = np.hypot(dz_de, dz_dn) < 1e-9
    return np.where(flat, np.nan, aspect).astype(np.float32)


def poleward_facing(aspect_deg: np.ndarray, latitude_deg: float, half_width_deg: float = 90.0) -> np.ndarray:
    """True where the slope faces the nearer pole: aspect within ``half_width_deg`` of 180° (south) in the south.

    Remnant ice survives on poleward-facing slopes (less insolation), which is why this flag is a terrain term;
    flat pixels (NaN aspect) are not poleward-facing.
    """
    pole = 180.0 if latitude_deg < 0 else 0.0
    diff = np.abs((np.asarray(aspect_deg, dtype=np.float64) - pole + 180.0) % 360.0 - 180.0)
    return np.where(np.isnan(aspect_deg), False, diff < half_width_deg)


def self_shadow(height: np.ndarray, scale_m: float, azimuth_deg: float, incidence_deg: float) -> np.ndarray:
    """True where the surface faces away from the sun (local incidence ≥ 90°): attached, not cast, shadow."""
    return lambert(height, scale_m, azimuth_deg, incidence_deg) <= 0.0


def shadow_mask(height: np.ndarray, scale_m: float, azimuth_deg: float, incidence_deg: float) -> np.ndarray:
    """Cast or self shadow, with the renderer's own ray march so generated scenes agree pixel for pixel."""
    if not 0.0 <= incidence_deg < 90.0 or not math.isfinite(azimuth_deg):
        raise ValueError(f"sun incidence {incidence_deg}° must be in 0..90 and azimuth finite")
    cast = cast_shadows(height, scale_m, azimuth_deg, incidence_deg)
    return cast | self_shadow(height, scale_m, azimuth_deg, incidence_deg)
