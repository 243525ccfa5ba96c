"""Two second-stage models as one file: kept exactly when either member keeps the crop at its own threshold."""

from __future__ import annotations

import json

import numpy as np
import pytest

from marsice_plugin.cnn.model import keras_module
from marsice_plugin.errors import ModelError
from marsice_plugin.patches.model import build_patch_model, load_patch_model, patch_threshold, predict_crops
from marsice_plugin.patches.union import UNION_THRESHOLD, build_mean, build_union, save_stage, write_union


def _member(seed: int) -> object:
    keras_module().utils.set_random_seed(seed)
    return build_patch_model()


@pytest.fixture(scope="module")
def members_and_crops():
    crops = np.random.default_rng(3).normal(0.0, 1.0, (200, 64, 64, 2)).astype(np.float32)
    members = [_member(1), _member(2)]
    probabilities = [predict_crops(m, crops) for m in members]
    # thresholds inside each member's range, so both keep some crops and drop others
    thresholds = [float(np.quantile(p, q)) for p, q in zip(probabilities, (0.8, 0.6), strict=True)]
    return members, crops, probabilities, thresholds


def _mapped(p: np.ndarray, t: float) -> np.ndarray:
    return np.where(p < t, p * 0.5 / t, 0.5 + (p - t) * 0.5 / (1 - t))


def test_union_keeps_what_either_member_keeps(members_and_crops):
    members, crops, (pa, pb), (ta, tb) = members_and_crops
    union = build_union(members, [ta, tb])
    pu = predict_crops(union, crops)
    np.testing.assert_allclose(pu, np.maximum(_mapped(pa, ta), _mapped(pb, tb)), atol=1e-5)
    clear = (np.abs(pa - ta) > 1e-4) & (np.abs(pb - tb) > 1e-4)  # float rounding aside
    kept = (pa >= ta) | (pb >= tb)
    np.testing.assert_array_equal((pu >= UNION_THRESHOLD)[clear], kept[clear])
    assert 0 < kept.sum() < len(kept) and kept.sum() > (pa >= ta).sum()
    assert pu.min() >= 0.0 and pu.max() <= 1.0


def test_written_union_loads_through_the_model_check_with_its_card(members_and_crops, tmp_path):
    members, crops, (pa, pb), (ta, tb) = members_and_crops
    paths = []
    for i, (m, t) in enumerate(zip(members, (ta, tb), strict=True)):
        path = tmp_path / f"member_{i}.keras"
        m.save(path)
        path.with_suffix(".card.json").write_text(json.dumps({"threshold": t, "training": {"epochs": i}}))
        paths.append(path)
    out = tmp_path / "union.keras"
    card = write_union(paths, out, note={"rule": "test"})
    assert patch_threshold(out) == UNION_THRESHOLD
    assert [m["threshold_in_union"] for m in card["members"]] == [ta, tb]
    assert card["members"][1]["card"]["training"]["epochs"] == 1 and card["rule"] == "test"
    assert not list(tmp_path.glob("*.tmp*"))
    loaded = load_patch_model(out)  # the archive check: only allowed layers, no code
    np.testing.assert_allclose(
        predict_crops(loaded, crops), predict_crops(build_union(members, [ta, tb]), crops), atol=1e-6
    )


def test_a_member_threshold_outside_zero_one_is_refused(members_and_crops):
    members = members_and_crops[0]
    with pytest.raises(ModelError, match="strictly between 0 and 1"):
        build_union(members, [0.5, 1.0])
    with pytest.raises(ModelError, match="at least two"):
        build_union(members[:1], [0.5])


def test_mean_of_members_is_one_member_of_a_union_that_loads_through_the_model_check(members_and_crops, tmp_path):
    """The shipped rendered member is the mean of two networks (card, 2026-12-08): its output is the members' mean,
    it is saved with a card like any second stage, and a union built on it keeps what it keeps at its threshold."""
    members, crops, (pa, pb), _ = members_and_crops
    mean = build_mean(members)
    pm = predict_crops(mean, crops)
    np.testing.assert_allclose(pm, (pa + pb) / 2, atol=1e-6)
    t_mean = float(np.quantile(pm, 0.7))
    path = tmp_path / "mean.keras"
    card = save_stage(mean, path, {"threshold": t_mean})
    assert card["parameters"] == 2 * members[0].count_params()
    assert patch_threshold(path) == t_mean
    np.testing.assert_allclose(predict_crops(load_patch_model(path), crops), pm, atol=1e-6)
    partner = _member(3)
    pp = predict_crops(partner, crops)
    t_partner = float(np.quantile(pp, 0.9))
    union = build_union([load_patch_model(path), partner], [t_mean, t_partner])
    pu = predict_crops(union, crops)
    np.testing.assert_allclose(pu, np.maximum(_mapped(pm, t_mean), _mapped(pp, t_partner)), atol=1e-5)
    with pytest.raises(ModelError, match="at least two"):
        build_mean(members[:1])
