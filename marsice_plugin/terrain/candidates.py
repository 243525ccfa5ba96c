"""Terrain fields of ice candidates: computed from candidate rows, and read from and written to a results file.

Why rows: a scan holds each product's candidates in memory until the client commits them, and used to write them to a
scratch GeoPackage only so that the terrain code could read them back. :func:`terrain_fields` takes
``(geometry, attributes)`` rows (the rows :mod:`marsice_plugin.result_layers` makes and
:func:`marsice_plugin.gpkg.read_layer` returns) and gives each its :data:`TERRAIN_FIELDS`; the scan calls it through
:func:`candidate_terrain`. ``marsice terrain`` reads a results file's rows with :func:`read_candidates` and writes
the fields back with :func:`write_terrain_fields`, the reader beside its writer. That writer and the scan set ``rank``
from ``terrain_rank_value`` (:func:`with_rank`): one column says the order, with or without terrain.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..gpkg import Feature, Field, layer_info, read_layer
from .ranking import rank_probability, terrain_rank, terrain_score
from .stream import PixelWindow, Strip, TerrainGrid, TerrainStream, open_stream
from .zonal import image_shadow_fraction, zonal_attributes

#: The layer whose rows get terrain fields.
CANDIDATES = "ice_candidates"

#: What to give when the candidates file cannot be read.
CANDIDATES_HINT = "give a results GeoPackage written by `marsice detect`"

#: ``terrain_note`` of a candidate without any DTM height under it (a DTM that covers part of the image).
OUTSIDE_DTM = "outside DTM"

#: Fields added to ``ice_candidates`` (NULL where a candidate has no DTM value, or its product no DTM).
TERRAIN_FIELDS: tuple[Field, ...] = (
    Field("terrain_mean_slope", float, "mean DTM slope over the patch (degrees)"),
    Field("terrain_max_slope", float, "maximum DTM slope over the patch (degrees)"),
    Field("terrain_mean_aspect", float, "circular mean aspect, clockwise from true north (degrees)"),
    Field("terrain_poleward_fraction", float, "fraction of the patch on poleward-facing slopes"),
    Field("terrain_shadow_fraction", float, "fraction of the patch in DTM cast or self shadow"),
    Field("terrain_sunward_shade_fraction", float, "fraction of the sunward ring (shadowing side) in DTM shadow"),
    Field("terrain_image_shadow_fraction", float, "fraction of the sunward ring that is dark in the image"),
    Field("terrain_elevation", float, "mean DTM height over the patch (m)"),
    Field("terrain_score", float, "terrain consistency with remnant ice, 0..1: the mean of every terrain term"),
    Field("terrain_rank_value", float, "probability x plausibility of the kept terms (README Ranking), copied to rank"),
    Field("terrain_aligned", int, "1 when the image-to-DTM co-registration succeeded and was applied"),
    Field("terrain_note", str, "why the terrain fields are NULL: 'outside DTM' when the DTM has no height under it"),
)


def _on_image(stream: TerrainStream, candidates: Sequence[Feature], candidates_crs: Any = None) -> list[Any]:
    """Each row's geometry in the image's CRS (the terrain grid's too); None for an empty or unprojectable one."""
    import pyproj
    import shapely

    from ..mars_crs import common_crs

    source = common_crs() if candidates_crs is None else pyproj.CRS(candidates_crs)
    to_image = pyproj.Transformer.from_crs(source, stream.product.crs, always_xy=True)
    out: list[Any] = []
    for geom, _ in candidates:
        if geom is None or geom.is_empty:
            out.append(None)
            continue
        on_image = shapely.transform(geom, lambda xy: np.column_stack(to_image.transform(xy[:, 0], xy[:, 1])))
        out.append(on_image if all(math.isfinite(v) for v in on_image.bounds) else None)
    return out


def window_mask(
    geom: Any, transform: Any, height: int, width: int, margin: int
) -> tuple[PixelWindow, np.ndarray] | None:
    """The pixel window of ``geom`` on a grid (its bounds, ``margin`` pixels wider, cut at the grid's edges) and its
    mask there, rasterised with ``all_touched`` (every pixel the patch touches: a 2 m patch on a 1 m DTM grid gets
    its 4-9 posts, not the 0-4 whose centres it covers); None when it misses the grid.

    Why windows: rasterising each patch onto the whole grid made every candidate cost a whole-grid pass. The window
    holds every pixel the patch touches and its whole sunward ring (``margin`` = ring + 1), so the statistics equal
    the whole-grid ones.
    """
    from affine import Affine
    from rasterio.features import rasterize

    inverse = ~transform
    x0, y0, x1, y1 = geom.bounds
    cols, rows = zip(*(inverse @ (x, y) for x in (x0, x1) for y in (y0, y1)), strict=True)
    r0, r1 = max(0, math.floor(min(rows)) - margin), min(height, math.ceil(max(rows)) + margin)
    c0, c1 = max(0, math.floor(min(cols)) - margin), min(width, math.ceil(max(cols)) + margin)
    if r1 <= r0 or c1 <= c0:
        return None
    t = transform @ Affine.translation(c0, r0)
    mask = rasterize([(geom, 1)], out_shape=(r1 - r0, c1 - c0), transform=t, all_touched=True).astype(bool)
    return ((r0, r1, c0, c1), mask) if mask.any() else None


def _fields(
    stream: TerrainStream,
    mask: np.ndarray | None,
    grids: dict[str, np.ndarray],
    image_mask: np.ndarray,
    image: np.ndarray,
    probability: float,
    rings: tuple[int, int],
) -> dict[str, Any]:
    """The :data:`TERRAIN_FIELDS` of one patch: the DTM figures from ``mask`` on its terrain-grid window
    (``grids``), the dark-pixel figure from ``image_mask`` on its image window; all NULL with a note when no DTM
    height is under the patch. ``rings``: the sunward ring's width in (grid, image) pixels."""
    if mask is None or not grids or not np.isfinite(grids["height"][mask]).any():
        return {**dict.fromkeys(f.name for f in TERRAIN_FIELDS), "terrain_note": OUTSIDE_DTM}
    a = zonal_attributes(mask, **grids, azimuth_deg=stream.sun_azimuth, ring_px=rings[0])
    dark = image_shadow_fraction(image_mask, image, stream.sun_azimuth, rings[1], stream.image_median)
    a = dataclasses.replace(a, image_shadow_fraction=dark)
    score = terrain_score(a)
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
        terrain_rank(probability, a),
        int(stream.coregistration.aligned),  # type: ignore[union-attr]
        None,
    ]
    return {
        f.name: None if v is None or (isinstance(v, float) and math.isnan(v)) else f.type(v)
        for f, v in zip(TERRAIN_FIELDS, values, strict=True)
    }


def terrain_fields(
    stream: TerrainStream,
    candidates: Sequence[Feature],
    candidates_crs: Any = None,
    ring_m: float = 5.0,
    on_strip: Callable[[Strip], None] | None = None,
    progress: Callable[[float, str], None] | None = None,
    span: tuple[float, float] = (5.0, 95.0),
) -> list[dict[str, Any] | None]:
    """The :data:`TERRAIN_FIELDS` of each candidate row, in order; None for a row that misses the image.

    Runs ``stream``'s two passes (``on_strip`` gets each terrain strip, for rasters), scoring each candidate from
    its windows (on the terrain grid and on the image) as soon as the strips under it are done, with progress per
    candidate. ``candidates_crs`` is the CRS of the rows' geometries (a pyproj CRS or its WKT; default the common
    Mars CRS every MarsIce results layer uses). A field with no value is None; a patch with no DTM height under it
    gets only ``terrain_note``. The sunward ring is ``ring_m`` wide on both grids (whole pixels, at least one).
    """
    p = stream.product
    ring_image = max(1, math.ceil(ring_m / p.scale_m))
    geoms = _on_image(stream, candidates, candidates_crs)
    windows = [
        None if g is None else window_mask(g, p.transform, stream.height, stream.width, ring_image + 1) for g in geoms
    ]
    on_grid: list[tuple[PixelWindow, np.ndarray] | None] = [None] * len(candidates)
    rings = [1, ring_image]

    def grid_windows(grid: TerrainGrid) -> list[PixelWindow | None]:
        rings[0] = max(1, math.ceil(ring_m / grid.scale_m))
        for i, g in enumerate(geoms):
            if windows[i] is not None:
                on_grid[i] = window_mask(g, grid.transform, grid.height, grid.width, rings[0] + 1)
        return [w[0] if w else None for w in on_grid]

    out: list[dict[str, Any] | None] = [None] * len(candidates)
    total = sum(w is not None for w in windows)
    last = [span[0]]
    report = progress or (lambda percent, message: None)

    def tracked(percent: float, message: str) -> None:
        last[0] = percent
        report(percent, message)

    done = [0]  # a count, not a scan of ``out`` per candidate (thousands of candidates on a full-size product)

    def scored(index: int, image: np.ndarray, grids: dict[str, np.ndarray]) -> None:
        _, image_mask = windows[index]  # type: ignore[misc]
        found = on_grid[index]
        probability = rank_probability(candidates[index][1])
        mask = found[1] if found is not None else None
        out[index] = _fields(stream, mask, grids, image_mask, image, probability, (rings[0], rings[1]))
        done[0] += 1
        report(last[0], f"candidate {done[0]}/{total}")

    stream.run([w[0] if w else None for w in windows], scored, on_strip, tracked, span, grid_windows)
    return out


def candidate_terrain(
    dtm_path: Path,
    image_path: Path,
    candidates: Sequence[Feature],
    candidates_crs: Any = None,
    ring_m: float = 5.0,
    sun_azimuth: float | None = None,
    incidence: float | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> list[dict[str, Any] | None]:
    """:func:`terrain_fields` of candidate rows of ``image_path``, from its DTM: nothing is read but the two rasters,
    nothing written."""
    with open_stream(dtm_path, image_path, sun_azimuth, incidence) as stream:
        return terrain_fields(stream, candidates, candidates_crs, ring_m, progress=progress)


#: The columns read from each candidate row (``fid`` comes along).
_READ = ("candidate_id", "max_probability")

#: Columns read when the layer has them: files written before the second stage have no ``probability``.
_READ_IF_PRESENT = ("probability",)


def check_candidates(path: Path) -> str | None:
    """Fail now, before any raster is read, unless ``path`` holds a candidates layer; returns the layer's CRS WKT."""
    return layer_info(path, CANDIDATES, require=("product_id", *_READ), hint=CANDIDATES_HINT).srs_definition


def read_candidates(path: Path, product_id: str) -> list[Feature]:
    """``product_id``'s rows of the candidates layer, with their ``fid``, candidate id and probabilities (the second
    stage's ``probability`` only where the file has it: :func:`marsice_plugin.terrain.ranking.rank_probability`)."""
    columns = layer_info(path, CANDIDATES, hint=CANDIDATES_HINT).columns
    wanted = (*_READ, *(c for c in _READ_IF_PRESENT if c in columns))
    return read_layer(path, CANDIDATES, wanted, "product_id = ?", (product_id,), hint=CANDIDATES_HINT)


def with_rank(values: dict[str, Any]) -> dict[str, Any]:
    """A row's terrain fields plus ``rank`` = ``terrain_rank_value`` where terrain scored it.

    Why: ``rank`` is the one column that says the order to inspect in (detect sets it to ``probability``); a row
    terrain could not score (no DTM height under it) keeps the ``rank`` it had.
    """
    if values.get("terrain_rank_value") is None:
        return dict(values)
    return {**values, "rank": values["terrain_rank_value"]}


def write_terrain_fields(path: Path, fields_by_fid: dict[int, dict[str, Any]]) -> int:
    """Add the terrain columns the candidates layer lacks and set the rows' fields and ``rank``, in one transaction.

    Through the results writer (its lock keeps a concurrent ``marsice detect`` out while the columns change).
    Re-runs are idempotent: columns are added only when missing, rows are overwritten, and ``rank`` is computed from
    the probability, never from the rank it replaces. A file without a ``rank`` column gets one.
    """
    from ..result_layers import CANDIDATE_FIELDS
    from ..results import ResultsWriter

    rank = [f for f in CANDIDATE_FIELDS if f.name == "rank"]
    updates = {fid: with_rank(values) for fid, values in fields_by_fid.items()}
    with ResultsWriter(path, layers=(), wait_s=30.0) as writer:
        return writer.update_rows(CANDIDATES, "fid", updates, (*TERRAIN_FIELDS, *rank))
