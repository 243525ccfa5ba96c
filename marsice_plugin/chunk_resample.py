"""Chunk pixels at another ground scale than the product's: block averages and per-chunk resampling.

The chunk reader (:mod:`marsice_plugin.chunk_reader`) uses them when a run reads coarser than the product: a
power-of-two reduction of a raster without JPEG2000 levels averages blocks over their *valid* pixels (so hot and
null pixels do not leak into their neighbours), and any other factor, or a fixed model ground scale, resamples
each chunk with its masks and its affine transform, so a chunk stays exactly georeferenced at any scale.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import affine


def block_mean(
    grey: np.ndarray, nodata: np.ndarray, special: np.ndarray, f: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Average ``f × f`` blocks over their valid pixels (partial blocks at the edges included).

    A reduced pixel is no-data when all its pixels are, special when none is valid but not all are
    no-data; otherwise it is the mean of its valid pixels, so hot and null pixels do not leak in.
    """
    valid = ~(nodata | special)
    rows = np.arange(0, grey.shape[0], f)
    cols = np.arange(0, grey.shape[1], f)

    def blocksum(a: np.ndarray) -> np.ndarray:
        return np.add.reduceat(np.add.reduceat(a, rows, axis=0), cols, axis=1)

    total = blocksum(np.where(valid, grey, 0.0).astype(np.float64))
    count = blocksum(valid.astype(np.int32))
    n_nodata = blocksum(nodata.astype(np.int32))
    size = blocksum(np.ones(grey.shape, dtype=np.int32))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), 0.0).astype(np.float32)
    out_nodata = n_nodata == size
    out_special = (count == 0) & ~out_nodata
    return mean, out_nodata, out_special


def resample_chunk(
    data: np.ndarray, valid: np.ndarray, nodata: np.ndarray, transform: affine.Affine, out_size: int, src_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, affine.Affine]:
    """Resample a chunk to ``out_size`` px per ``src_size`` source px: area average down, bilinear up.

    PIL maps the array's outer pixel corners onto each other, so the transform only scales.
    """
    from affine import Affine
    from PIL import Image

    h, w = data.shape
    oh, ow = max(1, round(h * out_size / src_size)), max(1, round(w * out_size / src_size))
    method = Image.BOX if out_size < src_size else Image.BILINEAR
    out = np.asarray(Image.fromarray(np.ascontiguousarray(data, dtype=np.float32), mode="F").resize((ow, oh), method))

    def mask(m: np.ndarray) -> np.ndarray:
        img = Image.fromarray(np.ascontiguousarray(m, dtype=np.uint8) * 255, mode="L")
        return np.asarray(img.resize((ow, oh), Image.NEAREST)) > 127

    return out, mask(valid), mask(nodata), transform @ Affine.scale(w / ow, h / oh)
