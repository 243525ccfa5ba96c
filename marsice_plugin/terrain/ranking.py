"""Terrain-consistency score and combined rank of ice candidates.

Each term is a fraction in [0, 1] (NaN when it cannot be computed), from one patch's zonal attributes:

- ``poleward``: share of the patch on poleward-facing slopes (remnant ice survives where insolation is low);
- ``shade`` = max(sunward_shade_fraction, shadow_fraction): the patch lies in, or just poleward of, DTM shade;
- ``image_shadow`` (when the image was given), capped at 1 after doubling: a boulder shadow in the image right on
  the sunward side of the patch is the paper's own signature; DTMs do not resolve boulders.

``terrain_score`` is the mean of every term: a figure to inspect and filter by. Only :data:`KEPT_TERMS` enter the
rank, those a rule fixed before measuring kept on tuning products (``bench/rank_terms.py``; README, *Ranking*): a
term is removed unless removing it lowers the average precision of ``rank`` by at least 0.01; the floor and the
equal weights are not fitted. Measured on 16 tuning products with DTMs, every term lowered it (the second stage's
probability alone: 0.947; with all three terms: 0.798), so none is kept and ``rank`` stays the probability.

Combined rank value = probability × plausibility, with plausibility = 0.2 + 0.8 × the mean of the kept terms, or
the probability itself with none kept (:func:`terrain_rank`). The probability is the second stage's
(``probability``, from the candidate's full-resolution crop); rows written before the second stage existed have only
the first stage's ``max_probability``, which then stands in (:func:`rank_probability`). The floor of 0.2 keeps a
strong detection from vanishing because the DTM cannot see its shadowing boulder.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from marsice_plugin.terrain.zonal import ZonalAttributes

PLAUSIBILITY_FLOOR = 0.2


def _poleward(attrs: ZonalAttributes) -> float:
    return attrs.poleward_fraction


def _shade(attrs: ZonalAttributes) -> float:
    return max(attrs.sunward_shade_fraction, attrs.shadow_fraction)


def _image_shadow(attrs: ZonalAttributes) -> float:
    if math.isnan(attrs.image_shadow_fraction):
        return float("nan")
    return min(1.0, 2.0 * attrs.image_shadow_fraction)


#: Every term measured, by name (README, *Ranking*): a fraction in [0, 1], or NaN where it has no value.
TERMS: dict[str, Callable[[ZonalAttributes], float]] = {
    "poleward": _poleward,
    "shade": _shade,
    "image_shadow": _image_shadow,
}

#: The terms the rule kept on the tuning products (``bench/rank_terms.py``); the others are not used in the rank.
#: Empty: on the tuning products every term lowered the average precision of ``rank`` (README, *Ranking*).
KEPT_TERMS: tuple[str, ...] = ()


def terrain_score(attrs: ZonalAttributes, terms: tuple[str, ...] = tuple(TERMS)) -> float:
    """Terrain consistency in [0, 1]: the mean of ``terms`` (NaN terms left out); 0.5 when none has a value."""
    values = [TERMS[name](attrs) for name in terms]
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return 0.5
    return float(min(1.0, max(0.0, sum(values) / len(values))))


def rank_probability(attrs: Mapping[str, Any]) -> float:
    """The probability a candidate row is ranked by: the second stage's, else (older rows) the first stage's."""
    probability = attrs.get("probability")
    if probability is None:
        probability = attrs.get("max_probability")
    return float(probability or 0.0)


def combined_rank_value(probability: float, score: float) -> float:
    """probability × (floor + (1 − floor) × score): the value to sort candidates by, descending."""
    return float(probability * (PLAUSIBILITY_FLOOR + (1.0 - PLAUSIBILITY_FLOOR) * score))


def terrain_rank(probability: float, attrs: ZonalAttributes, terms: tuple[str, ...] | None = None) -> float:
    """A scored patch's rank: :func:`combined_rank_value` of its score over ``terms`` (None: :data:`KEPT_TERMS`);
    with no term, ``probability``.

    Why the exception: with no term every score is 0.5, and 0.6 × probability would sink the patches a DTM covers
    below those it does not (which keep their probability) for no reason the terrain gave.
    """
    terms = KEPT_TERMS if terms is None else terms
    if not terms:
        return float(probability)
    return combined_rank_value(probability, terrain_score(attrs, terms))
