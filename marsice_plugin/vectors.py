"""Geometry helpers: pixel windows to footprints, product CRS to the common Mars CRS.

Footprints are densified before they are transformed: a straight chunk edge in a polar
stereographic product is curved in longitude/latitude, and four transformed corners would cut
the curve short.

The 180° meridian: the common CRS gives east longitudes in -180..180, so the transformed ring of a
product centred at 179.99°E jumps from +180 to -180. Taken as drawn, that ring spans the globe (4.68 deg²
instead of 0.0003 in the case reported) and "covers" every place at its latitude. Outlines in the common CRS
are therefore split at ±180 into a MultiPolygon, the convention of the search footprints
(:func:`marsice_plugin.catalogue.records.box_footprint`): every vertex lies within ±180 and the pieces
together are the outline. :func:`split_antimeridian` also repairs outlines written torn by older runs.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from .mars_crs import COMMON_CRS

if TYPE_CHECKING:  # pragma: no cover
    import affine
    import pyproj
    import shapely


@lru_cache(maxsize=32)
def _transformer(src_wkt: str, dst: str):
    import pyproj

    return pyproj.Transformer.from_crs(pyproj.CRS.from_wkt(src_wkt), pyproj.CRS.from_user_input(dst), always_xy=True)


def transformer_to(crs: pyproj.CRS, dst: str = COMMON_CRS):
    """A cached always-x/y transformer from ``crs`` to ``dst`` (default: the common CRS)."""
    return _transformer(crs.to_wkt(), dst)


def transform_points(
    transformer: pyproj.Transformer, xs: np.ndarray | list[float], ys: np.ndarray | list[float]
) -> tuple[np.ndarray, np.ndarray]:
    """``transformer`` on arrays of points, in the inputs' shape, a single point included: pyproj reads a
    one-element array as a scalar, which NumPy deprecates, so that one goes through as Python floats."""
    xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    if xs.size == 1:
        x, y = transformer.transform(float(xs.reshape(-1)[0]), float(ys.reshape(-1)[0]))
        return np.full(xs.shape, x), np.full(ys.shape, y)
    x, y = transformer.transform(xs, ys)
    return np.asarray(x), np.asarray(y)


def to_lonlat(crs: pyproj.CRS, xs: np.ndarray | list[float], ys: np.ndarray | list[float]) -> tuple:
    """Transform projected coordinates to planetocentric east longitude (-180..180) and latitude."""
    xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    if xs.size == 1:  # one point comes back as one-element arrays, whatever its shape
        xs, ys = xs.reshape(1), ys.reshape(1)
    return transform_points(transformer_to(crs), xs, ys)


def window_ring(
    transform: affine.Affine, col_off: float, row_off: float, width: float, height: float, densify: int = 8
):
    """Outer ring (pixel-corner convention) of a pixel window in the product CRS, ``densify`` points per edge."""
    t = np.linspace(0.0, 1.0, densify, endpoint=False)
    cols = np.concatenate(
        [
            col_off + t * width,
            np.full(densify, col_off + width),
            col_off + (1 - t) * width,
            np.full(densify, col_off),
        ]
    )
    rows = np.concatenate(
        [
            np.full(densify, row_off),
            row_off + t * height,
            np.full(densify, row_off + height),
            row_off + (1 - t) * height,
        ]
    )
    xs = transform.a * cols + transform.b * rows + transform.c
    ys = transform.d * cols + transform.e * rows + transform.f
    return xs, ys


def window_footprint(
    transform: affine.Affine,
    crs: pyproj.CRS,
    col_off: float,
    row_off: float,
    width: float,
    height: float,
    to_common: bool = True,
    densify: int = 8,
) -> shapely.Polygon:
    """Footprint polygon of a pixel window, in the common CRS (default) or the product CRS.

    In the common CRS a window across the 180° meridian is a MultiPolygon split there (see the module notes).
    """
    import shapely

    xs, ys = window_ring(transform, col_off, row_off, width, height, densify)
    if to_common:
        xs, ys = to_lonlat(crs, xs, ys)
        return split_antimeridian(shapely.Polygon(np.column_stack([xs, ys])))
    return shapely.Polygon(np.column_stack([xs, ys]))


def transform_geometry(geom: shapely.Geometry, crs: pyproj.CRS, dst: str = COMMON_CRS) -> shapely.Geometry:
    """Transform a shapely geometry from ``crs`` to ``dst`` exactly (vertex by vertex)."""
    import shapely

    tr = transformer_to(crs, dst)
    return shapely.transform(geom, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))


def to_common(geom: shapely.Geometry, crs: pyproj.CRS) -> shapely.Geometry:
    """A product-CRS outline in the common CRS, split at the 180° meridian where it crosses it."""
    return split_antimeridian(transform_geometry(geom, crs))


def _tears(xy: np.ndarray) -> np.ndarray:
    """Which steps along a ring jump across the 180° meridian: more than 180° of longitude.

    A step of exactly 360° along a parallel is an edge drawn from one side of the map to the other (a box over
    the whole globe, as :func:`~marsice_plugin.catalogue.records.box_footprint` draws one), not a tear.
    """
    steps = np.diff(xy[:, 0])
    along_parallel = (np.abs(steps) == 360.0) & (np.diff(xy[:, 1]) == 0.0)
    return (np.abs(steps) > 180.0) & ~along_parallel


def _unwrap(xy: np.ndarray) -> np.ndarray:
    """Longitudes along a ring made continuous: a tear is taken the short way round (exact values elsewhere)."""
    steps = np.diff(xy[:, 0])
    turns = np.where(_tears(xy), -360.0 * np.round(steps / 360.0), 0.0)
    return xy[:, 0] + np.concatenate([[0.0], np.cumsum(turns)])


def _torn(geom: shapely.Geometry) -> bool:
    """Whether a lon/lat outline has a vertex beyond ±180 or a ring that jumps across the 180° meridian."""
    import shapely

    minx, _, maxx, _ = geom.bounds
    if minx < -180.0 or maxx > 180.0:
        return True
    return any(_tears(shapely.get_coordinates(ring)).any() for ring in shapely.get_rings(geom))


def _continuous_polygon(poly: shapely.Polygon) -> shapely.Polygon:
    """One polygon with continuous longitudes (may leave -180..180); a ring around a pole is closed over it."""
    import shapely

    ext = shapely.get_coordinates(poly.exterior).copy()
    ext[:, 0] = _unwrap(ext)
    gap = ext[-1, 0] - ext[0, 0]
    if abs(gap) > 180.0:  # the ring goes once round a pole: close it along the pole's parallel
        pole = 90.0 if ext[:, 1].mean() > 0 else -90.0
        ext = np.vstack([ext, [[ext[-1, 0], pole], [ext[0, 0], pole], ext[0]]])
    holes = []
    for ring in poly.interiors:
        xy = shapely.get_coordinates(ring).copy()
        xy[:, 0] = _unwrap(xy)
        xy[:, 0] += 360.0 * np.round((ext[0, 0] - xy[0, 0]) / 360.0)
        holes.append(xy)
    out = shapely.Polygon(ext, holes)
    return out if out.is_valid else shapely.make_valid(out)


def split_antimeridian(geom: shapely.Geometry) -> shapely.Geometry:
    """A lon/lat outline with every vertex within ±180, split at the 180° meridian where it crosses it.

    Takes an outline as a transform gives it (a ring that jumps from +180 to -180), one drawn continuously past
    ±180, or one already split; an outline that crosses nothing is returned unchanged (the same object). The
    result is a Polygon when one piece remains, else a MultiPolygon whose pieces together are the outline.
    """
    import shapely

    if geom is None or geom.is_empty or not _torn(geom):
        return geom
    pieces: list[shapely.Polygon] = []
    for part in shapely.get_parts(geom):
        if not isinstance(part, shapely.Polygon):
            continue
        poly = _continuous_polygon(part)
        minx, _, maxx, _ = poly.bounds
        for k in range(int(np.floor((minx + 180.0) / 360.0)), int(np.floor((maxx + 180.0) / 360.0)) + 1):
            cut = poly.intersection(shapely.box(-180.0 + 360.0 * k, -90.0, 180.0 + 360.0 * k, 90.0))
            cut = shapely.transform(
                cut, lambda xy, k=k: np.column_stack([np.clip(xy[:, 0] - 360.0 * k, -180, 180), xy[:, 1]])
            )
            pieces += [g for g in shapely.get_parts(cut) if isinstance(g, shapely.Polygon) and g.area > 0]
    if len(pieces) == 1:
        return pieces[0]
    return shapely.MultiPolygon(pieces)


def as_multipolygon(geom: shapely.Geometry) -> shapely.MultiPolygon:
    """The polygons of ``geom`` as one MultiPolygon (the geometry type of every multi-product layer)."""
    import shapely

    return shapely.MultiPolygon([g for g in shapely.get_parts(geom) if isinstance(g, shapely.Polygon)])


def continuous(geom: shapely.Geometry, lon0: float | None = None) -> shapely.Geometry:
    """A lon/lat outline with every vertex moved by whole turns to lie within 180° of ``lon0``.

    ``lon0`` defaults to the first vertex. The pieces of an outline split at the 180° meridian then join again,
    so its centroid, bounds and metric frame are those of the place, not of the whole parallel. Vertices
    already within 180° of ``lon0`` keep their exact values.
    """
    import shapely

    if geom is None or geom.is_empty:
        return geom
    if lon0 is None:
        lon0 = float(shapely.get_coordinates(geom)[0, 0])

    def move(xy: np.ndarray) -> np.ndarray:
        lon = xy[:, 0]
        far = np.abs(lon - lon0) > 180.0
        if not far.any():
            return xy
        lon = np.where(far, lon0 + (lon - lon0 + 180.0) % 360.0 - 180.0, lon)
        return np.column_stack([lon, xy[:, 1]])

    return shapely.transform(geom, move)


def lonlat_centre(geom: shapely.Geometry) -> tuple[float, float]:
    """Centroid (east longitude -180..180, latitude) of a lon/lat outline, also of one split at ±180."""
    c = continuous(geom).centroid
    lon = float(c.x)
    if not -180.0 <= lon <= 180.0:
        lon = (lon + 180.0) % 360.0 - 180.0
    return lon, float(c.y)
