"""``marsice export``: a sites GeoPackage as CSV (JMARS-ready), KML or GeoJSON."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..progress import Reporter


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="site lists as CSV (JMARS), KML or GeoJSON for follow-up",
        description="Write the sites of `marsice sites` with planetocentric latitude, east longitude (0-360 and "
        "-180..180), the products with their HiRISE web and JP2 links, and an Ls window for a new observation "
        "request. CSV columns are documented in docs/sites.md; JMARS loads the CSV as a point layer.",
    )
    p.add_argument("sites", type=Path, help="sites GeoPackage written by `marsice sites`")
    p.add_argument("--format", choices=("csv", "kml", "geojson"), default="csv", help="output format")
    p.add_argument("-o", "--output", type=Path, help="output file (default: SITES with the format's extension)")
    p.add_argument("--observations", action="store_true", help="export the site_observations table instead (CSV only)")


def run(args: argparse.Namespace, reporter: Reporter) -> None:
    from ..sites.export import export_sites, read_sites

    reporter.progress(0, f"exporting {args.sites.name}")
    out = export_sites(args.sites, args.format, args.output, observations=args.observations)
    n = len(read_sites(args.sites))
    reporter.progress(100, "done")
    if args.format == "geojson":
        reporter.log(
            "the GeoJSON names its Mars CRS in its 'crs' member (GDAL and QGIS read it); readers that follow RFC "
            "7946 strictly drop it and assume Earth's WGS 84: give them the sites GeoPackage or the KML instead"
        )
    what = "site observations" if args.observations else f"{n} sites"
    reporter.result({"OUTPUT": str(out), "sites": n}, f"{what} written to {out} ({args.format})")
