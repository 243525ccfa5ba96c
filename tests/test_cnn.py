"""The paper's network, safe loading, and the metrics used in model cards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from marsice_plugin.cnn.metrics import (
    brightness_baseline,
    confusion,
    roc_auc,
    roc_auc_interval,
    summary,
    wilson_interval,
)
from marsice_plugin.cnn.model import build_model, load_model, model_input_size
from marsice_plugin.cnn.preprocess import prepare, reduce
from marsice_plugin.errors import ModelError
from marsice_plugin.model_registry import card_read_level

from .conftest import DEMO_MODEL


def test_paper_network_shape():
    model = build_model(256)
    assert model.count_params() == 2_728_761  # the paper's 2.73 M parameters on one grey channel
    assert model.input_shape == (None, 256, 256, 1)
    assert model.layers[-1].activation.__name__ == "sigmoid"
    dropout = [layer for layer in model.layers if layer.__class__.__name__ == "Dropout"]
    assert [d.rate for d in dropout] == [0.5]
    # every ReLU takes a BatchNormalization output, or the residual sum (as in the Keras Xception the paper
    # used), or the entry ReLU itself (its duplicate ReLU at the first block is a no-op)
    relus = [layer for layer in model.layers if layer.__class__.__name__ == "Activation"]
    sources = [layer.input._keras_history.operation.__class__.__name__ for layer in relus]
    assert sources.count("BatchNormalization") == 5 and sources.count("Add") == 2
    assert set(sources) <= {"BatchNormalization", "Add", "Activation"}


def test_shipped_demo_model_loads_safely_and_predicts_in_range():
    model = load_model(DEMO_MODEL)
    assert model_input_size(model) == 256
    x = np.random.default_rng(0).random((3, 256, 256, 1)).astype(np.float32)
    p = np.asarray(model.predict_on_batch(x)).reshape(-1)
    assert p.shape == (3,) and ((p >= 0) & (p <= 1)).all()
    again = np.asarray(load_model(DEMO_MODEL).predict_on_batch(x)).reshape(-1)
    np.testing.assert_array_equal(p, again)


def test_fast_model_is_the_shipped_level_2_detector_with_its_card():
    """--fast (and the default ensemble's coarse member) is models/marsice_xception_256_level2.keras: safe to load,
    256 px input, inference-only weights, read at JPEG2000 level 2 as its card says, and its card's evaluation is the
    file beside it."""
    import json
    import zipfile

    from marsice_plugin.model_registry import fast_model_path

    path = fast_model_path()
    assert path.name == "marsice_xception_256_level2.keras" and path.parent.name == "models"
    assert card_read_level(path) == 2
    assert model_input_size(load_model(path)) == 256
    with zipfile.ZipFile(path) as saved:
        assert saved.getinfo("model.weights.h5").file_size < 12_000_000  # 2.73 M float32 weights, no Adam moments
    card = json.loads(path.with_suffix(".card.json").read_text())
    # stage 3 (real pixels) fine-tuned from the rendered-only stage 2, itself from the previous level-2 model on
    # chunks with strip-edge no-data bands (see the card)
    rendered = card["previous_stages"]["rendered_only"]
    assert rendered["training"]["init"].startswith("models/marsice_xception_256_level2.keras as of commit 8d967ce")
    assert rendered["training"]["data"]["edge_nodata"] == 0.5 and rendered["saved_epoch"]["epoch"] == 6
    real = card["training"]["data"]["real"]
    assert real["split"].startswith("open") and real["tiles"] > 400 and card["training"]["data"]["edge_nodata"] == 0.5
    report = json.loads(path.with_name("marsice_xception_256_level2.evaluation.json").read_text())
    assert report["evaluation_set"] == "evaluation_set_v1" and report["model"] == path.name
    assert report["read_level"] == 2
    assert f"{report['chunks']['roc_auc']:.3f}" in path.with_suffix(".md").read_text()


def test_finer_model_reads_level_1_at_512_px_and_ranks_held_out_chunks():
    """models/marsice_xception_512_level1.keras, the option beside the default: 512 px input read at level 1 as
    its card says, its card's evaluation is the file beside it, and on the first 12 held-out chunks (seeds the
    training never drew) every ice chunk scores above every ice-free one."""
    import json

    from marsice_plugin.cnn.heldout import HELDOUT_SEED
    from marsice_plugin.cnn.training_data import synthetic_chunks

    path = Path(__file__).resolve().parents[1] / "models" / "marsice_xception_512_level1.keras"
    model = load_model(path)
    assert model_input_size(model) == 512 and card_read_level(path) == 1
    card = json.loads(path.with_suffix(".card.json").read_text())
    assert card["training"]["init"].startswith("models/marsice_xception_256_level2.keras as of commit d9dd93e")
    assert card["saved_epoch"]["epoch"] == 3 and card["training"]["batch_size"] == 10
    report = json.loads(path.with_name("marsice_xception_512_level1.evaluation.json").read_text())
    assert report["model"] == path.name and report["read_level"] == 1
    assert f"{report['chunks']['roc_auc']:.3f}" in path.with_suffix(".md").read_text()

    x, y, _ = synthetic_chunks(12, seed=HELDOUT_SEED, input_size=512, read_level=1, workers=1)
    p = np.asarray(model.predict_on_batch(x)).reshape(-1)
    # its convolutions are the rendered-scene ones; the sigmoid unit refitted on real tiles ranks 12 held-out
    # rendered chunks a little less cleanly (measured: 33 of 36 ice/no-ice pairs in order)
    pairs = (p[y == 1][:, None] > p[y == 0][None, :]).mean()
    assert y.sum() == 6 and pairs >= 0.9
    assert "real_pixel_refit" in card and card["real_pixel_refit"]["after"]["val_loss"] < 1.0


def test_non_keras_file_is_refused(tmp_path):
    bad = tmp_path / "model.keras"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="not a loadable Keras model"):
        load_model(bad)
    with pytest.raises(ModelError, match=".keras"):
        load_model(tmp_path / "model.h5")


def test_reduce_is_an_area_average():
    data = np.arange(16, dtype=np.float32).reshape(4, 4)
    np.testing.assert_array_equal(reduce(data, 2), [[2.5, 4.5], [10.5, 12.5]])


def test_prepare_repairs_hot_pixels_and_normalises():
    rng = np.random.default_rng(1)
    data = rng.normal(300, 5, (64, 64)).astype(np.float32)
    data[10, 10] = 1023  # special value
    data[40, 40] = 950  # ordinary-DN hot pixel
    valid = data != 1023
    x, report = prepare(data, valid, np.zeros_like(valid), 64, 16, 1023.0)
    assert report.special_pixels == 1 and report.outlier_pixels == 1
    assert x.shape == (16, 16) and x.max() < 330 / 1023


def test_metrics():
    y = np.array([0, 0, 1, 1])
    assert roc_auc(y, np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert confusion(y, np.array([0.7, 0.1, 0.9, 0.2]), 0.6) == {"tp": 1, "fp": 1, "tn": 1, "fn": 1}
    s = summary(y, np.array([0.1, 0.2, 0.9, 0.7]), 0.6)
    assert s["precision"] == 1.0 and s["npv"] == 1.0 and s["roc_auc"] == 1.0
    x = np.zeros((2, 8, 8))
    x[1, 3, 3] = 1.0
    assert brightness_baseline(x)[1] > brightness_baseline(x)[0]


def test_wilson_interval_says_what_a_few_images_can_show():
    """Textbook Wilson 95 % bounds: 6 of 7 right is 0.487-0.974; 7 of 7 right cannot show more than
    n / (n + z^2) = 0.646; 0 of 10 is 0-0.278; no images, no interval."""
    lo, hi = wilson_interval(6, 7)
    assert abs(lo - 0.4869) < 1e-3 and abs(hi - 0.9743) < 1e-3
    lo, hi = wilson_interval(7, 7)
    assert abs(lo - 7 / (7 + 1.959964**2)) < 1e-6 and hi == 1.0
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and abs(hi - 0.2775) < 1e-3
    assert all(v != v for v in wilson_interval(0, 0))
    # an NPV of at least 0.99 is only shown (lower bound) by about 380 right calls in a row
    assert wilson_interval(379, 379)[0] < 0.99 <= wilson_interval(381, 381)[0]


def test_poisson_interval_bounds_a_count_of_false_polygons():
    """Garwood's exact bounds from the tables: 0 events 0-3.689, 1 event 0.0253-5.572, 7 events 2.814-14.423 (so 7
    polygons on 5.6 km² cannot show a rate over 1 per km²: the interval reaches 0.50); a negative count is refused."""
    from marsice_plugin.cnn.metrics import poisson_interval

    assert poisson_interval(0) == (0.0, pytest.approx(3.6889, abs=1e-4))
    assert poisson_interval(1) == (pytest.approx(0.02532, abs=1e-4), pytest.approx(5.5716, abs=1e-4))
    low, high = poisson_interval(7)
    assert low == pytest.approx(2.8144, abs=1e-4) and high == pytest.approx(14.4227, abs=1e-4)
    assert low / 5.64 < 1.0 < high / 5.64
    with pytest.raises(ValueError, match="count"):
        poisson_interval(-1)


def test_roc_auc_interval_resamples_whole_products():
    """Ten copies of each of 20 chunks, grouped by the chunk they copy: resampling groups draws the same
    indices as resampling the 20 chunks, so the interval is theirs exactly; resampling the 200 copies one
    by one pretends to ten times the data and is narrower."""
    rng = np.random.default_rng(3)
    y = np.array([0, 1] * 10)
    p = np.clip(0.3 * y + rng.normal(0.35, 0.2, 20), 0, 1)
    single = roc_auc_interval(y, p)
    copies = roc_auc_interval(np.repeat(y, 10), np.repeat(p, 10), groups=np.repeat(np.arange(20), 10))
    assert copies == single
    lo, hi = single
    assert lo < roc_auc(y, p) < hi
    naive = roc_auc_interval(np.repeat(y, 10), np.repeat(p, 10))
    assert naive[1] - naive[0] < 0.6 * (hi - lo)
    assert roc_auc_interval(y, y.astype(float)) == (1.0, 1.0)  # perfect ranking stays perfect
    assert all(v != v for v in roc_auc_interval(np.ones(5), np.ones(5)))  # one class: no interval
