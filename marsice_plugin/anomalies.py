"""Isolated bright-pixel anomalies: find and repair them before the CNN sees a chunk.

The paper's main false positives (over 150 chunks in 5 of 38 images) were "absolute bright
pixels" from processing or transmission errors. They need not carry a special value, so besides
masking the label's special values MarsIce looks for pixels far above their 5×5 neighbourhood
median that form tiny connected groups (at most ``max_pixels``). A real ice patch is metres across:
at HiRISE scales (0.25-1 m/px) that is many pixels, and it is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RepairReport:
    """Counts of repaired pixels in one chunk, recorded per chunk in the outputs."""

    special_pixels: int
    outlier_pixels: int


def repair(
    data: np.ndarray,
    valid: np.ndarray,
    *,
    nodata: np.ndarray | None = None,
    max_pixels: int = 4,
    threshold_dn: float = 120.0,
    threshold_sigma: float = 8.0,
) -> tuple[np.ndarray, RepairReport]:
    """Return a copy of ``data`` with invalid pixels and isolated bright outliers replaced.

    Invalid (special-value) pixels that are not no-data take their neighbourhood median; an outlier
    is a pixel above ``median5x5 + max(threshold_dn, threshold_sigma * robust sigma)`` in a connected
    group of at most ``max_pixels``. No-data pixels are filled with the chunk's median so the CNN sees
    a neutral surface rather than black.
    """
    from scipy import ndimage

    out = data.astype(np.float32, copy=True)
    if nodata is None:
        nodata = np.zeros(data.shape, dtype=bool)
    fill = float(np.median(out[valid])) if valid.any() else 0.0
    special = ~valid & ~nodata
    out[~valid] = fill
    median = ndimage.median_filter(out, size=5, mode="reflect")
    residual = out - median
    ok = valid & (residual != 0)
    mad = float(np.median(np.abs(residual[ok]))) if ok.any() else 0.0
    limit = max(threshold_dn, threshold_sigma * 1.4826 * mad)
    candidates = (residual > limit) & valid
    outliers = np.zeros_like(candidates)
    if candidates.any():
        labels, count = ndimage.label(candidates, structure=np.ones((3, 3), dtype=bool))
        sizes = np.bincount(labels.ravel(), minlength=count + 1)
        small = sizes <= max_pixels
        small[0] = False
        outliers = small[labels]
    fix = special | outliers
    if fix.any():
        # the median of a neighbourhood that still contains outliers is robust to them (they are few)
        out[fix] = median[fix]
    return out, RepairReport(special_pixels=int(special.sum()), outlier_pixels=int(outliers.sum()))
