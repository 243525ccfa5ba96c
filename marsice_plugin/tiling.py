"""Cutting a product into georeferenced chunks.

Chunk grid arithmetic (per axis, image length ``L``, chunk size ``S``, overlap ``O``, stride
``S - O``): chunks start at ``0, S-O, 2(S-O), ...`` while they fit, and one last chunk is *shifted*
to start at ``L - S`` so the final row/column of pixels is always covered, never dropped. The number
of chunks is ``1 + ceil((L - S) / (S - O))`` for ``L > S`` and 1 otherwise (an image smaller than a
chunk gives one chunk of the image's size). A feature of width up to ``O`` pixels that is cut by one
chunk's edge therefore lies whole inside the neighbouring chunk.

Chunks are read strip by strip: every chunk row needs one read of ``S`` image rows over the full
width (decoded once), and chunks are sliced from that strip. Memory is bounded by the image width
times one strip, never by the image length.

The paper's no-data rule ("delete chunks with black pixels around the centre") is kept and made
robust with thresholds: a chunk is *skipped* (recorded, not dropped silently) when more than
``max_center_nodata`` of its central half, or more than ``max_nodata`` of the whole chunk, is no-data.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import affine

    from .product import Product


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


@dataclass
class Chunk:
    """One georeferenced chunk: pixels, window, affine transform, validity mask and skip decision."""

    chunk_row: int
    chunk_col: int
    window: Window
    transform: affine.Affine
    data: np.ndarray  # float32 grey DNs, special pixels left as read
    valid: np.ndarray  # bool: True where the pixel is real surface (not no-data or a special value)
    nodata_fraction: float
    center_nodata_fraction: float
    skipped: bool
    skip_reason: str = ""


def special_mask(data: np.ndarray, special_values: tuple[int, ...]) -> np.ndarray:
    """True where a pixel holds one of the label's special values (null, saturation)."""
    if not special_values:
        return np.zeros(data.shape, dtype=bool)
    return np.isin(data, np.asarray(special_values, dtype=data.dtype))


def nodata_mask(data: np.ndarray, special_values: tuple[int, ...]) -> np.ndarray:
    """True for no-data: the null value (the first special value, 0 for HiRISE) or non-finite pixels."""
    null = min(special_values) if special_values else None
    mask = ~np.isfinite(data)
    if null is not None:
        mask |= data == null
    return mask


class ChunkReader:
    """Yields :class:`Chunk` objects of a product, strip by strip, with ``len()``."""

    def __init__(
        self,
        product: Product,
        size: int = 1024,
        overlap: int = 0,
        max_center_nodata: float = 0.01,
        max_nodata: float = 0.5,
    ):
        self.product = product
        self.grid = ChunkGrid(product.width, product.height, size, overlap)
        self.max_center_nodata = max_center_nodata
        self.max_nodata = max_nodata

    def __len__(self) -> int:
        return len(self.grid)

    def __iter__(self) -> Iterator[Chunk]:
        p = self.product
        for i, r in enumerate(self.grid.rows):
            height = min(self.grid.size, p.height - r)
            strip = p.read(r, 0, height, p.width)
            for j in range(len(self.grid.cols)):
                window = self.grid.window(i, j)
                data = strip[:, window.col_off : window.col_off + window.width]
                yield self._chunk(i, j, window, data)

    def _chunk(self, i: int, j: int, window: Window, data: np.ndarray) -> Chunk:
        p = self.product
        nodata = nodata_mask(data, p.special_values)
        valid = ~(nodata | special_mask(data, p.special_values))
        h, w = data.shape
        center = nodata[h // 4 : h - h // 4, w // 4 : w - w // 4]
        nodata_fraction = float(nodata.mean())
        center_fraction = float(center.mean()) if center.size else nodata_fraction
        reason = ""
        if center_fraction > self.max_center_nodata:
            reason = f"{center_fraction:.0%} no-data in the chunk centre"
        elif nodata_fraction > self.max_nodata:
            reason = f"{nodata_fraction:.0%} no-data"
        return Chunk(
            chunk_row=i,
            chunk_col=j,
            window=window,
            transform=window.transform(p.transform),
            data=data,
            valid=valid,
            nodata_fraction=nodata_fraction,
            center_nodata_fraction=center_fraction,
            skipped=bool(reason),
            skip_reason=reason,
        )
