"""evaluate's polygon-level figures on a constructed case whose answers are known by hand."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import shapely
from affine import Affine

from marsice_plugin.patches.metrics import MIN_PATCH_M, RankingTally, average_precision, truth_patches


def test_average_precision_of_known_orderings():
    assert average_precision(np.array([4, 3, 2, 1]), np.array([1, 0, 1, 0])) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(np.array([1, 2, 3]), np.array([1, 0, 0])) == pytest.approx(1 / 3)
    assert np.isnan(average_precision(np.array([1.0]), np.array([0])))


def test_patches_under_2_m_do_not_count():
    ice = np.zeros((20, 20), bool)
    ice[1:7, 1:7] = True  # 36 px at 0.5 m = 9 m²: 3.4 m wide
    ice[10:12, 10:12] = True  # 1 m²: 1.1 m wide
    labels, counted = truth_patches(ice, 0.5)
    assert labels.max() == 2 and list(counted) == [True, False] and MIN_PATCH_M == 2.0


def test_precision_recall_and_average_precision_on_a_constructed_product():
    t = Affine(0.5, 0, 0.0, 0, -0.5, 20.0)  # 40 x 40 px at 0.5 m
    product = SimpleNamespace(transform=t, scale_m=0.5)
    ice = np.zeros((40, 40), bool)
    ice[2:8, 2:8] = True  # A: 9 m², counted
    ice[20:25, 20:25] = True  # C: 6.25 m², counted
    ice[35:37, 35:37] = True  # B: 1 m², too small to count

    def box(r0, c0, r1, c1):  # pixel rows/cols -> a polygon in map coordinates
        (x0, y0), (x1, y1) = t @ (c0, r0), t @ (c1, r1)
        return shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))

    def cand(geom, p, area, chunk):
        return SimpleNamespace(
            geometry=geom, probability=p, rank=p, area_m2=area, chunk_probability=chunk, max_probability=chunk
        )

    candidates = [
        cand(box(2, 2, 8, 8), 0.9, 9.0, 0.5),  # on A, kept
        cand(box(12, 30, 16, 34), 0.2, 20.0, 0.9),  # on nothing, dropped
        cand(box(20, 20, 25, 25), 0.4, 1.0, 0.95),  # on C, dropped (under 0.5)
    ]
    tally = RankingTally(threshold=0.5)
    tally.add(product, ice, candidates)
    r = tally.report()
    assert (r["outlined"], r["outlined_on_ice"], r["kept"], r["kept_on_ice"]) == (3, 2, 1, 1)
    assert r["polygon_precision"] == 1.0
    assert (r["patches"], r["patches_found"]) == (2, 1)
    assert r["patch_recall"] == 0.5 and r["patch_recall_before_second_stage"] == 1.0
    # Wilson 95 %: one kept polygon, on ice, shows precision of at least 1 / (1 + z²) only; 1 of 2 patches, 0.09-0.91
    assert r["polygon_precision_ci95"] == [pytest.approx(1 / (1 + 1.959964**2), abs=1e-6), 1.0]
    assert r["patch_recall_ci95"] == [pytest.approx(0.0945, abs=1e-4), pytest.approx(0.9055, abs=1e-4)]
    ap = r["average_precision"]
    assert ap["rank"] == pytest.approx(1.0)  # A, C, then the miss
    assert ap["area"] == pytest.approx((1 / 2 + 2 / 3) / 2)  # miss, A, C
    assert ap["chunk_probability"] == pytest.approx((1 + 2 / 3) / 2)  # C, miss, A


def test_candidates_are_styled_by_probability():
    import xml.etree.ElementTree as ET

    from marsice_plugin.styles import DEFAULT_STYLES

    name, make = DEFAULT_STYLES["ice_candidates"]
    root = ET.fromstring(make().split("-->", 1)[1])
    renderer = root.find("renderer-v2")
    assert name == "candidates by probability" and renderer.get("type") == "RuleRenderer"
    filters = [rule.get("filter") for rule in renderer.iter("rule")]
    assert filters == ['"probability" IS NULL', '"probability" >= 0.5', "ELSE"]
    assert 'coalesce("probability", 0)' in make()  # wider with probability
