"""Chunk pixels at another ground scale than the product's: computed JPEG2000 levels and per-chunk resampling.

The chunk reader (:mod:`marsice_plugin.chunk_reader`) uses them when a run reads coarser than the product: a
power-of-two reduction of a raster without JPEG2000 levels computes what the JPEG2000 decoder would return for
that level (:func:`wavelet_lowpass`), and any other factor, or a fixed model ground scale, resamples each chunk with
its masks and its affine transform, so a chunk stays exactly georeferenced at any scale.

**Why the wavelet and not a block average.** The shipped models read JPEG2000 products at level 1 or 2 and were
trained on those decodes: the low-pass band of the reversible 5/3 wavelet (JPEG2000's lossless transform), which is
sharper than a block average, centred on the even pixels, and blends hot pixels into their neighbours. The same
scene saved as a GeoTIFF (what ``gdal_translate`` of an RDR gives) and block-averaged differed from its JPEG2000
level by 15 DN on average, and its chunk probabilities by up to 0.15 (``bench/real_pixels.py``, container
invariance). The 5/3 lifting below reproduces OpenJPEG's level decode exactly, pixel for pixel, when it is run
tile by tile as the encoder runs it: a JPEG2000 transforms each tile on its own, mirrored at the tile's edges. So
the computed level assumes the tiles of :data:`JPEG2000_TILE` px that GDAL's JPEG2000 writer and every generated
product use. Transformed as one image instead, a rendered 2048 px product's levels 1 and 2 differed from the decode
in 0.4 % and 1.0 % of their pixels, all within 3 pixels of a tile edge, by up to 166 DN, and the ``--fast`` model's
chunk probabilities by up to 0.040 (``bench/real_pixels.py``, container invariance). A real RDR's own tiling is not
known here (README, *Throughput on a real-size product*); where it differs, only pixels near its tile edges do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .normalisation import DN_MAX
from .product_checks import SPECIAL_FLOAT_BELOW

if TYPE_CHECKING:  # pragma: no cover
    import affine

#: Side of the JPEG2000 tiles a computed level assumes (GDAL's JP2OpenJPEG default and the generated products').
JPEG2000_TILE = 1024


def _lift53(x: np.ndarray, axis: int) -> np.ndarray:
    """One level of the reversible 5/3 wavelet along ``axis``: the low-pass (even) band, symmetric extension.

    JPEG2000 part 1, annex F: d[n] = x[2n+1] - floor((x[2n] + x[2n+2]) / 2), then
    s[n] = x[2n] + floor((d[n-1] + d[n] + 2) / 4), with the signal mirrored at both ends.
    """
    x = np.moveaxis(x, axis, -1)
    even, odd = x[..., 0::2], x[..., 1::2]
    ne, no = even.shape[-1], odd.shape[-1]
    if no == 0:  # a single sample is its own low-pass
        return np.moveaxis(even, -1, axis)
    right = np.concatenate([even[..., 1:], even[..., -1:]], axis=-1)[..., :no]  # x[2n+2], mirrored at the end
    d = odd - np.floor((even[..., :no] + right) / 2)
    left_d = np.concatenate([d[..., :1], d], axis=-1)[..., :ne]  # d[-1] mirrors to d[0]
    right_d = d if no == ne else np.concatenate([d, d[..., -1:]], axis=-1)
    s = even + np.floor((left_d + right_d + 2) / 4)
    return np.moveaxis(s, -1, axis)


def tilewise_lowpass(x: np.ndarray, levels: int, tile: int = JPEG2000_TILE) -> np.ndarray:
    """:func:`_lift53` ``levels`` times along both axes, each ``tile`` × ``tile`` tile on its own (from ``x[0, 0]``)."""
    reduced = -(-tile // 2**levels)  # a whole tile's side at the level
    out = np.empty((-(-x.shape[0] // 2**levels), -(-x.shape[1] // 2**levels)))
    for r in range(0, x.shape[0], tile):
        for c in range(0, x.shape[1], tile):
            t = x[r : r + tile, c : c + tile]
            for _ in range(levels):
                t = _lift53(_lift53(t, 0), 1)
            out[
                r // tile * reduced : r // tile * reduced + t.shape[0],
                c // tile * reduced : c // tile * reduced + t.shape[1],
            ] = t
    return out


#: ISIS 32-bit high instrument saturation (HIS); the one value below it is high representation saturation (HRS).
ISIS_HIS_FLOAT = float(np.float32(-3.4028232635611926e38))


def special_dns(grey: np.ndarray, dn: np.ndarray) -> np.ndarray:
    """The DN each special pixel would have in a 10-bit RDR, for :func:`wavelet_lowpass`.

    Integer products keep their own value on the DN scale (1, 2, 1022, 1023 in a labelled RDR). ISIS float
    special pixels (about -3.4e38) are high saturation (HIS, HRS) -> 1023 or low (LRS, LIS) -> 1.
    """
    isis = grey < SPECIAL_FLOAT_BELOW
    high = grey <= np.float32(ISIS_HIS_FLOAT)
    return np.where(isis, np.where(high, DN_MAX, 1.0), np.clip(dn, 0.0, DN_MAX)).astype(np.float32)


def wavelet_lowpass(
    dn: np.ndarray,
    nodata: np.ndarray,
    special: np.ndarray,
    special_dn: np.ndarray,
    levels: int,
    special_levels: tuple[float, ...] = (DN_MAX,),
    tile: int = JPEG2000_TILE,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DNs at JPEG2000 resolution level ``levels``, as the decoder gives them for a 10-bit product (module docstring).

    The arrays start on a tile edge (row and column 0 of a tile of ``tile`` px); the last tile of a row or column may
    be shorter, as at the image's edge.

    As in a real RDR, no-data pixels enter the transform as DN 0 and special pixels as their DN (``special_dn``:
    1 or 2 for low, 1022 or 1023 for high saturation). The masks of the reduced pixels are what the JPEG2000 path
    finds in the decoded level: no-data where the value is the null DN 0, special where it is one of
    ``special_levels`` (the product's special values on the DN scale; always the 10-bit ceiling, where the decoder
    clamps a saturated neighbourhood). A margin pixel the low-pass lifts above 0 is data, as the decoder gives it.
    """
    x = np.where(nodata, 0.0, np.where(special, special_dn, dn)).astype(np.float64)
    x = tilewise_lowpass(x, levels, tile)
    x = np.clip(x, 0.0, DN_MAX)  # the decoder clamps to the 10-bit range (a low-pass undershoots at a black edge)
    # the JPEG2000 path's rule on the decoded level: the null DN is no-data (where the band has any no-data at all:
    # a raster without it keeps its dark pixels), a special DN is special
    out_nodata = x == 0.0 if nodata.any() else np.zeros(x.shape, dtype=bool)
    out_special = np.isin(x, np.asarray(special_levels, dtype=np.float64)) & ~out_nodata
    return x.astype(np.float32), out_nodata, out_special


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
