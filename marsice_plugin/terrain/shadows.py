"""Cast shadows of full-width strips of a height grid: the renderer's ray march, tiled so that it stays in cache.

Apart from :mod:`marsice_plugin.terrain.stream` so that the co-registration's level-0 windows
(:mod:`marsice_plugin.terrain.imagepass`) cast their hillshade's shadows with the same fast march.
"""

from __future__ import annotations

import math

import numpy as np

#: Tile (rows, columns) of the shadow march: a tile and the rows it is compared with stay in the CPU's cache, and a
#: tile stops marching once no higher terrain within the longest shadow's reach can shade it.
SHADOW_TILE = (64, 512)


def cast_shadows_rows(
    height: np.ndarray,
    first: int,
    count: int,
    total_rows: int,
    scale_m: float,
    azimuth_deg: float,
    incidence_deg: float,
    relief: float,
) -> np.ndarray:
    """Cast shadows of rows ``first .. first + count`` of ``height`` (a full-width strip with its halo).

    The loop of :func:`marsice_plugin.synthetic.illumination.cast_shadows` restricted to the strip: the same steps
    (from ``relief``, the image's relief, not the strip's) and the same stop at the whole image's size
    (``total_rows``), so the result equals the whole-grid shadows on those rows when the halo is present.

    Why it is faster and still exact: the grid goes in tiles of :data:`SHADOW_TILE` (a tile and the pixels it is
    compared with stay in cache over all steps, with no temporary arrays), a step whose offset repeats the previous
    one is skipped (the same comparison), and a tile stops marching at the first step whose rise
    ``hypot(dr, dc) x scale x tan(elevation)`` (rounded to float32, as it is added) reaches the highest height any of
    its steps can reach minus its own lowest height: no later step can shadow any of its pixels (the rise only grows
    with the step).
    """
    rows_e, cols = height.shape
    tan_el = math.tan(math.radians(90.0 - incidence_deg))
    if tan_el <= 0:
        return np.ones((count, cols), dtype=bool)
    d_row, d_col = -math.cos(math.radians(azimuth_deg)), math.sin(math.radians(azimuth_deg))
    steps = min(shadow_steps(relief, scale_m, incidence_deg), total_rows + cols)
    h = np.ascontiguousarray(height, dtype=np.float32)
    shadow = np.zeros((count, cols), dtype=bool)
    rise_per_step = scale_m * tan_el
    offsets: list[tuple[int, int, float]] = []
    for k in range(1, steps + 1):
        dr, dc = round(k * d_row), round(k * d_col)
        if abs(dr) >= total_rows or abs(dc) >= cols:
            break
        if not offsets or (dr, dc) != offsets[-1][:2]:
            offsets.append((dr, dc, float(np.float32(math.hypot(dr, dc) * rise_per_step))))
    if not offsets:
        return shadow
    reach_r = (min(0, *(o[0] for o in offsets)), max(0, *(o[0] for o in offsets)))
    reach_c = (min(0, *(o[1] for o in offsets)), max(0, *(o[1] for o in offsets)))
    tile_rows, tile_cols = SHADOW_TILE
    level = np.empty(SHADOW_TILE, dtype=np.float32)
    above = np.empty(SHADOW_TILE, dtype=bool)
    for b0 in range(first, first + count, tile_rows):
        b1 = min(first + count, b0 + tile_rows)
        for c0 in range(0, cols, tile_cols):
            c1 = min(cols, c0 + tile_cols)
            reach = h[max(0, b0 + reach_r[0]) : b1 + reach_r[1], max(0, c0 + reach_c[0]) : c1 + reach_c[1]]
            span = float(reach.max()) - float(h[b0:b1, c0:c1].min())
            out = shadow[b0 - first : b1 - first]
            for dr, dc, distance_rise in offsets:
                if distance_rise >= span:
                    break
                lo, hi = max(b0, -dr), min(b1, rows_e - dr)
                cl, ch = max(c0, -dc), min(c1, cols - dc)
                if lo >= hi or cl >= ch:
                    continue
                lv, ab = level[: hi - lo, : ch - cl], above[: hi - lo, : ch - cl]
                np.add(h[lo:hi, cl:ch], np.float32(distance_rise), out=lv)  # h + rise, in float32 as the renderer
                np.greater(h[lo + dr : hi + dr, cl + dc : ch + dc], lv, out=ab)
                target = out[lo - b0 : hi - b0, cl:ch]
                np.logical_or(target, ab, out=target)
    return shadow


def shadow_steps(relief: float, scale_m: float, incidence_deg: float) -> int:
    """Pixels the shadow ray march walks: the longest shadow ``relief / tan(elevation)`` in pixels, plus one."""
    tan_el = math.tan(math.radians(90.0 - incidence_deg))
    return math.ceil(max(relief, 0.0) / (scale_m * tan_el)) + 1 if tan_el > 0 else 0
