"""Map scale and download sizes of HiRISE products the bundled catalogue cannot list, estimated from its index.

Why estimates: the bundled catalogue comes from an RDR index of COLOR products that lists neither map scales
nor compressed sizes, and no RED product at all; without them a dry run said "0.000 GB + 10 of unknown size"
and a download cap could not be checked offline. The index does give ``REQUIRED_STORAGE_BYTES``, which is
exactly the COLOR frame's lines × samples × 3 bands × 2 bytes (checked on the three products of the ODE
reply in the tests: 53697 × 8672 × 6 = 2,793,962,304), and the footprint's latitude/longitude box. From these:

* **map scale**: an equirectangular frame spans the latitude range in ``lines`` pixels and the longitude
  range (times cos latitude) in ``samples`` pixels, so scale = sqrt(box area / (lines × samples)). HiRISE
  RDRs come at 0.25, 0.5 or 1 m/pixel (binning 1, 2, 4): over the 56,306 equirectangular products of the
  index the ratio of the raw estimate to the nearest of these lies within 0.944..1.002 for 98 % of them, so
  the snapped value is the product's scale. Polar stereographic products (|latitude| >= 65°) do not fit a
  latitude/longitude box (the raw ratio scatters over 0.71..1.41) and get no scale.
* **lines and samples** of the COLOR frame: lines = latitude span / scale, samples = pixels / lines.
* **the RED frame**: the RED strip holds 10 CCDs, COLOR the middle 2, so the RED frame is wider by a near
  constant ground width and a few percent longer. Measured on the three RED/COLOR pairs of the ODE reply:
  8537, 8622 and 8679 more samples at 0.5 m/pixel (4.27-4.34 km), 1.9-4.3 % more lines.
* **compressed JP2 bytes**: frame pixels × bits per pixel, 4.5 for RED (3.95, 5.16, 4.37 measured) and 5.2
  for COLOR (3.34, 6.55, 5.65); without a scale, RED bytes = 1.38 × the COLOR frame's pixels (1.00, 1.82, 1.32).

Three calibration products give a rough figure: expect an individual size within a factor of about 1.5 and a
total over many products within about 20 %. Every such size is marked ``size_estimated``; a size a listing
gives (ODE's KBytes) is never replaced by one, and downloads are never checked against an estimate.
"""

from __future__ import annotations

import math

#: Mars 2015 sphere radius (m): metres per degree of latitude = radius × π / 180.
_RADIUS_M = 3_396_190.0
_M_PER_DEG = math.pi / 180.0 * _RADIUS_M

#: Map scales of HiRISE RDRs (m/pixel) and how far a raw estimate may sit from one to be taken as it.
RDR_SCALES = (0.25, 0.5, 1.0)
SCALE_TOLERANCE = 0.08

#: HiRISE RDRs are polar stereographic from this latitude on (absolute, degrees), equirectangular below.
POLAR_FROM_LAT = 65.0

#: Measured on the RED/COLOR pairs of ODE's reply (see the module docstring).
RED_EXTRA_WIDTH_M = 4300.0
RED_LINES_RATIO = 1.03
RED_BITS_PER_PIXEL = 4.5
COLOR_BITS_PER_PIXEL = 5.2
RED_BYTES_PER_COLOR_PIXEL = 1.38

#: A PDS3 label of an RDR: 8-9 KiB as ODE lists them.
LABEL_BYTES = 9 * 1024


def color_frame_pixels(required_storage_bytes: int) -> int:
    """Lines × samples of a COLOR RDR frame from its index's REQUIRED_STORAGE_BYTES (3 bands × 2 bytes)."""
    return required_storage_bytes // 6


def map_scale(min_lat: float, max_lat: float, min_lon: float, max_lon: float, pixels: int) -> float | None:
    """The frame's map scale (m/pixel) when the latitude/longitude box and the pixel count agree on one, else None."""
    centre = 0.5 * (min_lat + max_lat)
    if abs(centre) >= POLAR_FROM_LAT or pixels <= 0:
        return None
    height = (max_lat - min_lat) * _M_PER_DEG
    width = ((max_lon - min_lon) % 360.0) * _M_PER_DEG * math.cos(math.radians(centre))
    if height <= 0 or width <= 0:
        return None
    raw = math.sqrt(height * width / pixels)
    nearest = min(RDR_SCALES, key=lambda s: abs(math.log(raw / s)))
    return nearest if abs(raw / nearest - 1.0) <= SCALE_TOLERANCE else None


def color_frame(min_lat: float, max_lat: float, pixels: int, scale: float) -> tuple[int, int]:
    """(lines, samples) of a COLOR frame: the latitude span in pixels, and the rest of its pixel count."""
    lines = max(1, round((max_lat - min_lat) * _M_PER_DEG / scale))
    return lines, max(1, round(pixels / lines))


def red_frame(color_lines: int, color_samples: int, scale: float) -> tuple[int, int]:
    """(lines, samples) of the observation's RED frame from its COLOR frame (8 more CCDs across)."""
    return round(color_lines * RED_LINES_RATIO), round(color_samples + RED_EXTRA_WIDTH_M / scale)


def estimated_jp2_bytes(
    min_lat: float, max_lat: float, min_lon: float, max_lon: float, required_storage_bytes: int
) -> tuple[float | None, int, int]:
    """(map scale or None, COLOR JP2 bytes, RED JP2 bytes) estimated from one COLOR index row."""
    pixels = color_frame_pixels(required_storage_bytes)
    scale = map_scale(min_lat, max_lat, min_lon, max_lon, pixels)
    color = round(pixels * COLOR_BITS_PER_PIXEL / 8)
    if scale is None:
        return None, color, round(pixels * RED_BYTES_PER_COLOR_PIXEL)
    lines, samples = red_frame(*color_frame(min_lat, max_lat, pixels, scale), scale)
    return scale, color, round(lines * samples * RED_BITS_PER_PIXEL / 8)
