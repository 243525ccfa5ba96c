"""Zonal terrain attributes of one candidate patch, given as a boolean pixel mask on the terrain grid.

The DTM-derived figures take the patch rasterised on the terrain grid (the DTM's own posts); the dark-pixel figure
takes it on the image grid, since it is about image pixels (:func:`image_shadow_fraction`).

The paper's ice patch lies on the poleward side of a shadowing landform and casts no shadow itself. On the image
grid the shadowing landform sits on the patch's *sunward* side (its shadow falls toward the patch, away from the
sun, and at the band's latitudes the sun stands equatorward, so sunward is equatorward of the patch). We therefore
look at a ring of pixels reached by stepping from the patch toward the sun: shadow there (from the DTM) or dark
pixels there (from the image, since DTMs at 1-2 m/px do not resolve the boulders) support the ice reading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ZonalAttributes:
    """Terrain figures of one patch; NaN where the patch has no valid DTM pixel."""

    mean_slope: float
    max_slope: float
    mean_aspect: float
    poleward_fraction: float
    shadow_fraction: float
    sunward_shade_fraction: float
    image_shadow_fraction: float
    elevation: float


def sunward_ring(mask: np.ndarray, azimuth_deg: float, distance_px: int) -> np.ndarray:
    """Pixels within ``distance_px`` of the patch toward the sun, outside the patch itself."""
    d_row, d_col = -math.cos(math.radians(azimuth_deg)), math.sin(math.radians(azimuth_deg))
    rows, cols = mask.shape
    ring = np.zeros_like(mask, dtype=bool)
    for k in range(1, distance_px + 1):
        dr, dc = round(k * d_row), round(k * d_col)
        # ring[r + dr, c + dc] |= mask[r, c]
        src_r = slice(max(-dr, 0), rows + min(-dr, 0))
        dst_r = slice(max(dr, 0), rows + min(dr, 0))
        src_c = slice(max(-dc, 0), cols + min(-dc, 0))
        dst_c = slice(max(dc, 0), cols + min(dc, 0))
        ring[dst_r, dst_c] |= mask[src_r, src_c]
    return ring & ~mask


def circular_mean_deg(angles_deg: np.ndarray) -> float:
    """Circular mean in degrees 0..360 (an arithmetic mean of 350° and 10° would say 180°); NaN if empty."""
    a = np.radians(angles_deg[np.isfinite(angles_deg)])
    if a.size == 0:
        return float("nan")
    return float(np.degrees(np.arctan2(np.sin(a).mean(), np.cos(a).mean())) % 360.0)


def image_shadow_fraction(
    mask: np.ndarray,
    image: np.ndarray,
    azimuth_deg: float,
    ring_px: int,
    image_median: float | None = None,
    dark_fraction_of_median: float = 0.6,
) -> float:
    """Fraction of the sunward ring of ``mask`` (both on the image grid) darker than ``dark_fraction_of_median``
    times the image's median (``image_median``; the window's own when not given); NaN without a ring."""
    ring = sunward_ring(mask.astype(bool), azimuth_deg, ring_px)
    return _dark_share(ring, image, image_median, dark_fraction_of_median)


def _dark_share(ring: np.ndarray, image: np.ndarray, image_median: float | None, dark_fraction: float) -> float:
    if not ring.any():
        return float("nan")
    img = image.astype(np.float64)
    median = float(np.nanmedian(img)) if image_median is None else image_median
    return float(np.mean(img[ring] < dark_fraction * median))


def _mean(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else float("nan")


def zonal_attributes(
    mask: np.ndarray,
    *,
    slope: np.ndarray,
    aspect: np.ndarray,
    poleward: np.ndarray,
    shadow: np.ndarray,
    height: np.ndarray,
    azimuth_deg: float,
    ring_px: int,
    image: np.ndarray | None = None,
    dark_fraction_of_median: float = 0.6,
    image_median: float | None = None,
) -> ZonalAttributes:
    """Attributes of the patch ``mask``; all rasters share the image grid.

    ``image_shadow_fraction`` is the fraction of the sunward ring darker than ``dark_fraction_of_median`` times the
    image's median (shadows on Mars are far darker than sunlit regolith); NaN without an image. The rasters may be a
    window around the patch (with ``ring_px`` pixels to spare on each side, or up to the image's edge): the image's
    median is then given as ``image_median``, since the window's own median is not the image's.
    """
    mask = mask.astype(bool)
    if not mask.any():
        raise ValueError("empty patch mask")
    ring = sunward_ring(mask, azimuth_deg, ring_px)
    patch_slope = slope[mask]
    valid = np.isfinite(patch_slope)
    image_frac = float("nan")
    if image is not None:  # the ring above, not a second one
        image_frac = _dark_share(ring, image, image_median, dark_fraction_of_median)
    return ZonalAttributes(
        mean_slope=_mean(patch_slope),
        max_slope=float(patch_slope[valid].max()) if valid.any() else float("nan"),
        mean_aspect=circular_mean_deg(aspect[mask]),
        poleward_fraction=float(np.mean(poleward[mask])),
        shadow_fraction=float(np.mean(shadow[mask])),
        sunward_shade_fraction=float(np.mean(shadow[ring])) if ring.any() else 0.0,
        image_shadow_fraction=image_frac,
        elevation=_mean(height[mask]),
    )
