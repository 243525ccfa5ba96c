"""Export a sites GeoPackage as CSV (JMARS-ready), KML or GeoJSON, one row or feature per site.

Coordinates are planetocentric latitude and east longitude on the Mars 2015 sphere (IAU_2015:49900), the CRS of
the sites layer:

* CSV: ``latitude`` and ``longitude`` (east, 0..360, the convention of JMARS and of the HiRISE catalogue) and
  ``longitude_180`` (east, -180..180). JMARS's shape layer loads such a CSV as a point layer. Columns are listed in
  :data:`CSV_COLUMNS` and in docs/sites.md.
* KML: one Placemark per site at its centroid (``<coordinates>`` longitude -180..180, latitude, 0), the columns as
  ``ExtendedData``. KML itself knows only Earth's WGS 84; Google Earth's Mars mode and GDAL read the numbers as
  degrees, which on Mars are these planetocentric ones. The Document's description says so.
* GeoJSON: one Feature per site with its outline. RFC 7946 assumes WGS 84, and a file without a CRS opens in
  QGIS as EPSG:4326, an Earth CRS. So the FeatureCollection carries the GeoJSON 2008 ``crs`` member naming the Mars
  2015 sphere by its WKT, without authority ids (GDAL, and so QGIS, reads that member: QGIS 3.22 then shows the
  layer in "Mars (2015) - Sphere / Ocentric"; with an ``IAU`` authority it reports the CRS invalid, and a ``.prj``
  beside a GeoJSON is not read at all; measured). It also carries ``mars_crs`` = ``IAU_2015:49900`` and a
  ``crs_note``, and every feature a ``mars_crs`` property, for readers that drop ``crs``. A strict RFC 7946
  reader ignores these members and sees WGS 84 degrees; GeoPackage (``marsice sites``) or KML are the formats
  whose CRS no reader can lose.

Every file is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from ..mars_crs import COMMON_CRS, wkt_without_authority
from ..outputs import CSV, GEOJSON, KML, Output, check_outputs, write_atomically
from .build import OBSERVATION_FIELDS, read_observations, read_sites

FORMATS = ("csv", "kml", "geojson")

CRS_NOTE = (
    f"Mars, not Earth: planetocentric latitude and east longitude in degrees on the Mars 2015 sphere ({COMMON_CRS})"
)

#: CSV columns, in order: (name, sites-layer column or None when computed, description).
CSV_COLUMNS: tuple[tuple[str, str | None, str], ...] = (
    ("site_id", "site_id", "stable site id (rounded centroid)"),
    ("latitude", "centroid_lat", "planetocentric latitude of the site centroid (degrees, north positive)"),
    ("longitude", "centroid_lon_360", "east longitude of the site centroid (degrees, 0..360)"),
    ("longitude_180", "centroid_lon", "east longitude of the site centroid (degrees, -180..180)"),
    ("area_m2", "area_m2", "area of the union of the candidate outlines (m²)"),
    ("n_observations", "n_observations", "observations covering the site, processed or not"),
    ("n_processed", "n_processed", "processed observations"),
    ("n_detected", "n_detected", "processed observations with a candidate in the site"),
    ("n_not_processed", "n_not_processed", "catalogue observations with no results yet"),
    ("mars_years", "mars_years", "Mars Years covered (comma-separated)"),
    ("ls_min", "ls_min", "lowest Ls covered (degrees)"),
    ("ls_max", "ls_max", "highest Ls covered (degrees)"),
    ("detected_ls_min", "detected_ls_min", "lowest Ls with the patch outlined"),
    ("detected_ls_max", "detected_ls_max", "highest Ls with the patch outlined"),
    ("max_probability", "max_probability", "highest candidate probability"),
    ("request_ls_start", "request_ls_start", "Ls window for a new observation request: start (degrees)"),
    ("request_ls_end", "request_ls_end", "Ls window: end (degrees; above 360 when the window wraps through Ls 0)"),
    ("products", "products", "products with a candidate in the site (comma-separated)"),
    ("web_urls", "web_urls", "HiRISE web pages of those products (space-separated)"),
    ("jp2_urls", "jp2_urls", "JP2 links of those products (space-separated)"),
    ("transitions", "transitions", "transition of each processed observation, in Ls order"),
    ("n_dusty", "n_dusty", "observations inside a global dust storm"),
    ("n_caveats", "n_caveats", "absences that may be dust or haze rather than melt"),
    ("plot", "plot", "PNG of probability against Ls, when written"),
)


def _csv_rows(sites: list[tuple[Any, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [{name: attrs.get(src) if src else None for name, src, _ in CSV_COLUMNS} for _, attrs in sites]


def _atomic_text(path: Path, write: Callable[[io.TextIOBase], None]) -> Path:
    """A UTF-8 text export written by ``write(fh)``, put in place only once complete (newlines as written)."""

    def fill(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            write(fh)

    return write_atomically(path, fill)


def write_csv(sites: list[tuple[Any, dict[str, Any]]], path: Path) -> Path:
    """One row per site with :data:`CSV_COLUMNS` (comma-separated, header line, UTF-8)."""

    def write(fh: io.TextIOBase) -> None:
        writer = csv.DictWriter(fh, fieldnames=[c[0] for c in CSV_COLUMNS])
        writer.writeheader()
        for row in _csv_rows(sites):
            writer.writerow({k: "" if v is None else v for k, v in row.items()})

    return _atomic_text(path, write)


def write_observations_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    """The ``site_observations`` table as CSV (its own columns, see docs/sites.md)."""
    names = [f.name for f in OBSERVATION_FIELDS]

    def write(fh: io.TextIOBase) -> None:
        writer = csv.DictWriter(fh, fieldnames=names, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in names})

    return _atomic_text(path, write)


def write_kml(sites: list[tuple[Any, dict[str, Any]]], path: Path) -> Path:
    """One Placemark per site at its centroid, the CSV columns as ExtendedData."""

    def write(fh: io.TextIOBase) -> None:
        fh.write('<?xml version="1.0" encoding="UTF-8"?>\n<kml xmlns="http://www.opengis.net/kml/2.2">\n<Document>\n')
        fh.write(f"<name>MarsIce sites</name>\n<description>{escape(CRS_NOTE)}</description>\n")
        for row in _csv_rows(sites):
            fh.write(f"<Placemark>\n<name>{escape(str(row['site_id']))}</name>\n")
            links = " ".join(
                f'<a href="{escape(u)}">{escape(u.rsplit("/", 1)[-1])}</a>' for u in (row["web_urls"] or "").split()
            )
            text = (
                f"{row['n_detected']} of {row['n_processed']} processed observations with a candidate; "
                f"request Ls {row['request_ls_start']}-{row['request_ls_end']}. {links}"
            )
            fh.write(f"<description><![CDATA[{text}]]></description>\n<ExtendedData>\n")
            for name, value in row.items():
                shown = "" if value is None else str(value)
                fh.write(f'<Data name="{name}"><value>{escape(shown)}</value></Data>\n')
            fh.write("</ExtendedData>\n")
            fh.write(f"<Point><coordinates>{row['longitude_180']!r},{row['latitude']!r},0</coordinates></Point>\n")
            fh.write("</Placemark>\n")
        fh.write("</Document>\n</kml>\n")

    return _atomic_text(path, write)


def write_geojson(sites: list[tuple[Any, dict[str, Any]]], path: Path) -> Path:
    """A FeatureCollection of site outlines (lon -180..180 / lat), the CSV columns as properties, in a Mars CRS."""
    import shapely

    features = []
    for (geom, _), row in zip(sites, _csv_rows(sites), strict=True):
        features.append(
            {
                "type": "Feature",
                "id": row["site_id"],
                "geometry": shapely.geometry.mapping(geom) if geom is not None else None,
                "properties": {**row, "mars_crs": COMMON_CRS},
            }
        )
    doc = {
        "type": "FeatureCollection",
        "name": "marsice_sites",
        "crs": {"type": "name", "properties": {"name": common_crs_wkt()}},
        "mars_crs": COMMON_CRS,
        "crs_note": CRS_NOTE,
        "features": features,
    }
    return _atomic_text(path, lambda fh: json.dump(doc, fh, indent=1, default=_json_default))


def common_crs_wkt() -> str:
    """The common Mars CRS as WKT1 without authority ids: the form QGIS 3.22 recognises from a file."""
    import pyproj

    return wkt_without_authority(pyproj.CRS.from_user_input(COMMON_CRS))


def _json_default(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} to GeoJSON")


def export_sites(path: str | Path, fmt: str, output: str | Path | None = None, observations: bool = False) -> Path:
    """Export a sites GeoPackage; the output defaults to the input name with the format's extension."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    if observations and fmt != "csv":
        raise ValueError("--observations exports the site_observations table, which is written as CSV only")
    path = Path(path)
    suffix = "_observations.csv" if observations else f".{fmt}"
    out = Path(output) if output else path.with_name(path.stem + suffix)
    suffixes = CSV if observations else {"csv": CSV, "kml": KML, "geojson": GEOJSON}[fmt]
    check_outputs([path], [Output(out, suffixes)])
    if observations:
        return write_observations_csv(read_observations(path), out)
    sites = read_sites(path)
    return {"csv": write_csv, "kml": write_kml, "geojson": write_geojson}[fmt](sites, out)
