"""Read a DTM (HiRISE PDS3 DTEEC/DTEPC ``.IMG`` or any GDAL DEM in a Mars CRS) onto an image's pixel grid.

Resampling choice: **bilinear** for heights. DTMs are 1-2 m/px and images 0.25-0.5 m/px, so we upsample by 2-8x;
nearest neighbour would turn every slope into terraces whose risers are 2-8 image pixels apart (slopes of 0° and
steep steps), while cubic overshoots at crater rims. Bilinear is continuous, never leaves the range of its four
neighbours, and gradients of the result equal the DTM's own finite differences, which is all the information the
DTM holds. A pixel is NoData when any of its four source posts is NoData (NaN propagates), so DTM gaps are not
smeared into the image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyproj

from ..errors import TerrainError
from ..mars_crs import MARS_RADIUS_RANGE, body_radius

#: HiRISE DTM no-data (PC_REAL bit pattern 16#FF7FFFFB#): -3.4028226550889045e+38; any value below -1e30 is no-data.
NODATA_BELOW = -1.0e30
EARTH_RADIUS_RANGE = (6_350_000.0, 6_390_000.0)


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
    """The DTM resampled bilinearly onto the image grid (``height`` × ``width``), NaN outside or in gaps."""
    from rasterio.crs import CRS as RasterioCrs  # noqa: N811
    from rasterio.warp import Resampling, reproject, transform_bounds

    heights, transform, crs = read_dtm(path)
    rio_dtm, rio_image = RasterioCrs.from_wkt(crs.to_wkt()), RasterioCrs.from_wkt(image_crs.to_wkt())
    rows, cols = heights.shape
    left, top = transform @ (0, 0)
    right, bottom = transform @ (cols, rows)
    b = transform_bounds(rio_dtm, rio_image, min(left, right), min(top, bottom), max(left, right), max(top, bottom))
    il, it = image_transform @ (0, 0)
    ir, ib = image_transform @ (width, height)
    if b[0] >= max(il, ir) or b[2] <= min(il, ir) or b[1] >= max(it, ib) or b[3] <= min(it, ib):
        raise TerrainError(
            f"DTM {path} does not overlap the image (DTM extent {tuple(round(v) for v in b)} m vs image "
            f"{(round(min(il, ir)), round(min(it, ib)), round(max(il, ir)), round(max(it, ib)))} m in the image CRS); "
            "pick the DTM of the same observation"
        )
    out = np.full((height, width), np.nan, dtype=np.float32)
    reproject(
        heights,
        out,
        src_transform=transform,
        src_crs=rio_dtm,
        src_nodata=np.nan,
        dst_transform=image_transform,
        dst_crs=rio_image,
        dst_nodata=np.nan,
        resampling=Resampling.bilinear,
    )
    if not np.isfinite(out).any():
        raise TerrainError(f"DTM {path} has no valid height inside the image footprint")
    return out
