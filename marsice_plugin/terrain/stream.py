"""The terrain of an image computed strip by strip, so memory stays bounded whatever the product's size.

Why strips: a HiRISE RDR is 0.5-1.5 Gpx; its heights, slopes and aspects as whole float arrays would be tens of GB.
Two passes over full-width strips of rows do the work:

1. **Image pass** (:meth:`TerrainStream.run`, first loop): the image is read once at level 0, strip by strip. It is
   averaged into blocks of ``f`` x ``f`` pixels (``f`` = ceil(longest side / 2048)) for the co-registration, its grey
   values are counted for the exact image median (:class:`ValueCounts`), and the windows the candidates need are
   kept. The DTM is resampled straight onto the block grid and hillshaded there, so co-registration never sees a
   full-resolution grid (for products up to 2048 px, ``f`` = 1 and it is the full grid, as before).
2. **Terrain pass** (second loop): for each strip the DTM is resampled onto the image grid (shifted by the
   co-registration offset), and slope, aspect, poleward and shadow are derived; the caller writes the strip
   (:func:`marsice_plugin.terrain.analysis.run_terrain`) and the candidates' windows are handed over as soon as the
   strips under them are complete (:class:`WindowCollector`).

**Halo arithmetic.** Slope, aspect and self shadow use central differences: one row above and below a strip. A cast
shadow at a pixel comes from terrain up to ``L = relief / tan(elevation)`` metres toward the sun, where ``relief``
is the highest minus the lowest DTM post under the image (bilinear heights never leave that range, so no shadow
can be longer). The ray march (:func:`cast_shadows_rows`, the renderer's own loop) steps
``steps = ceil(L / scale) + 1`` pixels; on the grid a step toward the sun moves ``-cos(azimuth)`` rows, so a strip
needs ``round(steps * |cos(azimuth)|)`` rows of halo on the sun's side only (rows run southward: a northern sun
needs the rows above). Strips are full width, so no column halo is needed. With the halo, every strip's shadows
equal those of the whole grid pixel for pixel (``tests/test_terrain_stream.py``). Marching more steps than the
grid's own relief needs changes nothing: a step ``k`` is at least ``k - 0.71`` pixels away, so beyond
``steps`` it would need a height difference larger than the relief.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import TerrainError
from .coregistration import MAX_FFT_SIZE, Coregistration, hillshade, phase_correlate, shift_grid
from .derivatives import derive, poleward_facing

#: Target pixels per strip (rows are a multiple of the 256-px raster tiles): a few tens of MB per grid.
STRIP_PIXELS = 4_000_000

#: Largest strip (pixels) when a long shadow halo makes strips taller than :data:`STRIP_PIXELS`.
MAX_STRIP_PIXELS = 16_000_000

#: Pixels per block of rows for slope and aspect (their grid convergence needs ~100 bytes per pixel).
DERIVATIVE_PIXELS = 1_000_000

TILE = 256

#: Tile (rows, columns) of the shadow march: a tile and the rows it is compared with stay in the CPU's cache, and a
#: tile stops marching once no higher terrain within the longest shadow's reach can shade it.
SHADOW_TILE = (64, 512)

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
    """Cuts windows out of strips that arrive top to bottom, keeping only the strips a pending window still needs."""

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
            yield index, {name: np.concatenate(p) if len(p) > 1 else p[0] for name, p in parts.items()}
        first = min((w[0] for _, _, w in self._pending), default=end)
        self._strips = [(s0, s) for s0, s in self._strips if s0 + next(iter(s.values())).shape[0] > first]


def cast_shadows_rows(
    height: np.ndarray,
    first: int,
    count: int,
    total_rows: int,
    scale_m: float,
    azimuth_deg: float,
    incidence_deg: float,
    relief: float,
) -> np.ndarray:
    """Cast shadows of rows ``first .. first + count`` of ``height`` (a full-width strip with its halo).

    The loop of :func:`marsice_plugin.synthetic.illumination.cast_shadows` restricted to the strip: the same steps
    (from ``relief``, the image's relief, not the strip's) and the same stop at the whole image's size
    (``total_rows``), so the result equals the whole-grid shadows on those rows when the halo is present.

    Why it is faster and still exact: the grid goes in tiles of :data:`SHADOW_TILE` (a tile and the pixels it is
    compared with stay in cache over all steps, with no temporary arrays), a step whose offset repeats the previous
    one is skipped (the same comparison), and a tile stops marching at the first step whose rise
    ``hypot(dr, dc) x scale x tan(elevation)`` (rounded to float32, as it is added) reaches the highest height any of
    its steps can reach minus its own lowest height: no later step can shadow any of its pixels (the rise only grows
    with the step).
    """
    rows_e, cols = height.shape
    tan_el = math.tan(math.radians(90.0 - incidence_deg))
    if tan_el <= 0:
        return np.ones((count, cols), dtype=bool)
    d_row, d_col = -math.cos(math.radians(azimuth_deg)), math.sin(math.radians(azimuth_deg))
    steps = min(shadow_steps(relief, scale_m, incidence_deg), total_rows + cols)
    h = np.ascontiguousarray(height, dtype=np.float32)
    shadow = np.zeros((count, cols), dtype=bool)
    rise_per_step = scale_m * tan_el
    offsets: list[tuple[int, int, float]] = []
    for k in range(1, steps + 1):
        dr, dc = round(k * d_row), round(k * d_col)
        if abs(dr) >= total_rows or abs(dc) >= cols:
            break
        if not offsets or (dr, dc) != offsets[-1][:2]:
            offsets.append((dr, dc, float(np.float32(math.hypot(dr, dc) * rise_per_step))))
    if not offsets:
        return shadow
    reach_r = (min(0, *(o[0] for o in offsets)), max(0, *(o[0] for o in offsets)))
    reach_c = (min(0, *(o[1] for o in offsets)), max(0, *(o[1] for o in offsets)))
    tile_rows, tile_cols = SHADOW_TILE
    level = np.empty(SHADOW_TILE, dtype=np.float32)
    above = np.empty(SHADOW_TILE, dtype=bool)
    for b0 in range(first, first + count, tile_rows):
        b1 = min(first + count, b0 + tile_rows)
        for c0 in range(0, cols, tile_cols):
            c1 = min(cols, c0 + tile_cols)
            reach = h[max(0, b0 + reach_r[0]) : b1 + reach_r[1], max(0, c0 + reach_c[0]) : c1 + reach_c[1]]
            span = float(reach.max()) - float(h[b0:b1, c0:c1].min())
            out = shadow[b0 - first : b1 - first]
            for dr, dc, distance_rise in offsets:
                if distance_rise >= span:
                    break
                lo, hi = max(b0, -dr), min(b1, rows_e - dr)
                cl, ch = max(c0, -dc), min(c1, cols - dc)
                if lo >= hi or cl >= ch:
                    continue
                lv, ab = level[: hi - lo, : ch - cl], above[: hi - lo, : ch - cl]
                np.add(h[lo:hi, cl:ch], np.float32(distance_rise), out=lv)  # h + rise, in float32 as the renderer
                np.greater(h[lo + dr : hi + dr, cl + dc : ch + dc], lv, out=ab)
                target = out[lo - b0 : hi - b0, cl:ch]
                np.logical_or(target, ab, out=target)
    return shadow


def shadow_steps(relief: float, scale_m: float, incidence_deg: float) -> int:
    """Pixels the shadow ray march walks: the longest shadow ``relief / tan(elevation)`` in pixels, plus one."""
    tan_el = math.tan(math.radians(90.0 - incidence_deg))
    return math.ceil(max(relief, 0.0) / (scale_m * tan_el)) + 1 if tan_el > 0 else 0


@dataclass
class Strip:
    """Full-width rows ``row0 .. row0 + rows`` of the terrain grids (NaN where the DTM has no value)."""

    row0: int
    heights: np.ndarray
    slope: np.ndarray
    aspect: np.ndarray
    poleward: np.ndarray
    shadow: np.ndarray

    def rasters(self) -> dict[str, np.ndarray]:
        """The grids as ``marsice terrain`` writes them: 255 marks no DTM value in the 0/1 masks."""
        valid = np.isfinite(self.heights)
        return {
            "slope": self.slope,
            "aspect": self.aspect,
            "poleward": np.where(valid, self.poleward, 255).astype(np.uint8),
            "shadow": np.where(valid, self.shadow, 255).astype(np.uint8),
            "height": self.heights,
        }

    def grids(self) -> dict[str, np.ndarray]:
        return dict(
            height=self.heights, slope=self.slope, aspect=self.aspect, poleward=self.poleward, shadow=self.shadow
        )


@dataclass
class TerrainStream:
    """The image and DTM of one terrain run, open; :meth:`run` makes the two passes."""

    product: Any
    dtm: Any
    sun_azimuth: float
    incidence: float
    latitude: float
    coregistration: Coregistration | None = None
    image_median: float = float("nan")
    fill_height: float = float("nan")
    relief: float = 0.0
    strip_rows: int = TILE
    _factor: int = field(default=1, repr=False)

    @property
    def width(self) -> int:
        return int(self.product.width)

    @property
    def height(self) -> int:
        return int(self.product.height)

    def close(self) -> None:
        self.dtm.close()
        self.product.close()

    def __enter__(self) -> TerrainStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- pass 1: image -------------------------------------------------------------------------
    def _image_strips(self, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        """Full-width strips of the image at level 0, under a bounded GDAL block cache: two rows of the image's
        storage blocks (each JPEG2000 tile is decoded once as the strips cross it), never GDAL's default share of
        the machine's memory (5 %: GBs on a large machine, held until the run ends)."""
        import rasterio

        null = self.product.null_value
        p = self.product
        cache = max(64 * 2**20, 2 * self.width * max(rows, p.block_height) * 2 * max(1, p.band_count))
        for r0 in range(0, self.height, rows):
            n = min(rows, self.height - r0)
            with rasterio.Env(GDAL_CACHEMAX=cache):
                image = p.read(r0, 0, n, self.width).astype(np.float32)
            if null is not None:
                image[image == null] = np.nan
            yield r0, image

    def _coregister(self, reduced: np.ndarray, report: Callable[[float, str], None], pct: float) -> None:
        from affine import Affine

        f = self._factor
        report(pct, "co-registering the image to the DTM hillshade")
        rows, cols = reduced.shape
        heights = self.dtm.on_grid(self.product.crs, self.product.transform @ Affine.scale(f), rows, cols)
        if not np.isfinite(heights).any():
            raise TerrainError(f"DTM {self.dtm.path} has no valid height inside the image footprint")
        scale = self.product.scale_m * f
        coreg = phase_correlate(reduced, hillshade(heights, scale, self.sun_azimuth, self.incidence))
        if f > 1:
            coreg = Coregistration(coreg.d_row * f, coreg.d_col * f, coreg.peak_ratio, coreg.aligned)
        self.coregistration = coreg
        # gaps are filled with the mean height for the derivatives (as the whole-grid code did); the block grid gives
        # it, exactly the same when f = 1
        moved = shift_grid(heights, coreg.d_row / f, coreg.d_col / f) if coreg.aligned else heights
        self.fill_height = float(np.nanmean(moved)) if np.isfinite(moved).any() else float(np.nanmean(heights))

    # -- pass 2: terrain ------------------------------------------------------------------------
    def halo_rows(self) -> tuple[int, int]:
        """(rows above, rows below) a strip needs: one for the differences, and the shadow's on the sun's side."""
        steps = min(shadow_steps(self.relief, self.product.scale_m, self.incidence), self.height + self.width)
        d_row = -math.cos(math.radians(self.sun_azimuth))
        shadow = min(self.height, round(steps * abs(d_row)))
        above, below = (shadow, 0) if d_row < 0 else (0, shadow)
        return max(1, above), max(1, below)

    def _heights(self, r0: int, r1: int) -> np.ndarray:
        """Image rows ``r0 .. r1`` of the DTM on the image grid, moved by the co-registration (NaN where uncovered)."""
        from affine import Affine

        c = self.coregistration
        dr, dc = (round(c.d_row), round(c.d_col)) if c is not None and c.aligned else (0, 0)
        # out[r, c] = on_grid[r - dr, c - dc]: sample the grid shifted by (-dr, -dc) pixels
        t = self.product.transform @ Affine.translation(-dc, r0 - dr)
        out = self.dtm.on_grid(self.product.crs, t, r1 - r0, self.width)
        src_rows = np.arange(r0, r1) - dr
        out[(src_rows < 0) | (src_rows >= self.height), :] = np.nan
        cols = np.arange(self.width) - dc
        out[:, (cols < 0) | (cols >= self.width)] = np.nan
        return out

    def _strip(self, r0: int, r1: int) -> Strip:
        above, below = self.halo_rows()
        e0, e1 = max(0, r0 - above), min(self.height, r1 + below)
        ext = self._heights(e0, e1)
        valid_ext = np.isfinite(ext)
        filled = np.where(valid_ext, ext, np.float32(self.fill_height)).astype(np.float32)
        scale, az, inc = self.product.scale_m, self.sun_azimuth, self.incidence
        cast = cast_shadows_rows(filled, r0 - e0, r1 - r0, self.height, scale, az, inc, self.relief)
        n = r1 - r0
        slope = np.empty((n, self.width), dtype=np.float32)
        aspect = np.empty((n, self.width), dtype=np.float32)
        selfs = np.empty((n, self.width), dtype=bool)
        block = max(1, DERIVATIVE_PIXELS // self.width)
        crs, transform = self.product.crs, tuple(self.product.transform)[:6]
        for b0 in range(r0, r1, block):
            b1 = min(r1, b0 + block)
            s0, s1 = max(e0, b0 - 1), min(e1, b1 + 1)  # one row of halo for the central differences
            sub, cut = filled[s0 - e0 : s1 - e0], slice(b0 - s0, b1 - s0)
            invalid = ~valid_ext[b0 - e0 : b1 - e0]
            sl, asp, sh = derive(sub, scale, az, inc, crs=crs, transform=transform, row_offset=s0)
            slope[b0 - r0 : b1 - r0] = sl[cut]
            aspect[b0 - r0 : b1 - r0] = asp[cut]
            slope[b0 - r0 : b1 - r0][invalid] = np.nan
            aspect[b0 - r0 : b1 - r0][invalid] = np.nan
            selfs[b0 - r0 : b1 - r0] = sh[cut]
        return Strip(
            row0=r0,
            heights=ext[r0 - e0 : r1 - e0],
            slope=slope,
            aspect=aspect,
            poleward=poleward_facing(aspect, self.latitude),
            shadow=cast | selfs,
        )

    def run(
        self,
        windows: Sequence[PixelWindow | None] = (),
        on_window: Callable[[int, np.ndarray, dict[str, np.ndarray]], None] | None = None,
        on_strip: Callable[[Strip], None] | None = None,
        progress: Callable[[float, str], None] | None = None,
        span: tuple[float, float] = (5.0, 95.0),
    ) -> Coregistration:
        """Both passes. ``on_window(index, image window, grid windows)`` is called once per window (after the image
        median is known), ``on_strip(strip)`` once per terrain strip, top to bottom; progress per strip."""
        report = progress or (lambda percent, message: None)
        lo, hi = span
        self._factor = f = max(1, math.ceil(max(self.height, self.width) / MAX_FFT_SIZE))
        rows1 = max(f, (max(TILE, STRIP_PIXELS // self.width) // f) * f)
        reduced = np.empty((self.height // f, self.width // f), dtype=np.float32 if f == 1 else np.float64)
        counts = ValueCounts() if windows else None
        images = WindowCollector(windows)
        image_windows: dict[int, np.ndarray] = {}
        n1 = -(-self.height // rows1)
        for k, (r0, image) in enumerate(self._image_strips(rows1)):
            report(lo + (hi - lo) * 0.3 * k / n1, f"reading the image: strip {k + 1}/{n1}")
            if counts is not None:
                counts.add(image)
                for index, parts in images.add(r0, {"image": image}):
                    image_windows[index] = parts["image"]
            b0, b1 = r0 // f, min(reduced.shape[0], (r0 + image.shape[0]) // f)
            if b1 > b0:
                block = image[: (b1 - b0) * f, : reduced.shape[1] * f]
                if f == 1:
                    reduced[b0:b1] = block
                else:
                    block = block.astype(np.float64).reshape(b1 - b0, f, reduced.shape[1], f)
                    with warnings.catch_warnings():  # blocks in the black margins are NaN, as they should be
                        warnings.simplefilter("ignore", RuntimeWarning)
                        reduced[b0:b1] = np.nanmean(block, axis=(1, 3))
        if counts is not None:
            self.image_median = counts.median()
        self._coregister(reduced, report, lo + (hi - lo) * 0.3)
        del reduced
        above, below = self.halo_rows()
        base = max(TILE, (STRIP_PIXELS // self.width) // TILE * TILE)
        cap = max(base, (MAX_STRIP_PIXELS // self.width) // TILE * TILE)
        self.strip_rows = min(cap, max(base, -(-max(above, below) // TILE) * TILE))
        grids = WindowCollector(windows)
        n2 = -(-self.height // self.strip_rows)
        for k, r0 in enumerate(range(0, self.height, self.strip_rows)):
            report(lo + (hi - lo) * (0.35 + 0.65 * k / n2), f"slope, aspect and shadows: strip {k + 1}/{n2}")
            strip = self._strip(r0, min(self.height, r0 + self.strip_rows))
            if on_strip is not None:
                on_strip(strip)
            if on_window is not None:
                for index, parts in grids.add(r0, strip.grids()):
                    on_window(index, image_windows.pop(index), parts)
        return self.coregistration  # type: ignore[return-value]


def open_stream(
    dtm_path: Path,
    image_path: Path,
    sun_azimuth: float | None = None,
    incidence: float | None = None,
    log: Callable[[str], None] | None = None,
) -> TerrainStream:
    """Open the image and its DTM, check they can make terrain (size, sun, overlap); nothing is read in bulk yet."""
    from ..product import open_product
    from .dem import DtmSource, check_overlap
    from .grids import MIN_IMAGE_PX, image_sun

    product = open_product(image_path)
    try:
        if min(product.width, product.height) < MIN_IMAGE_PX:
            raise TerrainError(
                f"{image_path} is {product.width}x{product.height} px, too small for slopes and co-registration "
                f"(at least {MIN_IMAGE_PX} px on each side); check that the raster was exported whole"
            )
        v = product.viewing
        az, inc = image_sun(image_path, v.sun_azimuth_from_north, v.incidence_angle, sun_azimuth, incidence, log)
        dtm = DtmSource(dtm_path)
        try:
            dtm.require_heights()
            check_overlap(dtm, product.crs, product.transform, product.width, product.height)
            _, low, high = dtm.height_range(product.crs, product.bounds)
            _, lat = product.center_lonlat()
        except BaseException:
            dtm.close()
            raise
    except BaseException:
        product.close()
        raise
    return TerrainStream(product, dtm, az, inc, lat, relief=max(0.0, high - low) if math.isfinite(high) else 0.0)
