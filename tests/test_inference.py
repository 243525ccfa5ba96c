"""Overlapped inference: same probabilities as the serial loop, errors surface, cancel stops the feeder."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from marsice_plugin.cnn.inference import Batch, Feeder, batches
from marsice_plugin.cnn.model import load_model
from marsice_plugin.detection import DetectOptions, score_chunks
from marsice_plugin.product import open_product
from marsice_plugin.progress import Reporter

from .conftest import DEMO_MODEL


def test_overlapped_scores_equal_the_serial_loop(small_product):
    model = load_model(DEMO_MODEL)
    # 256-px chunks overlapping by the default 64 px over 512 x 384 px: 3 x 2 chunks, in batches of 4 and 2
    options = DetectOptions(chunk_size=256, overlap=None, batch_size=4)
    with open_product(small_product.label_path) as product:
        serial = score_chunks(product, model, options, Reporter("quiet"), overlapped=False)
        overlapped = score_chunks(product, model, options, Reporter("quiet"))
    assert len(serial) == 6
    assert [(s.chunk_row, s.chunk_col) for s in overlapped] == [(s.chunk_row, s.chunk_col) for s in serial]
    np.testing.assert_allclose([s.probability for s in overlapped], [s.probability for s in serial], rtol=0, atol=1e-6)
    assert [s.window for s in overlapped] == [s.window for s in serial]


def test_batches_hold_batch_size_scored_chunks_in_grid_order(small_product):
    with open_product(small_product.label_path) as product:
        from marsice_plugin.chunk_reader import ChunkReader

        out = list(batches(ChunkReader(product, 128, 0), 64, product.valid_max, 4))  # 4 x 3 chunks
    # the two corner chunks under the strip's no-data margins are skipped: they ride in their batch unscored
    assert [[(c.chunk_row, c.chunk_col) for c in b.chunks if c.skipped] for b in out] == [[(0, 0)], [], [(2, 3)]]
    assert [len(b.scored) for b in out] == [4, 4, 2] and [len(b.chunks) for b in out] == [5, 4, 3]
    assert [b.x.shape for b in out] == [(4, 64, 64, 1), (4, 64, 64, 1), (2, 64, 64, 1)]
    assert [(c.chunk_row, c.chunk_col) for b in out for c in b.chunks] == [(r, c) for r in range(3) for c in range(4)]


def test_feeder_reraises_reading_errors():
    def broken():
        yield Batch([], [], None)
        raise OSError("decoder failed at row 4096")

    with Feeder(broken) as feeder, pytest.raises(OSError, match="row 4096"):
        list(feeder)


def test_closing_the_feeder_stops_its_thread():
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield Batch([i], [], None)
            i += 1

    feeder = Feeder(endless, depth=2)
    first = next(iter(feeder))
    assert first.chunks == [0]
    feeder.close()
    assert not any(t.name == "marsice-feeder" and t.is_alive() for t in threading.enumerate())
    assert len(produced) <= 4  # bounded: the queue holds two batches, the thread stopped


def test_mixed_precision_copy_keeps_weights_and_decisions():
    """The mixed-precision copy computes in float16 but holds the same float32 weights and a float32 sigmoid,
    and its probabilities stay within 5e-3 of float32's."""
    from marsice_plugin.cnn.model import build_model, with_precision
    from marsice_plugin.errors import ModelError

    model = build_model(64, bn_momentum=0.9)
    assert with_precision(model, "float32") is model
    mixed = with_precision(model, "mixed_float16")
    assert mixed.layers[1].compute_dtype == "float16" and mixed.layers[-1].compute_dtype == "float32"
    for a, b in zip(model.get_weights(), mixed.get_weights(), strict=True):
        assert b.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(1).random((6, 64, 64, 1)).astype(np.float32)
    p32 = np.asarray(model.predict_on_batch(x)).ravel()
    p16 = np.asarray(mixed.predict_on_batch(x)).ravel()
    assert p16.dtype == np.float32
    np.testing.assert_allclose(p16, p32, atol=5e-3)
    with pytest.raises(ModelError, match="choose one of float32, mixed_float16, mixed_bfloat16"):
        with_precision(model, "float8")


def test_batch_size_is_held_in_model_input_pixels() -> None:
    """Detect's memory is set by activations (batch x side²): 1 chunk of 512 px per batch, 4 of 256 px; asked wins."""
    from marsice_plugin.detect_defaults import BATCH_PIXELS, batch_size_for

    assert batch_size_for(512) == 1
    assert batch_size_for(256) == 4
    assert batch_size_for(1024) == 1  # never zero
    assert batch_size_for(512, requested=5) == 5
    assert batch_size_for(512) * 512**2 == batch_size_for(256) * 256**2 == BATCH_PIXELS
