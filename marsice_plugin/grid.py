"""The chunk grid: which pixel windows a product is cut into, and why no patch is lost at a chunk edge.

Pure arithmetic (no pixels, no files), shared by the chunk reader (:mod:`marsice_plugin.chunk_reader`), the
candidate outlines, the result layers and the generated truth, so that they all speak of the same windows.

**Chunk grid** (per axis, image length ``L``, chunk size ``S``, overlap ``O``, stride ``S - O``):
chunks start at ``0, S-O, 2(S-O), ...`` while they fit, and one last chunk is *shifted* to start at
``L - S`` so the final row/column of pixels is always covered, never dropped. The number of chunks is
``1 + ceil((L - S) / (S - O))`` for ``L > S`` and 1 otherwise (an image smaller than a chunk gives
one chunk of the image's size, padded with its median before scoring). An image with a side shorter than
:data:`MIN_CHUNK_PX` (8 px, the smallest chunk) is refused with a :class:`TilingError`: a chunk padded out of a
few pixels holds no scene, so a score for it would be noise (a 1-pixel raster is an export gone wrong, not a
product). Consecutive chunks overlap by at least ``O``, so **every feature
whose extent is at most ``O`` pixels along each axis lies whole inside at least one chunk**: a patch
cut by one chunk's edge lies whole in a neighbour. (Proof per axis: take the last chunk starting at or
before the feature's start ``a``; the next chunk starts after ``a``, and this one ends at least ``O``
past that start, so past ``a + O``; the last chunk ends at ``L``.)

For example ``L = 2048``, ``S = 1024``, ``O = 256``: stride 768, chunks at 0 and 768 fit, and the last one is
shifted to 1024 (``2048 - 1024``) instead of starting at 1536 and running past the edge; 3 chunks, as
``1 + ceil(1024 / 768)`` says. A 256-px patch at 900..1156 crosses the first chunk's edge (1024) and lies whole
in the second chunk (768..1792); one at 1700..1956 crosses the second chunk's edge and lies whole in the last
(1024..2048).

**Default overlap** (:func:`default_overlap`): ``O = min(ceil(max_patch_m / scale_m), S // 2)`` with
``max_patch_m = 32`` m, the largest remnant-ice patch MarsIce expects to see whole (the generated
scenes plant patches 2–24 m across; the paper's 1024-px chunks span about 300 m): 128 px at
0.25 m/px, 64 px at 0.5 m/px, 32 px at 1 m/px. The cap at half a chunk bounds the extra work to 4×
(:func:`check_overlap` refuses more). ``marsice detect`` and ``scan`` use it by default (``--overlap 0`` is the
paper's tiling): with it no patch of ``evaluation_set_v2`` was lost to a chunk edge, against half of the cut
patches without.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import TilingError  # defined with every other MarsIce error; importable from here too

if TYPE_CHECKING:  # pragma: no cover
    import affine

#: Smallest chunk side (px), and so the smallest image side a product may have.
MIN_CHUNK_PX = 8

#: Largest patch (metres) the default overlap keeps whole inside one chunk.
DEFAULT_MAX_PATCH_M = 32.0


@dataclass(frozen=True)
class Window:
    """A pixel window: column/row offset of its top-left pixel, and its size (like rasterio's Window)."""

    col_off: int
    row_off: int
    width: int
    height: int

    def transform(self, parent: affine.Affine) -> affine.Affine:
        """Affine transform of the window's own pixel grid, from the parent image transform."""
        from affine import Affine

        return parent @ Affine.translation(self.col_off, self.row_off)

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.row_off, self.row_off + self.height), slice(self.col_off, self.col_off + self.width)


def axis_offsets(length: int, size: int, overlap: int) -> list[int]:
    """Start offsets of chunks along one axis (see the module docstring for the arithmetic)."""
    if length <= 0:
        raise ValueError("length must be positive")
    if not 0 <= overlap < size:
        raise ValueError(f"overlap must be in [0, size): got {overlap} for size {size}")
    if length <= size:
        return [0]
    stride = size - overlap
    count = 1 + math.ceil((length - size) / stride)
    offsets = [i * stride for i in range(count - 1)]
    offsets.append(length - size)
    return offsets


def check_overlap(overlap: int, size: int) -> None:
    """Refuse an overlap over half the chunk ``size`` (the cap of :func:`default_overlap`).

    Why half: the default overlap never goes beyond it (patches up to 32 m, at most half a chunk, lie whole in
    one chunk); past it every pixel is scored in three or more chunks along each axis, and at ``size - 1`` the
    grid has a chunk per pixel (a 20,000 x 60,000 px product at 1024 px: about 10⁹ chunks instead of 1,200).
    """
    if not 0 <= overlap <= size // 2:
        raise TilingError(
            f"overlap {overlap} px is outside 0..{size // 2} px: at most half the {size}-px chunk "
            "(--overlap auto keeps patches up to 32 m whole within that)"
        )


def default_overlap(scale_m: float, size: int, max_patch_m: float = DEFAULT_MAX_PATCH_M) -> int:
    """Overlap (pixels) that keeps a patch of ``max_patch_m`` metres whole in one chunk, capped at ``size // 2``."""
    if scale_m <= 0 or not math.isfinite(scale_m):
        raise TilingError(f"cannot derive an overlap from a ground scale of {scale_m} m/px; give --overlap")
    return min(math.ceil(max_patch_m / scale_m - 1e-9), size // 2)


@dataclass(frozen=True)
class ChunkGrid:
    """The chunk windows of an image, in row-major order; ``len()`` is the number of chunks."""

    width: int
    height: int
    size: int = 1024
    overlap: int = 0
    rows: list[int] = field(init=False, repr=False)
    cols: list[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows", axis_offsets(self.height, self.size, self.overlap))
        object.__setattr__(self, "cols", axis_offsets(self.width, self.size, self.overlap))

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)

    @property
    def shape(self) -> tuple[int, int]:
        """(chunk rows, chunk columns)."""
        return len(self.rows), len(self.cols)

    def window(self, chunk_row: int, chunk_col: int) -> Window:
        r, c = self.rows[chunk_row], self.cols[chunk_col]
        return Window(c, r, min(self.size, self.width - c), min(self.size, self.height - r))

    def __iter__(self) -> Iterator[tuple[int, int, Window]]:
        for i in range(len(self.rows)):
            for j in range(len(self.cols)):
                yield i, j, self.window(i, j)
