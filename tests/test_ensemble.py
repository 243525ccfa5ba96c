"""Ensembles: several models as one Keras model averaging their probabilities, read at the finest level."""

from __future__ import annotations

import json

import numpy as np
import pytest

from marsice_plugin.cnn.ensemble import build_ensemble, combine, ensemble_read_level, member_models
from marsice_plugin.cnn.model import build_model, load_model, model_input_size
from marsice_plugin.cnn.train import save_for_inference
from marsice_plugin.errors import ModelError
from marsice_plugin.model_registry import card_path, card_read_level

from .conftest import REPO


def tiny(size: int, seed: int):
    """A small net of the paper's shape with seeded random weights (distinct outputs per seed)."""
    import keras

    keras.utils.set_random_seed(seed)
    return build_model(size, entry_filters=4, block_filters=(8,), exit_filters=8, bn_momentum=0.9)


def saved(tmp_path, name: str, size: int, level: int, seed: int, heldout: float | None = None):
    path = tmp_path / f"{name}.keras"
    save_for_inference(tiny(size, seed), path)
    card = {"model": path.name, "read_level": level}
    if heldout is not None:
        card["heldout_evaluation"] = {"model": {"roc_auc": heldout}}
    card_path(path).write_text(json.dumps(card))
    return path


def block_mean(x: np.ndarray, f: int) -> np.ndarray:
    n, h, w, c = x.shape
    return x.reshape(n, h // f, f, w // f, f, c).mean(axis=(2, 4))


def test_ensemble_is_the_mean_of_its_members_each_at_its_own_size():
    fine, coarse = tiny(32, 1), tiny(16, 2)
    ensemble = build_ensemble([fine, coarse])
    assert model_input_size(ensemble) == 32
    assert [m.name for m in member_models(ensemble)] == ["member_0", "member_1"]
    x = np.random.default_rng(3).random((5, 32, 32, 1)).astype(np.float32)
    p_fine = np.asarray(fine.predict_on_batch(x)).ravel()
    p_coarse = np.asarray(coarse.predict_on_batch(block_mean(x, 2))).ravel()
    assert np.abs(p_fine - p_coarse).max() > 1e-3  # the members disagree, so the mean is a real test
    np.testing.assert_allclose(np.asarray(ensemble.predict_on_batch(x)).ravel(), (p_fine + p_coarse) / 2, atol=1e-6)
    # the members were copied: the originals are untouched objects with their own names
    assert fine.name == coarse.name == "marsice_xception"


def test_combine_writes_a_safe_loading_model_and_a_card_with_the_finest_read_level(tmp_path):
    a = saved(tmp_path, "fine", 32, 1, seed=1, heldout=0.9)
    b = saved(tmp_path, "coarse", 16, 2, seed=2)
    out = tmp_path / "models" / "both.keras"
    card = combine([a, b], out)
    assert card["read_level"] == 1 and card["input_size"] == 32
    assert [m["model"] for m in card["ensemble"]["members"]] == ["fine.keras", "coarse.keras"]
    assert card["ensemble"]["members"][0]["heldout_roc_auc"] == 0.9
    assert "heldout_roc_auc" not in card["ensemble"]["members"][1]
    assert json.loads(card_path(out).read_text()) == card
    assert card_read_level(out) == 1  # what detect, scan and evaluate read products at
    loaded = load_model(out)  # safe_mode=True
    assert loaded.count_params() == card["parameters"] == load_model(a).count_params() + load_model(b).count_params()
    x = np.random.default_rng(4).random((3, 32, 32, 1)).astype(np.float32)
    expected = (
        np.asarray(load_model(a).predict_on_batch(x)).ravel()
        + np.asarray(load_model(b).predict_on_batch(block_mean(x, 2))).ravel()
    ) / 2
    np.testing.assert_allclose(np.asarray(loaded.predict_on_batch(x)).ravel(), expected, atol=1e-6)
    assert sorted(p.name for p in out.parent.iterdir()) == ["both.card.json", "both.keras"]  # no temporary left


def test_members_that_cannot_share_a_read_are_refused(tmp_path):
    with pytest.raises(ModelError, match="at least two models"):
        build_ensemble([tiny(16, 1)])
    with pytest.raises(ModelError, match="24-px inputs, which do not divide the ensemble's 32-px input"):
        build_ensemble([tiny(32, 1), tiny(24, 2)])
    # a small member trained on a finer read than the large one would lose detail it learnt from
    with pytest.raises(ModelError, match="16-px member trained at JPEG2000 level 0 would be read at level 1"):
        ensemble_read_level([32, 16], [1, 0])
    assert ensemble_read_level([32, 16], [1, 2]) == 1
    assert ensemble_read_level([16, 16], [2, 2]) == 2
    a = saved(tmp_path, "a", 32, 1, seed=1)
    b = saved(tmp_path, "b", 16, 0, seed=2)
    out = tmp_path / "bad.keras"
    with pytest.raises(ModelError, match="level 0 would be read at level 1"):
        combine([a, b], out)
    assert not out.exists() and not card_path(out).exists()


def test_mixed_precision_ensemble_keeps_every_probability_in_float32():
    from marsice_plugin.cnn.model import with_precision

    ensemble = build_ensemble([tiny(32, 1), tiny(16, 2)])
    mixed = with_precision(ensemble, "mixed_bfloat16")
    for member in member_models(mixed):
        assert member.layers[1].compute_dtype == "bfloat16"
        assert member.layers[-1].name == "ice_probability" and member.layers[-1].compute_dtype == "float32"
    assert mixed.layers[-1].compute_dtype == "float32"
    for w32, wmixed in zip(ensemble.get_weights(), mixed.get_weights(), strict=True):
        np.testing.assert_array_equal(w32, wmixed)
    x = np.random.default_rng(5).random((4, 32, 32, 1)).astype(np.float32)
    p32 = np.asarray(ensemble.predict_on_batch(x)).ravel()
    np.testing.assert_allclose(np.asarray(mixed.predict_on_batch(x)).ravel(), p32, atol=2e-2)


def test_cli_combines_models_and_reports_the_read_level(tmp_path, marsice_cli):
    a = saved(tmp_path, "fine", 32, 1, seed=1)
    b = saved(tmp_path, "coarse", 16, 2, seed=2)
    out = tmp_path / "both.keras"
    proc = marsice_cli("--progress", "json", "ensemble", str(a), str(b), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    result = [json.loads(line) for line in proc.stdout.splitlines() if '"result"' in line][-1]
    assert result["outputs"]["MODEL"] == str(out)
    assert "reads products at JPEG2000 level 1" in result["summary"]
    assert card_read_level(out) == 1 and model_input_size(load_model(out)) == 32
    bad = marsice_cli("ensemble", str(a), str(tmp_path / "missing.keras"), "-o", str(tmp_path / "x.keras"))
    assert bad.returncode != 0 and "missing.keras does not exist" in bad.stderr
    assert not (tmp_path / "x.keras").exists()


def test_shipped_default_ensemble_is_the_two_shipped_models():
    """The default model file is the mean of the two single models shipped beside it, read at level 1."""
    from marsice_plugin.model_registry import default_model_path

    path = default_model_path()
    card = json.loads(card_path(path).read_text())
    assert path.name == "marsice_ensemble_512_level1.keras" and card["read_level"] == 1
    members = [m["model"] for m in card["ensemble"]["members"]]
    assert members == ["marsice_xception_512_level1.keras", "marsice_xception_256_level2.keras"]
    # the choice on held-out chunks: the file beside the model says the ensemble ranks them best, ahead of each
    # member in a paired bootstrap, and the card quotes its figure
    compare = json.loads(path.with_name("marsice_ensemble_512_level1.heldout_compare.json").read_text())
    assert compare["count"] == 1600 and compare["first_seed"] == 500_000
    aucs = {name: entry["roc_auc"] for name, entry in compare["models"].items()}
    assert max(aucs, key=aucs.get) == path.name
    ahead = [d for d in compare["differences"] if d["model"] == path.name]
    assert {d["minus"] for d in ahead} == set(members) and all(d["ci95"][0] > 0 for d in ahead)
    assert f"**{aucs[path.name]:.3f}**" in path.with_suffix(".md").read_text()
    ensemble = load_model(path)
    for member, name in zip(member_models(ensemble), members, strict=True):
        for w_in, w_file in zip(member.get_weights(), load_model(REPO / "models" / name).get_weights(), strict=True):
            np.testing.assert_array_equal(w_in, w_file)


def test_training_from_an_ensemble_is_refused_with_what_to_do_instead(tmp_path):
    """An ensemble's members read at different levels, so one training set cannot fine-tune it: train refuses it
    before reading any data and names a member to fine-tune; a single model is taken as before."""
    from marsice_plugin.commands.train import resolve_input_size

    a = saved(tmp_path, "fine", 32, 1, seed=1)
    b = saved(tmp_path, "coarse", 16, 2, seed=2)
    both = tmp_path / "both.keras"
    combine([a, b], both)
    with pytest.raises(ModelError, match="both.keras is an ensemble of 2 models .* fine-tune a member instead"):
        resolve_input_size(None, both)
    assert resolve_input_size(None, b) == 16 and resolve_input_size(64, b) == 64


def test_fast_flag_picks_the_shipped_level_2_model_and_excludes_model():
    """--fast is the shipped level-2 model alone, for detect and scan; with --model it is an argument error."""
    from marsice_plugin.cli import build_parser
    from marsice_plugin.commands.arguments import chosen_model
    from marsice_plugin.model_registry import fast_model_path

    parser = build_parser()
    fast = parser.parse_args(["detect", "P.LBL", "-o", "o.gpkg", "--fast"])
    assert chosen_model(fast) == fast_model_path() and fast_model_path().name == "marsice_xception_256_level2.keras"
    assert chosen_model(parser.parse_args(["detect", "P.LBL", "-o", "o.gpkg"])) is None  # the default decides
    given = parser.parse_args(
        ["scan", "--lat", "-60", "-40", "--ls", "140", "200", "-o", "s.gpkg", "--model", "m.keras"]
    )
    assert str(chosen_model(given)) == "m.keras"
    assert (
        chosen_model(parser.parse_args(["scan", "--lat", "-60", "-40", "--ls", "140", "200", "-o", "s.gpkg", "--fast"]))
        == fast_model_path()
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["detect", "P.LBL", "-o", "o.gpkg", "--fast", "--model", "m.keras"])
