"""Stitch chunk probabilities into one georeferenced probability raster.

Each chunk's probability is spread over its window with a weight that is highest at the chunk centre
and falls to a small floor at its edges (a raised cosine, ``w(u) = floor + (1 - floor) sin²(π u)`` for
``u`` in (0, 1) across the chunk on each axis, multiplied over the two axes). Where chunks overlap,
the raster holds the weighted mean of their probabilities, so a patch near one chunk's edge is scored
mainly by the neighbour that sees it whole in its centre. Where a single chunk covers a pixel its
probability is used unchanged; pixels of skipped chunks only are NaN.

The raster is kept at a reduced resolution (``cell`` image pixels per raster pixel, 16 by default):
chunk probabilities carry no finer information.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import affine

#: Edge weight of the blending window (relative to 1 at the chunk centre).
EDGE_WEIGHT = 0.05


@dataclass
class ProbabilityRaster:
    """A probability grid aligned with the product: ``cell`` image pixels per raster pixel."""

    values: np.ndarray  # float32, NaN where no scored chunk covers
    cell: int
    transform: affine.Affine  # of the raster grid

    def sample(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Probabilities at image pixel positions (row, col arrays)."""
        r = np.clip(np.asarray(rows) // self.cell, 0, self.values.shape[0] - 1)
        c = np.clip(np.asarray(cols) // self.cell, 0, self.values.shape[1] - 1)
        return self.values[r, c]


def _axis_weight(n: int) -> np.ndarray:
    u = (np.arange(n) + 0.5) / n
    return (EDGE_WEIGHT + (1.0 - EDGE_WEIGHT) * np.sin(np.pi * u) ** 2).astype(np.float32)


def stitch(
    chunks: Iterable[Any], width: int, height: int, transform: affine.Affine, cell: int = 16
) -> ProbabilityRaster:
    """Blend chunk probabilities (objects with ``window`` and ``probability``) into a raster."""
    from affine import Affine

    rows, cols = math.ceil(height / cell), math.ceil(width / cell)
    acc = np.zeros((rows, cols), dtype=np.float64)
    weight = np.zeros((rows, cols), dtype=np.float64)
    for chunk in chunks:
        if chunk.probability is None:
            continue
        w = chunk.window
        r0, r1 = w.row_off // cell, math.ceil((w.row_off + w.height) / cell)
        c0, c1 = w.col_off // cell, math.ceil((w.col_off + w.width) / cell)
        win = np.outer(_axis_weight(r1 - r0), _axis_weight(c1 - c0))
        acc[r0:r1, c0:c1] += win * chunk.probability
        weight[r0:r1, c0:c1] += win
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(weight > 0, acc / weight, np.nan).astype(np.float32)
    return ProbabilityRaster(values, cell, transform @ Affine.scale(cell))


def write_geotiff(
    raster: ProbabilityRaster, crs_wkt: str, path: Path, finish: Callable[[Path, Path], Any] | None = None
) -> Path:
    """Write the probability raster as a georeferenced float32 GeoTIFF (NaN = no data), atomically.

    The file is written under a temporary name beside ``path``, then ``finish(tmp, path)`` puts it in place
    (default: :func:`~marsice_plugin.outputs.publish`, at once; detect defers it until its GeoPackage is
    committed). A failed write (a full disk: GDAL's "Write failed") leaves no file and is an :class:`OutputError`.
    """
    import rasterio
    from rasterio.crs import CRS
    from rasterio.errors import RasterioError

    from .outputs import write_atomically

    def write(tmp: Path) -> None:
        with rasterio.open(
            tmp,
            "w",
            driver="GTiff",
            width=raster.values.shape[1],
            height=raster.values.shape[0],
            count=1,
            dtype="float32",
            crs=CRS.from_wkt(crs_wkt),
            transform=raster.transform,
            nodata=float("nan"),
            compress="deflate",
        ) as ds:
            ds.write(raster.values, 1)
            ds.set_band_description(1, "probability of a bright patch consistent with remnant ice")

    return write_atomically(path, write, finish, errors=(OSError, RasterioError))
