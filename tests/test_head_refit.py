"""Refitting only the sigmoid unit: the logistic fit itself, and a net whose convolutions stay exactly as trained."""

from __future__ import annotations

import numpy as np

from marsice_plugin.cnn.head_refit import fit_logistic, refit_head
from marsice_plugin.cnn.model import load_model

from .conftest import DEMO_MODEL


def test_fit_logistic_separates_what_the_start_weights_do_not():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(400, 5))
    y = (f[:, 2] > 0).astype(float)  # only feature 2 tells the classes apart
    w0, b0 = np.array([1.0, 0, 0, 0, 0]), 0.0  # a start that looks at the wrong feature
    w, b = fit_logistic(f, y, w0, b0, l2=1e-4)
    accuracy = np.mean(((f @ w + b) > 0) == (y > 0.5))
    assert accuracy > 0.97
    assert abs(w[2]) > 5 * max(abs(w[0]), abs(w[1]), abs(w[3]), abs(w[4]))
    # a strong pull keeps the start's weights
    w_kept, _ = fit_logistic(f, y, w0, b0, l2=1e3)
    assert np.allclose(w_kept, w0, atol=0.05)


def test_refit_head_changes_only_the_sigmoid_unit():
    model = load_model(DEMO_MODEL)
    before = [w.copy() for w in model.get_weights()]
    rng = np.random.default_rng(1)
    x = rng.uniform(0.2, 0.5, size=(30, 256, 256, 1)).astype(np.float32)
    y = np.zeros(30, dtype=np.float32)
    x[::2, 100:110, 100:110, 0] = 0.95  # a bright patch in every other chunk
    y[::2] = 1.0
    report = refit_head(model, x, y, np.full(30, 296.5), seed=0, copies=1)
    after = model.get_weights()
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if not np.array_equal(a, b)]
    assert changed == [len(after) - 2, len(after) - 1]  # the unit's kernel and bias, nothing else
    assert report["fit_chunks"] == 24 and report["validation_chunks"] == 6
    assert report["after"]["val_loss"] < report["before"]["val_loss"]
