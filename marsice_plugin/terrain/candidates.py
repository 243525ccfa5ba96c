"""Terrain fields of ice candidates: computed from candidate rows, and read from and written to a results file.

Why rows: a scan holds each product's candidates in memory until the client commits them, and used to write them to a
scratch GeoPackage only so that the terrain code could read them back. :func:`terrain_fields` takes
``(geometry, attributes)`` rows (the rows :mod:`marsice_plugin.result_layers` makes and
:func:`marsice_plugin.gpkg.read_layer` returns) and gives each its :data:`TERRAIN_FIELDS`; the scan calls it through
:func:`candidate_terrain`. ``marsice terrain`` reads a results file's rows with :func:`read_candidates` and writes
the fields back with :func:`write_terrain_fields`, the reader beside its writer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..gpkg import Feature, Field, layer_info, read_layer
from .grids import TerrainGrids, terrain_grids
from .ranking import combined_rank_value, terrain_score
from .zonal import zonal_attributes

#: The layer whose rows get terrain fields.
CANDIDATES = "ice_candidates"

#: What to give when the candidates file cannot be read.
CANDIDATES_HINT = "give a results GeoPackage written by `marsice detect`"

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
    Field("terrain_score", float, "terrain consistency with remnant ice, 0..1"),
    Field("terrain_rank_value", float, "max_probability x (0.2 + 0.8 x terrain_score); sort descending"),
    Field("terrain_aligned", int, "1 when the image-to-DTM co-registration succeeded and was applied"),
)


def terrain_fields(
    grids: TerrainGrids, candidates: Sequence[Feature], candidates_crs: Any = None, ring_m: float = 5.0
) -> list[dict[str, Any] | None]:
    """The :data:`TERRAIN_FIELDS` of each candidate row, in order; None for a row that misses the image.

    ``candidates_crs`` is the CRS of the rows' geometries (a pyproj CRS or its WKT; default the common Mars CRS
    every MarsIce results layer uses). A field with no value (a patch without any DTM pixel) is None.
    """
    import pyproj
    import shapely
    from rasterio.features import rasterize

    from ..mars_crs import common_crs

    source = common_crs() if candidates_crs is None else pyproj.CRS(candidates_crs)
    to_image = pyproj.Transformer.from_crs(source, grids.crs, always_xy=True)
    ring_px = max(1, math.ceil(ring_m / grids.scale_m))
    zonal_grids = dict(
        slope=grids.slope, aspect=grids.aspect, poleward=grids.poleward, shadow=grids.shadow, height=grids.heights
    )
    aligned = int(grids.coregistration.aligned)
    out: list[dict[str, Any] | None] = []
    for geom, attrs in candidates:
        if geom is None or geom.is_empty:
            out.append(None)
            continue
        on_image = shapely.transform(geom, lambda xy: np.column_stack(to_image.transform(xy[:, 0], xy[:, 1])))
        shape = grids.image.shape
        mask = rasterize([(on_image, 1)], out_shape=shape, transform=grids.transform, all_touched=True).astype(bool)
        if not mask.any():
            out.append(None)
            continue
        a = zonal_attributes(mask, **zonal_grids, azimuth_deg=grids.sun_azimuth, ring_px=ring_px, image=grids.image)
        score = terrain_score(a)
        rank = combined_rank_value(float(attrs.get("max_probability") or 0.0), score)
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
            aligned,
        ]
        out.append(
            {
                f.name: None if v is None or (isinstance(v, float) and math.isnan(v)) else f.type(v)
                for f, v in zip(TERRAIN_FIELDS, values, strict=True)
            }
        )
    return out


def candidate_terrain(
    dtm_path: Path,
    image_path: Path,
    candidates: Sequence[Feature],
    candidates_crs: Any = None,
    ring_m: float = 5.0,
    sun_azimuth: float | None = None,
    incidence: float | None = None,
) -> list[dict[str, Any] | None]:
    """:func:`terrain_fields` of candidate rows of ``image_path``, from its DTM: nothing is read but the two rasters,
    nothing written."""
    grids = terrain_grids(dtm_path, image_path, sun_azimuth, incidence)
    return terrain_fields(grids, candidates, candidates_crs, ring_m)


#: The columns read from each candidate row (``fid`` comes along).
_READ = ("candidate_id", "max_probability")


def check_candidates(path: Path) -> str | None:
    """Fail now, before any raster is read, unless ``path`` holds a candidates layer; returns the layer's CRS WKT."""
    return layer_info(path, CANDIDATES, require=("product_id", *_READ), hint=CANDIDATES_HINT).srs_definition


def read_candidates(path: Path, product_id: str) -> list[Feature]:
    """``product_id``'s rows of the candidates layer, with their ``fid``, candidate id and probability."""
    return read_layer(path, CANDIDATES, _READ, "product_id = ?", (product_id,), hint=CANDIDATES_HINT)


def write_terrain_fields(path: Path, fields_by_fid: dict[int, dict[str, Any]]) -> int:
    """Add the terrain columns the candidates layer lacks and set the rows' fields, in one transaction.

    Through the results writer (its lock keeps a concurrent ``marsice detect`` out while the columns change).
    Re-runs are idempotent: columns are added only when missing and rows are overwritten.
    """
    from ..results import ResultsWriter

    with ResultsWriter(path, layers=(), wait_s=30.0) as writer:
        return writer.update_rows(CANDIDATES, "fid", fields_by_fid, TERRAIN_FIELDS)
