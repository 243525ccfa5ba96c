"""Reading a product as georeferenced chunks, streaming, at the speed of the decoder.

The grid of chunk windows and its overlap arithmetic are :mod:`marsice_plugin.grid`'s; this module decides how
to read them (:func:`plan_read`, a :class:`ReadPlan`) and reads them (:class:`ChunkReader`).

**Streaming**: the reader decodes the image in full-width *bands* of rows aligned to the file's
storage blocks (1024-row JPEG2000 tiles: 1024-row bands), each image row exactly once, and builds
each chunk row's *strip* (``S`` rows × the image width) from the one or two bands it spans. A
background thread (:class:`marsice_plugin.prefetch.Prefetch`) decodes the next band while the chunks of the
current strip are processed (GDAL releases the GIL while decoding), and GDAL's block cache is capped for the run
(:data:`GDAL_CACHE_BANDS` bands), so memory is bounded by the image width times about four bands of
rows, never by the image length. Reading window by window instead (one read per chunk, as
mars-ode-data-access does) restarts the decoder per window.

**No-data rule** (the paper's "delete chunks with black pixels around the centre", made robust): a
chunk is *skipped*, recorded with its reason and never dropped silently, when more than
``max_center_nodata`` of its central half, or more than ``max_nodata`` of the whole chunk, is no-data.

**One DN scale**: every band is brought to 10-bit DN equivalents by the product's
:attr:`~marsice_plugin.product.Product.pixel_scale` (:mod:`marsice_plugin.normalisation`) as it is decoded, before
repair, so the repair thresholds (in DNs), the tiles and the model input mean the same for a JPEG2000 with its label,
a GeoTIFF of any bit depth or a float I/F raster; for a HiRISE RDR the scale is the identity. The scale is decided
(or the product refused) at the first band, unless the caller asked the product first (``detect`` does, so a product
whose pixels cannot be normalised is refused before its first chunk is read).

**Special pixels and outliers**: label special values (null, low/high saturation) are masked
(``valid`` is False); with ``repair=True`` they and isolated bright outliers at ordinary DNs are
replaced (:mod:`marsice_plugin.anomalies`) and counted per chunk. Skipped chunks are not repaired
(their special pixels are still counted, their outliers are not searched for).

**Ground scale**: ``scale=F`` reads each chunk at ``F`` times the resolution. Powers of two (1/2, 1/4,
1/8) read the JPEG2000 resolution levels (or, for other formats, compute them: the 5/3 wavelet low-pass
the decoder would give, :func:`marsice_plugin.chunk_resample.wavelet_lowpass`);
other factors read full resolution and resample each chunk (area average). ``chunk_m`` defines the
chunk side in metres (``round(chunk_m / product scale)`` source pixels) and ``model_scale_m``
resamples every chunk to that ground scale, so products binned 1×, 2× or 4× (0.25, 0.5, 1 m/px) feed a
model consistently. Every chunk records its own ground scale (``scale_m``) and the exact affine
transform of its pixel array (pixel-corner convention).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .anomalies import repair as repair_chunk
from .chunk_resample import JPEG2000_TILE, resample_chunk, special_dns, wavelet_lowpass
from .errors import TilingError
from .grid import DEFAULT_MAX_PATCH_M, MIN_CHUNK_PX, ChunkGrid, Window, check_overlap, default_overlap
from .normalisation import DN_MAX
from .prefetch import Prefetch

if TYPE_CHECKING:  # pragma: no cover
    import affine
    import pyproj
    import shapely

    from .product import Product

#: GDAL's block cache during a run holds this many bands (enough to decode a band with every thread).
GDAL_CACHE_BANDS = 2

#: Bands decoded ahead of the one being cut into chunks.
PREFETCH_BANDS = 1


@dataclass
class Chunk:
    """One georeferenced chunk: pixels, windows, affine transform, masks, skip decision and repair counts."""

    chunk_row: int
    chunk_col: int
    window: Window  # the chunk's pixel window in the full-resolution product
    transform: affine.Affine  # of ``data``'s own pixel grid (pixel-corner convention)
    data: np.ndarray  # float32 grey, 10-bit DN equivalents (product.pixel_scale); repaired when the reader repairs
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


@dataclass(frozen=True)
class ReadPlan:
    """How a product is read into chunks: every decision :func:`plan_read` takes before a pixel is decoded.

    The grid is in the pixels that are decoded: full resolution, or a JPEG2000 level (read or computed) ``factor``
    times smaller; ``source_size``, ``overlap`` and the windows of the chunks handed out are in full-resolution
    pixels, whatever the method.
    """

    source_size: int  # chunk side in full-resolution pixels
    out_size: int  # side of a full chunk's pixel array (after a reduced read or resampling)
    overlap: int  # in full-resolution pixels
    method: str  # how chunk pixels are made: full, jpeg2000-level, wavelet-lowpass, resample
    factor: int  # full-resolution pixels per grid pixel (1, or 2**level for jpeg2000-level and wavelet-lowpass)
    level: int  # JPEG2000 resolution level decoded (0: full resolution)
    resample_to: int | None  # for "resample": the side each chunk is resampled to
    grid: ChunkGrid  # the chunk windows, in grid pixels
    grid_transform: affine.Affine  # of the grid's pixels (pixel-corner convention)
    chunk_scale_m: float  # ground scale of a chunk's pixel array (m/px)
    band_height: int  # grid rows decoded per read: whole storage blocks, at most a chunk
    max_center_nodata: float  # the skip rule (module docstring)
    max_nodata: float
    gdal_env: dict[str, Any]  # GDAL settings for the reading thread

    @property
    def band_rows(self) -> list[tuple[int, int]]:
        """(first grid row, height) of every band, top to bottom: each grid row belongs to exactly one."""
        h = self.grid.height
        return [(r, min(self.band_height, h - r)) for r in range(0, h, self.band_height)]


def _check_options(
    product: Product,
    size: int,
    max_center_nodata: float,
    max_nodata: float,
    scale: float,
    chunk_m: float | None,
    model_scale_m: float | None,
) -> None:
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


def plan_read(
    product: Product,
    size: int = 1024,
    overlap: int | None = None,
    max_center_nodata: float = 0.01,
    max_nodata: float = 0.5,
    *,
    scale: float = 1.0,
    chunk_m: float | None = None,
    model_scale_m: float | None = None,
    max_patch_m: float = DEFAULT_MAX_PATCH_M,
) -> ReadPlan:
    """Decide how to read ``product`` into chunks, the :class:`ReadPlan` of a :class:`ChunkReader`.

    ``size`` and ``overlap`` are in full-resolution pixels; ``overlap=None`` takes
    :func:`~marsice_plugin.grid.default_overlap` (for patches up to ``max_patch_m``). A chunk is skipped over
    ``max_center_nodata`` / ``max_nodata`` (fractions). ``scale`` (≤ 1) reads reduced resolution; ``chunk_m``
    and ``model_scale_m`` define chunks in metres and resample them to a fixed ground scale (module docstring).

    Chunk pixels are made at full resolution when nothing asks otherwise; a power-of-two reduction reads a
    JPEG2000 level (a fraction of the decoding) or, for other formats, computes that level's wavelet low-pass; any
    other factor, and every ``model_scale_m``, resamples each chunk. Bands are whole storage blocks (the decoder's
    unit), at most a chunk tall. Each bad option is a :class:`TilingError` saying what to give instead.
    """
    _check_options(product, size, max_center_nodata, max_nodata, scale, chunk_m, model_scale_m)
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

    # how chunk pixels are made: full resolution, a reduced level (read or computed), or per-chunk resampling
    factor, level, method = 1, 0, "full"
    resample_to: int | None = None
    ratio = src_size / out_size
    power = round(math.log2(ratio)) if ratio > 1 else 0
    if out_size == src_size:
        grid_w, grid_h, grid_size, grid_overlap = product.width, product.height, src_size, overlap
        grid_transform = product.transform
    elif model_scale_m is None and power >= 1 and 2**power * out_size == src_size:
        factor = 2**power
        grid_size = out_size
        grid_overlap = min(math.ceil(overlap / factor), grid_size - 1)
        if product.level_count() >= power:
            method, level = "jpeg2000-level", power
            grid_h, grid_w = product.level_shape(power)
            grid_transform = product.level_transform(power)
        else:
            from affine import Affine

            method = "wavelet-lowpass"
            grid_h, grid_w = -(-product.height // factor), -(-product.width // factor)
            grid_transform = product.transform @ Affine.scale(factor)
    else:
        method, resample_to = "resample", out_size
        grid_w, grid_h, grid_size, grid_overlap = product.width, product.height, src_size, overlap
        grid_transform = product.transform

    if method == "jpeg2000-level":
        block = product.block_height // factor
    elif method == "wavelet-lowpass":  # a computed level is made tile row by tile row (chunk_resample)
        block = JPEG2000_TILE // factor
    else:
        block = product.block_height
    block = max(1, block)
    band_height = grid_size if block > grid_size else block * (grid_size // block)
    # GDAL settings for the reading thread: bounded block cache, all cores for JPEG2000 decoding
    band_bytes = product.width * band_height * factor * 2 * max(1, product.band_count) * 2
    gdal_env = {"GDAL_CACHEMAX": max(64 * 2**20, GDAL_CACHE_BANDS * band_bytes), "GDAL_NUM_THREADS": "ALL_CPUS"}
    return ReadPlan(
        source_size=src_size,
        out_size=out_size,
        overlap=overlap,
        method=method,
        factor=factor,
        level=level,
        resample_to=resample_to,
        grid=ChunkGrid(grid_w, grid_h, grid_size, grid_overlap),
        grid_transform=grid_transform,
        chunk_scale_m=src_scale * src_size / out_size,
        band_height=band_height,
        max_center_nodata=max_center_nodata,
        max_nodata=max_nodata,
        gdal_env=gdal_env,
    )


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


class ChunkReader:
    """Yields :class:`Chunk` objects of a product, strip by strip, with ``len()``.

    The arguments besides ``repair`` and ``prefetch`` are :func:`plan_read`'s (``size``, ``overlap``, the
    no-data fractions, ``scale``, ``chunk_m``, ``model_scale_m``), and what they decide is :attr:`plan`.
    ``repair`` replaces special pixels and outliers; ``prefetch`` decodes the next band in a background thread.
    """

    def __init__(
        self, product: Product, *plan_args: Any, repair: bool = True, prefetch: bool = True, **plan_options: Any
    ):
        self.plan = plan_read(product, *plan_args, **plan_options)
        self.product = product
        self.repair = repair
        self.prefetch = prefetch

    def __len__(self) -> int:
        return len(self.plan.grid)

    # -- reading ----------------------------------------------------------------------------------
    def _read_band(self, start: int, height: int) -> _Band:
        p, plan = self.product, self.plan
        if plan.method == "wavelet-lowpass":
            f = plan.factor
            src_start = start * f
            src_height = min(height * f, p.height - src_start)
            # whole rows of JPEG2000 tiles, each transformed on its own as the encoder does (bands are tile rows)
            first = src_start // JPEG2000_TILE * JPEG2000_TILE
            last = min(p.height, -(-(src_start + src_height) // JPEG2000_TILE) * JPEG2000_TILE)
            grey, nodata, special = p.read_rows(first, last - first)
            dn = p.pixel_scale.to_dn(grey)
            marks = [float(p.pixel_scale.to_dn(np.float32(v))) for v in p.special_values if v != p.null_value]
            level = f.bit_length() - 1
            dn, nodata, special = wavelet_lowpass(dn, nodata, special, special_dns(grey, dn), level, (*marks, DN_MAX))
            rows = slice((src_start - first) // f, (src_start - first) // f + -(-src_height // f))
            return _Band(start, dn[rows], nodata[rows], special[rows])
        grey, nodata, special = p.read_rows(start, height, level=plan.level)
        return _Band(start, p.pixel_scale.to_dn(grey), nodata, special)

    def _decode_bands(self) -> Iterator[_Band]:
        """Every band, top to bottom, under the plan's GDAL settings (entered and left in the reading thread)."""
        import rasterio

        with rasterio.Env(**self.plan.gdal_env):
            for start, height in self.plan.band_rows:
                yield self._read_band(start, height)

    def strips(self) -> Iterator[tuple[int, _Band]]:
        """(chunk row index, strip of that chunk row) pairs: each strip is built from decoded bands."""
        fetcher = Prefetch(self._decode_bands, PREFETCH_BANDS, "marsice-band-reader") if self.prefetch else None
        bands = iter(fetcher) if fetcher is not None else self._decode_bands()
        grid = self.plan.grid
        cache: list[_Band] = []
        try:
            for i, r in enumerate(grid.rows):
                end = r + min(grid.size, grid.height - r)
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
            if fetcher is not None:
                fetcher.close()
            else:
                bands.close()  # leaves the GDAL settings

    def __iter__(self) -> Iterator[Chunk]:
        grid = self.plan.grid
        for i, strip in self.strips():
            for j in range(len(grid.cols)):
                gw = grid.window(i, j)
                cols = slice(gw.col_off, gw.col_off + gw.width)
                yield self._chunk(i, j, gw, strip.grey[:, cols], strip.nodata[:, cols], strip.special[:, cols])

    # -- one chunk --------------------------------------------------------------------------------
    def source_window(self, grid_window: Window) -> Window:
        """The full-resolution pixel window a grid window covers (clipped to the image)."""
        f = self.plan.factor
        if f == 1:
            return grid_window
        p = self.product
        c, r = grid_window.col_off * f, grid_window.row_off * f
        return Window(c, r, min(grid_window.width * f, p.width - c), min(grid_window.height * f, p.height - r))

    def _chunk(self, i: int, j: int, gw: Window, data: np.ndarray, nodata: np.ndarray, special: np.ndarray) -> Chunk:
        plan = self.plan
        h, w = data.shape
        n_nodata = int(np.count_nonzero(nodata))
        nodata_fraction = n_nodata / nodata.size
        center = nodata[h // 4 : h - h // 4, w // 4 : w - w // 4]
        center_fraction = float(np.count_nonzero(center) / center.size) if center.size else nodata_fraction
        reason = ""
        if center_fraction > plan.max_center_nodata:
            reason = f"{center_fraction:.0%} no-data in the chunk centre"
        elif nodata_fraction > plan.max_nodata:
            reason = f"{nodata_fraction:.0%} no-data"
        valid = ~(nodata | special)
        n_special = int(np.count_nonzero(special))
        n_outliers = 0
        repaired = False
        if self.repair and not reason:
            data, report = repair_chunk(data, valid, nodata=nodata)
            n_special, n_outliers, repaired = report.special_pixels, report.outlier_pixels, True
        transform = gw.transform(plan.grid_transform)
        if plan.resample_to is not None:
            data, valid, nodata, transform = resample_chunk(
                data, valid, nodata, transform, plan.resample_to, plan.source_size
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
            scale_m=plan.chunk_scale_m,
            nominal_size=plan.out_size,
            crs=self.product.crs,
        )
