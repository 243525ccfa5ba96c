"""Catalogue observations whose footprint covers a site, whether processed or not.

The catalogue is searched once for the box around all sites (latitude rule ``intersect``: any footprint touching
the box), then each footprint is tested against each site outline. Sources: the ones of ``marsice search``
(``auto``, ``ode``, ``bundled``, ``index``), a footprint GeoPackage written by ``marsice search -o`` (the exact
set a user searched, e.g. a refreshed ODE search kept for offline work; read by the footprint layer's own reader,
:func:`marsice_plugin.catalogue.footprints.read_footprint_records`), or ``none`` (processed products only).

The bundled catalogue gives each RED product its observation's COLOR footprint (about a fifth of the RED width)
and marks it approximate; coverage from it misses RED observations whose COLOR strip does not reach the site.
``footprint_approximate`` on each observation row says so.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..catalogue.footprints import read_footprint_records
from ..catalogue.records import CatalogueProduct, east_180
from ..errors import CatalogueError
from ..vectors import continuous
from .geometry import degrees_for, wrapped_variants
from .grouping import Site

CATALOGUES = ("auto", "bundled", "ode", "index", "none")

#: Margin (m) added around the sites when searching the catalogue.
SEARCH_MARGIN_M = 200.0


def catalogue_records(
    sites: list[Site],
    catalogue: str = "auto",
    *,
    footprints: Path | None = None,
    index_path: Path | None = None,
    ode_url: str | None = None,
    timeout_s: float = 60.0,
    warn: Callable[[str], None] = lambda message: None,
) -> tuple[list[CatalogueProduct], str]:
    """Catalogue records around the sites and the name of the source that answered."""
    if footprints is not None:
        return read_footprint_records(footprints), f"footprints:{Path(footprints).name}"
    if catalogue not in CATALOGUES:
        raise CatalogueError(f"unknown catalogue {catalogue!r}; use one of {', '.join(CATALOGUES)}")
    if catalogue == "none" or not sites:
        return [], "none"
    from ..catalogue.search import SearchQuery
    from ..catalogue.sources import find_products

    bounds = [continuous(s.geometry).bounds for s in sites]  # a site split at 180° is a few metres wide
    lat_lo, lat_hi = min(b[1] for b in bounds), max(b[3] for b in bounds)
    dlon, dlat = degrees_for(SEARCH_MARGIN_M, max(abs(lat_lo), abs(lat_hi)))
    arc = longitude_arc([(b[0] - dlon, b[2] + dlon) for b in bounds])
    lon = None if arc is None else (east_180(arc[0]), east_180(arc[1]))
    query = SearchQuery(
        lat=(max(-90.0, lat_lo - dlat), min(90.0, lat_hi + dlat)), lon=lon, lat_rule="intersect", product_type="RED"
    )
    records, used = find_products(
        query, catalogue, ode_url=ode_url, index_path=index_path, timeout_s=timeout_s, warn=warn
    )
    return records, used


def longitude_arc(intervals: list[tuple[float, float]]) -> tuple[float, float] | None:
    """The shortest eastward arc (west, east) holding every (west, east) longitude interval; None if 180° or more.

    Why an arc and not min/max: sites at 179.99°E and -179.99°E are metres apart, and the box from min to max
    would be the whole parallel. ``east`` may exceed 180 (the arc crosses the 180° meridian); None asks the
    catalogue for the whole latitude band, as a box half round the planet would.
    """
    if not intervals:
        return None
    west = np.array([w for w, _ in intervals], dtype=float) % 360.0
    width = np.array([e - w for w, e in intervals], dtype=float)
    if width.max() >= 180.0:
        return None
    # the arc starts at one of the intervals' west ends: try each, keep the narrowest
    spans = np.array([((west - start) % 360.0 + width).max() for start in west])
    best = int(np.argmin(spans))
    if spans[best] >= 180.0:
        return None
    return float(west[best]), float(west[best] + spans[best])


class FootprintIndex:
    """A spatial index of footprints (lon/lat) that answers "which of them reach this outline", across ±180°."""

    def __init__(self, items: list[Any], footprints: list[Any]):
        import shapely

        self.items = items
        self.footprints = footprints
        keep = [i for i, g in enumerate(footprints) if g is not None and not g.is_empty]
        self._index = keep
        self._tree = shapely.STRtree([footprints[i] for i in keep]) if keep else None

    def reaching(self, geometry: Any) -> list[Any]:
        """Items whose footprint intersects ``geometry``, in their original order."""
        if self._tree is None or geometry is None or geometry.is_empty:
            return []
        hits: set[int] = set()
        for variant in wrapped_variants(geometry):
            for k in self._tree.query(variant, predicate="intersects"):
                hits.add(self._index[int(k)])
        return [self.items[i] for i in sorted(hits)]


def catalogue_index(records: list[CatalogueProduct]) -> FootprintIndex:
    """An index of catalogue records by footprint."""
    return FootprintIndex(records, [r.footprint() for r in records])


def covering(site: Site, records: list[CatalogueProduct] | FootprintIndex) -> list[CatalogueProduct]:
    """Records whose footprint intersects the site outline."""
    index = records if isinstance(records, FootprintIndex) else catalogue_index(records)
    return index.reaching(site.geometry)
