"""Image-to-DTM co-registration by phase correlation against the hillshade rendered for the image's sun.

HiRISE RDRs are not controlled to their DTMs; offsets of a few metres are common, which at 0.25-0.5 m/px is enough
to put a slope's shadow on the wrong side of a patch. The DTM's hillshade for the image's own sun (Lambert term
plus cast shadows, the same physics that made the image) looks like the image at DTM resolution, so the
normalised cross-power spectrum of the two peaks at their offset.

Quality figure: ``peak_ratio`` = highest correlation peak / highest value outside a 5-px neighbourhood of it. A
true match stands far above the rest (ratios of 3 and more); uncorrelated inputs give ratios near 1, and we then
refuse to claim alignment (``aligned`` is False and the offset must not be applied).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..synthetic.illumination import cast_shadows, lambert

MIN_PEAK_RATIO = 2.0
MAX_FFT_SIZE = 2048


@dataclass(frozen=True)
class Coregistration:
    """Offset of the image relative to the DTM grid, in image pixels (rows southward, columns eastward)."""

    d_row: float
    d_col: float
    peak_ratio: float
    aligned: bool


def hillshade(height: np.ndarray, scale_m: float, azimuth_deg: float, incidence_deg: float) -> np.ndarray:
    """Lambert shading with cast shadows for the given sun; NaN heights are filled with the mean first."""
    h = np.where(np.isfinite(height), height, np.nanmean(height)).astype(np.float64)
    shade = lambert(h, scale_m, azimuth_deg, incidence_deg)
    return np.where(cast_shadows(h, scale_m, azimuth_deg, incidence_deg), 0.0, shade)


def _prepare(a: np.ndarray, factor: int) -> np.ndarray:
    a = np.where(np.isfinite(a), a, np.nan).astype(np.float64)
    if factor > 1:
        r, c = (a.shape[0] // factor) * factor, (a.shape[1] // factor) * factor
        a = np.nanmean(a[:r, :c].reshape(r // factor, factor, c // factor, factor), axis=(1, 3))
    a = np.where(np.isfinite(a), a, np.nanmean(a))
    a = (a - a.mean()) / (a.std() or 1.0)
    window = np.outer(np.hanning(a.shape[0]), np.hanning(a.shape[1]))
    return a * window


def phase_correlate(image: np.ndarray, reference: np.ndarray, min_peak_ratio: float = MIN_PEAK_RATIO) -> Coregistration:
    """Offset of ``image`` relative to ``reference`` (same shape): image[r, c] ≈ reference[r - d_row, c - d_col].

    Large grids are block-averaged so the FFT side stays within ``MAX_FFT_SIZE`` (offsets are scaled back; their
    precision is then the averaging factor). The sub-pixel part comes from a parabola through the peak.
    """
    if image.shape != reference.shape:
        raise ValueError(f"image {image.shape} and reference {reference.shape} differ in shape")
    factor = max(1, math.ceil(max(image.shape) / MAX_FFT_SIZE))
    a, b = _prepare(image, factor), _prepare(reference, factor)
    cross = np.fft.fft2(a) * np.conj(np.fft.fft2(b))
    corr = np.real(np.fft.ifft2(cross / (np.abs(cross) + 1e-12)))
    pr, pc = np.unravel_index(int(np.argmax(corr)), corr.shape)
    peak = corr[pr, pc]
    masked = corr.copy()
    rr = (np.arange(corr.shape[0]) - pr + corr.shape[0] // 2) % corr.shape[0] - corr.shape[0] // 2
    cc = (np.arange(corr.shape[1]) - pc + corr.shape[1] // 2) % corr.shape[1] - corr.shape[1] // 2
    masked[np.ix_(np.abs(rr) <= 5, np.abs(cc) <= 5)] = -np.inf
    ratio = float(peak / max(masked.max(), 1e-12))

    def sub(vm: float, v0: float, vp: float) -> float:
        den = vm - 2 * v0 + vp
        return 0.0 if den >= 0 else 0.5 * (vm - vp) / den

    n_r, n_c = corr.shape
    dr = pr + sub(corr[(pr - 1) % n_r, pc], peak, corr[(pr + 1) % n_r, pc])
    dc = pc + sub(corr[pr, (pc - 1) % n_c], peak, corr[pr, (pc + 1) % n_c])
    dr = dr - n_r if dr > n_r / 2 else dr
    dc = dc - n_c if dc > n_c / 2 else dc
    return Coregistration(float(dr * factor), float(dc * factor), ratio, ratio >= min_peak_ratio)
