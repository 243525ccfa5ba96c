"""The sun HiRISE usually has at a latitude: the last fallback for a raster that does not say where the sun was.

Why it is good enough to turn the second stage's crops by: Mars Reconnaissance Orbiter flies a sun-synchronous
orbit and HiRISE images at about 15:00 local time, so at one latitude the sun azimuth moves only with the season.
Over the bundled catalogue's 71,157 observations the circular mean of the others within :data:`WINDOW_DEG` of an
observation's latitude lies within 13.5° of its own azimuth at the median, and 90 % lie within 29.7°; from 40° to
70°S (the paper's band) the median is 9.4° and the 90th percentile 16.7° (``bench/sun_prior.py``, leave-one-out).
Near the poles in summer the sun goes further round and the prior is looser (70-90°N: 4.5 % more than 90° off),
which :attr:`SunPrior.within_deg` reports. Turning the crops as if the sun were in the north, as before, is 86°
off at the median; a 30° error already more than doubles the outlines the second stage keeps on rendered products.

Why not the image's own shading: the sun direction read from the brightness gradients (a sunlit face turns dark
abruptly where its shadow begins, so the largest gradients point to the sun) is right to 9° at the median on real
crater tiles, but more than 90° off on half of the dark-dune tiles and most bright-dune ones (the landmark tiles'
open split, ``bench/sun_prior.py``), and no better than this prior overall; so it is measured, not used.

A raster named by its product id takes its own observation's sun from the catalogue instead
(:func:`marsice_plugin.catalogue.index.catalogue_sun`); a label, metadata or ``--sun-azimuth`` win over both.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Observations whose centre latitude lies within this many degrees of the product's make up its prior.
WINDOW_DEG = 5.0
#: Fewer observations than this in the window: no prior (the sun stays unknown).
MIN_OBSERVATIONS = 20
#: The share of the window's observations :attr:`SunPrior.within_deg` covers.
WITHIN_SHARE = 0.9


@dataclass(frozen=True)
class SunPrior:
    """The typical HiRISE sun azimuth at one latitude, and how far the observations there spread around it."""

    #: degrees clockwise from north: the circular mean of the window's observations
    azimuth: float
    #: :data:`WITHIN_SHARE` of the window's observations lie within this many degrees of ``azimuth``
    within_deg: float
    #: how many observations the window holds
    observations: int
    #: the latitude asked about (planetocentric degrees)
    latitude: float


def circular_mean(degrees: np.ndarray) -> float:
    """The mean direction of ``degrees`` (0-360), so that 350° and 10° average to 0°, not 180°."""
    r = np.radians(degrees)
    return math.degrees(math.atan2(float(np.sin(r).sum()), float(np.cos(r).sum()))) % 360.0


def angular_difference(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """|a - b| in degrees, the short way round (0-180)."""
    return np.abs((np.asarray(a, float) - np.asarray(b, float) + 180.0) % 360.0 - 180.0)


@functools.lru_cache(maxsize=2)
def observation_suns(path: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(centre latitude, sun azimuth from north) of every bundled catalogue row that gives both, read-only.

    Read once per catalogue file and kept (1 MB): detect asks for the prior when it resolves a product's sun and
    again for its warning, and ``scan`` for every label-free product; parsing the catalogue takes 0.3 s.
    """
    from .index import read_bundled_rows

    lat, az = [], []
    for row in read_bundled_rows(path):
        if row["min_lat"] and row["max_lat"] and row["sun_azimuth"]:
            lat.append((float(row["min_lat"]) + float(row["max_lat"])) / 2.0)
            az.append(float(row["sun_azimuth"]))
    arrays = np.asarray(lat), np.asarray(az)
    for a in arrays:
        a.setflags(write=False)
    return arrays


def prior_from(latitudes: np.ndarray, azimuths: np.ndarray, latitude: float) -> SunPrior | None:
    """The prior at ``latitude`` from observations given as arrays (:func:`observation_suns`'s)."""
    near = np.abs(latitudes - latitude) <= WINDOW_DEG
    if int(near.sum()) < MIN_OBSERVATIONS:
        return None
    mean = circular_mean(azimuths[near])
    spread = float(np.quantile(angular_difference(azimuths[near], mean), WITHIN_SHARE))
    return SunPrior(mean, spread, int(near.sum()), float(latitude))


def typical_sun(latitude: float, path: Path | None = None) -> SunPrior | None:
    """The typical sun of a HiRISE observation centred at ``latitude``; None where the catalogue has too few.

    Raises :class:`~marsice_plugin.errors.CatalogueError` when the bundled catalogue cannot be read.
    """
    if not math.isfinite(latitude):
        return None
    return prior_from(*observation_suns(path), latitude)
