"""Read a DTM (HiRISE PDS3 DTEEC/DTEPC ``.IMG`` or any GDAL DEM in a Mars CRS): its posts as they are, or on a grid.

The terrain rasters use the posts themselves (:meth:`DtmSource.posts`, :mod:`marsice_plugin.terrain.dtmgrid`).
Heights on another grid are needed by the co-registration (the hillshade on the image's reduced grid and level-0
tiles) and by a DTM whose projection is not the image's. Resampling choice there: **bilinear** for heights. DTMs
are 1-2 m/px and images 0.25-0.5 m/px, so we upsample by 2-8x; nearest neighbour would turn every slope into
terraces whose risers are 2-8 image pixels apart (slopes of 0° and steep steps), while cubic overshoots at crater
rims. Bilinear is continuous, never leaves the range of its four neighbours, and gradients of the result equal the
DTM's own finite differences, which is all the information the DTM holds. Beside a DTM gap GDAL's warper
renormalises the weights of the valid posts, and a pixel is NoData when the post under its centre is, so gaps are
not smeared into the image (:meth:`DtmSource._upsampled` does the same).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyproj

from ..errors import TerrainError
from ..mars_crs import MARS_RADIUS_RANGE, body_radius

#: HiRISE DTM no-data (PC_REAL bit pattern 16#FF7FFFFB#): -3.4028226550889045e+38; any value below -1e30 is no-data.
NODATA_BELOW = -1.0e30
EARTH_RADIUS_RANGE = (6_350_000.0, 6_390_000.0)

#: Threads GDAL's warper resamples a strip with (each thread computes its own rows: the same values as one thread).
WARP_THREADS = 2


def check_dtm_crs(crs: pyproj.CRS | None, source: str) -> None:
    """Refuse a DTM without a CRS, on Earth, or on a sphere whose radius is not Mars's."""
    if crs is None:
        raise TerrainError(f"DTM {source} has no coordinate reference system; assign its Mars CRS (gdal_edit -a_srs)")
    radius = body_radius(crs)
    if radius is None:
        raise TerrainError(f"DTM {source} is in CRS '{crs.name}' without a body radius; it must be a Mars CRS")
    if EARTH_RADIUS_RANGE[0] <= radius <= EARTH_RADIUS_RANGE[1]:
        raise TerrainError(
            f"DTM {source} is in an Earth CRS ('{crs.name}', radius {radius:.0f} m): a different body than the Mars "
            "image; give the DTM in its Mars map projection"
        )
    if not MARS_RADIUS_RANGE[0] <= radius <= MARS_RADIUS_RANGE[1]:
        raise TerrainError(
            f"DTM {source} is on a body of radius {radius:.0f} m, not Mars ({MARS_RADIUS_RANGE[0]:.0f}-"
            f"{MARS_RADIUS_RANGE[1]:.0f} m); it belongs to another planet or moon"
        )


def read_dtm(path: str | Path) -> tuple[np.ndarray, Any, pyproj.CRS]:
    """Heights (float32, NaN for no-data), affine transform and CRS of a DTM file."""
    import rasterio

    path = Path(path)
    if not path.exists():
        raise TerrainError(f"DTM {path} does not exist")
    try:
        with rasterio.open(path) as ds:
            data = ds.read(1, masked=True).astype(np.float32)
            transform = ds.transform
            crs = pyproj.CRS.from_wkt(ds.crs.to_wkt()) if ds.crs else None
    except rasterio.errors.RasterioIOError as exc:
        raise TerrainError(f"DTM {path}: GDAL cannot open it as a raster ({exc})") from exc
    check_dtm_crs(crs, str(path))
    heights = np.ma.filled(data, np.nan)
    heights[~np.isfinite(heights) | (heights < NODATA_BELOW)] = np.nan
    if not np.isfinite(heights).any():
        raise TerrainError(f"DTM {path} holds only NoData (MISSING_CONSTANT); no height to derive slopes from")
    return heights, transform, crs


def dtm_on_image_grid(
    path: str | Path, image_crs: pyproj.CRS, image_transform: Any, width: int, height: int
) -> np.ndarray:
    """The DTM resampled bilinearly onto the image grid (``height`` × ``width``), NaN outside or in gaps.

    The whole grid at once: for small grids and tests; ``marsice terrain`` resamples strip by strip
    (:meth:`DtmSource.on_grid`), which gives the same values.
    """
    with DtmSource(path) as dtm:
        dtm.require_heights()
        check_overlap(dtm, image_crs, image_transform, width, height)
        out = dtm.on_grid(image_crs, image_transform, height, width)
    if not np.isfinite(out).any():
        raise TerrainError(f"DTM {path} has no valid height inside the image footprint")
    return out


def check_overlap(dtm: Any, image_crs: pyproj.CRS, image_transform: Any, width: int, height: int) -> None:
    """Refuse a DTM (an open :class:`DtmSource`) whose extent misses the image's."""
    from rasterio.crs import CRS as RasterioCrs  # noqa: N811
    from rasterio.warp import transform_bounds

    rows, cols = dtm.shape
    transform = dtm.transform
    left, top = transform @ (0, 0)
    right, bottom = transform @ (cols, rows)
    b = transform_bounds(
        RasterioCrs.from_wkt(dtm.crs.to_wkt()),
        RasterioCrs.from_wkt(image_crs.to_wkt()),
        min(left, right),
        min(top, bottom),
        max(left, right),
        max(top, bottom),
    )
    il, it = image_transform @ (0, 0)
    ir, ib = image_transform @ (width, height)
    if b[0] >= max(il, ir) or b[2] <= min(il, ir) or b[1] >= max(it, ib) or b[3] <= min(it, ib):
        raise TerrainError(
            f"DTM {dtm.path} does not overlap the image (DTM extent {tuple(round(v) for v in b)} m vs image "
            f"{(round(min(il, ir)), round(min(it, ib)), round(max(il, ir)), round(max(it, ib)))} m in the image CRS); "
            "pick the DTM of the same observation"
        )


class DtmSource:
    """An open DTM read window by window, so no whole-DTM or whole-image height array is ever held.

    Why windows: a DTM of a full-size observation is 10-60 Mpx of float32 and its heights on a 0.25 m image grid
    are 16x more; each image strip needs only the posts under it (plus two posts for the bilinear kernel).
    The no-data rules are :func:`read_dtm`'s (masked pixels, non-finite values and values below
    :data:`NODATA_BELOW` become NaN).
    """

    def __init__(self, path: str | Path) -> None:
        import rasterio

        self.path = Path(path)
        if not self.path.exists():
            raise TerrainError(f"DTM {self.path} does not exist")
        try:
            self._ds = rasterio.open(self.path)
        except rasterio.errors.RasterioIOError as exc:
            raise TerrainError(f"DTM {self.path}: GDAL cannot open it as a raster ({exc})") from exc
        self.crs = pyproj.CRS.from_wkt(self._ds.crs.to_wkt()) if self._ds.crs else None
        try:
            check_dtm_crs(self.crs, str(self.path))
        except TerrainError:
            self._ds.close()
            raise
        self.transform = self._ds.transform
        self.shape = (self._ds.height, self._ds.width)

    def close(self) -> None:
        self._ds.close()

    def __enter__(self) -> DtmSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def require_heights(self) -> None:
        """Refuse a DTM that holds only NoData (read in blocks of rows, stopping at the first valid height)."""
        from rasterio.windows import Window

        rows, cols = self.shape
        step = max(1, 1_000_000 // max(1, cols))
        for r in range(0, rows, step):
            if np.isfinite(self.read(Window(0, r, cols, min(step, rows - r)))).any():
                return
        raise TerrainError(f"DTM {self.path} holds only NoData (MISSING_CONSTANT); no height to derive slopes from")

    def read(self, window: Any) -> np.ndarray:
        """Heights of a DTM window (float32, NaN for no-data); a read error (a truncated file) is one clear line."""
        import rasterio

        try:
            data = self._ds.read(1, window=window, masked=True).astype(np.float32)
        except rasterio.errors.RasterioError as exc:
            raise TerrainError(
                f"DTM {self.path} cannot be read at rows {int(window.row_off)}-{int(window.row_off + window.height)} "
                f"({exc}); the file is damaged or truncated: download it again"
            ) from exc
        heights = np.ma.filled(data, np.nan)
        heights[~np.isfinite(heights) | (heights < NODATA_BELOW)] = np.nan
        return heights

    def window_over(self, dst_crs: pyproj.CRS, bounds: tuple[float, float, float, float], pad: int = 2) -> Any:
        """The DTM window (posts) under ``bounds`` (left, bottom, right, top in ``dst_crs``), ``pad`` posts wider;
        None when it misses the DTM."""
        from rasterio.crs import CRS as RasterioCrs  # noqa: N811
        from rasterio.warp import transform_bounds
        from rasterio.windows import Window, from_bounds

        b = transform_bounds(RasterioCrs.from_wkt(dst_crs.to_wkt()), self._ds.crs, *bounds)
        w = from_bounds(*b, transform=self.transform)
        r0, c0 = math.floor(w.row_off) - pad, math.floor(w.col_off) - pad
        r1, c1 = math.ceil(w.row_off + w.height) + pad, math.ceil(w.col_off + w.width) + pad
        r0, c0, r1, c1 = max(r0, 0), max(c0, 0), min(r1, self._ds.height), min(c1, self._ds.width)
        if r1 <= r0 or c1 <= c0:
            return None
        return Window(c0, r0, c1 - c0, r1 - r0)

    def height_stats(
        self, dst_crs: pyproj.CRS, bounds: tuple[float, float, float, float]
    ) -> tuple[int, float, float, float]:
        """(valid posts, lowest, highest, mean) under ``bounds`` (2 posts wider), read in blocks of rows.

        Heights on any grid over ``bounds`` (the posts, or bilinear between them) stay within that range, which bounds
        the longest shadow (see :mod:`marsice_plugin.terrain.stream`); the mean is what fills the DTM's gaps for
        slopes and shadows (NaN without a valid post).
        """
        from rasterio.windows import Window

        window = self.window_over(dst_crs, bounds)
        count, low, high, total = 0, math.inf, -math.inf, 0.0
        if window is None:
            return count, low, high, math.nan
        step = max(1, 1_000_000 // max(1, int(window.width)))
        for r in range(int(window.row_off), int(window.row_off + window.height), step):
            rows = min(step, int(window.row_off + window.height) - r)
            h = self.read(Window(window.col_off, r, window.width, rows))
            valid = h[np.isfinite(h)]
            if valid.size:
                count, low, high = count + valid.size, min(low, float(valid.min())), max(high, float(valid.max()))
                total += float(valid.sum(dtype=np.float64))
        return count, low, high, total / count if count else math.nan

    def posts(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """The posts of rows ``r0 .. r1`` and columns ``c0 .. c1`` (which may reach past the DTM's edges: NaN there),
        as they are: the terrain grid is the DTM's own (:mod:`marsice_plugin.terrain.dtmgrid`)."""
        from rasterio.windows import Window

        out = np.full((r1 - r0, c1 - c0), np.nan, dtype=np.float32)
        a0, b0 = max(r0, 0), max(c0, 0)
        a1, b1 = min(r1, self.shape[0]), min(c1, self.shape[1])
        if a1 > a0 and b1 > b0:
            out[a0 - r0 : a1 - r0, b0 - c0 : b1 - c0] = self.read(Window(b0, a0, b1 - b0, a1 - a0))
        return out

    def on_grid(self, dst_crs: pyproj.CRS, dst_transform: Any, height: int, width: int) -> np.ndarray:
        """The DTM resampled bilinearly onto a grid (``height`` x ``width`` pixels of ``dst_transform``), NaN outside
        or in gaps; only the posts under the grid are read."""
        from affine import Affine
        from rasterio.crs import CRS as RasterioCrs  # noqa: N811
        from rasterio.warp import Resampling, reproject

        same = self._upsampled(dst_crs, dst_transform, height, width)
        if same is not None:
            return same
        out = np.full((height, width), np.nan, dtype=np.float32)
        left, top = dst_transform @ (0, 0)
        right, bottom = dst_transform @ (width, height)
        bounds = (min(left, right), min(top, bottom), max(left, right), max(top, bottom))
        window = self.window_over(dst_crs, bounds)
        if window is None:
            return out
        reproject(
            self.read(window),
            out,
            src_transform=self.transform @ Affine.translation(window.col_off, window.row_off),
            src_crs=self._ds.crs,
            src_nodata=np.nan,
            dst_transform=dst_transform,
            dst_crs=RasterioCrs.from_wkt(dst_crs.to_wkt()),
            dst_nodata=np.nan,
            resampling=Resampling.bilinear,
            num_threads=WARP_THREADS,
        )
        return out

    def _upsampled(self, dst_crs: pyproj.CRS, dst_transform: Any, height: int, width: int) -> np.ndarray | None:
        """:meth:`on_grid` for a grid in the DTM's own CRS, north-up and at least as fine as the DTM (the image grid,
        whose strips are its largest cost); None for any other grid, which GDAL's warper resamples.

        Why not the warper there: the map from grid pixels to posts is then an axis-aligned affine one, so the
        bilinear weights are one row and one column vector and the interpolation is two gathers; half the CPU time
        of the warper's per-pixel kernel. The values are the warper's, bit for bit
        (``tests/test_terrain_inputs.py``): posts ``floor(x - 0.5)`` and the next, weights from the fraction,
        summed in float64; where a post is NoData (or outside the DTM) the valid posts' weights are renormalised,
        and the pixel is NoData when the post under its centre is, as GDAL 3.9's warper does.
        """
        if self.crs is None or not self.crs.equals(dst_crs):
            return None
        t = ~self.transform @ dst_transform  # grid pixel -> DTM post coordinates
        if t.b != 0 or t.d != 0 or not (0 < t.a <= 1 and 0 < t.e <= 1):
            return None  # rotated, flipped or coarser than the DTM: the warper widens its kernel when it reduces
        u = t.a * (np.arange(width) + 0.5) + t.c  # post coordinates of the pixel centres
        v = t.e * (np.arange(height) + 0.5) + t.f
        c0, r0 = np.floor(u - 0.5).astype(np.int64), np.floor(v - 0.5).astype(np.int64)
        dx, dy = u - 0.5 - c0, v - 0.5 - r0
        cmin, rmin = int(c0[0]), int(r0[0])
        posts = np.full((int(r0[-1]) - rmin + 2, int(c0[-1]) - cmin + 2), np.nan, dtype=np.float64)
        a0, b0 = max(rmin, 0), max(cmin, 0)
        a1, b1 = min(rmin + posts.shape[0], self.shape[0]), min(cmin + posts.shape[1], self.shape[1])
        if a1 > a0 and b1 > b0:
            from rasterio.windows import Window

            posts[a0 - rmin : a1 - rmin, b0 - cmin : b1 - cmin] = self.read(Window(b0, a0, b1 - b0, a1 - a0))
        rr, cc = r0 - rmin, c0 - cmin
        by_row = posts[rr] * (1.0 - dy)[:, None] + posts[rr + 1] * dy[:, None]
        out = by_row[:, cc] * (1.0 - dx) + by_row[:, cc + 1] * dx
        i, j = np.nonzero(np.isnan(out))  # a NoData post among the four: the warper's renormalised sum
        if i.size:
            wx, wy = 1.0 - dx[j], 1.0 - dy[i]
            total, weight = np.zeros(i.size), np.zeros(i.size)
            for di, dj, w in (
                (0, 0, wx * wy),
                (0, 1, (1.0 - wx) * wy),
                (1, 1, (1.0 - wx) * (1.0 - wy)),
                (1, 0, wx * (1.0 - wy)),
            ):
                value = posts[rr[i] + di, cc[j] + dj]
                ok = np.isfinite(value)
                total[ok] += value[ok] * w[ok]
                weight[ok] += w[ok]
            found = np.where(weight == 1.0, total, total / np.where(weight < 1e-5, 1.0, weight))
            under = posts[np.floor(v).astype(np.int64)[i] - rmin, np.floor(u).astype(np.int64)[j] - cmin]
            found[(weight < 1e-5) | np.isnan(under)] = np.nan
            out[i, j] = found
        return out.astype(np.float32)
