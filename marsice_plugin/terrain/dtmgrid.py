"""The grid ``marsice terrain`` computes and writes on: the DTM's own posts, clipped to the image, moved by the offset.

Why the DTM's grid and not the image's: every terrain raster (slope, aspect, poleward, shadow, height) is derived from
the DTM alone. On a 0.25 m image grid beside a 1 m DTM they were bilinear interpolations of 1 m information with 16x
the pixels, and writing five such rasters cost more than reading the image. On the DTM's grid the heights are the
posts themselves (no resampling at all), slopes are the DTM's own central differences, and a 1 Gpx product's rasters
are 62 Mpx each.

The co-registration offset (image pixels, :class:`~marsice_plugin.terrain.coregistration.Coregistration`) moves the
image relative to the DTM; it is applied as a shift of the grid's geotransform (the offset in map units, sub-pixel as
measured), so the posts keep their values and the rasters overlay the image where the image shows the terrain. The
grid holds every post whose (moved) cell touches the image's footprint, so it covers the whole image; posts outside the
DTM (a DTM over part of the image) are NaN. A DTM finer than the image keeps its own grid too: its information is
finer, and the cost scales with its posts (a 0.25 m DTM beside a 0.5 m image gives rasters 4x the image's pixels).

When the DTM's own lattice cannot be the grid (a DTM in another map projection than the image's label, a rotated
one, or posts that are not square), the grid is the image's CRS at the DTM's post spacing, anchored at the image's
upper-left corner, and the heights are resampled onto it bilinearly (GDAL's warper, as before): the rasters must be
in the product's CRS, the one its label gives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyproj

#: Tolerance (in posts) when a footprint edge falls on a post boundary: a float rounding must not add a post.
EDGE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class TerrainGrid:
    """Where the terrain rasters lie: ``height`` x ``width`` pixels of ``transform`` in ``crs`` (the product's).

    ``source`` is the same grid before the co-registration shift: the DTM is sampled there. ``own`` is True when
    the grid is the DTM's own lattice (heights are posts ``post_row + r``, ``post_col + c``, read without
    resampling); False when it is resampled (see the module's docstring).
    """

    crs: pyproj.CRS
    transform: Any
    source: Any
    width: int
    height: int
    scale_m: float
    own: bool
    post_row: int = 0
    post_col: int = 0

    def heights(self, dtm: Any, r0: int, r1: int) -> np.ndarray:
        """Rows ``r0 .. r1`` of the grid's heights (float32, NaN outside the DTM or in its gaps)."""
        from affine import Affine

        if not self.own:
            return dtm.on_grid(self.crs, self.source @ Affine.translation(0, r0), r1 - r0, self.width)
        return dtm.posts(self.post_row + r0, self.post_row + r1, self.post_col, self.post_col + self.width)


def offset_in_map_units(image_transform: Any, d_row: float, d_col: float) -> tuple[float, float]:
    """The co-registration offset (image pixels: rows southward, columns eastward) as a map-unit shift (dx, dy)."""
    t = image_transform
    return t.a * d_col + t.b * d_row, t.d * d_col + t.e * d_row


def _own_lattice(dtm: Any, crs: pyproj.CRS) -> bool:
    """True when the DTM's posts can be the grid itself: same CRS as the image, north-up, square posts."""
    t = dtm.transform
    if dtm.crs is None or not dtm.crs.equals(crs):
        return False
    return t.b == 0 and t.d == 0 and t.a > 0 and t.e < 0 and math.isclose(t.a, -t.e, rel_tol=1e-9)


def terrain_grid(dtm: Any, product: Any, d_row: float = 0.0, d_col: float = 0.0) -> TerrainGrid:
    """The grid of ``product``'s terrain rasters from ``dtm`` (an open :class:`~marsice_plugin.terrain.dem.DtmSource`)
    moved by the co-registration offset ``(d_row, d_col)`` (image pixels; zero when none is applied)."""
    from affine import Affine

    dx, dy = offset_in_map_units(product.transform, d_row, d_col)
    shift = Affine.translation(dx, dy)
    corners = [product.transform @ (c, r) for c in (0, product.width) for r in (0, product.height)]
    # the image's footprint where the DTM (before the shift) is: posts there land on the image after it
    left, right = min(x for x, _ in corners) - dx, max(x for x, _ in corners) - dx
    bottom, top = min(y for _, y in corners) - dy, max(y for _, y in corners) - dy
    if _own_lattice(dtm, product.crs):
        t = dtm.transform
        c0 = math.floor((left - t.c) / t.a + EDGE_TOLERANCE)
        c1 = math.ceil((right - t.c) / t.a - EDGE_TOLERANCE)
        r0 = math.floor((top - t.f) / t.e + EDGE_TOLERANCE)
        r1 = math.ceil((bottom - t.f) / t.e - EDGE_TOLERANCE)
        source = t @ Affine.translation(c0, r0)
        return TerrainGrid(product.crs, shift @ source, source, c1 - c0, r1 - r0, float(t.a), True, r0, c0)
    spacing = math.sqrt(abs(dtm.transform.a * dtm.transform.e - dtm.transform.b * dtm.transform.d))
    spacing = _spacing_in(dtm, product.crs, spacing)
    width = max(1, math.ceil((right - left) / spacing - EDGE_TOLERANCE))
    height = max(1, math.ceil((top - bottom) / spacing - EDGE_TOLERANCE))
    source = Affine(spacing, 0.0, left, 0.0, -spacing, top)
    return TerrainGrid(product.crs, shift @ source, source, width, height, spacing, False)


def _spacing_in(dtm: Any, crs: pyproj.CRS, spacing: float) -> float:
    """The DTM's post spacing measured in ``crs`` (the image's map units) at the DTM's centre."""
    if dtm.crs is None or dtm.crs.equals(crs):
        return spacing
    rows, cols = dtm.shape
    to_image = pyproj.Transformer.from_crs(dtm.crs, crs, always_xy=True)
    x0, y0 = to_image.transform(*(dtm.transform @ (cols / 2, rows / 2)))
    x1, y1 = to_image.transform(*(dtm.transform @ (cols / 2 + 1, rows / 2)))
    measured = math.hypot(x1 - x0, y1 - y0)
    return measured if math.isfinite(measured) and measured > 0 else spacing
