"""One catalogue entry, whatever its source (ODE, the bundled catalogue or RDRCUMINDEX.TAB).

Why one record type: the search filters, the footprint layer and the downloader must not care where
an entry came from, but a user must be able to tell: ``source`` and ``footprint_approximate`` say
whether the footprint is the product's own or a stand-in (a COLOR strip standing for its RED
product, or a latitude/longitude box standing for a polygon).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import shapely

#: Product types a search can ask for.
PRODUCT_TYPES = ("RED", "COLOR", "DTM")

_HIRISE_ID = re.compile(r"^(?P<obs>[A-Z]{3}_\d{6}_\d{4})(?:_(?P<kind>[A-Z0-9]+))?$")
_DTM_ID = re.compile(r"^DT[A-Z]{3}_\d{6}_\d{4}_\d{6}_\d{4}_[A-Z0-9]{3}$")


def product_type_of(product_id: str) -> str:
    """RED, COLOR, DTM, or the id's suffix (e.g. IRB) for other products."""
    if _DTM_ID.match(product_id):
        return "DTM"
    m = _HIRISE_ID.match(product_id)
    return (m.group("kind") or "") if m else ""


def observation_of(product_id: str) -> str:
    """Observation id (``ESP_016430_2095``) of an image product id; the id itself otherwise."""
    m = _HIRISE_ID.match(product_id)
    return m.group("obs") if m else product_id


def east_180(lon: float) -> float:
    """East longitude in -180..180 (the convention of the common layer CRS)."""
    return (lon + 180.0) % 360.0 - 180.0


@dataclass(frozen=True)
class ProductFile:
    """One file of a product as a listing gives it (ODE's Product_file, or derived from an index)."""

    name: str
    url: str
    kind: str  # "Product", "Browse", "Derived", "Referenced" (ODE's Type)
    description: str = ""
    kbytes: int | None = None  # compressed size on the server, as listed (ODE gives KBytes)


@dataclass
class CatalogueProduct:
    """A HiRISE product as the catalogue knows it. Angles in degrees, longitudes east.

    ``min_lon``/``max_lon`` are a continuous range (``max_lon >= min_lon``) in whatever 0-360 or
    -180..180 frame the source used; ``centre_lon`` is in -180..180.
    """

    product_id: str
    observation_id: str
    product_type: str
    source: str  # "ode", "bundled", "index"
    start_time: dt.datetime | None = None
    mars_year: int | None = None
    ls: float | None = None
    local_time: float | None = None
    incidence: float | None = None
    emission: float | None = None
    phase: float | None = None
    min_lat: float | None = None
    max_lat: float | None = None
    min_lon: float | None = None
    max_lon: float | None = None
    map_scale: float | None = None
    footprint_wkt: str | None = None  # lon -180..180 / planetocentric lat, the common CRS
    footprint_approximate: bool = False
    footprint_note: str = ""
    jp2_url: str | None = None
    lbl_url: str | None = None
    files: list[ProductFile] = field(default_factory=list)
    uncompressed_bytes: int | None = None
    source_product_ids: tuple[str, ...] = ()  # DTMs: the observations they were made from
    estimated_bytes: int | None = None  # JP2 + LBL download estimated from the image size (see size_estimate)
    #: the sun's azimuth clockwise from north, (SUB_SOLAR_AZIMUTH - NORTH_AZIMUTH) mod 360; 290-303 in the paper's band
    sun_azimuth: float | None = None

    @property
    def centre_lat(self) -> float | None:
        """Image centre latitude: the middle of the footprint's latitude range (not CENTER_LATITUDE)."""
        if self.min_lat is None or self.max_lat is None:
            return None
        return 0.5 * (self.min_lat + self.max_lat)

    @property
    def centre_lon(self) -> float | None:
        """Image centre longitude, east, -180..180."""
        if self.min_lon is None or self.max_lon is None:
            return None
        return east_180(0.5 * (self.min_lon + self.max_lon))

    @property
    def jp2_kbytes(self) -> int | None:
        return self._kbytes(self.jp2_url)

    @property
    def lbl_kbytes(self) -> int | None:
        return self._kbytes(self.lbl_url)

    def _kbytes(self, url: str | None) -> int | None:
        for f in self.files:
            if url and f.url == url:
                return f.kbytes
        return None

    @property
    def download_kbytes(self) -> int | None:
        """Compressed size of the JP2 and its label, when the source lists them (ODE does)."""
        sizes = [self.jp2_kbytes, self.lbl_kbytes]
        return None if any(s is None for s in sizes) else sum(sizes)  # type: ignore[arg-type]

    @property
    def size_estimated(self) -> bool:
        """True when the download size is an estimate: no listed size, but one from the image's dimensions."""
        return self.download_kbytes is None and self.estimated_bytes is not None

    @property
    def download_bytes(self) -> int | None:
        """The listed download size (bytes) when known, else the estimate (see :attr:`size_estimated`), else None."""
        listed = self.download_kbytes
        return listed * 1024 if listed is not None else self.estimated_bytes

    def footprint(self) -> shapely.Geometry:
        """The footprint in lon -180..180 / lat, split at the 180° meridian; a lat/lon box when none is readable.

        A polygon given torn across 180° (a ring jumping from +180 to -180, which as drawn spans the globe) or
        drawn past ±180 is split there, as :func:`box_footprint` splits boxes: the footprint of a product on the
        meridian must not cover the far side of Mars.
        """
        import shapely

        from ..vectors import split_antimeridian

        geom, _ = _read_footprint(self.footprint_wkt)
        if geom is not None:
            return split_antimeridian(geom if geom.is_valid else shapely.make_valid(geom))
        return box_footprint(self.min_lon, self.min_lat, self.max_lon, self.max_lat)

    def flag_unreadable_footprint(self) -> bool:
        """Replace a footprint that cannot be read by the lat/lon box, marked approximate; True if it did.

        Without this a broken polygon string would silently become the box (the fallback of :meth:`footprint`)
        while ``footprint_approximate`` still said 0, and a user would read the box as the image edge.
        """
        problem = footprint_problem(self.footprint_wkt)
        if not problem:
            return False
        self.footprint_note = unreadable_footprint_note(self.footprint_wkt or "", problem)
        self.footprint_wkt = None
        self.footprint_approximate = True
        return True


def _read_footprint(wkt: str | None) -> tuple[shapely.Geometry | None, str]:
    """The footprint polygon of ``wkt`` and '', or None and why it cannot serve ('' when there is no string)."""
    import numpy as np
    import shapely

    if not wkt:
        return None, ""
    try:
        geom = shapely.from_wkt(wkt)
    except (shapely.errors.ShapelyError, ValueError, TypeError) as exc:
        return None, f"not valid WKT: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    if geom is None or geom.is_empty:
        return None, "an empty geometry"
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        return None, f"a {geom.geom_type}, not a polygon"
    xy = shapely.get_coordinates(geom)
    if not np.isfinite(xy).all() or np.abs(xy[:, 0]).max() > 360.0 or np.abs(xy[:, 1]).max() > 90.0:
        return None, "coordinates outside longitude -360..360 / latitude -90..90"
    return geom, ""


def footprint_problem(wkt: str | None) -> str:
    """Why ``wkt`` cannot serve as a footprint polygon; '' when it can, or when there is none to read."""
    return _read_footprint(wkt)[1]


def unreadable_footprint_note(wkt: str, problem: str) -> str:
    """The ``footprint_note`` of a record whose footprint string could not be read (quoted, shortened)."""
    shown = wkt if len(wkt) <= 60 else wkt[:57] + "..."
    return f"lat/lon box: the catalogue's footprint {shown!r} could not be read ({problem})"


def flag_unreadable_footprints(records: list[CatalogueProduct]) -> int:
    """:meth:`CatalogueProduct.flag_unreadable_footprint` on every record; how many were replaced."""
    return sum(record.flag_unreadable_footprint() for record in records)


def box_footprint(
    min_lon: float | None, min_lat: float | None, max_lon: float | None, max_lat: float | None
) -> shapely.Geometry:
    """A latitude/longitude box in lon -180..180, split in two where it crosses the 180° meridian."""
    import shapely

    if None in (min_lon, min_lat, max_lon, max_lat):
        return shapely.MultiPolygon()
    assert min_lon is not None and max_lon is not None and min_lat is not None and max_lat is not None
    if max_lon - min_lon >= 360.0:
        return shapely.MultiPolygon([shapely.box(-180.0, min_lat, 180.0, max_lat)])
    west = east_180(min_lon)
    east = west + (max_lon - min_lon)
    if east <= 180.0:
        return shapely.MultiPolygon([shapely.box(west, min_lat, east, max_lat)])
    return shapely.MultiPolygon(
        [shapely.box(west, min_lat, 180.0, max_lat), shapely.box(-180.0, min_lat, east - 360.0, max_lat)]
    )
