"""One terrain run: DTM onto the image grid, co-registration, derivative rasters and candidate attributes.

Rasters are written on the image grid itself (pixel for pixel, same CRS and transform), so they overlay the image in
QGIS without resampling. Nothing is written until everything is computed; then the rasters go to temporary files, the
candidate attributes are committed in one transaction, and the rasters are renamed into place. A failure or a cancel
before that point removes the temporary files (and an output folder the run created), so the outputs stay as they
were. The whole image is held in memory (float32, a few arrays): fine for 1-2 k chunks and
sample products; a strip-wise version for 20 k x 60 k products is future work.
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
from collections.abc import Callable
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

#: Smallest image side (px): the same as the smallest chunk (slopes need 2 px, co-registration a few more).
MIN_IMAGE_PX = 8

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


def _write_raster(tmp: Path, values: np.ndarray, dtype: str, description: str, crs_wkt: str, transform: Any) -> None:
    """One GeoTIFF at ``tmp`` (a temporary name; the caller renames it into place)."""
    import rasterio
    from rasterio.crs import CRS

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


#: GeoTIFF metadata items (default domain) read for the sun when an image has no PDS3 label.
SUN_TAGS = ("SUN_AZIMUTH_FROM_NORTH", "INCIDENCE_ANGLE")


def check_sun_options(sun_azimuth: float | None, incidence: float | None) -> None:
    """Refuse a given sun outside azimuth 0..360 (clockwise from north) or incidence 0..90 (exclusive)."""
    if sun_azimuth is not None and not (math.isfinite(sun_azimuth) and 0.0 <= sun_azimuth <= 360.0):
        raise TerrainError(
            f"--sun-azimuth {sun_azimuth:g} is out of range: give degrees clockwise from north, 0 to 360"
        )
    if incidence is not None and not (math.isfinite(incidence) and 0.0 <= incidence < 90.0):
        raise TerrainError(
            f"--incidence {incidence:g} is out of range: give the sun's angle from the vertical, 0 up to (not "
            "including) 90 degrees; at 90 the sun is on the horizon and every slope casts an endless shadow"
        )


def image_sun(
    image_path: Path,
    azimuth_own: float | None,
    incidence_own: float | None,
    sun_azimuth: float | None = None,
    incidence: float | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[float, float]:
    """The sun (azimuth from north, incidence) for shadows: a given value wins over the label's or the tags'.

    Why options at all: a GDAL raster without a PDS3 label (a GeoTIFF export, a mosaic) says where the sun was
    only through the :data:`SUN_TAGS` metadata items, which few tools write. Each override is logged, since it
    changes every shadow; with neither, the error names the options to pass.
    """
    say = log or (lambda message: None)
    chosen = []
    for name, own, given, option in (
        ("sun azimuth", azimuth_own, sun_azimuth, "--sun-azimuth"),
        ("incidence", incidence_own, incidence, "--incidence"),
    ):
        if given is not None and own is not None:
            say(f"{option} {given:g}° overrides the image's {name} of {own:g}°")
        elif given is not None:
            say(f"{name} {given:g}° from {option} (the image does not give it)")
        chosen.append(given if given is not None else own)
    az, inc = chosen
    if az is None or inc is None:
        missing = " and ".join(n for n, v in (("azimuth", az), ("incidence", inc)) if v is None)
        raise TerrainError(
            f"{image_path} does not give the sun's {missing} (no PDS3 label, no GeoTIFF metadata "
            f"{' / '.join(SUN_TAGS)}); shadows need both: pass --sun-azimuth DEG (clockwise from north) and "
            "--incidence DEG (from the vertical)"
        )
    if not (math.isfinite(inc) and 0.0 <= inc < 90.0) or not math.isfinite(az):
        raise TerrainError(
            f"{image_path} gives a sun incidence of {inc:g}° and azimuth {az:g}°: at or below the horizon there are "
            "no shadows to model; check the label or tags, or pass --incidence DEG (below 90) and --sun-azimuth DEG"
        )
    return float(az) % 360.0, float(inc)


def run_terrain(
    dtm_path: Path,
    image_path: Path,
    out_dir: Path,
    candidates: Path | None = None,
    ring_m: float = 5.0,
    progress: Callable[[float, str], None] | None = None,
    sun_azimuth: float | None = None,
    incidence: float | None = None,
    log: Callable[[str], None] | None = None,
) -> TerrainResult:
    """Derive the terrain rasters of ``image_path`` from ``dtm_path`` and, optionally, score the candidates.

    ``progress(percent, message)`` is called at the start of each stage, ``log(message)`` for lines a user
    should read. ``sun_azimuth`` (degrees clockwise from north) and ``incidence`` (degrees from the vertical),
    when given, replace the image's own sun (:func:`image_sun`).
    """
    from ..product import open_product
    from .dem import dtm_on_image_grid

    check_sun_options(sun_azimuth, incidence)  # before anything is read
    report = progress or (lambda percent, message: None)
    report(2, f"reading {Path(image_path).name} and the DTM")
    with open_product(image_path) as product:
        if min(product.width, product.height) < MIN_IMAGE_PX:
            raise TerrainError(
                f"{image_path} is {product.width}x{product.height} px, too small for slopes and co-registration "
                f"(at least {MIN_IMAGE_PX} px on each side); check that the raster was exported whole"
            )
        v = product.viewing
        az, inc = image_sun(image_path, v.sun_azimuth_from_north, v.incidence_angle, sun_azimuth, incidence, log)
        heights = dtm_on_image_grid(dtm_path, product.crs, product.transform, product.width, product.height)
        image = product.read(0, 0, product.height, product.width).astype(np.float32)
        if image.ndim == 3:
            image = image.mean(axis=0)
        null = product.null_value
        if null is not None:
            image[image == null] = np.nan
        crs, transform, scale, pid = product.crs, product.transform, product.scale_m, product.product_id
        lon, lat = product.center_lonlat()
    report(30, "co-registering the image to the DTM hillshade")
    coreg = phase_correlate(image, hillshade(heights, scale, az, inc))
    if coreg.aligned:
        heights = shift_grid(heights, coreg.d_row, coreg.d_col)
    report(45, "slope, aspect and shadows")
    valid = np.isfinite(heights)
    filled = np.where(valid, heights, np.nanmean(heights))
    slope = np.where(valid, slope_degrees(filled, scale), np.nan).astype(np.float32)
    aspect = aspect_degrees(filled, scale, crs=crs, transform=tuple(transform)[:6])
    aspect = np.where(valid, aspect, np.nan).astype(np.float32)
    poleward = poleward_facing(aspect, lat)
    shadow = shadow_mask(filled, scale, az, inc)
    arrays = {
        "slope": slope,
        "aspect": aspect,
        "poleward": np.where(valid, poleward, 255),
        "shadow": np.where(valid, shadow, 255),
        "height": heights,
    }
    updates: list[tuple] = []
    scores: list[tuple[str, float, float]] = []
    if candidates is not None:
        report(60, f"terrain attributes of the ice candidates in {Path(candidates).name}")
        ring_px = max(1, math.ceil(ring_m / scale))
        grids = dict(slope=slope, aspect=aspect, poleward=poleward, shadow=shadow, height=heights)
        updates, scores = _candidate_updates(candidates, pid, crs, transform, grids, image, az, ring_px, coreg.aligned)
    report(80, "writing rasters")
    rasters = {name: out_dir / f"{pid}_{name}.tif" for name in RASTERS}
    temps: list[Path] = []
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        crs_wkt = crs.to_wkt()
        for name, (dtype, description) in RASTERS.items():
            tmp = rasters[name].with_name(f".{rasters[name].name}.{os.getpid()}.partial")
            temps.append(tmp)
            _write_raster(tmp, arrays[name], dtype, description, crs_wkt, transform)
        if candidates is not None:
            report(95, f"updating {Path(candidates).name}")
            _commit_candidate_updates(candidates, updates)
        for tmp, path in zip(temps, rasters.values(), strict=True):
            os.replace(tmp, path)
    except BaseException as exc:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):
                out_dir.rmdir()
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write terrain rasters into {out_dir}: {exc.strerror or exc}") from exc
        raise
    result = TerrainResult(rasters, coreg)
    result.candidates_updated, result.scores = len(updates), scores
    return result


def _candidate_updates(
    gpkg: Path,
    pid: str,
    crs: pyproj.CRS,
    transform: Any,
    grids: dict[str, np.ndarray],
    image: np.ndarray,
    az: float,
    ring_px: int,
    aligned: bool,
) -> tuple[list[tuple], list[tuple[str, float, float]]]:
    """Terrain attributes of ``pid``'s candidates: the UPDATE parameters (values, then fid) and (id, score, rank).

    Reads ``gpkg`` only; :func:`_commit_candidate_updates` writes the values.
    """
    import shapely
    from rasterio.features import rasterize

    from ..gpkg import parse_geometry_blob

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
    except sqlite3.Error as exc:
        raise OutputError(f"cannot add terrain fields to {gpkg}: {exc}") from exc
    finally:
        con.close()
    return updates, scores


def _commit_candidate_updates(gpkg: Path, updates: list[tuple]) -> None:
    """Add the terrain columns to ``ice_candidates`` and fill the rows of ``updates``, in one transaction.

    Re-runs are idempotent: columns are added only when missing and rows are overwritten.
    """
    from ..results import ResultsWriter

    con = sqlite3.connect(gpkg, isolation_level=None)
    try:
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
