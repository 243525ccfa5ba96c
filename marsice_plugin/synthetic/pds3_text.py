"""PDS3 label text shared by the generated RDR and DTM labels."""

from __future__ import annotations

import math
from dataclasses import dataclass

#: The keywords every generated label, RDR or DTM, gives the same values: product version, spacecraft,
#: instrument and target (a real HiRISE label's identification block, in its order).
HIRISE_IDENTIFICATION = """PRODUCT_VERSION_ID        = "1.0"
INSTRUMENT_HOST_NAME      = "MARS RECONNAISSANCE ORBITER"
INSTRUMENT_HOST_ID        = "MRO"
INSTRUMENT_NAME           = "HIGH RESOLUTION IMAGING SCIENCE EXPERIMENT"
INSTRUMENT_ID             = "HIRISE"
TARGET_NAME               = "MARS\""""


@dataclass(frozen=True)
class ProjectionBlock:
    """Values of an IMAGE_MAP_PROJECTION object, as HiRISE RDR and DTM labels write them."""

    projection_type: str
    radius_m: float
    center_latitude: float
    center_longitude: float
    lines: int
    samples: int
    map_scale_m: float
    line_offset: float
    sample_offset: float
    west: float
    east: float
    south: float
    north: float


def map_projection_object(p: ProjectionBlock) -> str:
    """The IMAGE_MAP_PROJECTION object (with the real labels' keyword set and units)."""
    r_km = p.radius_m / 1000.0
    return f"""OBJECT = IMAGE_MAP_PROJECTION
    ^DATA_SET_MAP_PROJECTION     = "DSMAP.CAT"
    MAP_PROJECTION_TYPE          = "{p.projection_type}"
    PROJECTION_LATITUDE_TYPE     = PLANETOCENTRIC
    A_AXIS_RADIUS                = {r_km:.10f} <KM>
    B_AXIS_RADIUS                = {r_km:.10f} <KM>
    C_AXIS_RADIUS                = {r_km:.10f} <KM>
    COORDINATE_SYSTEM_NAME       = PLANETOCENTRIC
    POSITIVE_LONGITUDE_DIRECTION = EAST
    KEYWORD_LATITUDE_TYPE        = PLANETOCENTRIC
    CENTER_LATITUDE              = {p.center_latitude:.3f} <DEG>
    CENTER_LONGITUDE             = {p.center_longitude:.3f} <DEG>
    LINE_FIRST_PIXEL             = 1
    LINE_LAST_PIXEL              = {p.lines}
    SAMPLE_FIRST_PIXEL           = 1
    SAMPLE_LAST_PIXEL            = {p.samples}
    MAP_PROJECTION_ROTATION      = 0.0 <DEG>
    MAP_RESOLUTION               = {math.radians(p.radius_m) / p.map_scale_m:.8f} <PIX/DEG>
    MAP_SCALE                    = {p.map_scale_m} <METERS/PIXEL>
    MAXIMUM_LATITUDE             = {p.north:.12f} <DEG>
    MINIMUM_LATITUDE             = {p.south:.12f} <DEG>
    LINE_PROJECTION_OFFSET       = {p.line_offset:.2f} <PIXEL>
    SAMPLE_PROJECTION_OFFSET     = {p.sample_offset:.2f} <PIXEL>
    EASTERNMOST_LONGITUDE        = {p.east:.12f} <DEG>
    WESTERNMOST_LONGITUDE        = {p.west:.12f} <DEG>
END_OBJECT = IMAGE_MAP_PROJECTION"""
