"""Terrain-consistency score and combined rank of ice candidates.

Score in [0, 1]: the mean of the available terms, each a fraction in [0, 1]:

- ``poleward_fraction``: share of the patch on poleward-facing slopes (remnant ice survives where insolation is low);
- ``shade`` = max(sunward_shade_fraction, shadow_fraction): the patch lies in, or just poleward of, DTM shade;
- ``image_shadow_fraction`` (when the image was given), capped at 1 after doubling: a boulder shadow in the image
  right on the sunward side of the patch is the paper's own signature; DTMs do not resolve boulders.

Combined rank value = CNN probability × plausibility, with plausibility = 0.2 + 0.8 × score. The floor of 0.2
keeps a strong CNN detection from vanishing because the DTM cannot see its shadowing boulder; a sunlit,
equator-facing bright patch with no shade anywhere (the paper's bright-dust false positive) keeps only 20% of its
probability. The CNN probability itself is never changed.
"""

from __future__ import annotations

import math

from marsice_plugin.terrain.zonal import ZonalAttributes

PLAUSIBILITY_FLOOR = 0.2


def terrain_score(attrs: ZonalAttributes) -> float:
    """Terrain consistency in [0, 1] (see module docstring); NaN terms are left out, no term gives 0.5."""
    terms = [attrs.poleward_fraction, max(attrs.sunward_shade_fraction, attrs.shadow_fraction)]
    if not math.isnan(attrs.image_shadow_fraction):
        terms.append(min(1.0, 2.0 * attrs.image_shadow_fraction))
    terms = [t for t in terms if not math.isnan(t)]
    if not terms:
        return 0.5
    return float(min(1.0, max(0.0, sum(terms) / len(terms))))


def combined_rank_value(probability: float, score: float) -> float:
    """CNN probability × (floor + (1 − floor) × score): the value to sort candidates by, descending."""
    return float(probability * (PLAUSIBILITY_FLOOR + (1.0 - PLAUSIBILITY_FLOOR) * score))
