"""One ``marsice terrain`` run: the terrain grids of an image written as rasters, and candidate fields in a file.

The grids come from :mod:`marsice_plugin.terrain.grids` and the candidates' fields from
:mod:`marsice_plugin.terrain.candidates` (which a scan calls on rows in memory); this module adds the files. Rasters
are written on the image grid itself (pixel for pixel, same CRS and transform), so they overlay the image in QGIS
without resampling. Nothing is written until everything is computed; then the rasters go to temporary files, the
candidate fields are committed in one transaction (through the results writer's lock), and the rasters are renamed
into place. A failure or a cancel before that point removes the temporary files (and an output folder the run
created), so the outputs stay as they were.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OutputError
from .candidates import check_candidates, read_candidates, terrain_fields, write_terrain_fields
from .coregistration import Coregistration
from .grids import check_sun_options, terrain_grids

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
    when given, replace the image's own sun (:func:`marsice_plugin.terrain.grids.image_sun`).
    """
    check_sun_options(sun_azimuth, incidence)  # before anything is read
    candidates_crs = check_candidates(Path(candidates)) if candidates is not None else None
    report = progress or (lambda percent, message: None)
    grids = terrain_grids(dtm_path, image_path, sun_azimuth, incidence, report, log)
    updates: dict[int, dict[str, Any]] = {}
    scores: list[tuple[str, float, float]] = []
    if candidates is not None:
        report(60, f"terrain attributes of the ice candidates in {Path(candidates).name}")
        rows = read_candidates(Path(candidates), grids.product_id)
        for (_, attrs), fields in zip(rows, terrain_fields(grids, rows, candidates_crs, ring_m), strict=True):
            if fields is not None:
                updates[attrs["fid"]] = fields
                scores.append((attrs["candidate_id"], fields["terrain_score"], fields["terrain_rank_value"]))
    report(80, "writing rasters")
    arrays = grids.rasters()
    rasters = {name: out_dir / f"{grids.product_id}_{name}.tif" for name in RASTERS}
    temps: list[Path] = []
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        crs_wkt = grids.crs.to_wkt()
        for name, (dtype, description) in RASTERS.items():
            tmp = rasters[name].with_name(f".{rasters[name].name}.{os.getpid()}.partial")
            temps.append(tmp)
            _write_raster(tmp, arrays[name], dtype, description, crs_wkt, grids.transform)
        if candidates is not None:
            report(95, f"updating {Path(candidates).name}")
            write_terrain_fields(Path(candidates), updates)
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
    result = TerrainResult(rasters, grids.coregistration)
    result.candidates_updated, result.scores = len(updates), scores
    return result
