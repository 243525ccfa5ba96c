"""One ``marsice terrain`` run: the terrain grids of an image written as rasters, and candidate fields in a file.

The grids come from :mod:`marsice_plugin.terrain.grids` and the candidates' fields from
:mod:`marsice_plugin.terrain.candidates` (which a scan calls on rows in memory); this module adds the files. Rasters
are written on the DTM's own grid (:mod:`marsice_plugin.terrain.dtmgrid`: its posts and pixel size, clipped to the
image, in the product's CRS, the geotransform moved by the co-registration offset), so they overlay the image in QGIS
where the image shows that terrain, with no resampling and 1/16 of the image's pixels beside a 4x finer image. They
are created once the co-registration has fixed the grid, and written strip by strip as
:mod:`marsice_plugin.terrain.stream` makes them (in a writer thread, while the next strip is computed), tiled
(256 px) and compressed (LERC or ZSTD, see
:data:`RASTERS`), into temporary files that get overviews at the end; then the candidate fields are committed in
one transaction (through the results writer's lock), and the rasters are renamed into place. A failure or a cancel
before that point (a file truncated partway, a SIGTERM) removes the temporary files (and an output folder the run
created), so the rasters and the GeoPackage stay as they were.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OutputError
from .candidates import check_candidates, read_candidates, terrain_fields, write_terrain_fields
from .coregistration import Coregistration
from .grids import check_sun_options
from .stream import TILE, Strip, TerrainGrid, TerrainStream, open_stream

#: ZSTD level 1 with the horizontal predictor for the 0/1 masks. Why ZSTD: it writes these grids many times faster
#: than DEFLATE (even at DEFLATE's level 1) at a similar size. Every GDAL built with libzstd reads it (GDAL >= 2.3;
#: the GDAL of the QGIS this project targets, Debian 12's 3.6, lists it).
ZSTD_LEVEL = 1

#: Threads GDAL compresses blocks with (the pipeline's own work is one thread).
WRITE_THREADS = "2"

#: GDAL's block cache while the rasters are written and their overviews built. Without it GDAL may fill 5 % of the
#: machine's memory with blocks (1 Gpx on a 23 GB machine: peak RSS 2.0 GB, where the strip pass held 0.8 GB; a
#: larger machine would give more).
WRITE_CACHE = 256 * 2**20

#: Rasters whose overviews are averaged (the others take the nearest pixel).
AVERAGED = ("slope", "height")

#: name: (data type, description, LERC's largest error in the raster's unit, None for the lossless 0/1 masks).
#: Why LERC for the float grids: with ZSTD and the floating-point predictor they shrank by only 10-30 % (a float's
#: low bits are noise) and their encoding was the largest cost of writing; LERC keeps every value within the stated
#: error (0.005 degrees, 1 mm: far below what a 1-2 m DTM resolves) and writes them 2x faster, 2-3x smaller. The
#: grids stay float32 in degrees and metres, so styles and tools read them unchanged (LERC is in every GDAL since 2.4,
#: Debian 12's 3.6 included). Candidate fields never read these files: they come from the exact grids in memory.
RASTERS: dict[str, tuple[str, str, float | None]] = {
    "slope": ("float32", "slope (degrees)", 0.005),
    "aspect": ("float32", "aspect, clockwise from true north (degrees)", 0.005),
    "poleward": ("uint8", "1 = poleward-facing slope", None),
    "shadow": ("uint8", "1 = cast or self shadow for the image's sun", None),
    "height": ("float32", "DTM height on the DTM's own grid, moved by the co-registration offset (m)", 0.001),
}


def _compression(max_error: float | None) -> dict[str, Any]:
    """GDAL creation options of a raster: LERC within ``max_error``, or lossless ZSTD for the masks."""
    if max_error is None:
        return {"compress": "zstd", "zstd_level": ZSTD_LEVEL, "predictor": 2}
    return {"compress": "lerc", "max_z_error": max_error}


@dataclass
class TerrainResult:
    """What one run produced."""

    rasters: dict[str, Path]
    coregistration: Coregistration
    grid: TerrainGrid | None = None
    candidates_updated: int = 0
    scores: list[tuple[str, float, float]] = field(default_factory=list)

    def summary(self) -> str:
        c = self.coregistration
        state = "applied" if c.aligned else "NOT applied (low quality)"
        return (
            f"co-registration offset ({c.d_row:+.1f}, {c.d_col:+.1f}) px, peak ratio {c.peak_ratio:.1f}, {state}; "
            f"{len(self.rasters)} rasters, {self.candidates_updated} candidates scored"
        )


def _create_raster(path: Path, stream: TerrainStream, dtype: str, description: str, max_error: float | None) -> Any:
    """One tiled (256 px), compressed (:data:`RASTERS`) GeoTIFF on the terrain grid (the product's CRS, from its
    label), open for writing strip by strip."""
    import rasterio
    from rasterio.crs import CRS

    grid = stream.grid
    if grid is None:
        raise RuntimeError("the terrain grid is known once the co-registration has run")
    ds = rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=grid.width,
        height=grid.height,
        count=1,
        dtype=dtype,
        crs=CRS.from_wkt(grid.crs.to_wkt()),
        transform=grid.transform,
        nodata=float("nan") if dtype == "float32" else 255,
        num_threads=WRITE_THREADS,
        tiled=True,
        blockxsize=TILE,
        blockysize=TILE,
        BIGTIFF="IF_SAFER",
        **_compression(max_error),
    )
    ds.set_band_description(1, description)
    return ds


def _write_raster(ds: Any, row0: int, values: np.ndarray, dtype: str) -> None:
    """One strip of rows into an open raster."""
    from rasterio.windows import Window

    ds.write(values.astype(dtype, copy=False), 1, window=Window(0, row0, values.shape[1], values.shape[0]))


def _add_overviews(path: Path, max_error: float | None, average: bool) -> None:
    """Overviews (2x, 4x, ... down to one tile) so QGIS draws a full-size raster without reading every pixel;
    averaged for slope and height, nearest for the aspect (an average of 350 and 10 degrees is 180, not 0) and the
    0/1 masks (an average of 0, 1 and 255 means nothing). Compressed as the full-resolution grid."""
    import rasterio
    from rasterio.enums import Resampling

    env: dict[str, Any] = {"GDAL_NUM_THREADS": WRITE_THREADS, "GDAL_CACHEMAX": WRITE_CACHE}
    if max_error is None:
        env.update(COMPRESS_OVERVIEW="ZSTD", ZSTD_LEVEL_OVERVIEW=str(ZSTD_LEVEL), PREDICTOR_OVERVIEW="2")
    else:
        env.update(COMPRESS_OVERVIEW="LERC", MAX_Z_ERROR_OVERVIEW=str(max_error))
    with rasterio.Env(**env), rasterio.open(path, "r+") as ds:
        factors, f = [], 2
        while max(ds.width, ds.height) / f >= TILE // 2:
            factors.append(f)
            f *= 2
        if factors:
            ds.build_overviews(factors, Resampling.average if average else Resampling.nearest)


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

    ``progress(percent, message)`` is called per strip and per candidate, ``log(message)`` for lines a user
    should read. ``sun_azimuth`` (degrees clockwise from north) and ``incidence`` (degrees from the vertical),
    when given, replace the image's own sun (:func:`marsice_plugin.terrain.grids.image_sun`).
    """
    import rasterio

    check_sun_options(sun_azimuth, incidence)  # before anything is read
    candidates_crs = check_candidates(Path(candidates)) if candidates is not None else None
    report = progress or (lambda percent, message: None)
    report(2, f"reading {Path(image_path).name} and the DTM")
    temps: list[Path] = []
    open_sets: list[Any] = []
    pending: list[Future] = []
    created = not out_dir.exists()
    # two threads: strips are written beside the computation, and overviews built two rasters at a time
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="terrain-write")
    try:
        with open_stream(dtm_path, image_path, sun_azimuth, incidence, log) as stream:
            pid = stream.product.product_id
            rasters = {name: out_dir / f"{pid}_{name}.tif" for name in RASTERS}
            rows = read_candidates(Path(candidates), pid) if candidates is not None else []
            out_dir.mkdir(parents=True, exist_ok=True)

            def create() -> None:
                # the grid is fixed by the co-registration, which runs before the first strip
                for name, (dtype, description, max_error) in RASTERS.items():
                    tmp = rasters[name].with_name(f".{rasters[name].name}.{os.getpid()}.partial")
                    temps.append(tmp)
                    open_sets.append(_create_raster(tmp, stream, dtype, description, max_error))

            def write_all(strip: Strip) -> None:
                values = strip.rasters()
                with rasterio.Env(GDAL_CACHEMAX=WRITE_CACHE):
                    for ds, (name, (dtype, _, _)) in zip(open_sets, RASTERS.items(), strict=True):
                        _write_raster(ds, strip.row0, values[name], dtype)

            def write(strip: Strip) -> None:
                # one strip is written (GDAL compresses it without the GIL) while the next is computed
                if not open_sets:
                    create()
                if pending:
                    pending.pop().result()
                pending.append(pool.submit(write_all, strip))

            fields = terrain_fields(stream, rows, candidates_crs, ring_m, on_strip=write, progress=report, span=(5, 90))
            if pending:
                pending.pop().result()
            coregistration, grid = stream.coregistration, stream.grid
        for ds in open_sets:
            ds.close()
        open_sets.clear()
        report(90, "overviews")
        jobs = [(tmp, spec[2], name in AVERAGED) for tmp, (name, spec) in zip(temps, RASTERS.items(), strict=True)]
        for done in [pool.submit(_add_overviews, *job) for job in jobs]:
            done.result()
        updates: dict[int, dict[str, Any]] = {}
        scores: list[tuple[str, float, float]] = []
        for (_, attrs), values in zip(rows, fields, strict=True):
            if values is not None:
                updates[attrs["fid"]] = values
                if values["terrain_score"] is not None:
                    scores.append((attrs["candidate_id"], values["terrain_score"], values["terrain_rank_value"]))
        if candidates is not None:
            report(95, f"updating {Path(candidates).name}")
            write_terrain_fields(Path(candidates), updates)
        for tmp, path in zip(temps, rasters.values(), strict=True):
            os.replace(tmp, path)
    except BaseException as exc:
        pool.shutdown(wait=True, cancel_futures=True)
        for ds in open_sets:
            with contextlib.suppress(Exception):
                ds.close()
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):
                out_dir.rmdir()
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write terrain rasters into {out_dir}: {exc.strerror or exc}") from exc
        raise
    pool.shutdown(wait=True)
    result = TerrainResult(rasters, coregistration, grid)  # type: ignore[arg-type]
    result.candidates_updated, result.scores = len(updates), scores
    return result
