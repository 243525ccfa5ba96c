"""``marsice search``: find HiRISE products by latitude band and season, write their footprints."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..progress import Reporter


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "search",
        help="find HiRISE RDR products by latitude band and solar longitude (ODE or the bundled catalogue)",
        description="Search HiRISE products and write a footprint GeoPackage (layer 'footprints', common Mars "
        "CRS IAU_2015:49900). Every filter is applied locally, whatever the source. Latitude rule 'centre': the "
        "image centre (middle of its min/max latitude) lies in the band; 'intersect': the product's latitude "
        "range overlaps the band.",
    )
    p.add_argument("--lat", nargs=2, type=float, required=True, metavar=("MIN", "MAX"), help="latitude band (°N)")
    p.add_argument("--ls", nargs=2, type=float, metavar=("FROM", "TO"), help="solar longitude; may wrap: 340 20")
    p.add_argument("--lon", nargs=2, type=float, metavar=("WEST", "EAST"), help="east longitude box; may wrap")
    p.add_argument("--incidence", nargs=2, type=float, metavar=("MIN", "MAX"), help="solar incidence angle (°)")
    p.add_argument("--scale", nargs="+", type=float, metavar="M", help="map scales to keep (m/px): 0.25 0.5 1")
    p.add_argument("--mars-year", nargs="+", type=int, metavar="N", help="Mars Years to keep (MY 1 began 1955-04-11)")
    p.add_argument("--product", choices=("RED", "COLOR", "DTM"), default="RED", help="product type (default RED)")
    p.add_argument("--since", metavar="DATE", help="only observations on or after this UTC date (YYYY-MM-DD)")
    p.add_argument("--lat-rule", choices=("centre", "intersect"), default="centre", help="latitude rule (see above)")
    p.add_argument(
        "--source",
        choices=("auto", "ode", "bundled", "index"),
        default="auto",
        help="auto: ODE, falling back to the bundled offline catalogue when ODE cannot be reached",
    )
    p.add_argument("--index", type=Path, metavar="TAB", help="RDRCUMINDEX.TAB for --source index (.LBL beside it)")
    p.add_argument(
        "--ode-url",
        help="ODE REST base URL (default: $MARSICE_ODE_URL or the public ODE); at most $MARSICE_ODE_MAX_MB "
        "(default 64) MiB are read from one answer",
    )
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for ODE")
    p.add_argument("--dtm", action="store_true", help="also pair each product with HiRISE DTMs (needs ODE)")
    p.add_argument("--table", type=int, default=30, metavar="N", help="rows of the printed table (0: none)")
    p.add_argument("-o", "--output", type=Path, help="footprint GeoPackage to write (.gpkg)")


def _table(products: list, rows: int) -> str:
    head = f"{'product_id':<22} {'MY':>3} {'Ls':>7} {'lat':>8} {'lon':>8} {'inc':>5} {'sun':>5} {'scale':>5} {'MB':>8}"
    lines = [head]
    for p in products[:rows]:
        size = "?" if p.download_bytes is None else f"{'~' if p.size_estimated else ''}{p.download_bytes / 1e6:.0f}"
        lines.append(
            f"{p.product_id:<22} {p.mars_year or '':>3} {_f(p.ls, 2):>7} {_f(p.centre_lat, 3):>8} "
            f"{_f(p.centre_lon, 3):>8} {_f(p.incidence, 1):>5} {_f(p.sun_azimuth, 1):>5} {_f(p.map_scale, 2):>5} "
            f"{size:>8}"
        )
    if len(products) > rows:
        lines.append(f"... and {len(products) - rows} more")
    return "\n".join(lines)


def _f(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def run(args: argparse.Namespace, reporter: Reporter) -> None:
    from ..catalogue.search import SearchQuery, parse_since
    from ..catalogue.sources import find_products

    query = SearchQuery(
        lat=tuple(args.lat),
        ls=tuple(args.ls) if args.ls else None,
        lon=tuple(args.lon) if args.lon else None,
        incidence=tuple(args.incidence) if args.incidence else None,
        scales=tuple(args.scale) if args.scale else None,
        mars_years=tuple(args.mars_year) if args.mars_year else None,
        product_type=args.product,
        since=parse_since(args.since) if args.since else None,
        lat_rule=args.lat_rule,
    )
    reporter.progress(5, f"searching ({args.source})")
    products, used = find_products(
        query,
        args.source,
        ode_url=args.ode_url,
        index_path=args.index,
        timeout_s=args.timeout,
        warn=lambda m: reporter.log(m, "warning"),
    )
    reporter.progress(70, f"{len(products)} products found in the {used} catalogue")
    pairs = _pair_dtms(products, query, args, reporter) if args.dtm else None
    if used == "bundled" and query.scales:
        reporter.log("the bundled catalogue derives map scales from each frame's size; polar products have none "
                     "and --scale drops them: use --source ode for those", "warning")  # fmt: skip
    if used == "bundled" and query.product_type == "RED":
        reporter.log("RED footprints come from each observation's COLOR product (marked approximate)", "warning")
    outputs: dict[str, Any] = {"products": len(products), "source": used}
    if args.output:
        from ..catalogue.footprints import write_footprints

        outputs["OUTPUT"] = str(write_footprints(args.output, products, pairs))
    known = [p.download_bytes for p in products if p.download_bytes is not None]
    unknown = len(products) - len(known)
    gb = sum(known) / 1e9
    estimated = [p.download_bytes for p in products if p.size_estimated and p.download_bytes is not None]
    estimated_gb = sum(estimated) / 1e9
    outputs.update(download_gb=round(gb, 3), unknown_sizes=unknown, estimated_gb=round(estimated_gb, 3))
    if reporter.mode == "text" and args.table and products:
        sys.stdout.write(_table(products, args.table) + "\n")
    size_text = f"download {gb:.2f} GB (JP2 + LBL) for {len(known)} products"
    if estimated:
        size_text += f", {estimated_gb:.2f} GB of it estimated from image sizes for {len(estimated)} products"
    if unknown:
        size_text += f", size unknown for {unknown}"
    reporter.progress(100, "done")
    reporter.result(
        outputs, f"{len(products)} {query.product_type} products ({used}, lat rule {query.lat_rule}); " + size_text
    )


def _pair_dtms(products: list, query: Any, args: argparse.Namespace, reporter: Reporter) -> dict[str, list[str]]:
    """DTMs over the same band from ODE, paired by source observation or footprint overlap."""
    import dataclasses

    from ..catalogue.dtm import pair_dtms
    from ..catalogue.sources import find_products

    dtm_query = dataclasses.replace(
        query, product_type="DTM", ls=None, incidence=None, scales=None, mars_years=None, since=None,
        lat_rule="intersect",
    )  # fmt: skip
    dtms, _ = find_products(dtm_query, "ode", ode_url=args.ode_url, timeout_s=args.timeout)
    pairs: dict[str, list[str]] = {}
    for pair in pair_dtms(products, dtms):
        pairs.setdefault(pair.image_id, []).append(pair.dtm_id)
    reporter.log(f"{len(dtms)} DTMs in the band; {len(pairs)} products have at least one")
    return pairs
