"""``marsice sites``: group candidates of several products into sites and list each site's observations."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..progress import Reporter


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "sites",
        help="group candidates into sites over time (repeat coverage, transitions, dust flags)",
        description="Group the ice candidates of one or more results GeoPackages into sites (outlines within "
        "--tolerance-m of each other, after any co-registration offset recorded in the products layer), list every "
        "catalogue observation covering each site (processed or not) with Mars Year, Ls, local time, incidence, "
        "scale and the detection result, mark persisted / disappeared / appeared / not yet processed between "
        "consecutive Ls of the same Mars Year, and flag dusty and low-contrast observations. Writes layer 'sites' "
        "and table 'site_observations' (common Mars CRS IAU_2015:49900). See docs/sites.md.",
    )
    p.add_argument("results", nargs="+", type=Path, help="results GeoPackages written by `marsice detect`")
    p.add_argument("-o", "--output", type=Path, required=True, help="sites GeoPackage to write (.gpkg)")
    p.add_argument("--tolerance-m", type=float, default=20.0, help="grouping distance between outlines (m)")
    p.add_argument(
        "--catalogue",
        choices=("auto", "bundled", "ode", "index", "none"),
        default="auto",
        help="where to find observations covering the sites (auto: ODE, else the bundled catalogue)",
    )
    p.add_argument(
        "--footprints", type=Path, metavar="GPKG", help="use this footprint layer of `marsice search -o` instead"
    )
    p.add_argument("--index", type=Path, metavar="TAB", help="RDRCUMINDEX.TAB for --catalogue index")
    p.add_argument("--ode-url", help="ODE REST base URL (default: $MARSICE_ODE_URL or the public ODE)")
    p.add_argument("--plots", type=Path, metavar="DIR", help="write one probability-against-Ls PNG per site here")
    p.add_argument(
        "--pull-missing",
        type=Path,
        metavar="QUEUE",
        help="list the unprocessed observations: QUEUE.gpkg for `marsice download --from`, else one id a line",
    )
    p.add_argument(
        "--no-contrast", action="store_true", help="do not open the processed products to measure their contrast"
    )


def run(args: argparse.Namespace, reporter: Reporter) -> None:
    from ..outputs import GEOPACKAGE, Output, check_outputs
    from ..sites.build import build_sites

    check_outputs(
        [*args.results, args.footprints, args.index],
        [
            Output(args.output, GEOPACKAGE),
            Output(args.plots, option="--plots", folder=True),
            Output(args.pull_missing, option="--pull-missing"),
        ],
    )
    result = build_sites(
        args.results,
        args.output,
        tolerance_m=args.tolerance_m,
        catalogue=args.catalogue,
        footprints=args.footprints,
        index_path=args.index,
        ode_url=args.ode_url,
        plots_dir=args.plots,
        pull_missing=args.pull_missing,
        measure_contrast=not args.no_contrast,
        reporter=reporter,
    )
    outputs: dict[str, Any] = {
        "OUTPUT": str(result.output),
        "sites": len(result.sites),
        "observations": sum(len(v) for v in result.observations.values()),
        "catalogue": result.catalogue_source,
    }
    if args.plots:
        outputs["PLOTS"] = str(args.plots)
    if result.queue is not None:
        outputs["QUEUE"] = str(result.queue)
        outputs["queued"] = len(result.queued)
    reporter.result(outputs, result.summary())
