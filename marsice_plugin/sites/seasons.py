"""Season context: dusty periods and low-contrast products, so that absence is not read as melt.

A patch that is not seen in an image taken during a global dust storm, or in a hazy, flat image, may simply be
hidden. Observations in such conditions carry a flag, and a "disappeared" transition on them carries a caveat.

Dusty periods (:data:`DUST_PERIODS`), Ls in degrees:

* MY 25 planet-encircling storm, Ls ~177-~260: onset in Hellas at Ls 177 (Cantor 2007, Icarus 186, 60-96,
  "MOC observations of the 2001 Mars planet-encircling dust storm"), opacity back near normal by Ls ~260 (Smith 2004,
  Icarus 167, 148-165). Before HiRISE; kept for completeness.
* MY 28 global storm, Ls ~262-~310 (Smith 2009, JGR 114, E00D03; Wang & Richardson 2015, Icarus 251, 112-127).
* MY 34 global storm (2018), onset near Ls 186, inside the paper's Ls 140-200 window, decaying by Ls ~250
  (Guzewich et al. 2019, GRL 46, 71-79; Montabone et al. 2020, JGR Planets 125, e2019JE006111).
* Every year, the regional storm seasons of Kass et al. (2016, GRL 43, 6111-6118): "A" storms Ls ~210-245,
  "B" storms Ls ~250-310, "C" storms Ls ~305-340. They are flagged with level ``regional`` and do not set
  ``dusty``: they are local and not every year's are large, but the note is kept on the observation.

The bounds are rounded to whole degrees of Ls and are deliberately generous; they are a warning, not a model.

Low contrast: a product is flagged when its sun is low (incidence >= :data:`LOW_SUN_INCIDENCE`, where the image
signal is weak and shadows hide the ground) or when its relative contrast, (95th - 5th percentile) / median of
the valid radiance factor measured on a reduced read through the JPEG2000 levels, is below
:data:`LOW_CONTRAST`: a hazy or flat image in which a bright patch could be lost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..catalogue.mars_time import ls_in_range


@dataclass(frozen=True)
class DustPeriod:
    """A period when dust may hide the ground: Mars Year (None: every year), Ls range, level and source."""

    mars_year: int | None
    ls_start: float
    ls_end: float
    name: str
    level: str  # "global" or "regional"
    source: str


DUST_PERIODS: tuple[DustPeriod, ...] = (
    DustPeriod(25, 177.0, 260.0, "MY 25 planet-encircling dust storm", "global", "Cantor 2007; Smith 2004"),
    DustPeriod(28, 262.0, 310.0, "MY 28 global dust storm", "global", "Smith 2009; Wang & Richardson 2015"),
    DustPeriod(34, 186.0, 250.0, "MY 34 global dust storm", "global", "Guzewich et al. 2019; Montabone et al. 2020"),
    DustPeriod(None, 210.0, 245.0, "regional A-storm season", "regional", "Kass et al. 2016"),
    DustPeriod(None, 250.0, 310.0, "regional B-storm season", "regional", "Kass et al. 2016"),
    DustPeriod(None, 305.0, 340.0, "regional C-storm season", "regional", "Kass et al. 2016"),
)

#: Incidence angle (degrees) at and above which an image counts as low-sun, low-contrast.
LOW_SUN_INCIDENCE = 80.0

#: Relative contrast ((p95 - p5) / median radiance factor) below which an image counts as low-contrast.
LOW_CONTRAST = 0.08


@dataclass(frozen=True)
class DustContext:
    """What the dust table says about one observation."""

    dusty: bool  # inside a global storm of its Mars Year
    periods: tuple[DustPeriod, ...]

    @property
    def note(self) -> str:
        return "; ".join(f"{p.name} (Ls {p.ls_start:.0f}-{p.ls_end:.0f}, {p.source})" for p in self.periods)


def dust_context(mars_year: int | None, ls: float | None) -> DustContext:
    """Dusty periods an observation falls in; a global storm needs a known Mars Year, regional seasons do not."""
    if ls is None or (isinstance(ls, float) and math.isnan(ls)):
        return DustContext(False, ())
    hits = tuple(
        p
        for p in DUST_PERIODS
        if (p.mars_year is None or p.mars_year == mars_year) and ls_in_range(ls, p.ls_start, p.ls_end)
    )
    return DustContext(any(p.level == "global" for p in hits), hits)


def relative_contrast(iof: np.ndarray) -> float | None:
    """(95th - 5th percentile) / median of the finite, positive values; None when too few or a zero median."""
    values = iof[np.isfinite(iof)]
    if values.size < 100:
        return None
    p5, p50, p95 = np.percentile(values, [5, 50, 95])
    if p50 <= 0:
        return None
    return float((p95 - p5) / p50)


def product_contrast(path: str | Path, max_side: int = 512) -> float | None:
    """Relative contrast of a product measured on a reduced read; None when the product cannot be opened.

    DNs are turned into radiance factor with the label's SCALING_FACTOR and OFFSET when it has them (the
    median of raw DNs depends on each product's own scaling); no-data and special values are left out.
    """
    from ..errors import MarsIceError
    from ..product import open_product

    path = Path(path)
    if not path.exists():
        return None
    try:
        with open_product(path) as product:
            factor = max(1, math.ceil(max(product.width, product.height) / max_side))
            h, w = max(1, product.height // factor), max(1, product.width // factor)
            data = product.read_reduced(h, w).astype(np.float64).mean(axis=0)
            invalid = data <= 0
            high = [v for v in product.special_values if v > 2]  # saturation codes (1022, 1023 in 10-bit RDRs)
            if high:
                invalid |= data >= min(high)
            label = product.label
            if label is not None and label.scaling_factor is not None and label.offset is not None:
                data = data * label.scaling_factor + label.offset
            data[invalid] = np.nan
            return relative_contrast(data)
    except (MarsIceError, OSError, ValueError):
        return None


def low_contrast(incidence: float | None, contrast: float | None) -> bool:
    """Low sun or a measured contrast below :data:`LOW_CONTRAST`."""
    if incidence is not None and incidence >= LOW_SUN_INCIDENCE:
        return True
    return contrast is not None and contrast < LOW_CONTRAST
