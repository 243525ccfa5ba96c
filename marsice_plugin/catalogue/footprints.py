"""The footprint layer of a search: one polygon per product in the common Mars CRS.

Written through :mod:`marsice_plugin.gpkg` (atomically) in IAU_2015:49900, the CRS of every
multi-product MarsIce layer: planetocentric latitude, east longitude -180..180 on the Mars sphere.
Never an Earth EPSG code: a HiRISE footprint labelled WGS 84 would land on Earth in QGIS.

``footprint_approximate`` is 1 where the polygon is a stand-in (a lat/lon box, or the COLOR strip of
an observation standing for its RED product) and ``footprint_note`` says which; a geologist must
not read an approximate outline as the image edge. A footprint string that cannot be read is such a
stand-in too: the box is written with ``footprint_approximate`` 1 and a note quoting the string.

A footprint across the 180° meridian is written split there (every vertex within ±180), as
:meth:`CatalogueProduct.footprint` gives it.

The layer's readers sit beside its writer: :func:`read_footprints` (what ``marsice download --from`` needs) and
:func:`read_footprint_records` (catalogue records for ``marsice sites --footprints``). Both read through
:func:`marsice_plugin.gpkg.read_layer`, so a file they cannot use gets the same message from either.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..gpkg import Feature, Field, GeoPackage, read_layer, write_new
from ..mars_crs import common_crs
from ..styles import write_default_style
from .records import CatalogueProduct, footprint_problem, unreadable_footprint_note

LAYER = "footprints"

#: What to give instead of a file the footprint readers cannot use (one message for every reader).
FOOTPRINTS_HINT = "give a footprints file written by `marsice search -o`"

FOOTPRINT_FIELDS: tuple[Field, ...] = (
    Field("product_id", str, "HiRISE product id, e.g. ESP_016430_2095_RED"),
    Field("observation_id", str, "observation id (orbit and target code)"),
    Field("product_type", str, "RED, COLOR or DTM"),
    Field("start_time", str, "UTC start of the observation (ISO 8601)"),
    Field("mars_year", int, "Mars Year (MY 1 began at Ls 0 on 1955-04-11)"),
    Field("ls", float, "solar longitude (degrees)"),
    Field("local_time", float, "local true solar time (hours)"),
    Field("incidence", float, "solar incidence angle (degrees)"),
    Field(
        "sun_azimuth", float, "sun azimuth clockwise from north (degrees; 290-303 in the paper's band); NULL if unknown"
    ),
    Field("emission", float, "emission angle (degrees)"),
    Field("centre_lat", float, "image centre latitude: middle of min/max latitude (planetocentric)"),
    Field("centre_lon", float, "image centre longitude (east, -180..180)"),
    Field("min_lat", float, "minimum latitude of the product"),
    Field("max_lat", float, "maximum latitude of the product"),
    Field("map_scale", float, "map scale (m/pixel; 0.25, 0.5 or 1 for binning 1, 2, 4); NULL if unknown"),
    Field("jp2_url", str, "URL of the image (JP2; the .IMG for DTMs)"),
    Field("lbl_url", str, "URL of the PDS3 label"),
    Field("jp2_kbytes", int, "compressed size of the image file as listed by ODE (KiB); NULL if unknown"),
    Field("lbl_kbytes", int, "size of the label file as listed by ODE (KiB); NULL if unknown"),
    Field("uncompressed_bytes", int, "uncompressed size from the RDR index (bundled catalogue only)"),
    Field("size_estimated", bool, "1 when no size is listed and estimated_mb stands in (bundled catalogue)"),
    Field("estimated_mb", float, "download (JP2 + LBL) estimated from the image's lines x samples (MB); see docs"),
    Field("footprint_approximate", bool, "1 when the polygon is a stand-in, see footprint_note"),
    Field("footprint_note", str, "what the polygon is when approximate"),
    Field("source", str, "ode, bundled or index"),
    Field("dtm_ids", str, "paired HiRISE DTMs (comma-separated), when DTM pairing was asked for"),
)


def _attributes(p: CatalogueProduct, dtm_ids: Sequence[str] = ()) -> dict[str, object]:
    problem = footprint_problem(p.footprint_wkt)  # the polygon written is then the lat/lon box
    return {
        "product_id": p.product_id,
        "observation_id": p.observation_id,
        "product_type": p.product_type,
        "start_time": p.start_time.isoformat(timespec="seconds").replace("+00:00", "Z") if p.start_time else None,
        "mars_year": p.mars_year,
        "ls": p.ls,
        "local_time": p.local_time,
        "incidence": p.incidence,
        "sun_azimuth": p.sun_azimuth,
        "emission": p.emission,
        "centre_lat": p.centre_lat,
        "centre_lon": p.centre_lon,
        "min_lat": p.min_lat,
        "max_lat": p.max_lat,
        "map_scale": p.map_scale,
        "jp2_url": p.jp2_url,
        "lbl_url": p.lbl_url,
        "jp2_kbytes": p.jp2_kbytes,
        "lbl_kbytes": p.lbl_kbytes,
        "uncompressed_bytes": p.uncompressed_bytes,
        "size_estimated": p.size_estimated,
        "estimated_mb": round(p.estimated_bytes / 1e6, 1) if p.size_estimated and p.estimated_bytes else None,
        "footprint_approximate": p.footprint_approximate or bool(problem),
        "footprint_note": unreadable_footprint_note(p.footprint_wkt or "", problem)
        if problem
        else p.footprint_note or None,
        "source": p.source,
        "dtm_ids": ",".join(dtm_ids) if dtm_ids else None,
    }


def _multipolygon(p: CatalogueProduct):
    import shapely

    geom = p.footprint()
    if isinstance(geom, shapely.Polygon):
        return shapely.MultiPolygon([geom])
    if isinstance(geom, shapely.MultiPolygon):
        return geom
    polys = [g for g in getattr(geom, "geoms", []) if isinstance(g, shapely.Polygon)]
    return shapely.MultiPolygon(polys)


def write_footprints(
    path: str | Path, products: Sequence[CatalogueProduct], dtm_pairs: dict[str, list[str]] | None = None
) -> Path:
    """Write the ``footprints`` layer (MULTIPOLYGON, common Mars CRS) to a new GeoPackage, atomically."""
    pairs = dtm_pairs or {}

    def build(gpkg: GeoPackage) -> None:
        srs = gpkg.add_srs(common_crs())
        gpkg.create_layer(
            LAYER, FOOTPRINT_FIELDS, "MULTIPOLYGON", srs, "HiRISE product footprints from a MarsIce search"
        )
        write_default_style(gpkg.conn, LAYER)  # outlined by season (Ls) when QGIS opens it
        gpkg.insert(
            LAYER,
            FOOTPRINT_FIELDS,
            [(_multipolygon(p), _attributes(p, pairs.get(p.product_id, ()))) for p in products],
        )

    return write_new(path, build)


@dataclass(frozen=True)
class FootprintRow:
    """What the downloader needs from a footprint layer row."""

    product_id: str
    jp2_url: str | None
    lbl_url: str | None
    jp2_kbytes: int | None
    lbl_kbytes: int | None
    estimated_bytes: int | None = None  # JP2 + LBL, when no size is listed (size_estimated)


def _read(path: str | Path) -> list[Feature]:
    """The footprint layer's rows. Both readers read exactly this, so a bad file gets one message from either;
    columns a file of an older MarsIce lacks (sizes, DTM pairs) are left out of its rows."""
    return read_layer(path, LAYER, require=("product_id", "jp2_url", "lbl_url"), hint=FOOTPRINTS_HINT)


def read_footprints(path: str | Path) -> list[FootprintRow]:
    """Product ids, URLs and listed sizes from a footprint GeoPackage written by :func:`write_footprints`."""
    return [
        FootprintRow(
            a["product_id"], a["jp2_url"], a["lbl_url"], a.get("jp2_kbytes"), a.get("lbl_kbytes"), _estimate(a)
        )
        for _, a in _read(path)
    ]


def read_footprint_records(path: str | Path) -> list[CatalogueProduct]:
    """Catalogue records, with their exact polygons, from a footprint GeoPackage written by :func:`write_footprints`.

    Columns a file of an older MarsIce lacks are None, as a catalogue that does not list them gives.
    """
    path = Path(path)
    out = []
    for geom, r in _read(path):
        start = r.get("start_time")
        out.append(
            CatalogueProduct(
                product_id=r["product_id"],
                observation_id=r.get("observation_id") or r["product_id"],
                product_type=r.get("product_type") or "",
                source=f"footprints:{path.name}",
                start_time=dt.datetime.fromisoformat(start.rstrip("Z")).replace(tzinfo=dt.UTC) if start else None,
                footprint_wkt=geom.wkt if geom is not None and not geom.is_empty else None,
                footprint_approximate=bool(r.get("footprint_approximate")),
                footprint_note=r.get("footprint_note") or "",
                estimated_bytes=_estimate(r),
                **{name: r.get(name) for name in _RECORD_COLUMNS},
            )
        )
    return out


def _estimate(row: dict) -> int | None:
    """The estimated download (bytes) of a row marked size_estimated; None otherwise or in an older file."""
    mb = row.get("estimated_mb")
    return round(mb * 1e6) if row.get("size_estimated") and mb is not None else None


#: Columns that go into a :class:`CatalogueProduct` as they are (NULL: None).
_RECORD_COLUMNS = (
    "mars_year",
    "ls",
    "local_time",
    "incidence",
    "sun_azimuth",
    "emission",
    "min_lat",
    "max_lat",
    "map_scale",
    "jp2_url",
    "lbl_url",
)
