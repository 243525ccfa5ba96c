"""Mars Year and solar longitude (Ls) from Earth dates, and Ls ranges that wrap through 0°.

Why compute Ls at all: the catalogue records carry Ls, but a user's ``--mars-year`` and ``--since``
are Earth-calendar notions, and ODE filters by observation time. Ls comes from the Mars24 algorithm
of Allison & McEwen (2000, Planet. Space Sci. 48, 215), accurate to about 0.01° over the HiRISE era.

Mars Years follow the usual convention (Clancy et al. 2000; Piqueux et al. 2015): MY 1 began at
Ls 0° on 1955-04-11, and every Mars Year begins at Ls 0°.
"""

from __future__ import annotations

import datetime as dt
import math

#: Start of Mars Year 1 (Ls 0°), by convention.
MY1_START = dt.datetime(1955, 4, 11, tzinfo=dt.UTC)

#: Mean length of the Mars tropical year in Earth days (Allison & McEwen 2000).
MARS_YEAR_DAYS = 686.9726

_J2000 = 2451545.0
_UNIX_EPOCH_JD = 2440587.5

# Perturbations by the other planets (Allison & McEwen 2000, table 5): amplitude (deg), period (Julian
# years), phase (deg).
_PBS = (
    (0.0071, 2.2353, 49.409),
    (0.0057, 2.7543, 168.173),
    (0.0039, 1.1177, 191.837),
    (0.0037, 15.7866, 21.736),
    (0.0021, 2.1354, 15.704),
    (0.0020, 2.4694, 95.528),
    (0.0018, 32.8493, 49.095),
)


def _utc(when: dt.datetime | dt.date) -> dt.datetime:
    if not isinstance(when, dt.datetime):
        when = dt.datetime(when.year, when.month, when.day, tzinfo=dt.UTC)
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def _tt_minus_utc(when: dt.datetime) -> float:
    """TT - UTC in seconds; 32.184 s plus the leap seconds (37 since 2017, 10 before 1972)."""
    leaps = ((1972, 10), (1999, 32), (2006, 33), (2009, 34), (2012, 35), (2015, 36), (2017, 37))
    count = 10
    for year, n in leaps:
        if when.year >= year:
            count = n
    return 32.184 + count


def julian_date(when: dt.datetime | dt.date) -> float:
    """Julian date (UTC) of a date or datetime; naive datetimes are taken as UTC."""
    when = _utc(when)
    return _UNIX_EPOCH_JD + when.timestamp() / 86400.0


def solar_longitude(when: dt.datetime | dt.date) -> float:
    """Areocentric solar longitude Ls (degrees, 0-360) at an Earth time (Mars24 algorithm)."""
    when = _utc(when)
    days = julian_date(when) + _tt_minus_utc(when) / 86400.0 - _J2000
    mean_anomaly = math.radians(19.3871 + 0.52402073 * days)
    alpha_fms = 270.3871 + 0.524038496 * days
    pbs = sum(a * math.cos(math.radians(0.985626 * days / tau + phi)) for a, tau, phi in _PBS)
    m = mean_anomaly
    equation_of_centre = (
        (10.691 + 3.0e-7 * days) * math.sin(m)
        + 0.623 * math.sin(2 * m)
        + 0.050 * math.sin(3 * m)
        + 0.005 * math.sin(4 * m)
        + 0.0005 * math.sin(5 * m)
        + pbs
    )
    return (alpha_fms + equation_of_centre) % 360.0


def mars_year(when: dt.datetime | dt.date, ls: float | None = None) -> int:
    """Mars Year of an Earth time (MY 1 began at Ls 0 on 1955-04-11).

    The year count from elapsed days is ambiguous within days of Ls 0, because Mars years differ in
    length; the Ls (given, e.g. from the product label, or computed) settles it.
    """
    when = _utc(when)
    elapsed = (when - MY1_START).total_seconds() / 86400.0 / MARS_YEAR_DAYS
    count = math.floor(elapsed)
    fraction = elapsed - count
    ls = solar_longitude(when) if ls is None else ls % 360.0
    if fraction < 0.25 and ls > 270.0:
        count -= 1
    elif fraction > 0.75 and ls < 90.0:
        count += 1
    return count + 1


def mars_year_start(year: int) -> dt.datetime:
    """Earth time (UTC, to about a minute) when Mars Year ``year`` began (Ls crossed 0°)."""
    guess = MY1_START + dt.timedelta(days=(year - 1) * MARS_YEAR_DAYS)
    lo, hi = guess - dt.timedelta(days=30), guess + dt.timedelta(days=30)
    # Ls jumps from ~360 to ~0 once in this window: bisect on "has Ls wrapped yet".
    for _ in range(40):
        mid = lo + (hi - lo) / 2
        if solar_longitude(mid) < 180.0:
            hi = mid
        else:
            lo = mid
    return hi.replace(microsecond=0)


def ls_in_range(ls: float, start: float, end: float) -> bool:
    """Whether Ls lies in [start, end] going forward from ``start``; the range may wrap (340 → 20)."""
    if end - start >= 360.0:
        return True
    width = (end - start) % 360.0
    return (ls - start) % 360.0 <= width
