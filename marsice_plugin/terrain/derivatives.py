"""Slope, aspect, poleward-facing flag and shadow masks of a height grid on a map-projected (north-up) grid.

Why aspect needs a correction: map grids are north-up only along their central meridian. On a polar
stereographic grid "up" points to true north only on the central meridian; elsewhere true north is rotated by the
grid convergence (up to 180° across a polar grid), so a grid aspect would call an equator-facing slope
poleward-facing. The convergence is measured numerically from the grid's own CRS (a short step north through
pyproj), which is exact for any projection and zero for equirectangular grids.

Why a lattice: measuring it at every pixel (two pyproj transforms per pixel) was a fifth of a terrain run. It is
measured at the nodes of a :data:`CONVERGENCE_STEP`-pixel lattice anchored at the grid's origin and interpolated
bilinearly in between: the convergence is smooth (on a polar stereographic grid it is the longitude, whose second
derivative over 64 px at 0.25-1 m/px and >= 1000 km from the pole moves it by < 1e-8 degrees). Each pixel's value
depends only on its own row and column, so a strip gives the same aspects as the whole grid, bit for bit.

Why one gradient: slope, aspect and self shadow all come from the same central differences; :func:`derive` takes
them once per block (the three used to take them three times, in float64).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pyproj

from marsice_plugin.synthetic.illumination import cast_shadows, sun_vector
from marsice_plugin.vectors import transform_points

#: Pixels between the nodes where the grid convergence is measured (interpolated bilinearly in between).
CONVERGENCE_STEP = 64

__all__ = [
    "aspect_degrees",
    "cast_shadows",
    "derive",
    "grid_convergence",
    "poleward_facing",
    "self_shadow",
    "slope_degrees",
]


def _gradients(height: np.ndarray, scale_m: float) -> tuple[np.ndarray, np.ndarray]:
    """dz/d(east) and dz/d(north) along the grid axes (rows run southward)."""
    d_row, d_col = np.gradient(height.astype(np.float64), scale_m)
    return d_col, -d_row


def _slope(gradient: np.ndarray) -> np.ndarray:
    return np.degrees(np.arctan(gradient)).astype(np.float32)


def slope_degrees(height: np.ndarray, scale_m: float) -> np.ndarray:
    """Slope in degrees from central differences (one-sided at the edges); float32."""
    return _slope(np.hypot(*_gradients(height, scale_m)))


@functools.lru_cache(maxsize=8)
def _transformers(crs_wkt: str) -> tuple[pyproj.Transformer, pyproj.Transformer]:
    """(grid -> geographic, geographic -> grid) of a CRS, made once: building them was most of the lattice's cost
    (a strip asks for its lattice once per block of rows)."""
    crs = pyproj.CRS(crs_wkt)
    geo = crs.geodetic_crs
    return (
        pyproj.Transformer.from_crs(crs, geo, always_xy=True),
        pyproj.Transformer.from_crs(geo, crs, always_xy=True),
    )


def grid_convergence(crs: pyproj.CRS | str, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Grid azimuth (degrees clockwise from grid up) of true north at projected points ``xs, ys``.

    Found by stepping 1e-4° north in latitude on the CRS's own sphere and projecting back: no formula per
    projection is needed, and an equirectangular grid gives 0 everywhere. Points at the pole itself get 0.
    """
    to_geo, to_grid = _transformers(crs if isinstance(crs, str) else pyproj.CRS(crs).to_wkt())
    xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    lon, lat = transform_points(to_geo, xs, ys)
    step = np.where(lat > 89.9, -1e-4, 1e-4)  # step south at the north pole, read the direction backwards
    x2, y2 = transform_points(to_grid, lon, lat + step)
    dx, dy = (x2 - xs) * np.sign(step), (y2 - ys) * np.sign(step)
    gamma = np.degrees(np.arctan2(dx, dy))
    gamma = np.where(np.hypot(dx, dy) > 0, gamma, 0.0)
    return np.asarray(gamma, dtype=np.float64)


def lattice_convergence(
    crs: pyproj.CRS | str,
    transform: tuple[float, float, float, float, float, float],
    row_offset: int,
    rows: int,
    cols: int,
) -> np.ndarray:
    """:func:`grid_convergence` at the pixel centres of rows ``row_offset .. + rows`` of a grid (``transform`` in
    affine order), interpolated from the :data:`CONVERGENCE_STEP` lattice (see the module's docstring)."""
    a, b, c, d, e, f = transform
    g = CONVERGENCE_STEP
    n0, n1 = row_offset // g, (row_offset + rows - 1) // g + 1  # lattice rows around the block
    node_r = np.arange(n0, n1 + 1) * g
    node_c = np.arange(0, (cols - 1) // g + 2) * g
    rr, cc = np.meshgrid(node_r + 0.5, node_c + 0.5, indexing="ij")
    # to 1e-7 degrees (float32 aspects resolve 3e-5): an equirectangular grid's numerical noise (~1e-8) becomes an
    # exact 0, and a constant lattice is subtracted as one number instead of interpolated pixel by pixel
    nodes = np.round(grid_convergence(crs, a * cc + b * rr + c, d * cc + e * rr + f), 7)
    if np.all(nodes == nodes.flat[0]):
        return np.broadcast_to(nodes.flat[0], (rows, cols))  # one number: subtracted without a per-pixel array

    def toward(start: np.ndarray, end: np.ndarray, w: np.ndarray) -> np.ndarray:
        # the shorter way round (a lattice cell across the +-180 line); the caller takes the result mod 360
        return start + w * ((end - start + 180.0) % 360.0 - 180.0)

    r = np.arange(row_offset, row_offset + rows)
    i, t = r // g - n0, ((r % g) / g)[:, None]
    by_row = toward(nodes[i], nodes[i + 1], t)  # (rows, lattice columns)
    col = np.arange(cols)
    j, u = col // g, (col % g) / g
    return toward(by_row[:, j], by_row[:, j + 1], u)


def _aspect(
    dz_de: np.ndarray,
    dz_dn: np.ndarray,
    crs: pyproj.CRS | str | None,
    transform: tuple[float, float, float, float, float, float] | None,
    row_offset: int,
    gradient: np.ndarray | None = None,
) -> np.ndarray:
    aspect = np.degrees(np.arctan2(-dz_de, -dz_dn))
    if crs is not None and transform is not None:
        convergence = lattice_convergence(crs, transform, row_offset, *dz_de.shape)
        if convergence.strides == (0, 0):  # constant: subtract the number (nothing at all for an exact 0)
            if convergence.flat[0] != 0.0:
                aspect -= convergence.flat[0]
        else:
            aspect -= convergence
    np.mod(aspect, 360.0, out=aspect)
    aspect[(gradient if gradient is not None else np.hypot(dz_de, dz_dn)) < 1e-9] = np.nan
    return aspect.astype(np.float32)


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
    grid convergence is subtracted pixel by pixel (:func:`lattice_convergence`), so aspect is relative to true north
    on polar grids. ``row_offset`` is the first row of ``height`` on that grid (a strip of it): a strip's aspects
    equal the whole grid's bit for bit.
    """
    return _aspect(*_gradients(height, scale_m), crs, transform, row_offset)


def derive(
    height: np.ndarray,
    scale_m: float,
    azimuth_deg: float,
    incidence_deg: float,
    crs: pyproj.CRS | str | None = None,
    transform: tuple[float, float, float, float, float, float] | None = None,
    row_offset: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(slope, aspect, self shadow) of ``height`` from one set of central differences: the values of
    :func:`slope_degrees`, :func:`aspect_degrees` and :func:`self_shadow`, bit for bit, in about a third the time."""
    dz_de, dz_dn = _gradients(height, scale_m)
    gradient = np.hypot(dz_de, dz_dn)
    return (
        _slope(gradient),
        _aspect(dz_de, dz_dn, crs, transform, row_offset, gradient),
        _self_shadow(dz_de, dz_dn, azimuth_deg, incidence_deg),
    )


def poleward_facing(aspect_deg: np.ndarray, latitude_deg: float, half_width_deg: float = 90.0) -> np.ndarray:
    """True where the slope faces the nearer pole: aspect within ``half_width_deg`` of 180° (south) in the south.

    Remnant ice survives on poleward-facing slopes (less insolation), which is why this flag is a terrain term;
    flat pixels (NaN aspect) are not poleward-facing.
    """
    a = np.asarray(aspect_deg)
    if half_width_deg == 90.0 and a.dtype == np.float32:
        # the same test without float64 copies: float32 aspects in 0..360 make the expression below exact, and it is
        # 90 < a < 270 (south) or a < 90 or a > 270 (north); NaN compares False
        return (a > 90.0) & (a < 270.0) if latitude_deg < 0 else (a < 90.0) | (a > 270.0)
    pole = 180.0 if latitude_deg < 0 else 0.0
    diff = np.abs((np.asarray(aspect_deg, dtype=np.float64) - pole + 180.0) % 360.0 - 180.0)
    return np.where(np.isnan(aspect_deg), False, diff < half_width_deg)


def _self_shadow(dz_de: np.ndarray, dz_dn: np.ndarray, azimuth_deg: float, incidence_deg: float) -> np.ndarray:
    # sun . (unnormalised normal (-dz_de, -dz_dn, 1)) <= 0: the sign of cos(local incidence), without the norm
    s_e, s_n, s_u = sun_vector(azimuth_deg, incidence_deg)
    return s_e * dz_de + s_n * dz_dn >= s_u


def self_shadow(height: np.ndarray, scale_m: float, azimuth_deg: float, incidence_deg: float) -> np.ndarray:
    """True where the surface faces away from the sun (local incidence ≥ 90°): attached, not cast, shadow."""
    return _self_shadow(*_gradients(height, scale_m), azimuth_deg, incidence_deg)


def shadow_mask(height: np.ndarray, scale_m: float, azimuth_deg: float, incidence_deg: float) -> np.ndarray:
    """Cast or self shadow, with the renderer's own ray march so generated scenes agree pixel for pixel."""
    if not 0.0 <= incidence_deg < 90.0 or not math.isfinite(azimuth_deg):
        raise ValueError(f"sun incidence {incidence_deg}° must be in 0..90 and azimuth finite")
    cast = cast_shadows(height, scale_m, azimuth_deg, incidence_deg)
    return cast | self_shadow(height, scale_m, azimuth_deg, incidence_deg)
