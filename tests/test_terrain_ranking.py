"""Zonal attributes on known polygons and the ranking of an ice patch against a sunlit bright-dust decoy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from marsice_plugin.synthetic.illumination import cast_shadows, lambert
from marsice_plugin.terrain.derivatives import aspect_degrees, poleward_facing, shadow_mask, slope_degrees
from marsice_plugin.terrain.ranking import (
    KEPT_TERMS,
    TERMS,
    combined_rank_value,
    rank_probability,
    terrain_rank,
    terrain_score,
)
from marsice_plugin.terrain.zonal import ZonalAttributes, circular_mean_deg, sunward_ring, zonal_attributes

#: The zonal attributes each term reads (README *Ranking*).
TERM_ATTRIBUTES = {
    "poleward": ("poleward_fraction",),
    "shade": ("sunward_shade_fraction", "shadow_fraction"),
    "image_shadow": ("image_shadow_fraction",),
}


def _attrs(**values: float) -> ZonalAttributes:
    base = dict(mean_slope=12.0, max_slope=20.0, mean_aspect=170.0, poleward_fraction=0.5, shadow_fraction=0.75)
    base.update(sunward_shade_fraction=0.25, image_shadow_fraction=0.2, elevation=-3000.0)
    return ZonalAttributes(**{**base, **values})


def test_zonal_on_south_facing_plane() -> None:
    rows, _ = np.mgrid[0:50, 0:50].astype(np.float64)
    h = 100.0 + rows * math.tan(math.radians(10.0))  # rises southward... so it faces north
    h = h[::-1].copy()  # now falls southward: faces south, poleward at -50°
    slope, aspect = slope_degrees(h, 1.0), aspect_degrees(h, 1.0)
    mask = np.zeros_like(h, dtype=bool)
    mask[20:30, 20:30] = True
    shadow = np.zeros_like(mask)
    shadow[10:20, 20:30] = True  # shade just north of the patch: the sunward side for a northern sun
    attrs = zonal_attributes(
        mask,
        slope=slope,
        aspect=aspect,
        poleward=poleward_facing(aspect, -50.0),
        shadow=shadow,
        height=h,
        azimuth_deg=0.0,
        ring_px=5,
    )
    assert abs(attrs.mean_slope - 10.0) < 1e-3 and abs(attrs.max_slope - 10.0) < 1e-3
    assert abs(attrs.mean_aspect - 180.0) < 1e-3
    assert attrs.poleward_fraction == 1.0
    assert attrs.shadow_fraction == 0.0
    assert attrs.sunward_shade_fraction == 1.0
    assert abs(attrs.elevation - float(h[20:30, 20:30].mean())) < 1e-9
    assert math.isnan(attrs.image_shadow_fraction)


def test_sunward_ring_and_circular_mean() -> None:
    mask = np.zeros((20, 20), dtype=bool)
    mask[10, 10] = True
    ring = sunward_ring(mask, 90.0, 3)  # sun in the east
    assert np.flatnonzero(ring).tolist() == [10 * 20 + 11, 10 * 20 + 12, 10 * 20 + 13]
    assert (
        abs(circular_mean_deg(np.array([350.0, 10.0])) - 0.0) < 1e-9
        or abs(circular_mean_deg(np.array([350.0, 10.0])) - 360.0) < 1e-9
    )


def test_ranking_puts_shaded_poleward_ice_above_sunlit_dust() -> None:
    n, scale = 200, 1.0
    rows, cols = np.mgrid[0:n, 0:n].astype(np.float64)
    h = 30.0 * np.exp(-((rows - 100) ** 2 + (cols - 100) ** 2) / (2 * 20.0**2))  # a 30 m knob
    az, inc, lat = 300.0, 70.0, -55.0  # a band-typical sun from the north-west
    slope, aspect = slope_degrees(h, scale), aspect_degrees(h, scale)
    shade = shadow_mask(h, scale, az, inc)
    image = lambert(h, scale, az, inc) * ~cast_shadows(h, scale, az, inc) + 0.05
    d_row, d_col = -math.cos(math.radians(az)), math.sin(math.radians(az))
    ice = np.zeros((n, n), dtype=bool)
    r, c = round(100 - 40 * d_row), round(100 - 40 * d_col)  # behind the knob, away from the sun
    ice[r - 4 : r + 4, c - 4 : c + 4] = True
    dust = np.zeros((n, n), dtype=bool)
    r, c = round(100 + 25 * d_row), round(100 + 25 * d_col)  # on the sunlit, sun-facing flank
    dust[r - 4 : r + 4, c - 4 : c + 4] = True
    common = dict(slope=slope, aspect=aspect, poleward=poleward_facing(aspect, lat), shadow=shade, height=h)
    a_ice = zonal_attributes(ice, **common, azimuth_deg=az, ring_px=10, image=image)
    a_dust = zonal_attributes(dust, **common, azimuth_deg=az, ring_px=10, image=image)
    s_ice, s_dust = terrain_score(a_ice, tuple(TERMS)), terrain_score(a_dust, tuple(TERMS))  # every term measured
    assert a_ice.poleward_fraction == 1.0 and a_dust.poleward_fraction == 0.0
    assert a_ice.shadow_fraction > 0.5 and a_dust.shadow_fraction == 0.0
    assert s_ice > 0.6 and s_dust < 0.1
    p = 0.8
    assert combined_rank_value(p, s_ice) > combined_rank_value(p, s_dust)
    assert combined_rank_value(p, 0.0) == p * 0.2 and combined_rank_value(p, 1.0) == p


def test_rank_is_the_documented_formula_of_the_kept_terms() -> None:
    a = _attrs()  # terms: poleward 0.5, shade max(0.25, 0.75) = 0.75, image_shadow min(1, 2 x 0.2) = 0.4
    term_values = {"poleward": 0.5, "shade": 0.75, "image_shadow": 0.4}
    assert {name: term(a) for name, term in TERMS.items()} == pytest.approx(term_values, abs=1e-15)
    assert terrain_score(a, tuple(TERMS)) == pytest.approx(1.65 / 3, abs=1e-15)
    p = 0.9
    if KEPT_TERMS:
        score = sum(term_values[t] for t in KEPT_TERMS) / len(KEPT_TERMS)
        assert terrain_rank(p, a) == pytest.approx(p * (0.2 + 0.8 * score), abs=1e-15)
    else:
        assert terrain_rank(p, a) == p  # no term kept: rank stays the probability
    assert terrain_rank(p, a, ("poleward",)) == pytest.approx(p * (0.2 + 0.8 * 0.5), abs=1e-15)
    assert terrain_rank(p, a, ()) == p
    # a term without a value (no image given) is left out, not counted as 0
    no_image = _attrs(image_shadow_fraction=math.nan, poleward_fraction=0.25)
    assert terrain_score(no_image, ("poleward", "image_shadow")) == 0.25
    assert terrain_score(no_image, ("image_shadow",)) == 0.5  # no term with a value: neutral


def test_older_rows_without_probability_rank_by_max_probability() -> None:
    assert rank_probability({"probability": 0.93, "max_probability": 0.4}) == 0.93
    assert rank_probability({"probability": None, "max_probability": 0.4}) == 0.4
    assert rank_probability({"max_probability": 0.4}) == 0.4  # a file written before the second stage
    assert rank_probability({"probability": 0.0, "max_probability": 0.4}) == 0.0  # a real 0 is not missing
    assert rank_probability({"max_probability": None}) == 0.0


def test_terms_the_rule_removed_are_not_used() -> None:
    assert set(TERM_ATTRIBUTES) == set(TERMS) and set(KEPT_TERMS) <= set(TERMS)
    low = {name: 0.0 for names in TERM_ATTRIBUTES.values() for name in names}
    for term, names in TERM_ATTRIBUTES.items():
        base, changed = _attrs(**low), _attrs(**{**low, **dict.fromkeys(names, 1.0)})
        assert terrain_score(changed) > terrain_score(base)  # terrain_score shows every term
        if term in KEPT_TERMS:  # a kept term moves the rank
            assert terrain_rank(0.8, changed) > terrain_rank(0.8, base)
        else:  # a removed one changes nothing
            assert terrain_rank(0.8, changed) == terrain_rank(0.8, base)
    if not KEPT_TERMS:  # none kept: the rank is the probability, whatever the terrain says
        assert terrain_rank(0.8, _attrs(**low)) == terrain_rank(0.8, _attrs()) == 0.8


def test_the_rule_keeps_a_term_that_helps_and_removes_those_that_do_not() -> None:
    """bench/rank_terms.py's backward elimination on hand-made candidates whose truth each term predicts or not."""
    from bench.rank_terms import ATTRIBUTES, apply_rule, rank_values

    def record(on_ice: bool, probability: float) -> dict:
        terrain = dict.fromkeys(ATTRIBUTES, 0.0)
        # poleward tells ice from the rest, shade says the opposite, image shadow has no value (no image given)
        terrain.update(poleward_fraction=float(on_ice), sunward_shade_fraction=float(not on_ice))
        terrain.update(shadow_fraction=0.0, image_shadow_fraction=None)
        return {"on_ice": on_ice, "probability": probability, "terrain": terrain}

    records = [record(True, 0.6) for _ in range(3)] + [record(False, 0.7) for _ in range(5)]
    records.append({"on_ice": False, "probability": 0.65, "terrain": None})  # outside the DTM: keeps its probability
    on_ice = np.array([r["on_ice"] for r in records])
    kept, steps = apply_rule(records, on_ice)
    assert kept == ("poleward",)
    assert [s.split("-> ")[1] for s in steps] == [
        "remove shade",
        "remove image_shadow",
        "stop: every removal costs >= 0.01",
    ]
    ranks = rank_values(records, kept)
    assert ranks[:3].tolist() == [0.6, 0.6, 0.6] and ranks[3:8] == pytest.approx([0.7 * 0.2] * 5)
    assert ranks[8] == 0.65
    assert rank_values(records, ()).tolist() == [r["probability"] for r in records]  # no term: the probability
