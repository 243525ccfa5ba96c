"""Cutting a product into georeferenced chunks, streaming, at the speed of the decoder.

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

**Default overlap** (:func:`default_overlap`): ``O = min(ceil(max_patch_m / scale_m), S // 2)`` with
``max_patch_m = 32`` m, the largest remnant-ice patch MarsIce expects to see whole (the generated
scenes plant patches 2–24 m across; the paper's 1024-px chunks span about 300 m): 128 px at
0.25 m/px, 64 px at 0.5 m/px, 32 px at 1 m/px. The cap at half a chunk bounds the extra work to 4×.
``marsice detect`` and ``scan`` use it by default (``--overlap 0`` is the paper's tiling): with it no
patch of ``evaluation_set_v2`` was lost to a chunk edge, against half of the cut patches without.

**Streaming**: the reader decodes the image in full-width *bands* of rows aligned to the file's
storage blocks (1024-row JPEG2000 tiles: 1024-row bands), each image row exactly once, and builds
each chunk row's *strip* (``S`` rows × the image width) from the one or two bands it spans. A
background thread decodes the next band while the chunks of the current strip are processed (GDAL
releases the GIL while decoding), and GDAL's block cache is capped for the run
(:data:`GDAL_CACHE_BANDS` bands), so memory is bounded by the image width times about four bands of
rows, never by the image length. Reading window by window instead (one read per chunk, as
mars-ode-data-access does) restarts the decoder per window.

**No-data rule** (the paper's "delete chunks with black pixels around the centre", made robust): a
chunk is *skipped*, recorded with its reason and never dropped silently, when more than
``max_center_nodata`` of its central half, or more than ``max_nodata`` of the whole chunk, is no-data.

**Special pixels and outliers**: label special values (null, low/high saturation) are masked
(``valid`` is False); with ``repair=True`` they and isolated bright outliers at ordinary DNs are
replaced (:mod:`marsice_plugin.anomalies`) and counted per chunk. Skipped chunks are not repaired
(their special pixels are still counted, their outliers are not searched for).

**Ground scale**: ``scale=F`` reads each chunk at ``F`` times the resolution. Powers of two (1/2, 1/4,
1/8) read the JPEG2000 resolution levels (or, for other formats, average ``1/F × 1/F`` blocks);
other factors read full resolution and resample each chunk (area average). ``chunk_m`` defines the
chunk side in metres (``round(chunk_m / product scale)`` source pixels) and ``model_scale_m``
resamples every chunk to that ground scale, so products binned 1×, 2× or 4× (0.25, 0.5, 1 m/px) feed a
model consistently. Every chunk records its own ground scale (``scale_m``) and the exact affine
transform of its pixel array (pixel-corner convention).
"""

from __future__ import annotations

import contextlib
import math
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .anomalies import repair as repair_chunk
from .errors import TilingError  # defined with every other MarsIce error; importable from here too

if TYPE_CHECKING:  # pragma: no cover
    import affine
    import pyproj
    import shapely

    from .product import Product

#: Smallest chunk side (px), and so the smallest image side a product may have.
MIN_CHUNK_PX = 8

#: Largest patch (metres) the default overlap keeps whole inside one chunk.
DEFAULT_MAX_PATCH_M = 32.0

#: GDAL's block cache during a run holds this many bands (enough to decode a band with every thread).
GDAL_CACHE_BANDS = 2

#: Bands decoded ahead of the one being cut into chunks.
PREFETCH_BANDS = 1


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


@dataclass
class Chunk:
    """One georeferenced chunk: pixels, windows, affine transform, masks, skip decision and repair counts."""

    chunk_row: int
    chunk_col: int
    window: Window  # the chunk's pixel window in the full-resolution product
    transform: affine.Affine  # of ``data``'s own pixel grid (pixel-corner convention)
    data: np.ndarray  # float32 grey DNs; repaired when the reader repairs (see ``repaired``)
    valid: np.ndarray  # bool: True where the pixel is real surface (not no-data, not a special value)
    nodata_fraction: float
    center_nodata_fraction: float
    skipped: bool
    skip_reason: str = ""
    nodata: np.ndarray | None = None  # bool: no-data pixels (before any repair)
    special_pixels: int = 0
    outlier_pixels: int = 0
    repaired: bool = False
    scale_m: float = 0.0  # ground scale of ``data`` (m/px)
    nominal_size: int = 0  # side of a full chunk's array (smaller only when the image is smaller)
    crs: pyproj.CRS | None = None  # the product's CRS (``transform`` is in it)

    def footprint(self, to_common: bool = True) -> shapely.Polygon:
        """Outline of ``data``'s pixels: in the common Mars CRS (default) or the product CRS."""
        from .vectors import window_footprint

        if self.crs is None:
            raise TilingError("this chunk has no CRS; it was not made by a ChunkReader")
        h, w = self.data.shape
        return window_footprint(self.transform, self.crs, 0, 0, w, h, to_common=to_common)


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


@dataclass
class _Band:
    """Decoded rows ``start .. start + len`` of the grid image, with their masks."""

    start: int
    grey: np.ndarray
    nodata: np.ndarray
    special: np.ndarray

    @property
    def end(self) -> int:
        return self.start + self.grey.shape[0]


class _Prefetcher:
    """Decodes bands in a background thread, ``depth`` ahead of the consumer; errors are re-raised on ``get``."""

    _END = object()

    def __init__(self, read: Callable[[int, int], _Band], bands: list[tuple[int, int]], depth: int, env: dict):
        self._read = read
        self._bands = bands
        self._env = env
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="marsice-band-reader", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        import rasterio

        try:
            with rasterio.Env(**self._env):
                for start, height in self._bands:
                    if self._stop.is_set() or not self._put(self._read(start, height)):
                        return
            self._put(self._END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread, which re-raises it
            self._put(exc)

    def __iter__(self) -> Iterator[_Band]:
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        """Stop decoding and wait for the thread, so the dataset is never closed under a running read."""
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)
            self._thread.join(timeout=0.05)


class ChunkReader:
    """Yields :class:`Chunk` objects of a product, strip by strip, with ``len()``.

    ``size`` and ``overlap`` are in full-resolution pixels; ``overlap=None`` takes
    :func:`default_overlap`. ``scale`` (≤ 1) reads reduced resolution; ``chunk_m`` and
    ``model_scale_m`` define chunks in metres and resample them to a fixed ground scale (see the
    module docstring). ``prefetch`` decodes the next band in a background thread.
    """

    def __init__(
        self,
        product: Product,
        size: int = 1024,
        overlap: int | None = None,
        max_center_nodata: float = 0.01,
        max_nodata: float = 0.5,
        *,
        scale: float = 1.0,
        chunk_m: float | None = None,
        model_scale_m: float | None = None,
        repair: bool = True,
        prefetch: bool = True,
        max_patch_m: float = DEFAULT_MAX_PATCH_M,
    ):
        if size < MIN_CHUNK_PX:
            raise TilingError(f"chunk size {size} px is too small; use at least {MIN_CHUNK_PX} (the paper used 1024)")
        if min(product.width, product.height) < MIN_CHUNK_PX:
            raise TilingError(
                f"{product.path.name} is {product.width}x{product.height} px, too small to cut into chunks (at "
                f"least {MIN_CHUNK_PX} px on each side); check that the raster was exported whole"
            )
        if not 0.0 <= max_center_nodata <= 1.0 or not 0.0 <= max_nodata <= 1.0:
            raise TilingError("no-data thresholds are fractions: give values within 0..1")
        if not 0.0 < scale <= 1.0:
            raise TilingError(f"--scale must be within (0, 1], got {scale}; e.g. 0.25 reads 1024-px chunks as 256 px")
        if scale != 1.0 and (chunk_m is not None or model_scale_m is not None):
            raise TilingError("--scale cannot be combined with --chunk-m/--model-scale: use --model-scale alone")
        for name, value in (("chunk_m", chunk_m), ("model_scale_m", model_scale_m)):
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise TilingError(f"{name} must be a positive number of metres, got {value}")
        self.product = product
        self.max_center_nodata = max_center_nodata
        self.max_nodata = max_nodata
        self.repair = repair
        self.prefetch = prefetch
        src_scale = product.scale_m

        # source chunk size and output size
        if chunk_m is not None:
            src_size = max(8, round(chunk_m / src_scale))
        elif model_scale_m is not None:
            src_size = max(8, round(size * model_scale_m / src_scale))
        else:
            src_size = size
        if model_scale_m is not None:
            out_size = max(8, round(src_size * src_scale / model_scale_m))
        else:
            out_size = max(1, round(src_size * scale))
        if overlap is None:
            overlap = default_overlap(src_scale, src_size, max_patch_m)
        check_overlap(overlap, src_size)
        self.source_size = src_size
        self.overlap = overlap
        self.out_size = out_size

        # how chunk pixels are made: full resolution, a reduced level/block average, or per-chunk resampling
        self.factor = 1
        self.level = 0
        self.method = "full"
        self.resample_to: int | None = None
        factor = src_size / out_size
        power = round(math.log2(factor)) if factor > 1 else 0
        if out_size == src_size:
            grid_w, grid_h, grid_size, grid_overlap = product.width, product.height, src_size, overlap
            self.grid_transform = product.transform
        elif model_scale_m is None and power >= 1 and 2**power * out_size == src_size:
            f = 2**power
            self.factor = f
            grid_size = out_size
            grid_overlap = min(math.ceil(overlap / f), grid_size - 1)
            if product.level_count() >= power:
                self.method, self.level = "jpeg2000-level", power
                grid_h, grid_w = product.level_shape(power)
                self.grid_transform = product.level_transform(power)
            else:
                from affine import Affine

                self.method = "block-mean"
                grid_h, grid_w = -(-product.height // f), -(-product.width // f)
                self.grid_transform = product.transform @ Affine.scale(f)
        else:
            self.method = "resample"
            self.resample_to = out_size
            grid_w, grid_h, grid_size, grid_overlap = product.width, product.height, src_size, overlap
            self.grid_transform = product.transform
        self.grid = ChunkGrid(grid_w, grid_h, grid_size, grid_overlap)
        self.chunk_scale_m = src_scale * src_size / out_size

        block = product.block_height // self.factor if self.method == "jpeg2000-level" else product.block_height
        block = max(1, block)
        self.band_height = grid_size if block > grid_size else block * (grid_size // block)

    def __len__(self) -> int:
        return len(self.grid)

    @property
    def band_rows(self) -> list[tuple[int, int]]:
        """(first grid row, height) of every band, top to bottom: each grid row belongs to exactly one."""
        h = self.grid.height
        return [(r, min(self.band_height, h - r)) for r in range(0, h, self.band_height)]

    def gdal_env(self) -> dict[str, Any]:
        """GDAL settings for the reading thread: bounded block cache, all cores for JPEG2000 decoding."""
        width = self.product.width
        band_bytes = width * self.band_height * self.factor * 2 * max(1, self.product.band_count) * 2
        return {
            "GDAL_CACHEMAX": max(64 * 2**20, GDAL_CACHE_BANDS * band_bytes),
            "GDAL_NUM_THREADS": "ALL_CPUS",
        }

    # -- reading ----------------------------------------------------------------------------------
    def _read_band(self, start: int, height: int) -> _Band:
        p = self.product
        if self.method == "block-mean":
            f = self.factor
            src_start = start * f
            src_height = min(height * f, p.height - src_start)
            grey, nodata, special = p.read_rows(src_start, src_height)
            grey, nodata, special = _block_mean(grey, nodata, special, f)
            return _Band(start, grey, nodata, special)
        grey, nodata, special = p.read_rows(start, height, level=self.level)
        return _Band(start, grey, nodata, special)

    def _bands(self) -> tuple[Iterator[_Band], Callable[[], None]]:
        bands = self.band_rows
        if self.prefetch:
            fetcher = _Prefetcher(self._read_band, bands, PREFETCH_BANDS, self.gdal_env())
            return iter(fetcher), fetcher.close
        import rasterio

        env = rasterio.Env(**self.gdal_env())
        env.__enter__()

        def gen() -> Iterator[_Band]:
            for start, height in bands:
                yield self._read_band(start, height)

        return gen(), lambda: env.__exit__(None, None, None)

    def strips(self) -> Iterator[tuple[int, _Band]]:
        """(chunk row index, strip of that chunk row) pairs: each strip is built from decoded bands."""
        bands, close = self._bands()
        cache: list[_Band] = []
        try:
            for i, r in enumerate(self.grid.rows):
                end = r + min(self.grid.size, self.grid.height - r)
                cache = [b for b in cache if b.end > r]
                while not cache or cache[-1].end < end:
                    cache.append(next(bands))
                parts = [b for b in cache if b.start < end and b.end > r]
                if len(parts) == 1:
                    b = parts[0]
                    sl = slice(r - b.start, end - b.start)
                    yield i, _Band(r, b.grey[sl], b.nodata[sl], b.special[sl])
                else:
                    sls = [slice(max(r, b.start) - b.start, min(end, b.end) - b.start) for b in parts]
                    yield (
                        i,
                        _Band(
                            r,
                            np.concatenate([b.grey[s] for b, s in zip(parts, sls, strict=True)]),
                            np.concatenate([b.nodata[s] for b, s in zip(parts, sls, strict=True)]),
                            np.concatenate([b.special[s] for b, s in zip(parts, sls, strict=True)]),
                        ),
                    )
        finally:
            close()

    def __iter__(self) -> Iterator[Chunk]:
        for i, strip in self.strips():
            for j in range(len(self.grid.cols)):
                gw = self.grid.window(i, j)
                cols = slice(gw.col_off, gw.col_off + gw.width)
                yield self._chunk(i, j, gw, strip.grey[:, cols], strip.nodata[:, cols], strip.special[:, cols])

    # -- one chunk --------------------------------------------------------------------------------
    def source_window(self, grid_window: Window) -> Window:
        """The full-resolution pixel window a grid window covers (clipped to the image)."""
        f = self.factor
        if f == 1:
            return grid_window
        p = self.product
        c, r = grid_window.col_off * f, grid_window.row_off * f
        return Window(c, r, min(grid_window.width * f, p.width - c), min(grid_window.height * f, p.height - r))

    def _chunk(self, i: int, j: int, gw: Window, data: np.ndarray, nodata: np.ndarray, special: np.ndarray) -> Chunk:
        h, w = data.shape
        n_nodata = int(np.count_nonzero(nodata))
        nodata_fraction = n_nodata / nodata.size
        center = nodata[h // 4 : h - h // 4, w // 4 : w - w // 4]
        center_fraction = float(np.count_nonzero(center) / center.size) if center.size else nodata_fraction
        reason = ""
        if center_fraction > self.max_center_nodata:
            reason = f"{center_fraction:.0%} no-data in the chunk centre"
        elif nodata_fraction > self.max_nodata:
            reason = f"{nodata_fraction:.0%} no-data"
        valid = ~(nodata | special)
        n_special = int(np.count_nonzero(special))
        n_outliers = 0
        repaired = False
        if self.repair and not reason:
            data, report = repair_chunk(data, valid, nodata=nodata)
            n_special, n_outliers, repaired = report.special_pixels, report.outlier_pixels, True
        transform = gw.transform(self.grid_transform)
        if self.resample_to is not None:
            data, valid, nodata, transform = _resample(
                data, valid, nodata, transform, self.resample_to, self.source_size
            )
        return Chunk(
            chunk_row=i,
            chunk_col=j,
            window=self.source_window(gw),
            transform=transform,
            data=data,
            valid=valid,
            nodata_fraction=nodata_fraction,
            center_nodata_fraction=center_fraction,
            skipped=bool(reason),
            skip_reason=reason,
            nodata=nodata,
            special_pixels=n_special,
            outlier_pixels=n_outliers,
            repaired=repaired,
            scale_m=self.chunk_scale_m,
            nominal_size=self.out_size,
            crs=self.product.crs,
        )


def _block_mean(
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


def _resample(
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


# -- export: georeferenced GeoTIFF chunks + a tile index, for labelling in QGIS -----------------------


def _index_fields() -> list:
    from .gpkg import Field

    return [
        Field("product_id", str, "product id"),
        Field("chunk_row", int, "chunk row in the grid (0 = north)"),
        Field("chunk_col", int, "chunk column (0 = west)"),
        Field("row_off", int, "first full-resolution image line of the chunk (0-based)"),
        Field("col_off", int, "first full-resolution image sample of the chunk (0-based)"),
        Field("width", int, "chunk width in full-resolution pixels"),
        Field("height", int, "chunk height in full-resolution pixels"),
        Field("out_width", int, "width of the chunk's pixel array (after --scale or resampling)"),
        Field("out_height", int, "height of the chunk's pixel array"),
        Field("scale_m", float, "ground scale of the chunk's pixel array (m/pixel)"),
        Field("method", str, "how the pixels were made: full, jpeg2000-level, block-mean, resample"),
        Field("skipped", bool, "mostly no-data: not exported, not scored"),
        Field("skip_reason", str, "why the chunk was skipped"),
        Field("nodata_fraction", float, "fraction of no-data pixels"),
        Field("center_nodata_fraction", float, "fraction of no-data pixels in the central half"),
        Field("special_pixels", int, "pixels with label special values (masked; repaired when repair is on)"),
        Field("outlier_pixels", int, "isolated bright outliers repaired (0 for skipped chunks: not searched)"),
        Field("repaired", bool, "special pixels and outliers were replaced in the exported pixels"),
        Field("file", str, "GeoTIFF of the chunk, relative to the index (NULL when not exported)"),
        Field("label", int, "for labelling in QGIS: 1 ice patch, 0 none; NULL until labelled"),
    ]


@dataclass
class TileExport:
    """What :func:`export_tiles` wrote."""

    product_id: str
    index: Path
    folder: Path | None
    chunks: int = 0
    skipped: int = 0
    images: int = 0
    overlap: int = 0
    method: str = "full"
    scale_m: float = 0.0

    def summary(self) -> str:
        where = f" and {self.images} GeoTIFFs" if self.folder else ""
        return (
            f"{self.product_id}: {self.chunks} chunks ({self.skipped} skipped, recorded) in the tile index{where}; "
            f"overlap {self.overlap} px, {self.scale_m:.3g} m/px ({self.method})"
        )


def _write_geotiff(path: Path, chunk: Chunk, valid_max: float | None = None, sun_azimuth: float | None = None) -> None:
    """One chunk as a float32 GeoTIFF in the product's own CRS; no-data pixels are NaN (the nodata value).

    ``VALID_MAX`` (the DN that maps to 1.0, e.g. 1023 for 10-bit RDRs) and ``SUN_AZIMUTH`` (from north)
    travel in the tags so that ``marsice train`` normalises and augments the chunk as detection would see it.
    """
    import rasterio
    from rasterio.crs import CRS

    data = np.array(chunk.data, dtype=np.float32, copy=True)
    if chunk.nodata is not None:
        data[chunk.nodata] = np.nan
    h, w = data.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=w,
        height=h,
        count=1,
        dtype="float32",
        crs=CRS.from_wkt(chunk.crs.to_wkt()),
        transform=chunk.transform,
        nodata=float("nan"),
        compress="deflate",
        predictor=3,
        tiled=True,
        blockxsize=256,
        blockysize=256,
    ) as ds:
        ds.write(data, 1)
        ds.update_tags(
            CHUNK_ROW=chunk.chunk_row,
            CHUNK_COL=chunk.chunk_col,
            SCALE_M=f"{chunk.scale_m:.6f}",
            REPAIRED=str(chunk.repaired),
            SPECIAL_PIXELS=chunk.special_pixels,
            OUTLIER_PIXELS=chunk.outlier_pixels,
            **({"VALID_MAX": f"{valid_max:g}"} if valid_max else {}),
            **({"SUN_AZIMUTH": f"{sun_azimuth:.3f}"} if sun_azimuth is not None else {}),
        )


def export_tiles(
    product_path: str | Path,
    out_dir: str | Path,
    *,
    size: int = 1024,
    overlap: int | None = None,
    scale: float = 1.0,
    chunk_m: float | None = None,
    model_scale_m: float | None = None,
    max_center_nodata: float = 0.01,
    max_nodata: float = 0.5,
    repair: bool = True,
    images: bool = True,
    overwrite: bool = False,
    reporter: Any = None,
) -> TileExport:
    """Cut a product into chunks and write ``ID_tiles.gpkg`` (+ ``ID_tiles/rRRR_cCCC.tif`` GeoTIFFs).

    The index (layer ``tiles``) holds one footprint per chunk, skipped ones included, in the common
    Mars CRS (IAU_2015:49900); the GeoTIFFs are in the product's own CRS with the chunk's exact
    transform. Outputs are written atomically: GeoTIFFs go to a hidden temporary folder that is
    renamed into place when complete, and the index is written with :func:`marsice_plugin.gpkg.write_new`;
    a failed or cancelled run leaves neither.
    """
    import os
    import shutil
    import tempfile

    from .errors import OutputError
    from .gpkg import write_new
    from .mars_crs import COMMON_CRS, common_crs
    from .product import open_product

    out_dir = Path(out_dir)
    fields = _index_fields()
    with open_product(product_path) as product:
        pid = product.product_id
        index = out_dir / f"{pid}_tiles.gpkg"
        folder = out_dir / f"{pid}_tiles" if images else None
        for target in (index, folder):
            if target is not None and target.exists() and not overwrite:
                raise OutputError(f"{target} already exists; remove it, choose another -o folder, or use --overwrite")
        reader = ChunkReader(
            product,
            size,
            overlap,
            max_center_nodata,
            max_nodata,
            scale=scale,
            chunk_m=chunk_m,
            model_scale_m=model_scale_m,
            repair=repair,
        )
        result = TileExport(
            pid, index, folder, overlap=reader.overlap, method=reader.method, scale_m=reader.chunk_scale_m
        )
        created = not out_dir.exists()  # removed again, when still empty, if the run fails or is cancelled
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            tmp_folder = Path(tempfile.mkdtemp(prefix=f".{pid}_tiles.", suffix=".partial", dir=out_dir))
        except OSError as exc:
            raise OutputError(f"cannot write into {out_dir}: {exc.strerror or exc}") from exc
        rows = []
        total = len(reader)
        try:
            for done, chunk in enumerate(reader, start=1):
                name = None
                if images and not chunk.skipped:
                    name = f"r{chunk.chunk_row:03d}_c{chunk.chunk_col:03d}.tif"
                    _write_geotiff(tmp_folder / name, chunk, product.valid_max, product.viewing.sun_azimuth_from_north)
                    result.images += 1
                w = chunk.window
                oh, ow = chunk.data.shape
                rows.append(
                    (
                        chunk.footprint(to_common=True),
                        {
                            "product_id": pid,
                            "chunk_row": chunk.chunk_row,
                            "chunk_col": chunk.chunk_col,
                            "row_off": w.row_off,
                            "col_off": w.col_off,
                            "width": w.width,
                            "height": w.height,
                            "out_width": ow,
                            "out_height": oh,
                            "scale_m": chunk.scale_m,
                            "method": reader.method,
                            "skipped": chunk.skipped,
                            "skip_reason": chunk.skip_reason,
                            "nodata_fraction": chunk.nodata_fraction,
                            "center_nodata_fraction": chunk.center_nodata_fraction,
                            "special_pixels": chunk.special_pixels,
                            "outlier_pixels": chunk.outlier_pixels,
                            "repaired": chunk.repaired,
                            "file": f"{folder.name}/{name}" if (name and folder) else None,
                            "label": None,
                        },
                    )
                )
                result.chunks += 1
                result.skipped += int(chunk.skipped)
                if reporter is not None:
                    reporter.progress(95 * done / total, f"chunk {done}/{total}")
            # An overwritten tile folder is set aside until the new index is in place, and put back if
            # writing the index fails or is cancelled: the index and its GeoTIFFs always belong together.
            previous = None
            if folder is not None:
                if folder.exists():
                    previous = folder.with_name(f".{folder.name}.old")
                    shutil.rmtree(previous, ignore_errors=True)
                    os.replace(folder, previous)
                os.replace(tmp_folder, folder)

            def build(gpkg: Any) -> None:
                srs = gpkg.add_srs(common_crs(), name=f"Mars 2015 sphere, planetocentric ({COMMON_CRS})")
                gpkg.create_layer("tiles", fields, "POLYGON", srs, f"chunks of {pid} (skipped ones recorded)")
                gpkg.insert("tiles", fields, rows)

            try:
                write_new(index, build)
            except BaseException:
                if folder is not None:
                    shutil.rmtree(folder, ignore_errors=True)
                    if previous is not None:
                        os.replace(previous, folder)
                raise
            if previous is not None:
                shutil.rmtree(previous, ignore_errors=True)
        except OSError as exc:
            raise OutputError(f"cannot write tiles into {out_dir}: {exc.strerror or exc}") from exc
        finally:
            shutil.rmtree(tmp_folder, ignore_errors=True)
            if created and not index.exists():
                with contextlib.suppress(OSError):
                    out_dir.rmdir()
    return result
