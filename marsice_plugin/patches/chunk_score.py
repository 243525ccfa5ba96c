"""A chunk's probability from both stages: the chunk CNN and the best second-stage patch in the chunk.

The stages fail differently. The chunk CNN reads at JPEG2000 level 1 or 2, where a patch of a few metres shrinks to
a pixel or two, so it misses small patches that the second stage, reading level 0, scores with confidence: with
every chunk searched, such a patch should flag its chunk whatever the first stage said. And the chunk CNN flags
real ice-free HiRISE pixels (craters, dunes, plains) where the second stage keeps no patch: there a flag the second
stage does not confirm should not stand. The rules (``chunk_score``):

* ``cnn``: the chunk CNN alone (the first stage, as before the second stage existed);
* ``max``: max(chunk CNN, best patch probability), the patch probability taken as it is;
* ``max_kept`` (chosen on tuning data by ``bench/small_patches.py``): only patches the second stage keeps (at or
  above its threshold) count, their probability mapped linearly from [patch threshold, 1] onto [chunk threshold, 1].
  So a chunk is flagged exactly when the chunk CNN flags it or it holds a kept patch, and a patch under the second
  stage's threshold, which ``detect`` drops, never flags a chunk on its own.
* ``confirm``: the chunk CNN's value when the chunk holds a patch the second stage keeps, else that value times the
  chunk threshold. So a chunk is flagged exactly when **both** stages say so, and unconfirmed chunks keep their
  order, all under the threshold.

The default (:func:`default_chunk_score`) is ``max_kept`` when every chunk is searched (``--search all``) and
``confirm`` when only flagged ones are (detect's default). ``confirm`` was chosen by ``bench/confirm_rule.py`` with a
rule fixed before its run (image precision and recall >= 0.9 on 72 rendered tuning products, then the fewest real
ice-free tuning tiles flagged): at the card's threshold 0.5 the chunk CNN alone flags 77 of 278 real tuning tiles,
confirmed by the second stage none, with the same 33 of 36 ice images found (ice-free images flagged 3 -> 2 of 36).
With flagged search the second stage already runs on exactly the chunks the CNN flags, so confirming them costs
nothing more; it changes which chunks are flagged, not how chunks rank (tuning chunk ROC-AUC 0.927 either way).

A patch belongs to every chunk whose window holds its centroid (chunks overlap, so up to four). The first stage's
value stays on each chunk as ``cnn_probability``; ``probability`` (the chunk rows, the stitched raster, the image
summary) is the combination.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from ..candidates import Candidate
    from ..grid import Window
    from ..result_layers import ChunkScore

#: The ways a chunk's probability may combine the two stages (module docstring).
CHUNK_SCORE_RULES = ("cnn", "max", "max_kept", "confirm")


def default_chunk_score(search: str) -> str:
    """The combination used when none is asked for: ``max_kept`` with every chunk searched, else ``confirm``."""
    return "max_kept" if search == "all" else "confirm"


def patch_chunk_score(
    cnn: float, best_patch: float | None, rule: str, patch_threshold: float, chunk_threshold: float
) -> float:
    """One chunk's probability from its chunk CNN value and the best second-stage probability among its patches."""
    if rule not in CHUNK_SCORE_RULES:
        raise ValueError(f"chunk_score must be one of {CHUNK_SCORE_RULES}, not {rule!r}")
    if rule == "confirm":  # both stages must agree; unconfirmed values stay in order, under the threshold
        return cnn if best_patch is not None and best_patch >= patch_threshold else cnn * chunk_threshold
    if best_patch is None or rule == "cnn":
        return cnn
    if rule == "max":
        return max(cnn, best_patch)
    if best_patch < patch_threshold:
        return cnn
    span = max(1.0 - patch_threshold, 1e-9)
    mapped = chunk_threshold + (best_patch - patch_threshold) / span * (1.0 - chunk_threshold)
    return max(cnn, min(1.0, mapped))


def best_in_chunks(windows: Sequence[Window], candidates: Sequence[Candidate], transform: Any) -> np.ndarray:
    """Per window, the highest second-stage ``probability`` among the candidates whose centroid it holds.

    NaN where a window holds none (or only unscored ones). The one place a patch is put into chunks: detect's
    streamed search (:func:`~marsice_plugin.patches.stage.score_stream`) takes the running maximum of this over its
    blocks of outlines, and the benches call it on one list. ``transform`` is the product's pixel-to-CRS transform.
    """
    best = np.full(len(windows), np.nan)
    scored = [c for c in candidates if c.probability is not None]
    if not scored or not len(windows):
        return best
    inside = centroids_in_windows(windows, [c.geometry for c in scored], transform)
    probs = np.array([c.probability for c in scored], float)
    values = np.where(inside, probs[:, None], -np.inf).max(axis=0)
    return np.where(np.isfinite(values), values, np.nan)


def centroids_in_windows(windows: Sequence[Window], geometries: Sequence[Any], transform: Any) -> np.ndarray:
    """(geometries, windows) booleans: whether each window holds each geometry's centroid (its pixel position).

    A window holds the pixels from its offset up to, not including, its offset plus its size, so a centroid on
    the border between two abutting windows belongs to the second. Used by :func:`best_in_chunks` and by detect's
    flagged search (:func:`marsice_plugin.detection.in_flagged_windows`), so a patch is in a chunk by one rule.
    """
    if not len(geometries) or not len(windows):
        return np.zeros((len(geometries), len(windows)), bool)
    xy = np.array([(g.centroid.x, g.centroid.y) for g in geometries])
    cols, rows = ~transform @ (xy[:, 0], xy[:, 1])
    box = np.array([(w.row_off, w.row_off + w.height, w.col_off, w.col_off + w.width) for w in windows], float)
    inside = (rows[:, None] >= box[:, 0]) & (rows[:, None] < box[:, 1])
    inside &= (cols[:, None] >= box[:, 2]) & (cols[:, None] < box[:, 3])
    return inside


def combine_chunk_scores(
    chunks: list[ChunkScore],
    best: Sequence[float] | np.ndarray,
    rule: str,
    patch_threshold: float,
    chunk_threshold: float,
) -> list[ChunkScore]:
    """New chunk scores (copies) whose ``probability`` combines both stages and ``cnn_probability`` keeps the first.

    ``best`` holds, per chunk in order, the best second-stage probability of its patches (every scored one, kept
    or not: the rule decides), NaN where it has none (:func:`best_in_chunks`). A chunk scored before
    (``cnn_probability`` set) is combined from its first-stage value again, never twice.
    """
    if len(best) != len(chunks):
        raise ValueError(f"one best patch value per chunk: {len(best)} values for {len(chunks)} chunks")
    out = []
    for chunk, value in zip(chunks, best, strict=True):
        first = chunk.cnn_probability if chunk.cnn_probability is not None else chunk.probability
        if first is None:  # skipped: no score to combine
            out.append(replace(chunk, cnn_probability=None))
            continue
        patch = None if np.isnan(value) else float(value)
        combined = patch_chunk_score(first, patch, rule, patch_threshold, chunk_threshold)
        out.append(replace(chunk, probability=combined, cnn_probability=first))
    return out
