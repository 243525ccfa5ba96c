"""The terrain grids of one image: its DTM resampled onto the image grid, co-registered, and the derived grids.

Why apart from writing: ``marsice terrain`` writes these grids as rasters and scores the candidates of a results
file, while a scan only scores the candidates' rows in memory (:mod:`marsice_plugin.terrain.candidates`); both start
from :func:`terrain_grids`. The sun comes from the image (PDS3 label or GeoTIFF tags) unless given
(:func:`image_sun`). The whole image is held in memory (float32, a few arrays): fine for 1-2 k chunks and sample
products; a strip-wise version for 20 k x 60 k products is future work.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import TerrainError
from .coregistration import Coregistration, hillshade, phase_correlate, shift_grid
from .derivatives import aspect_degrees, poleward_facing, shadow_mask, slope_degrees

#: Smallest image side (px): the same as the smallest chunk (slopes need 2 px, co-registration a few more).
MIN_IMAGE_PX = 8

#: GeoTIFF metadata items (default domain) read for the sun when an image has no PDS3 label.
SUN_TAGS = ("SUN_AZIMUTH_FROM_NORTH", "INCIDENCE_ANGLE")


def check_sun_options(sun_azimuth: float | None, incidence: float | None) -> None:
    """Refuse a given sun outside azimuth 0..360 (clockwise from north) or incidence 0..90 (exclusive)."""
    if sun_azimuth is not None and not (math.isfinite(sun_azimuth) and 0.0 <= sun_azimuth <= 360.0):
        raise TerrainError(
            f"--sun-azimuth {sun_azimuth:g} is out of range: give degrees clockwise from north, 0 to 360"
        )
    if incidence is not None and not (math.isfinite(incidence) and 0.0 <= incidence < 90.0):
        raise TerrainError(
            f"--incidence {incidence:g} is out of range: give the sun's angle from the vertical, 0 up to (not "
            "including) 90 degrees; at 90 the sun is on the horizon and every slope casts an endless shadow"
        )


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


@dataclass
class TerrainGrids:
    """The image and its terrain grids, pixel for pixel on the image grid (NaN where the DTM has no value)."""

    product_id: str
    crs: Any  # pyproj.CRS of the image
    transform: Any  # affine transform of the image grid
    scale_m: float
    image: np.ndarray
    heights: np.ndarray
    slope: np.ndarray
    aspect: np.ndarray
    poleward: np.ndarray
    shadow: np.ndarray
    sun_azimuth: float
    coregistration: Coregistration

    def rasters(self) -> dict[str, np.ndarray]:
        """The grids as ``marsice terrain`` writes them: 255 marks no DTM value in the 0/1 masks."""
        valid = np.isfinite(self.heights)
        return {
            "slope": self.slope,
            "aspect": self.aspect,
            "poleward": np.where(valid, self.poleward, 255),
            "shadow": np.where(valid, self.shadow, 255),
            "height": self.heights,
        }


def terrain_grids(
    dtm_path: Path,
    image_path: Path,
    sun_azimuth: float | None = None,
    incidence: float | None = None,
    progress: Callable[[float, str], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> TerrainGrids:
    """Read the image and its DTM, co-register them, and derive slope, aspect, poleward and shadow grids.

    ``progress(percent, message)`` is called at the start of each stage, ``log(message)`` for lines a user
    should read. ``sun_azimuth`` and ``incidence``, when given, replace the image's own sun (:func:`image_sun`).
    """
    from ..product import open_product
    from .dem import dtm_on_image_grid

    check_sun_options(sun_azimuth, incidence)  # before anything is read
    report = progress or (lambda percent, message: None)
    report(2, f"reading {Path(image_path).name} and the DTM")
    with open_product(image_path) as product:
        if min(product.width, product.height) < MIN_IMAGE_PX:
            raise TerrainError(
                f"{image_path} is {product.width}x{product.height} px, too small for slopes and co-registration "
                f"(at least {MIN_IMAGE_PX} px on each side); check that the raster was exported whole"
            )
        v = product.viewing
        az, inc = image_sun(image_path, v.sun_azimuth_from_north, v.incidence_angle, sun_azimuth, incidence, log)
        heights = dtm_on_image_grid(dtm_path, product.crs, product.transform, product.width, product.height)
        image = product.read(0, 0, product.height, product.width).astype(np.float32)
        if image.ndim == 3:
            image = image.mean(axis=0)
        null = product.null_value
        if null is not None:
            image[image == null] = np.nan
        crs, transform, scale, pid = product.crs, product.transform, product.scale_m, product.product_id
        lon, lat = product.center_lonlat()
    report(30, "co-registering the image to the DTM hillshade")
    coreg = phase_correlate(image, hillshade(heights, scale, az, inc))
    if coreg.aligned:
        heights = shift_grid(heights, coreg.d_row, coreg.d_col)
    report(45, "slope, aspect and shadows")
    valid = np.isfinite(heights)
    filled = np.where(valid, heights, np.nanmean(heights))
    slope = np.where(valid, slope_degrees(filled, scale), np.nan).astype(np.float32)
    aspect = aspect_degrees(filled, scale, crs=crs, transform=tuple(transform)[:6])
    aspect = np.where(valid, aspect, np.nan).astype(np.float32)
    return TerrainGrids(
        product_id=pid,
        crs=crs,
        transform=transform,
        scale_m=scale,
        image=image,
        heights=heights,
        slope=slope,
        aspect=aspect,
        poleward=poleward_facing(aspect, lat),
        shadow=shadow_mask(filled, scale, az, inc),
        sun_azimuth=az,
        coregistration=coreg,
    )
