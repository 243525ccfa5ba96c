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

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from ..candidates import Candidate
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


def combine_chunk_scores(
    chunks: list[ChunkScore],
    candidates: list[Candidate],
    rule: str,
    patch_threshold: float,
    chunk_threshold: float,
    transform: Any,
) -> list[ChunkScore]:
    """New chunk scores (copies) whose ``probability`` combines both stages and ``cnn_probability`` keeps the first.

    ``candidates`` carry their second-stage ``probability`` (every scored one, kept or not: the rule decides);
    ``transform`` is the product's pixel-to-CRS transform, for placing each candidate's centroid in the chunk grid.
    A chunk scored before (``cnn_probability`` set) is combined from its first-stage value again, never twice.
    """
    cols = np.array([0.0])
    rows = np.array([0.0])
    probs = np.array([0.0])
    if candidates:
        inv = ~transform
        xy = np.array([(c.geometry.centroid.x, c.geometry.centroid.y) for c in candidates])
        cols, rows = inv @ (xy[:, 0], xy[:, 1])
        probs = np.array([c.probability if c.probability is not None else -1.0 for c in candidates])
    out = []
    for chunk in chunks:
        first = chunk.cnn_probability if chunk.cnn_probability is not None else chunk.probability
        if first is None:  # skipped: no score to combine
            out.append(replace(chunk, cnn_probability=None))
            continue
        best = None
        if candidates:
            w = chunk.window
            inside = (
                (rows >= w.row_off) & (rows < w.row_off + w.height) & (cols >= w.col_off) & (cols < w.col_off + w.width)
            )
            inside &= probs >= 0.0
            best = float(probs[inside].max()) if inside.any() else None
        value = patch_chunk_score(first, best, rule, patch_threshold, chunk_threshold)
        out.append(replace(chunk, probability=value, cnn_probability=first))
    return out
