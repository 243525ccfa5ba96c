"""The search query and its filters, applied locally to every source's records.

Why locally: ODE silently ignores parameter names it does not know and has no wrapping Ls range, the
bundled catalogue has no server at all, and RDRCUMINDEX.TAB is a flat table. One set of filters here
makes every source answer the same question the same way.

The latitude rule (``lat_rule``) is documented and chosen by the user:

* ``centre`` (default): the image centre, the middle of the product's minimum and maximum latitude,
  lies in the band. This is how the paper picked images ("between -40° and -60°"). Note it is *not*
  CENTER_LATITUDE, which in HiRISE RDRs is the projection's standard parallel.
* ``intersect``: the product's latitude range overlaps the band at all.

Bounds are inclusive. Longitude boxes follow the same rule and may cross 0°/360° (``--lon 350 10``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ..errors import CatalogueError
from .mars_time import ls_in_range, mars_year
from .records import PRODUCT_TYPES, CatalogueProduct

LAT_RULES = ("centre", "intersect")

#: Relative tolerance when matching map scales (labels give 0.25, 0.5, 1.0 m with rounding).
SCALE_TOLERANCE = 0.02


@dataclass(frozen=True)
class SearchQuery:
    """What a user asks for. ``None`` means "no constraint" for every optional field."""

    lat: tuple[float, float] = (-90.0, 90.0)
    ls: tuple[float, float] | None = None
    lon: tuple[float, float] | None = None  # east, 0-360 or -180..180; may wrap (west > east)
    incidence: tuple[float, float] | None = None
    scales: tuple[float, ...] | None = None
    mars_years: tuple[int, ...] | None = None
    product_type: str = "RED"
    since: dt.datetime | None = None
    lat_rule: str = "centre"

    def __post_init__(self) -> None:
        lo, hi = self.lat
        if not (-90.0 <= lo <= hi <= 90.0):
            raise CatalogueError(f"--lat {lo} {hi}: give MIN MAX with -90 <= MIN <= MAX <= 90 (south is negative)")
        if self.lat_rule not in LAT_RULES:
            raise CatalogueError(f"latitude rule {self.lat_rule!r} is unknown; use one of {', '.join(LAT_RULES)}")
        if self.product_type not in PRODUCT_TYPES:
            raise CatalogueError(f"product type {self.product_type!r} is unknown; use one of {PRODUCT_TYPES}")
        if self.ls is not None and not all(0.0 <= v <= 360.0 for v in self.ls):
            raise CatalogueError(f"--ls {self.ls[0]} {self.ls[1]}: solar longitudes are 0-360 degrees")
        if self.incidence is not None and self.incidence[0] > self.incidence[1]:
            raise CatalogueError("--incidence MIN MAX: MIN is larger than MAX")
        if self.lon is not None and not all(-180.0 <= v <= 360.0 for v in self.lon):
            raise CatalogueError("--lon WEST EAST: longitudes are east, 0-360 or -180..180")
        if self.since is not None and self.since.tzinfo is None:
            object.__setattr__(self, "since", self.since.replace(tzinfo=dt.UTC))

    # -- the filters ---------------------------------------------------------------------------
    def matches(self, p: CatalogueProduct) -> bool:
        """Whether a record passes every filter. Unknown values fail a filter that asks about them."""
        return (
            self._type_ok(p)
            and self._lat_ok(p)
            and self._lon_ok(p)
            and self._ls_ok(p)
            and _within(p.incidence, self.incidence)
            and self._scale_ok(p)
            and self._year_ok(p)
            and self._since_ok(p)
        )

    def filter(self, products: Iterable[CatalogueProduct]) -> Iterator[CatalogueProduct]:
        return (p for p in products if self.matches(p))

    def _type_ok(self, p: CatalogueProduct) -> bool:
        return p.product_type == self.product_type

    def _lat_ok(self, p: CatalogueProduct) -> bool:
        lo, hi = self.lat
        if p.min_lat is None or p.max_lat is None:
            return False
        if self.lat_rule == "centre":
            return lo <= 0.5 * (p.min_lat + p.max_lat) <= hi
        return p.max_lat >= lo and p.min_lat <= hi

    def _lon_ok(self, p: CatalogueProduct) -> bool:
        if self.lon is None:
            return True
        if p.min_lon is None or p.max_lon is None:
            return False
        west, east = self.lon
        width = 360.0 if east - west >= 360.0 else (east - west) % 360.0
        if self.lat_rule == "centre":
            return (0.5 * (p.min_lon + p.max_lon) - west) % 360.0 <= width
        # Overlap of two arcs: either arc's start lies inside the other.
        p_width = p.max_lon - p.min_lon
        return (p.min_lon - west) % 360.0 <= width or (west - p.min_lon) % 360.0 <= p_width

    def _ls_ok(self, p: CatalogueProduct) -> bool:
        if self.ls is None:
            return True
        return p.ls is not None and ls_in_range(p.ls, *self.ls)

    def _scale_ok(self, p: CatalogueProduct) -> bool:
        if not self.scales:
            return True
        if p.map_scale is None:
            return False
        return any(abs(p.map_scale - s) <= SCALE_TOLERANCE * s for s in self.scales)

    def _year_ok(self, p: CatalogueProduct) -> bool:
        if not self.mars_years:
            return True
        year = p.mars_year
        if year is None and p.start_time is not None:
            year = mars_year(p.start_time, p.ls)
        return year in self.mars_years

    def _since_ok(self, p: CatalogueProduct) -> bool:
        if self.since is None:
            return True
        return p.start_time is not None and p.start_time >= self.since


def _within(value: float | None, bounds: tuple[float, float] | None) -> bool:
    if bounds is None:
        return True
    return value is not None and bounds[0] <= value <= bounds[1]


def parse_since(text: str) -> dt.datetime:
    """``--since`` value: an ISO date or date-time (UTC)."""
    try:
        when = dt.datetime.fromisoformat(text.rstrip("Z"))
    except ValueError as exc:
        raise CatalogueError(f"--since {text!r} is not a date; write it as YYYY-MM-DD (UTC)") from exc
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when
