"""One terrain run: DTM onto the image grid, co-registration, derivative rasters and candidate attributes.

Rasters are written on the image grid itself (pixel for pixel, same CRS and transform), so they overlay the image in
QGIS without resampling. The whole image is held in memory (float32, a few arrays): fine for 1-2 k chunks and
sample products; a strip-wise version for 20 k x 60 k products is future work.
"""

from __future__ import annotations

import math
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyproj

from ..errors import OutputError, TerrainError
from .coregistration import Coregistration, hillshade, phase_correlate, shift_grid
from .derivatives import aspect_degrees, poleward_facing, shadow_mask, slope_degrees
from .ranking import combined_rank_value, terrain_score
from .zonal import zonal_attributes

#: Columns added to ``ice_candidates`` (name, SQLite type, meaning).
TERRAIN_COLUMNS = [
    ("terrain_mean_slope", "REAL", "mean DTM slope over the patch (degrees)"),
    ("terrain_max_slope", "REAL", "maximum DTM slope over the patch (degrees)"),
    ("terrain_mean_aspect", "REAL", "circular mean aspect, clockwise from true north (degrees)"),
    ("terrain_poleward_fraction", "REAL", "fraction of the patch on poleward-facing slopes"),
    ("terrain_shadow_fraction", "REAL", "fraction of the patch in DTM cast or self shadow"),
    ("terrain_sunward_shade_fraction", "REAL", "fraction of the sunward ring (shadowing side) in DTM shadow"),
    ("terrain_image_shadow_fraction", "REAL", "fraction of the sunward ring that is dark in the image"),
    ("terrain_elevation", "REAL", "mean DTM height over the patch (m)"),
    ("terrain_score", "REAL", "terrain consistency with remnant ice, 0..1"),
    ("terrain_rank_value", "REAL", "max_probability x (0.2 + 0.8 x terrain_score); sort descending"),
    ("terrain_aligned", "INTEGER", "1 when the image-to-DTM co-registration succeeded and was applied"),
]

RASTERS = {
    "slope": ("float32", "slope (degrees)"),
    "aspect": ("float32", "aspect, clockwise from true north (degrees)"),
    "poleward": ("uint8", "1 = poleward-facing slope"),
    "shadow": ("uint8", "1 = cast or self shadow for the image's sun"),
    "height": ("float32", "DTM height resampled bilinearly onto the image grid (m)"),
}


@dataclass
class TerrainResult:
    """What one run produced."""

    rasters: dict[str, Path]
    coregistration: Coregistration
    candidates_updated: int = 0
    scores: list[tuple[str, float, float]] = field(default_factory=list)

    def summary(self) -> str:
        c = self.coregistration
        state = "applied" if c.aligned else "NOT applied (low quality)"
        return (
            f"co-registration offset ({c.d_row:+.1f}, {c.d_col:+.1f}) px, peak ratio {c.peak_ratio:.1f}, {state}; "
            f"{len(self.rasters)} rasters, {self.candidates_updated} candidates scored"
        )


def _write_raster(path: Path, values: np.ndarray, dtype: str, description: str, crs_wkt: str, transform: Any) -> None:
    import rasterio
    from rasterio.crs import CRS

    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    nodata = float("nan") if dtype == "float32" else 255
    with rasterio.open(
        tmp,
        "w",
        driver="GTiff",
        width=values.shape[1],
        height=values.shape[0],
        count=1,
        dtype=dtype,
        crs=CRS.from_wkt(crs_wkt),
        transform=transform,
        nodata=nodata,
        compress="deflate",
    ) as ds:
        ds.write(values.astype(dtype), 1)
        ds.set_band_description(1, description)
    os.replace(tmp, path)


def run_terrain(
    dtm_path: Path, image_path: Path, out_dir: Path, candidates: Path | None = None, ring_m: float = 5.0
) -> TerrainResult:
    """Derive the terrain rasters of ``image_path`` from ``dtm_path`` and, optionally, score the candidates."""
    from ..product import open_product
    from .dem import dtm_on_image_grid

    with open_product(image_path) as product:
        v = product.viewing
        if v.sun_azimuth_from_north is None or v.incidence_angle is None:
            raise TerrainError(f"{image_path} does not give the sun's azimuth and incidence; shadows need both")
        heights = dtm_on_image_grid(dtm_path, product.crs, product.transform, product.width, product.height)
        image = product.read(0, 0, product.height, product.width).astype(np.float32)
        if image.ndim == 3:
            image = image.mean(axis=0)
        null = product.null_value
        if null is not None:
            image[image == null] = np.nan
        crs, transform, scale, pid = product.crs, product.transform, product.scale_m, product.product_id
        lon, lat = product.center_lonlat()
    az, inc = float(v.sun_azimuth_from_north), float(v.incidence_angle)
    coreg = phase_correlate(image, hillshade(heights, scale, az, inc))
    if coreg.aligned:
        heights = shift_grid(heights, coreg.d_row, coreg.d_col)
    valid = np.isfinite(heights)
    filled = np.where(valid, heights, np.nanmean(heights))
    slope = np.where(valid, slope_degrees(filled, scale), np.nan).astype(np.float32)
    aspect = aspect_degrees(filled, scale, crs=crs, transform=tuple(transform)[:6])
    aspect = np.where(valid, aspect, np.nan).astype(np.float32)
    poleward = poleward_facing(aspect, lat)
    shadow = shadow_mask(filled, scale, az, inc)
    out_dir.mkdir(parents=True, exist_ok=True)
    crs_wkt = crs.to_wkt()
    arrays = {
        "slope": slope,
        "aspect": aspect,
        "poleward": np.where(valid, poleward, 255),
        "shadow": np.where(valid, shadow, 255),
        "height": heights,
    }
    rasters = {}
    for name, (dtype, description) in RASTERS.items():
        path = out_dir / f"{pid}_{name}.tif"
        _write_raster(path, arrays[name], dtype, description, crs_wkt, transform)
        rasters[name] = path
    result = TerrainResult(rasters, coreg)
    if candidates is not None:
        ring_px = max(1, math.ceil(ring_m / scale))
        grids = dict(slope=slope, aspect=aspect, poleward=poleward, shadow=shadow, height=heights)
        result.candidates_updated, result.scores = _score_candidates(
            candidates, pid, crs, transform, grids, image, az, ring_px, coreg.aligned
        )
    return result


def _score_candidates(
    gpkg: Path,
    pid: str,
    crs: pyproj.CRS,
    transform: Any,
    grids: dict[str, np.ndarray],
    image: np.ndarray,
    az: float,
    ring_px: int,
    aligned: bool,
) -> tuple[int, list[tuple[str, float, float]]]:
    """Add the terrain columns to ``ice_candidates`` and fill them for ``pid``'s rows, in one transaction.

    Re-runs are idempotent: columns are added only when missing and rows are overwritten.
    """
    import shapely
    from rasterio.features import rasterize

    from ..gpkg import parse_geometry_blob
    from ..results import ResultsWriter

    if not gpkg.exists():
        raise TerrainError(f"candidates file {gpkg} does not exist")
    con = sqlite3.connect(gpkg, isolation_level=None)
    try:
        tables = {r[0] for r in con.execute("SELECT table_name FROM gpkg_contents")}
        if "ice_candidates" not in tables:
            raise TerrainError(f"{gpkg} has no 'ice_candidates' layer; run 'marsice detect' first")
        geom_col, definition = con.execute(
            "SELECT g.column_name, s.definition FROM gpkg_geometry_columns g JOIN gpkg_spatial_ref_sys s "
            "ON s.srs_id = g.srs_id WHERE g.table_name = 'ice_candidates'"
        ).fetchone()
        rows = con.execute(
            f'SELECT fid, candidate_id, max_probability, "{geom_col}" FROM ice_candidates WHERE product_id = ?', (pid,)
        ).fetchall()
        to_image = pyproj.Transformer.from_crs(pyproj.CRS.from_wkt(definition), crs, always_xy=True)
        updates, scores = [], []
        for fid, cid, prob, blob in rows:
            geom = shapely.transform(
                parse_geometry_blob(blob), lambda xy: np.column_stack(to_image.transform(xy[:, 0], xy[:, 1]))
            )
            mask = rasterize([(geom, 1)], out_shape=image.shape, transform=transform, all_touched=True).astype(bool)
            if not mask.any():
                continue
            a = zonal_attributes(mask, **grids, azimuth_deg=az, ring_px=ring_px, image=image)
            score = terrain_score(a)
            rank = combined_rank_value(float(prob or 0.0), score)
            values = [
                a.mean_slope,
                a.max_slope,
                a.mean_aspect,
                a.poleward_fraction,
                a.shadow_fraction,
                a.sunward_shade_fraction,
                a.image_shadow_fraction,
                a.elevation,
                score,
                rank,
                int(aligned),
            ]
            values = [None if isinstance(x, float) and math.isnan(x) else x for x in values]
            updates.append((*values, fid))
            scores.append((cid, score, rank))
        # the results writer's lock file keeps a concurrent 'marsice detect' out while the columns change
        with ResultsWriter(gpkg, layers=(), wait_s=30.0):
            existing = {r[1] for r in con.execute("PRAGMA table_info(ice_candidates)")}
            con.execute("BEGIN IMMEDIATE")
            try:
                for name, kind, _ in TERRAIN_COLUMNS:
                    if name not in existing:
                        con.execute(f"ALTER TABLE ice_candidates ADD COLUMN {name} {kind}")
                sets = ", ".join(f"{name} = ?" for name, _, _ in TERRAIN_COLUMNS)
                con.executemany(f"UPDATE ice_candidates SET {sets} WHERE fid = ?", updates)
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                raise
    except sqlite3.Error as exc:
        raise OutputError(f"cannot add terrain fields to {gpkg}: {exc}") from exc
    finally:
        con.close()
    return len(updates), scores
