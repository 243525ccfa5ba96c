"""Group ice candidates from different products into sites (union-find within a tolerance in metres).

Two candidates belong to the same site when their outlines come within ``tolerance_m`` of each other on the Mars
sphere (after any co-registration offset, see :mod:`.inputs`). The relation is closed transitively (union-find),
so a chain of patches that each touch the next is one site; candidates of the same product that lie within the
tolerance are one site too (a patch split in two by a shadow edge).

Stable id: ``site_<lat>[N|S]_<lon>E`` from the site centroid (the area-weighted centroid of the union of its
outlines) rounded to 1e-4 degree, about 6 m on Mars, with the east longitude in 0..360, e.g.
``site_50.2012S_031.4056E``. The same inputs give the same ids on every run; adding a product that extends a site
can move its centroid and so its id. Two sites whose rounded centroids coincide (possible only for sites that are
not merged yet lie within 6 m, e.g. with a tolerance of 0) get ``-2``, ``-3`` suffixes in id order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..vectors import as_multipolygon, continuous, split_antimeridian
from .geometry import degrees_for, from_local, to_local, unwrap_lon
from .inputs import CandidateRow

#: Default grouping tolerance (m): a few pixels of 0.25-1 m HiRISE products plus their usual misregistration.
DEFAULT_TOLERANCE_M = 20.0


@dataclass
class Site:
    """A group of candidates and its outline (lon/lat, common CRS)."""

    site_id: str
    members: list[CandidateRow]
    geometry: Any  # MultiPolygon
    centroid_lat: float
    centroid_lon: float  # -180..180
    area_m2: float
    products: list[str] = field(default_factory=list)

    @property
    def centroid_lon_360(self) -> float:
        return self.centroid_lon % 360.0


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def site_id_for(lat: float, lon: float) -> str:
    """``site_50.2012S_031.4056E``: centroid rounded to 1e-4° (about 6 m), east longitude 0..360."""
    lat_r = round(lat, 4)
    lon_r = round(lon % 360.0, 4) % 360.0
    hemisphere = "S" if lat_r < 0 else "N"
    return f"site_{abs(lat_r):07.4f}{hemisphere}_{lon_r:08.4f}E"


def group_candidates(candidates: list[CandidateRow], tolerance_m: float = DEFAULT_TOLERANCE_M) -> list[Site]:
    """Sites from candidates; sorted by id, members sorted by candidate id."""
    import shapely

    if tolerance_m < 0:
        raise ValueError(f"tolerance must be >= 0 m, got {tolerance_m}")
    # continuous copies: a patch split at 180° has the bounds and centroid of the place, not of the parallel
    geoms = [continuous(c.geometry) for c in candidates]
    if not geoms:
        return []
    tree = shapely.STRtree(geoms)
    uf = _UnionFind(len(geoms))
    for i, geom in enumerate(geoms):
        minx, miny, maxx, maxy = geom.bounds
        dlon, dlat = degrees_for(tolerance_m, max(abs(miny), abs(maxy)))
        c = geom.centroid
        local_i = None
        for turn in (0.0, 360.0, -360.0):
            box = shapely.box(minx - dlon + turn, miny - dlat, maxx + dlon + turn, maxy + dlat)
            for j in tree.query(box):
                j = int(j)
                if j <= i or uf.find(i) == uf.find(j):
                    continue
                if local_i is None:
                    local_i = to_local(geom, c.x, c.y)
                if local_i.distance(to_local(geoms[j], c.x, c.y)) <= tolerance_m:
                    uf.union(i, j)
    groups: dict[int, list[int]] = {}
    for i in range(len(geoms)):
        groups.setdefault(uf.find(i), []).append(i)
    sites = [_make_site([candidates[i] for i in idx]) for idx in groups.values()]
    sites.sort(key=lambda s: s.site_id)
    seen: dict[str, int] = {}
    for site in sites:
        n = seen.get(site.site_id, 0) + 1
        seen[site.site_id] = n
        if n > 1:
            site.site_id = f"{site.site_id}-{n}"
    return sites


def _make_site(members: list[CandidateRow]) -> Site:
    import shapely

    members = sorted(members, key=lambda m: m.candidate_id)
    ref = continuous(members[0].geometry).centroid
    lon0, lat0 = ref.x, ref.y
    local = shapely.union_all([to_local(m.geometry, lon0, lat0) for m in members])
    centre = local.centroid if local.area > 0 else local.representative_point()
    merged = from_local(local, lon0, lat0)
    c = from_local(centre, lon0, lat0)
    lon = float(unwrap_lon(c.x, 0.0))
    if abs(lon) > 180.0 - 1e-12:
        lon = math.copysign(180.0, lon)
    # keep the outline next to the centroid's longitude frame, then split it at 180° like every layer's outlines
    shift = lon - c.x
    if shift:
        merged = shapely.affinity.translate(merged, shift, 0.0)
    return Site(
        site_id=site_id_for(c.y, lon),
        members=members,
        geometry=as_multipolygon(split_antimeridian(merged)),
        centroid_lat=float(c.y),
        centroid_lon=lon,
        area_m2=float(local.area),
        products=sorted({m.product_id for m in members}),
    )
