"""Geometry helpers: pixel windows to footprints, product CRS to the common Mars CRS.

Footprints are densified before they are transformed: a straight chunk edge in a polar
stereographic product is curved in longitude/latitude, and four transformed corners would cut
the curve short.
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


def to_lonlat(crs: pyproj.CRS, xs: np.ndarray | list[float], ys: np.ndarray | list[float]) -> tuple:
    """Transform projected coordinates to planetocentric east longitude (-180..180) and latitude."""
    xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    if xs.size == 1:  # pyproj's single-point path wants Python floats
        lon, lat = transformer_to(crs).transform(float(xs.reshape(-1)[0]), float(ys.reshape(-1)[0]))
        return np.array([lon]), np.array([lat])
    lon, lat = transformer_to(crs).transform(xs, ys)
    return np.asarray(lon), np.asarray(lat)


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
    """Footprint polygon of a pixel window, in the common CRS (default) or the product CRS."""
    import shapely

    xs, ys = window_ring(transform, col_off, row_off, width, height, densify)
    if to_common:
        xs, ys = to_lonlat(crs, xs, ys)
    return shapely.Polygon(np.column_stack([xs, ys]))


def transform_geometry(geom: shapely.Geometry, crs: pyproj.CRS, dst: str = COMMON_CRS) -> shapely.Geometry:
    """Transform a shapely geometry from ``crs`` to ``dst`` exactly (vertex by vertex)."""
    import shapely

    tr = transformer_to(crs, dst)
    return shapely.transform(geom, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
