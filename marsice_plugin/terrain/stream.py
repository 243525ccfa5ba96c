"""The terrain of an image computed strip by strip, so memory stays bounded whatever the product's size.

Why strips: a HiRISE RDR is 0.5-1.5 Gpx; its heights, slopes and aspects as whole float arrays would be tens of GB.
The work goes in full-width strips of rows:

1. **Co-registration** (:meth:`TerrainStream.run`): the image is averaged onto a grid of at most 2048 px a side,
   from its reduced JPEG2000 levels (:func:`marsice_plugin.terrain.imagepass.reduced_image`: a fraction of a level-0
   decode), and the DTM is resampled straight onto that grid and hillshaded there, so co-registration never sees a
   full-resolution grid. An image without levels (a GeoTIFF), or one small enough for a single FFT (``f`` = 1), is
   read once at level 0 instead, averaged into blocks of ``f`` x ``f`` pixels (``f`` = ceil(longest side / 2048)).
2. **Terrain strips** on the DTM's own grid (:mod:`marsice_plugin.terrain.dtmgrid`: its posts under the image, the
   geotransform moved by the co-registration offset; no resampling): for each strip the posts are read, and slope,
   aspect, poleward and shadow are derived; the caller writes the strip
   (:func:`marsice_plugin.terrain.analysis.run_terrain`) and the candidates' grid windows are cut out of the strips
   (:class:`WindowCollector`). Candidates also need image pixels for one field (the fraction of dark pixels in their
   sunward ring): the image's median comes from the co-registration's reduced grid, and a thread reads their level-0
   windows beside the strips (:class:`marsice_plugin.terrain.imagepass.ImagePass`); they are scored when both have
   ended. Level 0 is never decoded whole (:mod:`marsice_plugin.terrain.imagepass` says why).

**Halo arithmetic** (rows and pixels of the terrain grid). Slope, aspect and self shadow use central differences:
one row above and below a strip. A cast shadow at a pixel comes from terrain up to ``L = relief / tan(elevation)``
metres toward the sun, where ``relief`` is the highest minus the lowest DTM post under the image (no shadow can be
longer). The ray march (:func:`cast_shadows_rows`, the renderer's own loop) steps
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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import TerrainError
from .coregistration import MAX_FFT_SIZE, Coregistration, hillshade, phase_correlate
from .derivatives import derive, poleward_facing
from .dtmgrid import TerrainGrid, terrain_grid
from .imagepass import (
    ImagePass,
    PixelWindow,
    ValueCounts,
    WindowCollector,
    block_mean,
    image_strips,
    reduced_image,
    refine_offset,
)
from .shadows import SHADOW_TILE, cast_shadows_rows, shadow_steps

__all__ = [
    "SHADOW_TILE",
    "PixelWindow",
    "Strip",
    "TerrainGrid",
    "TerrainStream",
    "ValueCounts",
    "WindowCollector",
    "cast_shadows_rows",
    "open_stream",
    "shadow_steps",
]

#: Target pixels per strip (rows are a multiple of the 256-px raster tiles): a few tens of MB per grid.
STRIP_PIXELS = 4_000_000

#: Largest strip (pixels) when a long shadow halo makes strips taller than :data:`STRIP_PIXELS`.
MAX_STRIP_PIXELS = 16_000_000

#: Pixels per block of rows for slope and aspect (their grid convergence needs ~100 bytes per pixel).
DERIVATIVE_PIXELS = 1_000_000

TILE = 256


@dataclass
class Strip:
    """Full-width rows ``row0 .. row0 + rows`` of the terrain grid (:attr:`TerrainStream.grid`; NaN where the DTM
    has no value)."""

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
    #: the sun's direction in the product's grid, degrees clockwise from up (its azimuth from north turned by the
    #: grid's north, :attr:`marsice_plugin.product.Product.grid_north`): shadows, hillshade and rings are cast on the
    #: grid, and on a polar stereographic one north is not up
    sun_azimuth: float
    incidence: float
    latitude: float
    coregistration: Coregistration | None = None
    grid: TerrainGrid | None = None
    image_median: float = float("nan")
    fill_height: float = float("nan")
    relief: float = 0.0
    strip_rows: int = TILE
    _factor: int = field(default=1, repr=False)
    _shadow_pool: ThreadPoolExecutor | None = field(default=None, repr=False)

    @property
    def width(self) -> int:
        """The image's width (px); the terrain grid's is ``grid.width``."""
        return int(self.product.width)

    @property
    def height(self) -> int:
        """The image's height (px); the terrain grid's is ``grid.height``."""
        return int(self.product.height)

    def close(self) -> None:
        self.dtm.close()
        self.product.close()

    def __enter__(self) -> TerrainStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- co-registration --------------------------------------------------------------------------
    def _coregister(
        self, reduced: np.ndarray, grid: Any, scale: int, report: Callable[[float, str], None], pct: float
    ) -> None:
        """Phase correlation of ``reduced`` (the image on ``grid``, pixels of ``scale`` image pixels) with the DTM's
        hillshade on the same grid; then the terrain grid, moved by the offset when it is applied."""
        report(pct, "co-registering the image to the DTM hillshade")
        rows, cols = reduced.shape
        heights = self.dtm.on_grid(self.product.crs, grid, rows, cols)
        if not np.isfinite(heights).any():
            raise TerrainError(f"DTM {self.dtm.path} has no valid height inside the image footprint")
        shade = hillshade(heights, self.product.scale_m * scale, self.sun_azimuth, self.incidence)
        coreg = phase_correlate(reduced, shade)
        if scale > 1:
            coreg = Coregistration(coreg.d_row * scale, coreg.d_col * scale, coreg.peak_ratio, coreg.aligned)
        if scale > self._factor:  # a reduced level's grid: made precise on level-0 windows
            sun = (self.sun_azimuth, self.incidence)
            coreg = refine_offset(self.product, self.dtm, coreg, scale, sun, self.relief)
        self.coregistration = coreg
        offset = (coreg.d_row, coreg.d_col) if coreg.aligned else (0.0, 0.0)
        self.grid = g = terrain_grid(self.dtm, self.product, *offset)
        if offset != (0.0, 0.0):  # the moved grid may reach posts past the image's: the longest shadow from them too
            left, top = g.source @ (0, 0)
            right, bottom = g.source @ (g.width, g.height)
            _, low, high, _ = self.dtm.height_stats(self.product.crs, (left, bottom, right, top))
            if math.isfinite(high):
                self.relief = max(self.relief, high - low)

    def _blocks(self) -> tuple[int, int]:
        return self.height // self._factor, self.width // self._factor

    def _image_pass(
        self, windows: Sequence[PixelWindow | None], rows: int, report: Callable[[float, str], None], span: float
    ) -> tuple[np.ndarray, ValueCounts | None, dict[int, np.ndarray]]:
        """The level-0 read before the strips (an image without reduced levels): its f x f block means, and for
        candidates its value counts and their windows."""
        f = self._factor
        reduced = np.empty(self._blocks(), dtype=np.float32 if f == 1 else np.float64)
        counts = ValueCounts() if windows else None
        images = WindowCollector(windows)
        image_windows: dict[int, np.ndarray] = {}
        n1 = -(-self.height // rows)
        for k, (r0, image) in enumerate(image_strips(self.product, rows)):
            report(span * k / n1, f"reading the image: strip {k + 1}/{n1}")
            if counts is not None:
                counts.add(image)
                for index, parts in images.add(r0, {"image": image}):
                    image_windows[index] = parts["image"]
            b0, b1 = r0 // f, min(reduced.shape[0], (r0 + image.shape[0]) // f)
            if b1 > b0:
                block = image[: (b1 - b0) * f, : reduced.shape[1] * f]
                reduced[b0:b1] = block if f == 1 else block_mean(block, f)
        return reduced, counts, image_windows

    # -- pass 2: terrain ------------------------------------------------------------------------
    def halo_rows(self) -> tuple[int, int]:
        """(rows above, rows below) of the terrain grid a strip needs: one for the differences, and the shadow's on
        the sun's side."""
        g = self.grid
        if g is None:
            raise RuntimeError("the terrain grid is known once the co-registration has run")
        steps = min(shadow_steps(self.relief, g.scale_m, self.incidence), g.height + g.width)
        d_row = -math.cos(math.radians(self.sun_azimuth))
        shadow = min(g.height, round(steps * abs(d_row)))
        above, below = (shadow, 0) if d_row < 0 else (0, shadow)
        return max(1, above), max(1, below)

    def _strip(self, r0: int, r1: int) -> Strip:
        g: TerrainGrid = self.grid  # type: ignore[assignment]
        above, below = self.halo_rows()
        e0, e1 = max(0, r0 - above), min(g.height, r1 + below)
        ext = g.heights(self.dtm, e0, e1)
        valid_ext = np.isfinite(ext)
        filled = np.where(valid_ext, ext, np.float32(self.fill_height)).astype(np.float32)
        scale, az, inc = g.scale_m, self.sun_azimuth, self.incidence
        march = (filled, r0 - e0, r1 - r0, g.height, scale, az, inc, self.relief)
        # the shadow march beside the derivatives: both are numpy loops that release Python's lock (same values)
        pending = self._shadow_pool.submit(cast_shadows_rows, *march) if self._shadow_pool is not None else None
        cast = cast_shadows_rows(*march) if pending is None else None
        n = r1 - r0
        slope = np.empty((n, g.width), dtype=np.float32)
        aspect = np.empty((n, g.width), dtype=np.float32)
        selfs = np.empty((n, g.width), dtype=bool)
        block = max(1, DERIVATIVE_PIXELS // g.width)
        crs, transform = g.crs, tuple(g.transform)[:6]
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
            shadow=(cast if pending is None else pending.result()) | selfs,
        )

    def run(
        self,
        windows: Sequence[PixelWindow | None] = (),
        on_window: Callable[[int, np.ndarray, dict[str, np.ndarray]], None] | None = None,
        on_strip: Callable[[Strip], None] | None = None,
        progress: Callable[[float, str], None] | None = None,
        span: tuple[float, float] = (5.0, 95.0),
        grid_windows: Callable[[TerrainGrid], Sequence[PixelWindow | None]] | None = None,
    ) -> Coregistration:
        """Co-registration, then the terrain strips. ``windows`` are image windows (pixels of the image);
        ``grid_windows(grid)`` gives each one's window on the terrain grid (known once the co-registration has
        run; an empty window where it gives None). ``on_window(index, image window, grid windows)`` is called once
        per window (after the image median is known), ``on_strip(strip)`` once per terrain strip, top to bottom;
        progress per strip.

        The co-registration reads the image's reduced JPEG2000 levels (:func:`reduced_image`), whose median is the
        image's for the candidates; their level-0 windows are then read beside the strips (:class:`ImagePass`), and
        scored once both have ended. An image without levels (a GeoTIFF) or small enough for one FFT is read at level 0
        first, as a whole (the exact median and the windows come from that read).
        """
        report = progress or (lambda percent, message: None)
        lo, hi = span
        self._factor = f = max(1, math.ceil(max(self.height, self.width) / MAX_FFT_SIZE))
        rows1 = max(f, (max(TILE, STRIP_PIXELS // self.width) // f) * f)
        levels = reduced_image(self.product, f)
        image_windows: dict[int, np.ndarray] = {}
        reader: ImagePass | None = None
        first = 0.05 if levels is not None else 0.3  # the part of the progress before the strips
        if levels is None:
            reduced, counts, image_windows = self._image_pass(
                windows, rows1, lambda p, m: report(lo + (hi - lo) * p, m), first
            )
            if counts is not None:
                self.image_median = counts.median()
            self._coregister(reduced, self.product.transform @ _scale(f), f, report, lo + (hi - lo) * first)
        else:
            self._coregister(*levels, report, lo)
            if any(w is not None for w in windows):
                with warnings.catch_warnings():  # an all-margin grid has no median (NaN: no pixel is "dark")
                    warnings.simplefilter("ignore", RuntimeWarning)
                    self.image_median = float(np.nanmedian(levels[0]))
                reader = ImagePass(self.product, windows)
        del levels
        g: TerrainGrid = self.grid  # type: ignore[assignment]
        above, below = self.halo_rows()
        base = max(TILE, (STRIP_PIXELS // g.width) // TILE * TILE)
        cap = max(base, (MAX_STRIP_PIXELS // g.width) // TILE * TILE)
        self.strip_rows = min(cap, max(base, -(-max(above, below) // TILE) * TILE))
        on_grid = list(grid_windows(g)) if grid_windows is not None else [None] * len(windows)
        empty = [i for i, w in enumerate(on_grid) if w is None and windows[i] is not None]
        grids = WindowCollector(on_grid)
        waiting: dict[int, dict[str, np.ndarray]] = {}  # grid windows scored once the level-0 read has ended
        n2 = -(-g.height // self.strip_rows)
        self._shadow_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="terrain-shadow")
        try:
            if reader is not None:
                reader.start()
            for k, r0 in enumerate(range(0, g.height, self.strip_rows)):
                report(
                    lo + (hi - lo) * (first + (1 - first) * k / n2), f"slope, aspect and shadows: strip {k + 1}/{n2}"
                )
                if reader is not None:
                    reader.check()
                strip = self._strip(r0, min(g.height, r0 + self.strip_rows))
                if on_strip is not None:
                    on_strip(strip)
                if on_window is not None:
                    for index, parts in grids.add(r0, strip.grids()):
                        if reader is None:
                            on_window(index, image_windows.pop(index), parts)
                        else:
                            waiting[index] = parts
            if reader is not None:
                total, done = sum(w is not None for w in windows), -1
                while reader.is_alive():  # the windows left once the strips are done, with progress per window
                    if reader.windows_done != done:
                        done = reader.windows_done
                        report(hi, f"reading the image around the candidates: window {done + 1}/{total}")
                    reader.join(0.5)
                reader.finish()
                image_windows = reader.windows
        finally:
            self._shadow_pool.shutdown(wait=True, cancel_futures=True)
            self._shadow_pool = None
            if reader is not None:
                reader.stop()
        if on_window is not None:
            for index, parts in waiting.items():
                on_window(index, image_windows.pop(index), parts)
            for index in empty:  # off the terrain grid (a grid resampled in another projection): no DTM value
                on_window(index, image_windows.pop(index), {})
        return self.coregistration  # type: ignore[return-value]


def _scale(f: int) -> Any:
    from affine import Affine

    return Affine.scale(f)


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
    from .grids import MIN_IMAGE_PX, catalogue_fallback, image_sun

    product = open_product(image_path)
    try:
        if min(product.width, product.height) < MIN_IMAGE_PX:
            raise TerrainError(
                f"{image_path} is {product.width}x{product.height} px, too small for slopes and co-registration "
                f"(at least {MIN_IMAGE_PX} px on each side); check that the raster was exported whole"
            )
        v = product.viewing
        az_own, inc_own = catalogue_fallback(
            product, v.sun_azimuth_from_north, v.incidence_angle, sun_azimuth, incidence, log
        )
        az, inc = image_sun(image_path, az_own, inc_own, sun_azimuth, incidence, log)
        dtm = DtmSource(dtm_path)
        try:
            dtm.require_heights()
            check_overlap(dtm, product.crs, product.transform, product.width, product.height)
            _, low, high, mean = dtm.height_stats(product.crs, product.bounds)
            _, lat = product.center_lonlat()
        except BaseException:
            dtm.close()
            raise
    except BaseException:
        product.close()
        raise
    relief = max(0.0, high - low) if math.isfinite(high) else 0.0
    # DTM gaps are filled with the mean height of the posts under the image for slopes and shadows (NaN in the rasters)
    return TerrainStream(product, dtm, product.grid_azimuth(az), inc, lat, fill_height=mean, relief=relief)
