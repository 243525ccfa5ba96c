"""Metric geometry on the Mars sphere for small areas: a local tangent frame around a point.

Sites are tens of metres across and the grouping tolerance is metres, so a local equirectangular frame (east and
north metres from a centre point, on the IAU 2015 Mars sphere of the common CRS) is exact to far better than a
pixel; longitudes are unwrapped around the centre, so a site on the 180° meridian is one piece.

Outlines read and written are split at the 180° meridian (every vertex within ±180,
:func:`marsice_plugin.vectors.split_antimeridian`); before any metric work they are made continuous again
(:func:`marsice_plugin.vectors.continuous`), so the two halves of a patch on the meridian are one patch and an
outline is never taken for a band round the whole planet.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..vectors import lonlat_centre, split_antimeridian

#: Radius (m) of the Mars 2015 sphere, the body of the common CRS IAU_2015:49900.
MARS_SPHERE_RADIUS_M = 3_396_190.0


def unwrap_lon(lon: np.ndarray | float, lon0: float) -> np.ndarray | float:
    """Longitudes moved by whole turns to lie within 180° of ``lon0``."""
    return lon0 + (np.asarray(lon) - lon0 + 180.0) % 360.0 - 180.0


def to_local(geom: Any, lon0: float, lat0: float) -> Any:
    """A lon/lat geometry in metres east/north of (lon0, lat0)."""
    import shapely

    k = math.radians(1.0) * MARS_SPHERE_RADIUS_M
    c = math.cos(math.radians(lat0))

    def f(xy: np.ndarray) -> np.ndarray:
        lon = unwrap_lon(xy[:, 0], lon0)
        return np.column_stack([(lon - lon0) * k * c, (xy[:, 1] - lat0) * k])

    return shapely.transform(geom, f)


def from_local(geom: Any, lon0: float, lat0: float) -> Any:
    """Inverse of :func:`to_local` (longitudes stay continuous around lon0; may leave -180..180 slightly)."""
    import shapely

    k = math.radians(1.0) * MARS_SPHERE_RADIUS_M
    c = math.cos(math.radians(lat0))
    return shapely.transform(geom, lambda xy: np.column_stack([lon0 + xy[:, 0] / (k * c), lat0 + xy[:, 1] / k]))


def shift_metres(geom: Any, east_m: float, north_m: float) -> Any:
    """A lon/lat geometry moved by metres east and north (co-registration offsets)."""
    import shapely

    if geom is None or (not east_m and not north_m):
        return geom
    lon0, lat0 = lonlat_centre(geom)
    local = to_local(geom, lon0, lat0)
    return split_antimeridian(from_local(shapely.affinity.translate(local, east_m, north_m), lon0, lat0))


def degrees_for(metres: float, lat: float) -> tuple[float, float]:
    """(Δlon, Δlat) in degrees spanning ``metres`` at latitude ``lat`` (Δlon capped at 360 near the poles)."""
    k = math.radians(1.0) * MARS_SPHERE_RADIUS_M
    dlat = metres / k
    c = math.cos(math.radians(min(89.9, abs(lat))))
    return min(360.0, dlat / c), dlat


def wrapped_variants(geom: Any) -> list[Any]:
    """The geometry and its copies one turn east and west, to test intersections across ±180°."""
    import shapely

    return [geom, shapely.affinity.translate(geom, 360.0, 0.0), shapely.affinity.translate(geom, -360.0, 0.0)]


def intersects_wrapped(a: Any, b: Any) -> bool:
    """Whether two lon/lat geometries intersect, allowing either to be given in another 360° turn."""
    if a is None or b is None or a.is_empty or b.is_empty:
        return False
    return any(a.intersects(v) for v in wrapped_variants(b))
