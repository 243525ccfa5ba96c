"""Pixel values from the data, not the container: every product brought to one DN scale before the CNN sees it.

The shipped models were trained on 10-bit HiRISE DNs divided by 1023. The same scene reaches MarsIce in many
containers: a JPEG2000 with its PDS3 label, a uint16 GeoTIFF of the same DNs (with or without GDAL's ``NBITS``), an
8-bit copy, a 16-bit full-range copy, a float I/F raster from ISIS. Dividing each by its data type's maximum (as
MarsIce did) showed the model a black image for a 10-bit uint16 GeoTIFF, and it scored every chunk 0.373. So every
product gets one :class:`PixelScale`, an affine map of its raw values onto **10-bit DN equivalents**; the chunk
reader applies it before repair and the model input is those DNs / :data:`DN_MAX`
(:mod:`marsice_plugin.cnn.preprocess`).
The scale, in order of what the product says about itself:

1. **A PDS3 label**: its valid range (``SAMPLE_BIT_MASK``, 10 bits for HiRISE RDRs) and special values; DN × 1023 /
   (2**bits - 1), the identity for HiRISE RDRs, so every labelled product reads exactly as before. The label's
   ``SCALING_FACTOR``/``OFFSET`` turn those DNs into I/F; the model reads DNs, so they are not needed.
2. **GDAL's** ``NBITS`` (``IMAGE_STRUCTURE`` metadata, e.g. a 10-bit JPEG2000 or a GeoTIFF written with ``NBITS=10``).
3. **Integers without either**: the smallest of 8, 10, 12, 14 or 16 bits that holds the largest valid pixel of the
   product's sample, so a uint16 GeoTIFF of 10-bit DNs reads as 10-bit, DN × 64 as 16-bit and DN / 4 as 8-bit.
4. **Floats** (I/F, radiance): no bit depth says where the scale ends, so the valid pixels are stretched as the
   renderer and HiRISE's own RDR processing stretch I/F into 10 bits: the 0.1th percentile onto DN 120 and the
   99.9th onto DN 820 (:data:`STRETCH_PERCENTILES`, :data:`STRETCH_DN`; the renderer's definition, which every
   training product holds, measured on generated products in the README).

The valid pixels are a sample read at full resolution from a grid of windows across the image
(:meth:`marsice_plugin.product.Product.pixel_sample`): the same pixels whatever the container, no resampling, and a
fraction of a product's decoding; a float raster up to :data:`STRETCH_WHOLE_PIXELS` gives every pixel instead, since
its percentiles are the stretch. Valid means not no-data (the label's or raster's null, NaN, ISIS NULL) and not a
special value (saturation; ISIS LRS, LIS, HIS, HRS of 8-, 16- and 32-bit cubes).

Why not a per-product percentile stretch for every product (invariant to any affine change of values): it was
measured against this rule on the frozen evaluation sets with the shipped models (README, *Normalisation*); this rule
keeps the inputs the shipped models were trained and judged on identical for every labelled product and every
integer container.

A product whose pixels cannot be brought to a scale is refused with one line (:class:`ProductError`, exit 2): no
valid pixel, a float raster with no finite value, or every valid pixel of one value (nothing to see).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import ProductError

if TYPE_CHECKING:  # pragma: no cover
    from rasterio.windows import Window

#: The model's DN scale: chunk pixels are 10-bit DN equivalents and the model input is DN / DN_MAX.
DN_MAX = 1023.0

#: Bit depths an integer product without a label or ``NBITS`` may have; the smallest that holds its pixels is used.
BIT_DEPTHS = (8, 10, 12, 14, 16)

#: Percentiles of a float product's valid pixels mapped onto :data:`STRETCH_DN` (the renderer's I/F to DN stretch).
STRETCH_PERCENTILES = (0.1, 99.9)
STRETCH_DN = (120.0, 820.0)

#: ISIS special pixels of 32-bit (float) cubes: NULL is no-data, LRS, LIS, HIS, HRS are saturation (special).
ISIS_NULL_FLOAT = float(np.float32(-3.4028226550889045e38))
#: ISIS special pixels of integer cubes by data type: (NULL, the saturation values LRS, LIS, HIS, HRS).
ISIS_SPECIAL_INT = {
    "uint8": (0, (255,)),
    "int16": (-32768, (-32767, -32766, -32765, -32764)),
    "uint16": (0, (1, 2, 65534, 65535)),
}

#: The pixel sample behind a product's scale: a grid of SAMPLE_GRID × SAMPLE_GRID full-resolution windows of
#: SAMPLE_WINDOW px (about a megapixel, whatever the product's size), and the side of the reduced read used when they
#: all miss the image (a thin diagonal strip in a large frame).
SAMPLE_GRID = 8
SAMPLE_WINDOW = 128
SAMPLE_REDUCED_SIDE = 1024
#: A float product's sample, whose percentiles set its stretch: 32 × 32 windows of 256 px, each read at every 4th
#: pixel of every 4th row (64 × 64 values; about 4 Mpx in all). Bright patches of ice or dust cluster, so a sample of
#: small dense windows misplaces the tail percentiles; the same windows' pixels spread across 256 px follow the whole
#: image. On 16384 px mosaics of 16 generated products (``bench/stretch_sample.py --count 16 --mosaic 8``) the gain
#: was off by 0.14 % at the median and 0.43 % at most, against 0.67 % and 4.23 % for the 32 × 32 windows of 32 px read
#: whole used before (2026-12-07 to 12-08) and 0.65 % / 1.15 % for 64 × 64 of them. A tiled GeoTIFF decodes the same
#: tiles either way. Integer products need only the sample's largest value, and keep the coarser grid: a JPEG2000
#: decodes a tile for each window.
STRETCH_SAMPLE_GRID = 32
STRETCH_SAMPLE_WINDOW = 256
STRETCH_SAMPLE_STEP = 4
#: A float raster of at most this many pixels (4096 × 4096) is stretched from every valid pixel, not the sample: its
#: tail percentiles are steep where bright patches cluster, so a quarter of a 2048 px scene put the 99.9th percentile
#: 2 % off, and the fast model's chunk probabilities 0.060 from the labelled product's (``bench/real_pixels.py
#: --sections containers``); read whole, 0.029. Crops exported from a product are this size. Reading 16 Mpx of
#: float32 took about a second and 330 MB more peak memory than the sample while its percentiles are taken (detect's
#: own peak on such a raster did not rise); larger rasters (a full-size I/F cube is 1 Gpx) keep the sample.
STRETCH_WHOLE_PIXELS = 4096 * 4096


def sample_windows(width: int, height: int, grid: int = SAMPLE_GRID, side: int = SAMPLE_WINDOW) -> list[Window]:
    """The windows of a product's pixel sample, spread from corner to corner (a small image: every pixel, once)."""
    from rasterio.windows import Window

    def spans(size: int) -> list[tuple[int, int]]:
        if size <= grid * side:
            return [(s, min(side, size - s)) for s in range(0, size, side)]
        return [(round(s), side) for s in np.linspace(0, size - side, grid)]

    return [Window(c, r, w, h) for r, h in spans(height) for c, w in spans(width)]


def stretch_windows(width: int, height: int, band_rows: int = 1024) -> tuple[list[Window], int]:
    """The windows whose valid pixels set a float raster's stretch, and every how many pixels (and rows) to read
    them: every pixel, in bands of ``band_rows`` full-width rows, up to :data:`STRETCH_WHOLE_PIXELS` (step 1); beyond,
    the sample grid's windows at every :data:`STRETCH_SAMPLE_STEP`-th pixel."""
    from rasterio.windows import Window

    if width * height <= STRETCH_WHOLE_PIXELS:
        return [Window(0, r, width, min(band_rows, height - r)) for r in range(0, height, band_rows)], 1
    return sample_windows(width, height, STRETCH_SAMPLE_GRID, STRETCH_SAMPLE_WINDOW), STRETCH_SAMPLE_STEP


@dataclass(frozen=True)
class PixelScale:
    """Raw product values → 10-bit DN equivalents: ``dn = raw × gain + offset``; ``how`` says why (for the log)."""

    gain: float
    offset: float
    how: str

    @property
    def identity(self) -> bool:
        return self.gain == 1.0 and self.offset == 0.0

    def to_dn(self, values: np.ndarray) -> np.ndarray:
        """``values`` on the model's DN scale (float32); the identity returns them unchanged (HiRISE RDRs)."""
        if self.identity:
            return values.astype(np.float32, copy=False)
        with np.errstate(over="ignore", invalid="ignore"):  # special values (ISIS -3.4e38) are masked anyway
            out = values.astype(np.float32, copy=True)
            out *= np.float32(self.gain)
            out += np.float32(self.offset)
        return out


def bits_scale(bits: int, why: str) -> PixelScale:
    """DN × 1023 / (2**bits - 1): a ``bits``-bit integer product on the 10-bit scale."""
    return PixelScale(DN_MAX / (2**bits - 1), 0.0, f"{bits}-bit DNs ({why})")


def bits_holding(maximum: float) -> int:
    """The smallest of :data:`BIT_DEPTHS` that holds ``maximum`` (more bits when none does)."""
    for bits in BIT_DEPTHS:
        if maximum <= 2**bits - 1:
            return bits
    return max(BIT_DEPTHS[-1], math.ceil(math.log2(maximum + 1)))


def stretch_scale(values: np.ndarray) -> PixelScale:
    """The renderer's stretch measured on ``values`` (valid pixels): percentiles onto :data:`STRETCH_DN`."""
    lo, hi = (float(v) for v in np.percentile(values, STRETCH_PERCENTILES))
    if not hi > lo:  # a product of (nearly) one value plus a few others: fall back to the full range
        lo, hi = float(values.min()), float(values.max())
    if not hi > lo:
        raise ValueError(f"a float image whose valid pixels all hold {lo:g} cannot be stretched")
    gain = (STRETCH_DN[1] - STRETCH_DN[0]) / (hi - lo)
    return PixelScale(
        gain,
        STRETCH_DN[0] - lo * gain,
        f"float values stretched: {lo:.6g} (0.1th percentile) -> DN {STRETCH_DN[0]:g}, "
        f"{hi:.6g} (99.9th) -> DN {STRETCH_DN[1]:g}",
    )


def check_sample(path: Path, values: np.ndarray, floating: bool, sampled: int) -> None:
    """Refuse a product whose valid pixels cannot be normalised (none, none finite, all one value)."""
    if values.size == 0:
        if floating:
            raise ProductError(
                f"{path}: a float raster with no finite valid value in {sampled:,} pixels read across it (all NaN, "
                "infinite, no-data or ISIS special pixels); nothing to score: check that it was exported with its "
                "image values"
            )
        raise ProductError(
            f"{path}: no valid pixel in {sampled:,} pixels read across it (all no-data or special values); nothing "
            "to score: check that the raster was exported with its image, and its no-data value"
        )
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        raise ProductError(
            f"{path}: every valid pixel holds the same value ({lo:g}; {values.size:,} read across it); an image of "
            "one value shows no surface, so it is not scored: check the export"
        )


def product_scale(
    path: Path, values: np.ndarray, dtype: str, label_bits: int | None, nbits: int | None, sampled: int
) -> PixelScale:
    """The :class:`PixelScale` of a product from its valid sample ``values`` and what its metadata say.

    ``label_bits``: the PDS3 label's valid bits (None without a label); ``nbits``: GDAL's ``NBITS``; ``sampled``:
    how many pixels were read (for the refusal messages). See the module docstring for the order.
    """
    floating = np.dtype(dtype).kind == "f"
    check_sample(path, values, floating, sampled)
    if label_bits is not None and not floating:
        return bits_scale(label_bits, "the PDS3 label's valid range")
    if floating:
        return stretch_scale(values)
    if nbits:
        return bits_scale(nbits, "GDAL NBITS")
    return bits_scale(bits_holding(float(values.max())), f"the smallest bit depth holding the largest of {dtype}")


def image_scale(values: np.ndarray, dtype: str, tag_max: float | None = None) -> PixelScale:
    """The same rule for a single chunk image (training from chunk files): ``VALID_MAX`` tag, bit depth or stretch.

    A ``marsice tile`` GeoTIFF carries ``VALID_MAX`` (1023: its pixels are already on the DN scale).
    """
    if tag_max:
        return PixelScale(DN_MAX / tag_max, 0.0, f"VALID_MAX {tag_max:g}")
    if np.dtype(dtype).kind == "f":
        return stretch_scale(values)
    return bits_scale(bits_holding(float(values.max())), f"the smallest bit depth holding the largest of {dtype}")
