"""A chunk's probability from both stages: the combination rules, their placement, and the detect flow's rows."""

from __future__ import annotations

import affine
import numpy as np
import pytest
import shapely

from marsice_plugin.candidates import Candidate
from marsice_plugin.grid import Window
from marsice_plugin.patches.chunk_score import best_in_chunks, combine_chunk_scores, patch_chunk_score
from marsice_plugin.progress import Reporter
from marsice_plugin.result_layers import ChunkScore

from .conftest import DEMO_MODEL, tiny_product

PATCH_T, CHUNK_T = 0.9, 0.5


def test_the_rules_give_these_values():
    assert patch_chunk_score(0.2, 0.95, "cnn", PATCH_T, CHUNK_T) == 0.2
    assert patch_chunk_score(0.2, 0.6, "max", PATCH_T, CHUNK_T) == 0.6
    assert patch_chunk_score(0.7, 0.6, "max", PATCH_T, CHUNK_T) == 0.7
    # max_kept: a patch under the second stage's threshold never raises the chunk ...
    assert patch_chunk_score(0.2, 0.89, "max_kept", PATCH_T, CHUNK_T) == 0.2
    # ... a kept one maps [0.9, 1] onto [0.5, 1]: at the patch threshold the chunk is exactly at its own threshold
    assert patch_chunk_score(0.2, 0.9, "max_kept", PATCH_T, CHUNK_T) == pytest.approx(0.5)
    assert patch_chunk_score(0.2, 0.95, "max_kept", PATCH_T, CHUNK_T) == pytest.approx(0.75)
    assert patch_chunk_score(0.2, 1.0, "max_kept", PATCH_T, CHUNK_T) == pytest.approx(1.0)
    assert patch_chunk_score(0.8, 0.95, "max_kept", PATCH_T, CHUNK_T) == 0.8  # never lowers the chunk CNN
    assert patch_chunk_score(0.3, None, "max_kept", PATCH_T, CHUNK_T) == 0.3  # no patch in the chunk
    # confirm: a kept patch leaves the CNN's value; none (or one under the patch threshold) scales it under CHUNK_T
    assert patch_chunk_score(0.8, 0.95, "confirm", PATCH_T, CHUNK_T) == 0.8
    assert patch_chunk_score(0.2, 0.95, "confirm", PATCH_T, CHUNK_T) == 0.2  # confirmed but under: still unflagged
    assert patch_chunk_score(0.8, 0.89, "confirm", PATCH_T, CHUNK_T) == pytest.approx(0.4)
    assert patch_chunk_score(0.8, None, "confirm", PATCH_T, CHUNK_T) == pytest.approx(0.4)
    assert patch_chunk_score(0.99, None, "confirm", PATCH_T, CHUNK_T) < CHUNK_T  # never flagged unconfirmed
    assert patch_chunk_score(0.9, None, "confirm", PATCH_T, CHUNK_T) > patch_chunk_score(
        0.6, None, "confirm", PATCH_T, CHUNK_T
    )
    with pytest.raises(ValueError, match="chunk_score must be one of"):
        patch_chunk_score(0.3, 0.9, "mean", PATCH_T, CHUNK_T)


def _candidate(col: float, row: float, probability: float | None) -> Candidate:
    box = shapely.box(col - 2, -(row + 2), col + 2, -(row - 2))  # transform below: y = -row
    return Candidate(box, 16.0, 0.1, 0.1, 1.0, 0.0, 0.0, probability=probability)


def test_a_kept_patch_raises_only_the_chunks_holding_its_centroid_and_the_first_stage_stays():
    transform = affine.Affine(1, 0, 0, 0, -1, 0)
    chunks = [
        ChunkScore(0, 0, Window(0, 0, 100, 100), 0.1, False, "", 0.0),
        ChunkScore(0, 1, Window(80, 0, 100, 100), 0.2, False, "", 0.0),  # overlaps the first over columns 80-99
        ChunkScore(1, 0, Window(0, 100, 100, 100), 0.3, False, "", 0.0),
        ChunkScore(1, 1, Window(100, 100, 100, 100), None, True, "no-data", 1.0),
    ]
    cands = [_candidate(90, 50, 0.95), _candidate(50, 150, 0.5)]  # one kept, in both overlapping chunks; one not
    cands.append(_candidate(95, 55, None))  # unscored: counts for no chunk
    best = best_in_chunks([c.window for c in chunks], cands, transform)
    assert best == pytest.approx([0.95, 0.95, 0.5, np.nan], nan_ok=True)
    out = combine_chunk_scores(chunks, best, "max_kept", PATCH_T, CHUNK_T)
    assert [c.probability for c in out] == pytest.approx([0.75, 0.75, 0.3, None], nan_ok=True)
    assert [c.cnn_probability for c in out] == [0.1, 0.2, 0.3, None]
    assert [c.probability for c in chunks] == [0.1, 0.2, 0.3, None]  # copies: the first stage's list is untouched
    # combined again from combined chunks: from the first stage's values, never compounded
    again = combine_chunk_scores(out, best, "max", PATCH_T, CHUNK_T)
    assert [c.probability for c in again[:3]] == pytest.approx([0.95, 0.95, 0.5])
    assert [c.cnn_probability for c in again[:3]] == [0.1, 0.2, 0.3]
    # confirm: the two chunks holding the kept patch keep their CNN value, the third (a patch under 0.9) is scaled
    confirmed = combine_chunk_scores(out, best, "confirm", PATCH_T, CHUNK_T)
    assert [c.probability for c in confirmed[:3]] == pytest.approx([0.1, 0.2, 0.15])
    assert confirmed[3].probability is None
    with pytest.raises(ValueError, match="one best patch value per chunk: 3 values for 4 chunks"):
        combine_chunk_scores(chunks, best[:3], "confirm", PATCH_T, CHUNK_T)


def test_detect_rows_raster_and_summary_carry_the_combination(tmp_path):
    """The tiny product, every chunk searched: each chunk row's probability is its CNN value raised by its best kept
    patch, the stitched raster is stitched from those rows, and ``cnn_probability`` keeps the first stage."""
    from marsice_plugin.cnn.model import load_model
    from marsice_plugin.detection import DetectOptions, detect_product, load_stage
    from marsice_plugin.model_registry import model_threshold
    from marsice_plugin.product import open_product
    from marsice_plugin.stitching import stitch

    product = tiny_product(tmp_path / "p")
    threshold = model_threshold(None, DEMO_MODEL)
    options = DetectOptions(model_path=DEMO_MODEL, threshold=threshold, chunk_size=256, search="all")
    model = load_model(DEMO_MODEL)
    lines: list[tuple[float, str]] = []

    class Recorder(Reporter):
        def progress(self, percent, message="", **kwargs):
            lines.append((percent, message))

    with open_product(product.label_path) as opened:
        found = detect_product(opened, model, options, Recorder("quiet"))
        first = detect_product(opened, model, DetectOptions(**{**options.__dict__, "chunk_score": "cnn"}))
    patch_t = load_stage(None).threshold
    assert found.candidates and all(c.probability >= patch_t for c in found.candidates)
    raised = 0
    for chunk, cnn_only, row in zip(found.chunks, first.chunks, found.rows["chunks"], strict=True):
        attrs = row[1]
        if chunk.skipped:
            continue
        assert chunk.cnn_probability == pytest.approx(cnn_only.probability)
        assert attrs["cnn_probability"] == pytest.approx(cnn_only.probability)
        assert attrs["probability"] == pytest.approx(chunk.probability)
        assert chunk.probability >= chunk.cnn_probability
        assert attrs["above_threshold"] == (chunk.probability >= threshold)
        raised += chunk.probability > chunk.cnn_probability
    assert raised > 0  # the tiny product's planted patches raise some chunk
    again = stitch(found.chunks, opened.width, opened.height, opened.transform)
    np.testing.assert_allclose(found.raster.values, again.values, equal_nan=True)
    assert not np.allclose(found.raster.values, first.raster.values, equal_nan=True)
    assert len(found.above) >= len(first.above)
    # every chunk searched: scoring fills 5-30 % of the bar and outlining the rest up to 92 % (PROGRESS_SPANS)
    scoring = [pct for pct, m in lines if m.startswith("chunk ")]
    outlining = [pct for pct, m in lines if m.startswith("outlining window")]
    assert scoring and max(scoring) == pytest.approx(30.0) and min(scoring) >= 5.0
    assert outlining and min(outlining) > 30.0 and outlining[-1] == pytest.approx(92.0)


def test_a_centroid_belongs_to_every_window_holding_it_and_on_a_border_to_the_later_one():
    from marsice_plugin.patches.chunk_score import centroids_in_windows

    transform = affine.Affine(1, 0, 0, 0, -1, 0)
    windows = [Window(0, 0, 100, 100), Window(100, 0, 100, 100), Window(80, 0, 100, 100)]
    geometries = [_candidate(col, 50, None).geometry for col in (10, 100, 90, 250)]
    inside = centroids_in_windows(windows, geometries, transform)
    assert inside.tolist() == [
        [True, False, False],
        [False, True, True],  # on the border of the first two: the second's (and the overlapping third's)
        [True, False, True],
        [False, False, False],
    ]
    assert centroids_in_windows(windows, [], transform).shape == (0, 3)
    assert centroids_in_windows([], geometries, transform).shape == (4, 0)
