"""Observation geometry drawn from the real HiRISE index, for generated products.

Latitude, solar longitude, local time and incidence are drawn jointly (one real observation at a time)
from the bundled catalogue's observations in the paper's band (image centre −60..−40, Ls 140..200), so
generated scenes are lit as the real images of that band are. The sun azimuth is not in the bundled
catalogue; from the full RDR index, (SUB_SOLAR_AZIMUTH − NORTH_AZIMUTH) mod 360 in this band spans
290–303° with median 297° (measured for the project), so it is drawn from a triangular distribution
with those bounds and mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: Sun azimuth from north in the paper's band, measured on the full RDR index (min, median, max).
SUN_AZIMUTH_BAND = (290.0, 297.0, 303.0)


@dataclass(frozen=True)
class ObservationGeometry:
    """Where and when a real observation of the band was taken, and how it was lit."""

    product_id: str
    latitude: float
    solar_longitude: float
    local_time: float
    incidence: float
    sun_azimuth: float


@lru_cache(maxsize=4)
def band_observations(lat: tuple[float, float] = (-60.0, -40.0), ls: tuple[float, float] = (140.0, 200.0)) -> tuple:
    """(product_id, centre latitude, Ls, local time, incidence) of bundled observations in the band."""
    from ..catalogue.index import read_bundled_rows

    out = []
    for row in read_bundled_rows():
        try:
            centre = 0.5 * (float(row["min_lat"]) + float(row["max_lat"]))
            values = (float(row["ls"]), float(row["local_time"]), float(row["incidence"]))
        except (KeyError, ValueError):
            continue
        if lat[0] <= centre <= lat[1] and ls[0] <= values[0] <= ls[1]:
            out.append((row["product_id"], centre, *values))
    return tuple(out)


def sample_geometry(rng: np.random.Generator) -> ObservationGeometry:
    """One real observation's latitude, Ls, local time and incidence, with a sun azimuth of the band."""
    rows = band_observations()
    pid, lat, ls, local_time, incidence = rows[int(rng.integers(len(rows)))]
    azimuth = float(rng.triangular(*SUN_AZIMUTH_BAND))
    return ObservationGeometry(pid, lat, ls, local_time, incidence, azimuth)
