"""Sun geometry, Lambert shading and ray-marched cast shadows on a north-up height grid.

The sun direction follows the HiRISE RDR index convention: azimuth from north (clockwise) =
(SUB_SOLAR_AZIMUTH - NORTH_AZIMUTH) mod 360, elevation = 90° - INCIDENCE_ANGLE. On the grid
(rows southward, columns eastward) a step toward the sun is (d_row, d_col) = (-cos az, sin az).
"""

from __future__ import annotations

import math

import numpy as np


def sun_vector(azimuth_deg: float, incidence_deg: float) -> np.ndarray:
    """Unit vector toward the sun in (east, north, up)."""
    az, el = math.radians(azimuth_deg), math.radians(90.0 - incidence_deg)
    return np.array([math.sin(az) * math.cos(el), math.cos(az) * math.cos(el), math.sin(el)])


def surface_normals(height: np.ndarray, scale_m: float) -> np.ndarray:
    """Unit normals (east, north, up) of a height grid; shape (3, rows, cols)."""
    d_row, d_col = np.gradient(height.astype(np.float64), scale_m)
    dz_de, dz_dn = d_col, -d_row
    norm = np.sqrt(dz_de**2 + dz_dn**2 + 1.0)
    return np.stack([-dz_de / norm, -dz_dn / norm, 1.0 / norm])


def lambert(height: np.ndarray, scale_m: float, azimuth_deg: float, incidence_deg: float) -> np.ndarray:
    """cos(local incidence) clipped at 0: the direct-light factor of a Lambertian surface."""
    n = surface_normals(height, scale_m)
    s = sun_vector(azimuth_deg, incidence_deg)
    return np.clip(np.tensordot(s, n, axes=1), 0.0, None).astype(np.float32)


def cast_shadows(height: np.ndarray, scale_m: float, azimuth_deg: float, incidence_deg: float) -> np.ndarray:
    """True where terrain toward the sun rises above the sun ray through the pixel.

    A pixel at height h is shadowed when some point at horizontal distance t (m) toward the sun is
    higher than h + t·tan(elevation). The march goes in one-pixel steps along the sun azimuth up to
    the distance at which even the grid's full relief could no longer cast a shadow; heights are
    sampled at the nearest pixel (shadow edges are exact to within a pixel).
    """
    rows, cols = height.shape
    elevation = math.radians(90.0 - incidence_deg)
    tan_el = math.tan(elevation)
    if tan_el <= 0:
        return np.ones(height.shape, dtype=bool)
    d_row, d_col = -math.cos(math.radians(azimuth_deg)), math.sin(math.radians(azimuth_deg))
    relief = float(height.max() - height.min())
    steps = math.ceil(relief / (scale_m * tan_el)) + 1
    steps = min(steps, rows + cols)
    h = height.astype(np.float32)
    shadow = np.zeros(height.shape, dtype=bool)
    rise_per_step = scale_m * tan_el
    for k in range(1, steps + 1):
        dr, dc = round(k * d_row), round(k * d_col)
        if abs(dr) >= rows or abs(dc) >= cols:
            break
        # target[r, c] = h[r + dr, c + dc] where inside the grid
        src_r = slice(max(dr, 0), rows + min(dr, 0))
        dst_r = slice(max(-dr, 0), rows + min(-dr, 0))
        src_c = slice(max(dc, 0), cols + min(dc, 0))
        dst_c = slice(max(-dc, 0), cols + min(-dc, 0))
        distance_rise = math.hypot(dr, dc) * rise_per_step
        shadow[dst_r, dst_c] |= h[src_r, src_c] > h[dst_r, dst_c] + distance_rise
    return shadow
