"""Reading products at a JPEG2000 resolution level: the scale it asks for, the model card that says which level a
model was trained at, training chunks identical to what detect then reads, and detect following the card."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from marsice_plugin.chunk_reader import ChunkReader
from marsice_plugin.cnn.model import load_model
from marsice_plugin.cnn.preprocess import model_input, prepare
from marsice_plugin.cnn.training_data import SPECIAL_DNS, decode_level
from marsice_plugin.detection import DetectOptions, score_chunks
from marsice_plugin.errors import ModelError
from marsice_plugin.model_registry import card_read_level, model_read_level, read_scale
from marsice_plugin.pipeline import detect
from marsice_plugin.product import open_product
from marsice_plugin.progress import Reporter

from .conftest import DEMO_MODEL


@pytest.mark.parametrize(
    ("level", "chunk", "size", "scale"),
    [(0, 1024, 256, 1.0), (1, 1024, 256, 0.5), (2, 1024, 256, 0.25), (0, 512, 512, 1.0), (1, 512, 64, 0.5)],
)
def test_read_scale_is_one_over_two_to_the_level(level, chunk, size, scale):
    assert read_scale(level, chunk, size) == scale


@pytest.mark.parametrize(("level", "chunk", "size"), [(3, 1024, 256), (1, 1001, 256), (-1, 1024, 256)])
def test_read_scale_refuses_levels_smaller_than_the_model_input(level, chunk, size):
    with pytest.raises(ValueError, match="level"):
        read_scale(level, chunk, size)


def test_card_read_level_defaults_to_every_pixel_and_refuses_a_bad_card(tmp_path):
    model = tmp_path / "m.keras"
    assert card_read_level(model) == 0  # no card: what every model before the fast read was trained on
    (tmp_path / "m.card.json").write_text(json.dumps({"model": "m.keras", "read_level": 2}))
    assert card_read_level(model) == 2
    (tmp_path / "m.card.json").write_text(json.dumps({"read_level": "two"}))
    with pytest.raises(ModelError, match="read_level must be"):
        card_read_level(model)
    (tmp_path / "m.card.json").write_text("{not json")
    with pytest.raises(ModelError, match="unreadable model card"):
        card_read_level(model)


def test_level_two_training_chunks_equal_what_detect_reads_at_level_two(tmp_path):
    """Train/inference consistency: a rendered chunk encoded and decoded at level 2 is, pixel for pixel, the model
    input detect builds from the written product's level 2 (same decoder, same repair, same normalisation)."""
    from marsice_plugin.synthetic.product_writer import write_sample_product
    from marsice_plugin.synthetic.scene import SceneConfig

    sample = write_sample_product(
        tmp_path, SceneConfig(width=1024, height=1024, seed=21, n_ice_boulder=3, n_hot_special=6, nodata_margin=0.0)
    )
    dn = decode_level(sample.scene.dn, 2)
    assert dn.shape == (256, 256)
    special = np.isin(dn, SPECIAL_DNS)
    trained_on, _ = prepare(dn.astype(np.float32), ~special, dn == 0, 256, 256, 1023.0)
    with open_product(sample.label_path) as product:
        (chunk,) = list(ChunkReader(product, 1024, 0, scale=0.25, prefetch=False))
        read = model_input(chunk.data, chunk.valid, chunk.nominal_size, 256, product.valid_max)
    assert chunk.window.width == chunk.window.height == 1024
    np.testing.assert_array_equal(trained_on, read)
    # and the level is a reduced image of this scene: same mean DN, same pattern (the 5/3 wavelet low-pass is not
    # an area average, and its grid sits 1.5 source pixels off the 4x4 blocks, hence no tighter figure)
    full = sample.scene.dn.astype(np.float64).reshape(256, 4, 256, 4).mean(axis=(1, 3))
    assert abs(dn.mean() - full.mean()) < 0.01 * full.mean()
    assert np.corrcoef(full.ravel(), dn.astype(np.float64).ravel())[0, 1] > 0.5


def test_detect_reads_the_level_the_model_card_names(sample_product, tmp_path):
    model_path = tmp_path / "fast.keras"
    shutil.copy(DEMO_MODEL, model_path)
    (tmp_path / "fast.card.json").write_text(json.dumps({"model": "fast.keras", "read_level": 2}))
    model = load_model(model_path)
    paper = {"overlap": 0}  # the paper's tiling, 3 x 2 chunks: the level, not the grid, is what is compared
    with open_product(sample_product.label_path) as product:
        level2 = score_chunks(product, model, DetectOptions(read_level=2, **paper), Reporter("quiet"))
        level0 = score_chunks(product, model, DetectOptions(read_level=0, **paper), Reporter("quiet"))
    result = detect(sample_product.label_path, tmp_path / "o.gpkg", DetectOptions(model_path=model_path, **paper))
    p2 = np.array([s.probability for s in level2])
    assert len(p2) == 6
    # the chunk CNN's own values (detect's probability also asks the second stage to confirm: patches.chunk_score)
    np.testing.assert_allclose([c.cnn_probability for c in result.chunks], p2, atol=1e-5)
    assert np.abs(p2 - np.array([s.probability for s in level0])).max() > 1e-3  # the level changed the input
    assert [c.window for c in result.chunks] == [s.window for s in level0]  # full-resolution windows either way
    explicit = detect(
        sample_product.label_path, tmp_path / "p.gpkg", DetectOptions(model_path=model_path, read_level=0, **paper)
    )
    np.testing.assert_allclose([c.cnn_probability for c in explicit.chunks], [s.probability for s in level0], atol=1e-5)


def test_detect_refuses_a_read_level_below_the_model_input(small_product, tmp_path, marsice_cli):
    done = marsice_cli(
        "detect",
        str(small_product.label_path),
        "-o",
        str(tmp_path / "o.gpkg"),
        "--model",
        str(DEMO_MODEL),
        "--read-level",
        "3",
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "marsice: error: demo_xception_256.keras: read level 3 gives 128-px chunks, fewer than the model's 256-px "
        "input; use a level of at most 2"
    ]
    assert not (tmp_path / "o.gpkg").exists()


@pytest.mark.parametrize("which, level", [("default", 1), ("fast", 2)])
def test_shipped_models_read_at_their_card_level_rank_ice_chunks_above_ice_free_ones(
    sample_product, tmp_path, which, level
):
    """The shipped default (the ensemble, level 1) and --fast (level 2), each read as its card says, on a known
    scene: every chunk without planted ice scores below every chunk with some, and every chunk flagged (at the card's
    threshold) holds ice (the paper's image-level failure was the opposite: flags without ice)."""
    from marsice_plugin.model_registry import default_model_path, fast_model_path
    from marsice_plugin.truth import chunk_truth

    model = default_model_path() if which == "default" else fast_model_path()
    assert card_read_level(model) == level
    result = detect(sample_product.label_path, tmp_path / "o.gpkg", DetectOptions(model_path=model, overlap=None))
    truth = chunk_truth(sample_product.scene.ice, result.chunks)
    ice = [c.probability for c in result.chunks if truth[(c.chunk_row, c.chunk_col)]]
    free = [c.probability for c in result.chunks if not truth[(c.chunk_row, c.chunk_col)]]
    assert len(result.chunks) == 12 and len(free) == 2
    assert max(free) < min(ice)
    cnn_flags = [c for c in result.chunks if c.cnn_probability >= result.threshold]
    assert all(truth[(c.chunk_row, c.chunk_col)] for c in cnn_flags) and len(cnn_flags) >= 5
    # detect's flags: the CNN's confirmed by a kept patch (patches.chunk_score "confirm"), so a subset, all on ice
    assert {id(c) for c in result.above} <= {id(c) for c in cnn_flags}
    assert all(truth[(c.chunk_row, c.chunk_col)] for c in result.above) and len(result.above) >= 3


def test_model_read_level_takes_the_card_unless_told_and_names_the_model_it_refuses(tmp_path):
    model_path = tmp_path / "fast.keras"
    (tmp_path / "fast.card.json").write_text(json.dumps({"model": "fast.keras", "read_level": 2}))
    assert model_read_level(DetectOptions(model_path=model_path), 256) == 2
    assert model_read_level(DetectOptions(model_path=model_path, read_level=1), 256) == 1
    assert model_read_level(DetectOptions(), 256) == 0  # no model path, no card: every pixel
    with pytest.raises(ModelError, match=r"^fast\.keras: read level 2 gives 256-px chunks, fewer than .* 512-px"):
        model_read_level(DetectOptions(model_path=model_path), 512)
    # Larger than the chunk itself: no level helps, so the message says what does (detect and scan share it).
    with pytest.raises(ModelError, match=r"^fast\.keras takes 2048-px inputs, larger than the 1024-px chunks; use"):
        model_read_level(DetectOptions(model_path=model_path), 2048)


def test_evaluate_reports_the_level_it_read_from_the_model_card(tmp_path):
    from marsice_plugin.evaluation import evaluate

    model_path = tmp_path / "fast.keras"
    shutil.copy(DEMO_MODEL, model_path)
    (tmp_path / "fast.card.json").write_text(json.dumps({"model": "fast.keras", "read_level": 2}))
    report = evaluate(model_path, tmp_path / "cache", limit=1)
    assert report["read_level"] == 2
    explicit = evaluate(model_path, tmp_path / "cache", limit=1, read_level=0)
    assert explicit["read_level"] == 0
    assert report["chunks"]["n"] == explicit["chunks"]["n"] == 4
    assert report["_curve"]["p"] != explicit["_curve"]["p"]  # the level changed what the model saw
