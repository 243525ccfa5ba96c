"""What a terrain run reads of the image: a reduced grid for the co-registration, and level-0 windows for candidates.

Why so little: the co-registration needs the image only at the resolution of its FFT (at most
:data:`~marsice_plugin.terrain.coregistration.MAX_FFT_SIZE` px a side), and a JPEG2000 product carries reduced
resolution levels whose decoding costs a fraction of a level-0 read (:func:`reduced_image`). Every terrain raster comes
from the DTM alone. Level-0 pixels are needed by one candidate field only (the fraction of dark pixels in the sunward
ring, ``terrain_image_shadow_fraction``): the pixels of each candidate's window, read window by window in a thread
beside the terrain strips (:class:`ImagePass`; GDAL decodes only the storage tiles under them), and the image's median,
taken from the reduced grid the co-registration has already decoded (on the generated 40 Mpx product: 414 there,
412 at level 0; the dark threshold, 0.6 x the median, moves by 1.2 DN). A level-0 read of the whole image, which the
field's median once took, cost more than every terrain raster together. An image without reduced levels (a GeoTIFF),
or one small enough for one FFT, is read whole at level 0 for the co-registration anyway: there the median is exact
(:class:`ValueCounts`) and the windows are cut from that read.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

#: A pixel window (row0, row1, col0, col1), end-exclusive.
PixelWindow = tuple[int, int, int, int]


class ValueCounts:
    """Exact median of many values, read in pieces: distinct values and their counts.

    HiRISE grey values are 10-bit integers (a COLOR product's band mean: a few thousand distinct values), so the
    table stays tiny and the median is the one ``numpy.nanmedian`` gives on the whole image, bit for bit.
    """

    def __init__(self) -> None:
        self.values = np.empty(0, dtype=np.float64)
        self.counts = np.empty(0, dtype=np.int64)

    def add(self, values: np.ndarray) -> None:
        v = np.asarray(values).ravel()
        v = v[~np.isnan(v)]
        whole = v.astype(np.uint16)
        if v.size and np.array_equal(whole, v):  # integer grey values (DNs): counted without a sort
            c = np.bincount(whole)
            u = np.flatnonzero(c)
            u, c = u.astype(np.float64), c[u]
        else:
            u, c = np.unique(v.astype(np.float64), return_counts=True)
        if u.size == 0:
            return
        merged, inverse = np.unique(np.concatenate([self.values, u]), return_inverse=True)
        self.counts = np.bincount(inverse, weights=np.concatenate([self.counts, c]), minlength=merged.size).astype(
            np.int64
        )
        self.values = merged

    def median(self) -> float:
        """The median (the mean of the two middle values for an even count, as numpy takes it); NaN when empty."""
        n = int(self.counts.sum())
        if n == 0:
            return float("nan")
        cum = np.cumsum(self.counts)
        low = self.values[int(np.searchsorted(cum, (n - 1) // 2, side="right"))]
        if n % 2:
            return float(low)
        high = self.values[int(np.searchsorted(cum, n // 2, side="right"))]
        return float(np.mean(np.array([low, high])))


class WindowCollector:
    """Cuts windows out of strips that arrive top to bottom, keeping only the strips a pending window still needs.

    Each window is a copy, never a view: windows are kept until every strip has passed, and a view would keep its
    whole full-width strip alive (on a 1 Gpx product 219 candidates held 4.8 GB of strips this way).
    """

    def __init__(self, windows: Sequence[PixelWindow | None]) -> None:
        self._pending = sorted((w[1], i, w) for i, w in enumerate(windows) if w is not None)
        self._strips: list[tuple[int, dict[str, np.ndarray]]] = []

    def add(self, row0: int, arrays: dict[str, np.ndarray]) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Take the strip starting at ``row0``; yield ``(index, window arrays)`` for each window now complete."""
        self._strips.append((row0, arrays))
        end = row0 + next(iter(arrays.values())).shape[0]
        while self._pending and self._pending[0][0] <= end:
            _, index, (r0, r1, c0, c1) = self._pending.pop(0)
            parts: dict[str, list[np.ndarray]] = {name: [] for name in arrays}
            for s0, strip in self._strips:
                s1 = s0 + next(iter(strip.values())).shape[0]
                a, b = max(r0, s0), min(r1, s1)
                if a < b:
                    for name, values in strip.items():
                        parts[name].append(values[a - s0 : b - s0, c0:c1])
            yield index, {name: np.concatenate(p) if len(p) > 1 else p[0].copy() for name, p in parts.items()}
        first = min((w[0] for _, _, w in self._pending), default=end)
        self._strips = [(s0, s) for s0, s in self._strips if s0 + next(iter(s.values())).shape[0] > first]


def _cache_bytes(product: Any, rows: int) -> int:
    """GDAL's block cache for a strip read: two rows of the image's storage blocks (each JPEG2000 tile is decoded
    once as the strips cross it), never GDAL's default share of the machine's memory (5 %: GBs on a large machine,
    held until the run ends)."""
    return max(64 * 2**20, 2 * int(product.width) * max(rows, product.block_height) * 2 * max(1, product.band_count))


def image_strips(product: Any, rows: int) -> Iterator[tuple[int, np.ndarray]]:
    """Full-width strips of ``rows`` rows of the image at level 0 (float32, NaN at the no-data value)."""
    import rasterio

    null = product.null_value
    cache = _cache_bytes(product, rows)
    for r0 in range(0, int(product.height), rows):
        n = min(rows, int(product.height) - r0)
        with rasterio.Env(GDAL_CACHEMAX=cache):
            image = product.read(r0, 0, n, int(product.width)).astype(np.float32)
        if null is not None:
            image[image == null] = np.nan
        yield r0, image


def block_mean(block: np.ndarray, factor: int) -> np.ndarray:
    """Means of ``factor`` x ``factor`` blocks (whole blocks only), ignoring NaN; NaN where a block has no value."""
    rows, cols = block.shape[0] // factor, block.shape[1] // factor
    cut = block[: rows * factor, : cols * factor].astype(np.float64).reshape(rows, factor, cols, factor)
    with warnings.catch_warnings():  # blocks in the black margins are NaN, as they should be
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(cut, axis=(1, 3))


def reduced_image(product: Any, factor: int) -> tuple[np.ndarray, Any, int] | None:
    """The image on a grid about ``factor`` times coarser, from its JPEG2000 levels: ``(grid, transform, scale)``,
    where ``scale`` is the grid's pixel size in image pixels (a power of two times a whole block factor, at least
    ``factor``, so the grid stays within the FFT size the co-registration was sized for); None without levels.

    The level's samples are the wavelet's low-pass values, centred as :meth:`Product.level_transform` says; the DTM
    hillshade is rendered on that same transform, so the correlation compares the same places. No-data samples (the
    black margins) are NaN; a level's samples along a margin mix it with the image, as a block mean did.
    """
    import rasterio
    from affine import Affine

    levels = product.level_count()
    if factor <= 1 or levels < 1:
        return None
    level = min(levels, math.ceil(math.log2(factor)))
    block = -(-factor // 2**level)  # the rest of the factor, averaged here (1 when the level suffices)
    height, width = product.level_shape(level)
    out = np.empty((height // block, width // block), dtype=np.float64)
    step = max(block, (2_000_000 // width) // block * block)
    with rasterio.Env(GDAL_CACHEMAX=_cache_bytes(product, step)):
        for r0 in range(0, out.shape[0] * block, step):
            n = min(step, out.shape[0] * block - r0)
            grey, nodata, _ = product.read_rows(r0, n, level)
            grey[nodata] = np.nan
            out[r0 // block : (r0 + n) // block] = block_mean(grey, block) if block > 1 else grey[:, : out.shape[1]]
    return out, product.level_transform(level) @ Affine.scale(block), 2**level * block


#: Level-0 windows (each one storage tile of the image, at most :data:`REFINE_PX` a side) that refine an offset
#: measured on reduced levels.
REFINE_WINDOWS = 3
REFINE_PX = 512


def refine_offset(product: Any, dtm: Any, coarse: Any, scale: int, sun: tuple[float, float], relief: float) -> Any:
    """``coarse`` (a :class:`Coregistration` measured on a grid of ``scale`` px) made precise on a few level-0 windows.

    Why: a reduced grid measures the offset to a fraction of its own pixel (8 px and more), and the strips apply it
    rounded to whole pixels. Each window (a storage tile down the middle of the image, where the black margins are
    not) is correlated with the hillshade of the DTM moved by the coarse offset; the median of the windows whose
    peak passes the quality test, within ``scale`` px, is added to it. Without such a window the coarse offset
    stands. Three tiles decode 3 Mpx (0.6 s): a few % of a level-0 read at 25-40 Mpx, 0.5 % at 1 Gpx.
    """
    from affine import Affine

    from ..synthetic.illumination import lambert
    from .coregistration import Coregistration, phase_correlate
    from .shadows import cast_shadows_rows

    if not coarse.aligned:
        return coarse
    dr0, dc0 = round(coarse.d_row), round(coarse.d_col)
    tile = max(1, int(product.block_height))
    side = min(REFINE_PX, tile, int(product.width), int(product.height))
    c0 = (int(product.width) // 2 - side // 2) // tile * tile
    found: list[Any] = []
    null = product.null_value
    for k in range(REFINE_WINDOWS):
        r0 = min(int((product.height - side) * (k + 0.5) / REFINE_WINDOWS) // tile * tile, product.height - side)
        image = product.read(r0, c0, side, side).astype(np.float32)
        if null is not None:
            image[image == null] = np.nan
        t = product.transform @ Affine.translation(c0 - dc0, r0 - dr0)
        heights = dtm.on_grid(product.crs, t, side, side)
        valid = np.isfinite(heights)
        if valid.mean() < 0.9 or np.isfinite(image).mean() < 0.9:
            continue
        h = np.where(valid, heights, np.nanmean(heights)).astype(np.float32)
        shade = lambert(h.astype(np.float64), product.scale_m, *sun)
        shade[cast_shadows_rows(h, 0, side, side, product.scale_m, *sun, relief)] = 0.0
        c = phase_correlate(image, shade)
        if c.aligned and abs(c.d_row) <= scale and abs(c.d_col) <= scale:
            found.append(c)
    if not found:
        return coarse
    d_row = dr0 + float(np.median([c.d_row for c in found]))
    d_col = dc0 + float(np.median([c.d_col for c in found]))
    return Coregistration(d_row, d_col, coarse.peak_ratio, True)


class ImagePass(threading.Thread):
    """The level-0 pixels of each candidate's window (``windows[index]``), read window by window in a thread beside
    the terrain strips, top to bottom (neighbouring windows share the storage tiles GDAL's cache holds).

    GDAL decodes without Python's lock, so the read and the strips' numpy work share the machine's cores. The
    thread stops at the next window once :meth:`stop` is called (a failure or a cancel in the main thread); an error
    of its own (a truncated image) is raised again by :meth:`finish` or :meth:`check`.
    """

    def __init__(self, product: Any, windows: Sequence[PixelWindow | None]) -> None:
        super().__init__(name="terrain-image", daemon=True)
        self.product = product
        self.windows: dict[int, np.ndarray] = {}
        self.windows_done = 0
        self._todo = sorted((w[0], w[2], i, w) for i, w in enumerate(windows) if w is not None)
        self._halt = threading.Event()
        self._error: BaseException | None = None

    def run(self) -> None:
        import rasterio

        null = self.product.null_value
        try:
            with rasterio.Env(GDAL_CACHEMAX=_cache_bytes(self.product, 1)):
                for _, _, index, (r0, r1, c0, c1) in self._todo:
                    if self._halt.is_set():
                        return
                    image = self.product.read(r0, c0, r1 - r0, c1 - c0).astype(np.float32)
                    if null is not None:
                        image[image == null] = np.nan
                    self.windows[index] = image
                    self.windows_done += 1
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which raises it
            self._error = exc

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join()

    def check(self) -> None:
        """Raise the thread's error now, if it has failed (the main thread need not finish its strips first)."""
        if self._error is not None:
            raise self._error

    def finish(self) -> None:
        """Wait for every window."""
        self.join()
        self.check()
