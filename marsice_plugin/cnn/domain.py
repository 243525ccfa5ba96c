"""How far a product's pixels lie from what the model was trained on: a cheap domain check beside every score.

The shipped models learned from generated scenes only, and a network answers with confidence on anything, so a
score means little on pixels unlike its training (issue 21: real ice-free HiRISE tiles flagged 83 % of the time).
This check does not say whether the scores are right; it says when they have no footing, so a geologist knows when
not to trust them.

**What is measured.** Seven statistics of each scored chunk's model input (the normalised, reduced array the network
sees, values 0..1): ``mean`` (brightness), ``spread`` (standard deviation: contrast), ``dark`` and ``bright`` (the
fractions of pixels within :data:`NEAR` of 0 and of 1: crushed shadows, clipped highlights), ``texture`` (the mean
absolute difference between neighbouring pixels: noise and fine relief), ``correlation`` (between neighbouring
pixels: near 0 for noise without a surface, 0.37-0.98 over training chunks) and ``roughness`` (the mean absolute
difference at a lag of 4 pixels over that at 1: 1 for white noise, 4 for a smooth ramp, 1.1-2.0 over training
chunks; the last two measured on 40 level-0 training chunks). The model card holds the same statistics
over generated training chunks of the model's kind (its input size, read level and strip-edge bands), as the
0.5th, 50th and 99.5th percentiles (``domain_reference``, written by ``bench/domain_reference.py --write-card``).

**The distance.** A chunk's distance in one statistic is how far it lies from the training median in units of the
training half-range on its side (median to the 0.5th or to the 99.5th percentile; a floor keeps a half-range that is
almost zero, e.g. the dark fraction, from calling a trace of shadow far away): 1 is the edge of the central 99 % of
training chunks. A chunk's distance is its largest one; a product's ``domain_distance`` is the median over its scored
chunks (a few odd chunks do not move it, a product of a kind the model never saw does). The product is
``in_domain`` when the distance is at most the card's ``threshold``, which the bench chose so that at least 99 % of
generated training-like products lie inside (its figures are in the card). A card without a reference gives NULL.

**The ground scale.** Pixel statistics cannot see the scale: a 3 m/px browse image has the texture of a 0.5 m/px
product, but a 2 m patch there is under a pixel. Every shipped chunk model and the second stage were trained on
products of 0.25 and 0.5 m/px (the renderer's draws, the paper's RED products), so a product whose ground scale lies
outside :data:`TRAINING_SCALES_M` is outside the domain whatever its pixels, and its warning says why (a 1 m/px
binned RDR included: no model has seen one). Where the scale is unknown (no georeference), only the pixels count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Names of the statistics, in the order of :func:`input_statistics`.
STATISTICS = ("mean", "spread", "dark", "bright", "texture", "correlation", "roughness")
#: Pixels within this of 0 or 1 count as dark or bright.
NEAR = 0.05
#: Smallest half-range of each statistic (model-input units, fractions for dark/bright, correlation, ratio).
FLOORS = (0.02, 0.01, 0.01, 0.01, 0.002, 0.02, 0.05)
#: Ground scales (m/px) the shipped models were trained on, widened by a fifth on each side: the RDR scales 0.25 and
#: 0.5 m/px with their map-projection rounding inside, a 1 m/px binned product or a browse image outside.
TRAINING_SCALES_M = (0.2, 0.6)
#: Percentiles of the training statistics the card keeps: low edge, median, high edge.
REFERENCE_PERCENTILES = (0.5, 50.0, 99.5)


def _lag_difference(x: np.ndarray, lag: int) -> float:
    """Mean absolute difference between pixels ``lag`` apart, along rows and columns."""
    return 0.5 * (float(np.abs(x[lag:] - x[:-lag]).mean()) + float(np.abs(x[:, lag:] - x[:, :-lag]).mean()))


def input_statistics(x: np.ndarray) -> np.ndarray:
    """The statistics (:data:`STATISTICS`) of one model input ``x`` (2-D, values 0..1), as float64."""
    x = np.asarray(x, dtype=np.float32).reshape(x.shape[0], x.shape[1])
    mean, spread = float(x.mean()), float(x.std())
    texture = _lag_difference(x, 1)
    a = x - np.float32(mean)
    covariance = 0.5 * (float((a[1:] * a[:-1]).mean()) + float((a[:, 1:] * a[:, :-1]).mean()))
    correlation = covariance / spread**2 if spread > 1e-6 else 1.0
    roughness = _lag_difference(x, 4) / texture if texture > 1e-6 else 4.0  # a flat input: no texture at all
    dark, bright = float((x <= NEAR).mean()), float((x >= 1.0 - NEAR).mean())
    return np.array([mean, spread, dark, bright, texture, correlation, roughness])


@dataclass(frozen=True)
class DomainReference:
    """The training statistics of one model (from its card) and the threshold on :meth:`distance`."""

    low: np.ndarray
    median: np.ndarray
    high: np.ndarray
    threshold: float

    def chunk_distances(self, stats: np.ndarray) -> np.ndarray:
        """Per-statistic distances of chunks ``stats`` (N × 5) in training half-ranges (module docstring)."""
        stats = np.atleast_2d(stats)
        floors = np.asarray(FLOORS)
        above = (stats - self.median) / np.maximum(self.high - self.median, floors)
        below = (self.median - stats) / np.maximum(self.median - self.low, floors)
        return np.where(stats >= self.median, above, below)

    def to_card(self, **figures: Any) -> dict[str, Any]:
        """The card's ``domain_reference`` entry, with the bench's ``figures`` (how it was measured)."""
        by_name = {
            name: {"p0_5": float(lo), "median": float(mid), "p99_5": float(hi)}
            for name, lo, mid, hi in zip(STATISTICS, self.low, self.median, self.high, strict=True)
        }
        return {"statistics": by_name, "threshold": self.threshold, **figures}

    @classmethod
    def from_card(cls, entry: dict[str, Any]) -> DomainReference:
        stats = entry["statistics"]
        low, mid, high = (np.array([float(stats[n][k]) for n in STATISTICS]) for k in ("p0_5", "median", "p99_5"))
        return cls(low, mid, high, float(entry["threshold"]))


def reference_from(stats: np.ndarray, threshold: float = float("inf")) -> DomainReference:
    """A reference from training chunks' statistics (N × 5)."""
    low, mid, high = np.percentile(stats, REFERENCE_PERCENTILES, axis=0)
    return DomainReference(low, mid, high, threshold)


def load_reference(model_path: str | Path | None) -> DomainReference | None:
    """The ``domain_reference`` of a model's card, None when the card (or the entry) is absent or unreadable."""
    from ..model_registry import card_path

    if not model_path:
        return None
    path = card_path(model_path)
    try:
        entry = json.loads(path.read_text()).get("domain_reference")
        return DomainReference.from_card(entry) if entry else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


@dataclass(frozen=True)
class DomainCheck:
    """A product's domain distance, whether it is inside, and the statistic that lies furthest out."""

    distance: float
    inside: bool
    threshold: float
    furthest: str
    statistics: dict[str, float]
    #: the product's ground scale (m/px; None: unknown) and whether it lies in :data:`TRAINING_SCALES_M`
    scale_m: float | None = None
    scale_inside: bool = True

    def warning(self, product_id: str) -> str:
        """The log line for a product outside the domain: what to make of its scores."""
        reasons = []
        if self.distance > self.threshold:
            reasons.append(
                f"its pixels lie outside what the model was trained on (domain distance {self.distance:.2f} > "
                f"{self.threshold:.2f}, furthest in {self.furthest}: {self.statistics[self.furthest]:.3f})"
            )
        if not self.scale_inside:
            lo, hi = TRAINING_SCALES_M
            reasons.append(
                f"its ground scale of {self.scale_m:.2f} m/px lies outside the {lo}-{hi} m/px the models were "
                "trained on (a patch of a few metres spans another number of pixels than they learned)"
            )
        return f"{product_id}: {'; '.join(reasons)}; its scores have no footing, do not trust them"


def check(
    stats: list[np.ndarray], reference: DomainReference | None, scale_m: float | None = None
) -> DomainCheck | None:
    """The domain check of a product from its scored chunks' statistics and its ground scale (module docstring).

    None without a reference or chunks.
    """
    if reference is None or not stats:
        return None
    table = np.stack(stats)
    per_stat = reference.chunk_distances(table)
    distance = float(np.median(per_stat.max(axis=1)))
    worst = int(np.argmax(np.median(per_stat, axis=0)))
    typical = np.median(table, axis=0)
    scale_inside = scale_m is None or TRAINING_SCALES_M[0] <= scale_m <= TRAINING_SCALES_M[1]
    return DomainCheck(
        distance,
        distance <= reference.threshold and scale_inside,
        reference.threshold,
        STATISTICS[worst],
        {name: float(v) for name, v in zip(STATISTICS, typical, strict=True)},
        scale_m,
        scale_inside,
    )
