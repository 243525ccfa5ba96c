"""Mars coordinate reference systems: per-product CRSs from labels, and the one common layer CRS.

Each HiRISE RDR is projected on its own sphere: the label's radii hold the *local* radius of the
Mars ellipsoid at the projection's CENTER_LATITUDE (3,394,839.8 m for a product at 15°N), and
equirectangular RDRs use that latitude as their standard parallel with CENTER_LONGITUDE 180. No
fixed IAU code fits them, so a product's CRS is always built from its own label, exactly as GDAL's
PDS driver does (the tests compare both on the same files).

Layers that hold several products use one CRS, :data:`COMMON_CRS`: IAU_2015:49900, the Mars (2015)
sphere with planetocentric latitude and east longitude in degrees. Latitudes and longitudes on every
HiRISE product sphere are planetocentric, so moving a point from a product sphere to the common
sphere keeps its latitude and longitude unchanged (PROJ's ballpark transformation does exactly this).

QGIS 3.22 reports a GeoPackage CRS as invalid when its definition carries an ``IAU`` authority, so
CRS definitions are written without authority ids (:func:`wkt_without_authority`).
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

from .errors import CRSError

if TYPE_CHECKING:  # pragma: no cover
    import affine
    import pyproj

    from .labels import ProductLabel

#: Authority code of the common CRS of multi-product layers (Mars 2015 sphere, planetocentric, degrees).
COMMON_CRS = "IAU_2015:49900"

#: Mars IAU 2015 ellipsoid radii (m): equatorial and polar.
MARS_A = 3_396_190.0
MARS_C = 3_376_200.0

#: A CRS whose body radius falls outside this range (m) is not a Mars CRS.
MARS_RADIUS_RANGE = (3_370_000.0, 3_400_000.0)


def local_radius(latitude_deg: float) -> float:
    """Planetocentric local radius (m) of the IAU Mars ellipsoid at a latitude.

    This is the value HiRISE RDR labels write into all three radii of an equirectangular product.
    """
    phi = math.radians(latitude_deg)
    return MARS_A * MARS_C / math.hypot(MARS_C * math.cos(phi), MARS_A * math.sin(phi))


def label_proj4(label: ProductLabel) -> str:
    """PROJ definition of a product's CRS, from its own label's projection parameters."""
    p = label.projection
    if p.latitude_type not in ("PLANETOCENTRIC", ""):
        raise CRSError(
            f"{label.path}: PROJECTION_LATITUDE_TYPE {p.latitude_type} is not supported; HiRISE RDRs are planetocentric"
        )
    if not (MARS_RADIUS_RANGE[0] <= p.a_radius_m <= MARS_RADIUS_RANGE[1]):
        raise CRSError(
            f"{label.path}: radius {p.a_radius_m:.0f} m is not a Mars radius; MarsIce only handles Mars products"
        )
    if abs(p.a_radius_m - p.c_radius_m) < 1e-3:
        body = f"+R={p.a_radius_m!r}"
    else:
        body = f"+a={p.a_radius_m!r} +b={p.c_radius_m!r}"
    if p.projection_type in ("EQUIRECTANGULAR", "SIMPLE CYLINDRICAL", "EQUIDISTANT"):
        return (
            f"+proj=eqc +lat_ts={p.center_latitude!r} +lat_0=0 +lon_0={p.center_longitude!r} "
            f"+x_0=0 +y_0=0 {body} +units=m +no_defs +type=crs"
        )
    if p.projection_type == "POLAR STEREOGRAPHIC":
        if abs(abs(p.center_latitude) - 90.0) > 1e-9:
            raise CRSError(f"{label.path}: polar stereographic CENTER_LATITUDE must be ±90")
        return (
            f"+proj=stere +lat_0={p.center_latitude!r} +lat_ts={p.center_latitude!r} +lon_0={p.center_longitude!r} "
            f"+x_0=0 +y_0=0 {body} +units=m +no_defs +type=crs"
        )
    raise CRSError(
        f"{label.path}: map projection {p.projection_type or '(none)'} is not supported; "
        "HiRISE RDRs are EQUIRECTANGULAR or POLAR STEREOGRAPHIC"
    )


def label_crs(label: ProductLabel) -> pyproj.CRS:
    """The product's CRS as a :class:`pyproj.CRS`."""
    import pyproj

    return pyproj.CRS.from_proj4(label_proj4(label))


def label_transform(label: ProductLabel) -> affine.Affine:
    """Affine transform (pixel corner convention) from the label's projection offsets.

    HiRISE labels give 1-based pixel-centre offsets: x = (sample - SAMPLE_PROJECTION_OFFSET - 1) * scale
    at the centre of ``sample``; the outer corner of the first pixel is half a pixel further out. This
    is the convention of GDAL's PDS driver (its default ``PDS_SampleProjOffset_Shift`` = 0.5).
    """
    from affine import Affine

    p = label.projection
    s = p.map_scale_m
    if p.rotation_deg:
        raise CRSError(f"{label.path}: MAP_PROJECTION_ROTATION {p.rotation_deg} is not supported")
    return Affine(s, 0.0, -(p.sample_projection_offset + 0.5) * s, 0.0, -s, (p.line_projection_offset + 0.5) * s)


def common_crs() -> pyproj.CRS:
    """The common CRS of multi-product layers (see :data:`COMMON_CRS`)."""
    import pyproj

    return pyproj.CRS.from_user_input(COMMON_CRS)


_AUTHORITY = re.compile(r',\s*(AUTHORITY\["[^"]*","[^"]*"\]|ID\["[^"]*",[^\]]*\])')


def wkt_without_authority(crs: pyproj.CRS) -> str:
    """WKT1 (GDAL flavour) of a CRS with every AUTHORITY node removed.

    QGIS 3.22 cannot resolve ``IAU`` authorities from a GeoPackage and reports the layer CRS invalid;
    the bare definition is recognised (measured with QGIS 3.22.16).
    """
    return _AUTHORITY.sub("", crs.to_wkt("WKT1_GDAL"))


def body_radius(crs: pyproj.CRS) -> float | None:
    """Semi-major axis of a CRS's body in metres, or None when the CRS has no ellipsoid."""
    ellipsoid = crs.ellipsoid
    return None if ellipsoid is None else float(ellipsoid.semi_major_metre)


def check_mars_crs(crs: pyproj.CRS | None, source: str) -> None:
    """Refuse missing and non-Mars CRSs (an Earth code would silently misplace everything)."""
    if crs is None:
        raise CRSError(f"{source} has no coordinate reference system; assign a Mars CRS (e.g. with gdal_edit -a_srs)")
    radius = body_radius(crs)
    if radius is None or not (MARS_RADIUS_RANGE[0] <= radius <= MARS_RADIUS_RANGE[1]):
        name = crs.name or "unknown"
        shown = f"{radius:.0f} m" if radius else "no radius"
        raise CRSError(
            f"{source} is in CRS '{name}' ({shown}), which is not a Mars CRS; "
            "MarsIce needs a Mars map projection (for example a HiRISE PDS3 label or an IAU_2015 Mars CRS)"
        )
