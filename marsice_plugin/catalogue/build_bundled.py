"""Build the bundled offline catalogue from a HiRISE RDR index.

Usage::

    python -m marsice_plugin.catalogue.build_bundled hirise_rdr_color_index.csv.gz [-o OUT.csv.gz]
    python -m marsice_plugin.catalogue.build_bundled --cumindex RDRCUMINDEX.TAB [--label RDRCUMINDEX.LBL]

Why a derived file: the source CSV (83,672 rows, 11 MB) repeats observations, holds rows without
metadata and names, and would be slow to parse at every search. The bundled file keeps one record
per product with only what the search, the footprint layer and the downloader use; URLs are rebuilt
from the product id (the build checks that the source's URLs follow that layout, row by row). The
source lists no map scale and no compressed size: the build derives the map scale and estimates the
COLOR and RED JP2 sizes from each row's frame size and footprint (:mod:`.size_estimate`).

The second form refreshes the catalogue from the official cumulative index, which also lists RED
products, map scales and the four footprint corners.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import sys
from collections.abc import Iterable
from pathlib import Path

from ..errors import CatalogueError
from ..labels import sun_azimuth_from_north
from .index import BUNDLED_COLUMNS, BUNDLED_PATH, PDS_BASE_URL, rdr_urls, read_cumindex
from .mars_time import mars_year
from .records import CatalogueProduct
from .size_estimate import estimated_jp2_bytes

_ARCHIVE_HOSTS = ("https://hirise-pds.lpl.arizona.edu/PDS/", "https://hirise.lpl.arizona.edu/PDS/")


def _opt(row: dict[str, str], key: str) -> float | None:
    """A number of the source CSV, None where the column is missing or empty."""
    text = (row.get(key) or "").strip()
    return float(text) if text else None


def _sun(row: dict[str, str]) -> float | None:
    """The row's sun azimuth from north to 0.1° (``labels.sun_azimuth_from_north``), 0 rather than 360.0."""
    azimuth = sun_azimuth_from_north(_opt(row, "SUB_SOLAR_AZIMUTH"), _opt(row, "NORTH_AZIMUTH"))
    return None if azimuth is None else round(azimuth, 1) % 360.0


def _num(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def rows_from_color_csv(source: Path) -> tuple[list[dict[str, str]], dict[str, int]]:
    """One row per observation from the RDR COLOR index CSV, with the counts of what was dropped."""
    import datetime as dt

    stats = {"rows": 0, "rows_without_metadata": 0, "duplicate_rows": 0, "unfiltered_names": 0, "map_scales": 0}
    seen: dict[str, dict[str, str]] = {}
    with gzip.open(source, "rt", encoding="utf-8-sig", newline="") as fh:
        for row in csv.DictReader(fh):
            stats["rows"] += 1
            url = row["IMG_URL"]
            product_id = url.rsplit("/", 1)[1].rsplit(".", 1)[0]
            if "UNFILTERED_COLOR" in row["FILE_NAME"]:
                stats["unfiltered_names"] += 1
            if rdr_urls(product_id, _host(url)) != (url, row["LABEL_URL"]):
                raise CatalogueError(f"{source}: URL {url} does not follow the archive layout; cannot derive URLs")
            if not row["SOLAR_LONGITUDE"].strip():
                stats["rows_without_metadata"] += 1
                continue
            if product_id in seen:
                stats["duplicate_rows"] += 1
                continue
            start = dt.datetime.fromisoformat(row["START_TIME"]).replace(tzinfo=dt.UTC)
            ls = float(row["SOLAR_LONGITUDE"])
            box = [float(row[k]) for k in ("MINIMUM_LATITUDE", "MAXIMUM_LATITUDE", "WESTERNMOST_LONGITUDE",
                                           "EASTERNMOST_LONGITUDE")]  # fmt: skip
            storage = int(row["REQUIRED_STORAGE_BYTES"]) if row["REQUIRED_STORAGE_BYTES"].strip() else 0
            scale, color_bytes, red_bytes = estimated_jp2_bytes(*box, storage) if storage else (None, None, None)
            stats["map_scales"] += scale is not None
            seen[product_id] = {
                "product_id": product_id,
                "start_time": start.strftime("%Y-%m-%dT%H:%M:%S"),
                "mars_year": str(mars_year(start, ls)),
                "ls": f"{ls:.3f}",
                "local_time": _num(float(row["LOCAL_TIME"]), 2),
                "incidence": _num(float(row["INCIDENCE_ANGLE"]), 2),
                "emission": _num(float(row["EMISSION_ANGLE"]), 2),
                "phase": _num(float(row["PHASE_ANGLE"]), 2),
                "min_lat": _num(float(row["MINIMUM_LATITUDE"]), 4),
                "max_lat": _num(float(row["MAXIMUM_LATITUDE"]), 4),
                "min_lon": _num(float(row["WESTERNMOST_LONGITUDE"]), 4),
                "max_lon": _num(float(row["EASTERNMOST_LONGITUDE"]), 4),
                "map_scale": _num(scale, 2),
                "uncompressed_bytes": row["REQUIRED_STORAGE_BYTES"].strip(),
                "corners": "",
                "est_jp2_mb": "" if color_bytes is None else f"{color_bytes / 1e6:.1f}",  # estimates: no false digits
                "est_red_jp2_mb": "" if red_bytes is None else f"{red_bytes / 1e6:.1f}",
                "sun_azimuth": _num(_sun(row), 1),
            }
    stats["products"] = len(seen)
    return list(seen.values()), stats


def _host(url: str) -> str:
    for host in _ARCHIVE_HOSTS:
        if url.startswith(host):
            return host
    return PDS_BASE_URL


def rows_from_products(products: Iterable[CatalogueProduct]) -> list[dict[str, str]]:
    """Bundled rows from catalogue records (e.g. read from RDRCUMINDEX.TAB); one per product id."""
    import shapely

    rows: dict[str, dict[str, str]] = {}
    for p in products:
        if p.ls is None or p.min_lat is None or p.product_type not in ("RED", "COLOR"):
            continue
        corners = ""
        if p.footprint_wkt and not p.footprint_approximate:
            ring = list(shapely.from_wkt(p.footprint_wkt).exterior.coords)[:4]
            corners = ";".join(f"{x:.5f} {y:.5f}" for x, y in ring)
        year = mars_year(p.start_time, p.ls) if p.start_time else None
        rows[p.product_id] = {
            "product_id": p.product_id,
            "start_time": p.start_time.strftime("%Y-%m-%dT%H:%M:%S") if p.start_time else "",
            "mars_year": "" if year is None else str(year),
            "ls": _num(p.ls, 3),
            "local_time": _num(p.local_time, 3),
            "incidence": _num(p.incidence, 3),
            "emission": _num(p.emission, 3),
            "phase": _num(p.phase, 3),
            "min_lat": _num(p.min_lat, 5),
            "max_lat": _num(p.max_lat, 5),
            "min_lon": _num(p.min_lon, 5),
            "max_lon": _num(p.max_lon, 5),
            "map_scale": _num(p.map_scale, 4),
            "uncompressed_bytes": "",
            "corners": corners,
            "est_jp2_mb": "",
            "est_red_jp2_mb": "",
            "sun_azimuth": _num(p.sun_azimuth, 3),
        }
    return list(rows.values())


def write_bundled(rows: list[dict[str, str]], out: Path, comments: list[str]) -> Path:
    """Write the catalogue as gzip'd CSV (fixed mtime, so rebuilding gives identical bytes), atomically."""
    import os

    rows = sorted(rows, key=lambda r: r["product_id"])
    text = io.StringIO()
    for line in comments:
        text.write(f"# {line}\n")
    writer = csv.DictWriter(text, fieldnames=BUNDLED_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
        gz.write(text.getvalue().encode("utf-8"))
    os.replace(tmp, out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", nargs="?", type=Path, help="hirise_rdr_color_index.csv.gz")
    parser.add_argument("--cumindex", type=Path, help="official RDRCUMINDEX.TAB instead of the CSV")
    parser.add_argument("--label", type=Path, help="RDRCUMINDEX.LBL (default: beside the TAB)")
    parser.add_argument("-o", "--output", type=Path, default=BUNDLED_PATH)
    args = parser.parse_args(argv)
    if args.cumindex:
        products = read_cumindex(args.cumindex, args.label)
        rows = rows_from_products(products)
        comments = [f"derived from {args.cumindex.name} by marsice_plugin.catalogue.build_bundled --cumindex"]
        stats = {"rows": len(products), "products": len(rows)}
    elif args.source:
        rows, stats = rows_from_color_csv(args.source)
        comments = [
            f"derived from {args.source.name} by marsice_plugin.catalogue.build_bundled",
            "one COLOR record per product id; rows without metadata and repeated rows dropped",
            "map_scale derived and est_*_mb (JP2 megabytes) estimated from the frame size (catalogue/size_estimate.py)",
            "sun_azimuth: (SUB_SOLAR_AZIMUTH - NORTH_AZIMUTH) mod 360, degrees clockwise from north",
        ]
    else:
        parser.error("give the COLOR index CSV or --cumindex RDRCUMINDEX.TAB")
    comments.append("counts: " + ", ".join(f"{k} {v}" for k, v in stats.items()))
    out = write_bundled(rows, args.output, comments)
    print(f"{out}: {len(rows)} products, {out.stat().st_size} bytes ({comments[-1]})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
