"""GeoPackage binary geometry: the ``GP`` header (magic, version, flags, srs_id, envelope) followed by ISO WKB.

Why its own module: every reader and writer of the package needs it, and it is the only part that needs shapely,
which is imported inside the functions so that QGIS's own Python (which has no shapely) can import the package.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import shapely


def geometry_blob(geom: shapely.Geometry, srs_id: int) -> bytes:
    """GeoPackage binary geometry: little-endian header with an XY envelope, then ISO WKB."""
    import shapely

    if geom is None or geom.is_empty:
        flags = 0b0001_0001  # little endian, no envelope, empty
        return b"GP" + bytes([0, flags]) + struct.pack("<i", srs_id) + shapely.to_wkb(geom, byte_order=1)
    minx, miny, maxx, maxy = geom.bounds
    flags = 0b0000_0011  # little endian, envelope [minx, maxx, miny, maxy]
    header = b"GP" + bytes([0, flags]) + struct.pack("<i4d", srs_id, minx, maxx, miny, maxy)
    return header + shapely.to_wkb(geom, byte_order=1, flavor="iso")


def parse_geometry_blob(blob: bytes) -> shapely.Geometry:
    """Inverse of :func:`geometry_blob` (any envelope size), for tests and readers."""
    import shapely

    if blob[:2] != b"GP":
        raise ValueError("not a GeoPackage geometry blob")
    flags = blob[3]
    envelope_sizes = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}
    start = 8 + envelope_sizes[(flags >> 1) & 0b111]
    return shapely.from_wkb(blob[start:])


def blob_envelope(blob: bytes | None) -> tuple[float, float, float, float] | None:
    """(minx, miny, maxx, maxy) of a geometry blob, from its header envelope (or its WKB when absent)."""
    if not blob:
        return None
    flags = blob[3]
    if flags & 0b1_0000:
        return None
    if (flags >> 1) & 0b111:
        order = "<" if flags & 1 else ">"
        minx, maxx, miny, maxy = struct.unpack(order + "4d", blob[8:40])
        return minx, miny, maxx, maxy
    return parse_geometry_blob(blob).bounds
