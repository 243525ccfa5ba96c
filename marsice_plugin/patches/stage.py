"""The second stage in the detect flow: each candidate outline gets its own ice probability and a rank.

The first stage (the chunk CNN, read at JPEG2000 level 1 or 2) says where to look; the brightness rule
(:mod:`marsice_plugin.candidates`) outlines every bright patch there. Most of those are sunlit boulder faces,
dust and noise. This stage cuts a level-0 crop around each outline (:mod:`.crops`), scores it with the small CNN
(:mod:`.model`) and keeps the outlines at or above the model card's threshold (all of them with
``--all-candidates``). Each candidate then carries:

* ``probability``: this stage's ice probability;
* ``chunk_probability``: the first stage's, the highest stitched chunk probability over the outline;
* ``rank``: the order to look at them in. It is ``probability`` until a DTM adds terrain: ``marsice terrain``
  writes its terrain fields later, and combining them with ``probability`` is its business (README, *Ranking*).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .crops import crop_centre, crop_input, source_side

if TYPE_CHECKING:  # pragma: no cover
    import shapely

    from ..candidates import Candidate
    from ..grid import Window
    from ..product import Product
    from ..progress import Reporter

#: Candidates whose crops are cut and scored together (bounds the crops' memory: 256 x 32 KB).
CROP_BLOCK = 256

#: Where candidates are searched: in the chunks the first stage flags, or in every scored chunk.
SEARCH_MODES = ("flagged", "all")


@dataclass(frozen=True)
class PatchStage:
    """A loaded second-stage model with its threshold; ``keep_all`` keeps candidates under it (--all-candidates)."""

    model: Any
    threshold: float
    keep_all: bool = False
    name: str = ""


def candidate_window(product: Product, geometry: shapely.Polygon) -> tuple[int, int, int, tuple[float, float]]:
    """(row_off, col_off, side, crop centre in the window) of the level-0 window a candidate's crop is cut from."""
    inv = ~product.transform
    centroid = geometry.centroid
    col, row = inv @ (centroid.x, centroid.y)
    sun = product.image_sun_azimuth or 0.0  # in the image's rows and columns (polar grids turn north)
    c_row, c_col = crop_centre(row - 0.5, col - 0.5, product.scale_m, sun)
    side = source_side(product.scale_m)
    r0, c0 = round(float(c_row - side / 2)), round(float(c_col - side / 2))
    return r0, c0, side, (c_row - r0, c_col - c0)


def product_crop(product: Product, geometry: shapely.Polygon) -> np.ndarray:
    """One candidate's model input, read from the product at level 0 (no-data outside the image)."""
    from rasterio import features

    from ..anomalies import repair
    from ..grid import Window
    from ..product import nodata_mask, special_mask

    r0, c0, side, centre = candidate_window(product, geometry)
    rr0, cc0 = max(0, r0), max(0, c0)
    rr1, cc1 = min(product.height, r0 + side), min(product.width, c0 + side)
    grey = np.zeros((side, side), np.float32)
    valid = np.zeros((side, side), bool)
    if rr1 > rr0 and cc1 > cc0:
        data = product.read(rr0, cc0, rr1 - rr0, cc1 - cc0)
        nodata = nodata_mask(data, product.special_values)
        ok = ~(nodata | special_mask(data, product.special_values))
        fixed, _ = repair(data, ok, nodata=nodata)  # as the rule saw it: no hot pixel, specials filled
        grey[rr0 - r0 : rr1 - r0, cc0 - c0 : cc1 - c0] = product.pixel_scale.to_dn(fixed)
        valid[rr0 - r0 : rr1 - r0, cc0 - c0 : cc1 - c0] = ~nodata
    transform = Window(c0, r0, side, side).transform(product.transform)
    mask = features.rasterize([(geometry, 1)], out_shape=(side, side), transform=transform, dtype="uint8")
    sun = product.image_sun_azimuth or 0.0  # in the image's rows and columns (polar grids turn north)
    return crop_input(grey, valid, mask.astype(bool), centre, product.scale_m, sun)


def product_crops(product: Product, candidates: list[Candidate]) -> np.ndarray:
    """Model inputs of every candidate, (n, CROP_PX, CROP_PX, 2)."""
    from .crops import CROP_PX

    if not candidates:
        return np.empty((0, CROP_PX, CROP_PX, 2), np.float32)
    return np.stack([product_crop(product, c.geometry) for c in candidates])


def score_candidates(product: Product, candidates: list[Candidate], stage: PatchStage) -> list[Candidate]:
    """Give every candidate its probability, chunk_probability and rank; return those to keep, best first.

    Kept: at or above ``stage.threshold``, or every candidate with ``stage.keep_all``. Sorted by rank so a
    geologist's first rows are the best ones.
    """
    from .model import predict_crops

    # crops cut and scored a block at a time: a real-size product outlines thousands of patches (4,655 on the 1 Gpx
    # product of bench/fullsize.py), whose crops at once would hold 150 MB, twice over while they are stacked
    probs = np.concatenate(
        [np.empty(0, np.float32)]
        + [
            predict_crops(stage.model, product_crops(product, candidates[i : i + CROP_BLOCK]))
            for i in range(0, len(candidates), CROP_BLOCK)
        ]
    )
    for cand, p in zip(candidates, probs, strict=True):
        cand.probability = float(p)
        cand.chunk_probability = cand.max_probability
        cand.rank = float(p)  # terrain comes later (marsice terrain); until then rank = probability
    kept = [c for c in candidates if stage.keep_all or (c.probability or 0.0) >= stage.threshold]
    return sorted(kept, key=lambda c: -(c.rank or 0.0))


@dataclass
class SearchResult:
    """What a streamed search keeps: the output's candidates and, per chunk, its best scored outline."""

    candidates: list[Candidate] = field(default_factory=list)
    #: outlines the rule found (all scored by the second stage when there is one)
    outlined: int = 0
    #: per chunk window (in the order given), the highest probability of the scored outlines whose centroid it
    #: holds, NaN where none (:func:`~marsice_plugin.patches.chunk_score.best_in_chunks`)
    best: np.ndarray = field(default_factory=lambda: np.empty(0))


def score_stream(
    product: Product,
    outlines: Iterable[tuple[int, list[tuple[tuple[int, int], Candidate]]]],
    stage: PatchStage | None,
    chunk_windows: list[Window],
    total: int,
    reporter: Reporter | None = None,
    span: tuple[float, float] = (90.0, 92.0),
) -> SearchResult:
    """Score outlines as :func:`marsice_plugin.candidates.outline_stream` hands them on, keeping only what is output.

    Why: every-chunk search on a real-size product outlines about 10^5 patches; scored and kept all at once they
    held gigabytes. Here each :data:`CROP_BLOCK` of final outlines is scored and dropped unless kept (at or above
    the threshold, or all with ``keep_all``: then every outline stays, about a kilobyte each), and per chunk only the
    best probability is held, which is all a chunk's score needs (the running maximum of
    :func:`~marsice_plugin.patches.chunk_score.best_in_chunks` over the blocks). Without a stage every outline is
    kept unscored. The candidates come in the order :func:`score_candidates` gives one list of every outline.
    Progress: one report per window across ``span`` percent (``total`` windows; detection.PROGRESS_SPANS).
    """
    from .chunk_score import best_in_chunks

    result = SearchResult(best=np.full(len(chunk_windows), np.nan))
    kept: list[tuple[tuple[int, int], Candidate]] = []
    waiting: list[tuple[tuple[int, int], Candidate]] = []

    def score(block: list[tuple[tuple[int, int], Candidate]]) -> None:
        if stage is None:
            kept.extend(block)
            return
        cands = [c for _, c in block]
        key = {id(c): k for k, c in block}
        kept.extend((key[id(c)], c) for c in score_candidates(product, cands, stage))
        result.best = np.fmax(result.best, best_in_chunks(chunk_windows, cands, product.transform))

    for done, block in outlines:
        result.outlined += len(block)
        waiting.extend(block)
        if len(waiting) >= CROP_BLOCK:
            score(waiting)
            waiting = []
        if reporter is not None:
            message = f"outlining window {done}/{total}: {result.outlined} outlines, {len(kept)} kept"
            reporter.progress(span[0] + (span[1] - span[0]) * done / max(total, 1), message)
    if waiting:
        score(waiting)
    kept.sort(key=lambda pair: pair[0])  # the order of one list of every outline, then best first (a stable sort)
    result.candidates = [c for _, c in kept]
    if stage is not None:
        result.candidates.sort(key=lambda c: -(c.rank or 0.0))
    return result
