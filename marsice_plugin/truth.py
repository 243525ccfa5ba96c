"""Ground truth of generated products, per chunk: which chunks hold planted ice."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np


def chunk_truth(ice: np.ndarray, chunks: Iterable[Any], min_pixels: int = 16) -> dict[tuple[int, int], bool]:
    """True for chunks whose window holds at least ``min_pixels`` truth ice pixels."""
    out = {}
    for c in chunks:
        rows, cols = c.window.slices
        out[(c.chunk_row, c.chunk_col)] = bool(ice[rows, cols].sum() >= min_pixels)
    return out
