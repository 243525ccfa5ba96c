"""The sun a terrain run uses and the checks made before anything is read.

Why apart: ``marsice terrain`` refuses bad ``--sun-azimuth``/``--incidence`` values before it opens a file, and both
the file run and a scan's rows (:mod:`marsice_plugin.terrain.stream`) take the sun from the image (PDS3 label or
GeoTIFF tags) unless it is given (:func:`image_sun`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import TerrainError
from ..labels import check_sun_azimuth

#: Smallest image side (px): the same as the smallest chunk (slopes need 2 px, co-registration a few more).
MIN_IMAGE_PX = 8

#: GeoTIFF metadata items (default domain) read for the sun when an image has no PDS3 label.
SUN_TAGS = ("SUN_AZIMUTH_FROM_NORTH", "INCIDENCE_ANGLE")


def check_sun_options(sun_azimuth: float | None, incidence: float | None) -> None:
    """Refuse a given sun outside azimuth 0..360 (clockwise from north) or incidence 0..90 (exclusive)."""
    check_sun_azimuth(sun_azimuth, TerrainError)
    if incidence is not None and not (math.isfinite(incidence) and 0.0 <= incidence < 90.0):
        raise TerrainError(
            f"--incidence {incidence:g} is out of range: give the sun's angle from the vertical, 0 up to (not "
            "including) 90 degrees; at 90 the sun is on the horizon and every slope casts an endless shadow"
        )


def catalogue_fallback(
    product: Any,
    azimuth_own: float | None,
    incidence_own: float | None,
    sun_azimuth: float | None = None,
    incidence: float | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[float | None, float | None]:
    """The image's own (azimuth, incidence), each missing one not given as an option taken from the bundled
    catalogue by the product's id (a GeoTIFF export of an RDR keeps its id as its name), logged.

    :func:`image_sun` then applies the options and refuses what is still missing.
    """
    wanted = (azimuth_own is None and sun_azimuth is None, incidence_own is None and incidence is None)
    if not any(wanted):
        return azimuth_own, incidence_own
    from ..catalogue.index import catalogue_sun
    from ..errors import CatalogueError

    try:
        found = catalogue_sun(product.product_id)
    except CatalogueError:  # a broken install: image_sun's error names the options
        return azimuth_own, incidence_own
    out = [azimuth_own, incidence_own]
    for k, (name, want, value) in enumerate(zip(("sun azimuth", "incidence"), wanted, found, strict=True)):
        if want and value is not None:
            out[k] = value
            if log is not None:
                log(f"{name} {value:g}° from the bundled catalogue ({product.product_id} does not give it)")
    return out[0], out[1]


def image_sun(
    image_path: Path,
    azimuth_own: float | None,
    incidence_own: float | None,
    sun_azimuth: float | None = None,
    incidence: float | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[float, float]:
    """The sun (azimuth from north, incidence) for shadows: a given value wins over the label's or the tags'.

    Why options at all: a GDAL raster without a PDS3 label (a GeoTIFF export, a mosaic) says where the sun was
    only through the :data:`SUN_TAGS` metadata items, which few tools write. Each override is logged, since it
    changes every shadow; with neither, the error names the options to pass.
    """
    say = log or (lambda message: None)
    chosen = []
    for name, own, given, option in (
        ("sun azimuth", azimuth_own, sun_azimuth, "--sun-azimuth"),
        ("incidence", incidence_own, incidence, "--incidence"),
    ):
        if given is not None and own is not None:
            say(f"{option} {given:g}° overrides the image's {name} of {own:g}°")
        elif given is not None:
            say(f"{name} {given:g}° from {option} (the image does not give it)")
        chosen.append(given if given is not None else own)
    az, inc = chosen
    if az is None or inc is None:
        missing = " and ".join(n for n, v in (("azimuth", az), ("incidence", inc)) if v is None)
        raise TerrainError(
            f"{image_path} does not give the sun's {missing} (no PDS3 label, no GeoTIFF metadata "
            f"{' / '.join(SUN_TAGS)}); shadows need both: pass --sun-azimuth DEG (clockwise from north) and "
            "--incidence DEG (from the vertical)"
        )
    if not (math.isfinite(inc) and 0.0 <= inc < 90.0) or not math.isfinite(az):
        raise TerrainError(
            f"{image_path} gives a sun incidence of {inc:g}° and azimuth {az:g}°: at or below the horizon there are "
            "no shadows to model; check the label or tags, or pass --incidence DEG (below 90) and --sun-azimuth DEG"
        )
    return float(az) % 360.0, float(inc)
