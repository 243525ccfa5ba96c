"""``marsice scan``: search, then download → detect → terrain for every product on Dask, into one GeoPackage.

This module only maps the command's arguments: the scan is planned by :mod:`marsice_plugin.scan.plan` (search,
DTM pairing, the resume set, what it would pull) and run by :mod:`marsice_plugin.scan.runner`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..progress import Reporter
from .arguments import add_model_args, add_size_cap_args, chosen_model, overlap_arg

if TYPE_CHECKING:  # pragma: no cover
    from ..scan.plan import ScanOptions, ScanPlan

#: What a cancelled scan leaves: every product committed before the cancel, and the manifest to resume.
CANCEL_MESSAGE = (
    "products committed before the cancel stay in the results GeoPackage and its manifest; "
    "run the same command again to resume"
)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "scan",
        help="scan the archive on Dask: search, download, detect (and terrain) for every product",
        description="Search HiRISE products, then download, detect and (when a DTM is paired) add terrain "
        "attributes for each as Dask tasks, on a local cluster of --workers processes or an existing cluster "
        "(--scheduler). Results stream into one GeoPackage through the single results writer; the manifest "
        "NAME.manifest.sqlite beside it records each product's state, so running the same command again "
        "resumes an interrupted scan. A product that fails is recorded with its error and the scan goes on.",
    )
    p.add_argument("--lat", nargs=2, type=float, required=True, metavar=("MIN", "MAX"), help="latitude band (°N)")
    p.add_argument("--ls", nargs=2, type=float, required=True, metavar=("FROM", "TO"), help="solar longitude range")
    p.add_argument("-o", "--output", type=Path, required=True, help="results GeoPackage (.gpkg)")
    p.add_argument(
        "--source", choices=("auto", "ode", "bundled"), default="auto", help="catalogue (auto: ODE, else bundled)"
    )
    p.add_argument("--ode-url", help="ODE REST base URL (default: $MARSICE_ODE_URL or the public ODE)")
    p.add_argument("--cache", type=Path, default=None, help="download cache (default $MARSICE_CACHE or ~/.cache)")
    p.add_argument("--cache-gb", type=float, default=50.0, help="cache size limit; least recently used files go first")
    add_size_cap_args(p, "the scan")
    p.add_argument("--dry-run", action="store_true", help="list what the scan would pull; write nothing")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="scan only the first N products found")
    p.add_argument(
        "--products", nargs="+", default=(), metavar="ID",
        help="scan only these products among those found (ids from a footprints layer)",
    )  # fmt: skip
    p.add_argument("--workers", type=int, default=2, metavar="N", help="worker processes of the local cluster")
    p.add_argument("--threads-per-worker", type=int, default=1, help="threads per worker (TensorFlow pools too)")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="use this running Dask scheduler instead")
    add_model_args(p)
    p.add_argument(
        "--overlap",
        default="auto",
        help="chunk overlap in pixels, or 'auto' (default: patches up to 32 m lie whole in a chunk); 0 is the "
        "paper's tiling",
    )
    p.add_argument("--no-terrain", action="store_true", help="do not look for DTMs or add terrain attributes")
    p.add_argument("--keep-downloads", action="store_true", help="keep each product's raw files after its commit")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for ODE and for file data")


def scan_options(args: argparse.Namespace) -> ScanOptions:
    """``marsice scan``'s arguments as the options of :func:`marsice_plugin.scan.plan.plan_scan`."""
    from ..detection import DetectOptions
    from ..scan.plan import ScanOptions
    from .download import default_folder

    if args.workers < 1 or args.threads_per_worker < 1:
        raise ValueError("--workers and --threads-per-worker must be at least 1")
    return ScanOptions(
        lat=tuple(args.lat),
        ls=tuple(args.ls),
        output=args.output,
        cache=args.cache or default_folder(),
        source=args.source,
        ode_url=args.ode_url,
        limit=args.limit,
        products=tuple(args.products),
        terrain=not args.no_terrain,
        model=chosen_model(args),
        threshold=args.threshold,
        overlap=overlap_arg(args.overlap, DetectOptions.chunk_size),  # scan cuts detect's default chunks
        cache_gb=args.cache_gb,
        max_gb=args.max_gb,
        allow_unknown_size=args.allow_unknown_size,
        dry_run=args.dry_run,
        threads_per_worker=args.threads_per_worker,
        timeout_s=args.timeout,
    )


def run(args: argparse.Namespace, reporter: Reporter) -> None:
    from ..errors import ModelError
    from ..scan.plan import plan_scan

    plan = plan_scan(scan_options(args), reporter)
    if args.dry_run:
        pull = plan.pull
        reporter.result(
            {"OUTPUT": None, "products": len(plan.jobs), "to_process": len(plan.pending), "files": len(pull.files),
             "download_gb": round(pull.known_bytes / 1e9, 3), "unknown_sizes": pull.unknown,
             "estimated_gb": round(pull.estimated_bytes / 1e9, 3),
             "dtms": sum(1 for j in plan.pending if j.dtm)},
            "\n".join([*pull.listing(), f"dry run: {pull.text()}; nothing downloaded or written"]),
        )  # fmt: skip
        return
    if not plan.model.exists():
        raise ModelError(f"model file {plan.model} does not exist; give --model or set MARSICE_MODEL")
    _scan(args, reporter, plan)


def _scan(args: argparse.Namespace, reporter: Reporter, plan: ScanPlan) -> None:
    from ..scan.progress_bar import ProgressBar
    from ..scan.runner import ClusterOptions, run_scan

    bar = ProgressBar(reporter)
    cluster = ClusterOptions(workers=args.workers, threads_per_worker=args.threads_per_worker, scheduler=args.scheduler)
    reporter.progress(2, f"starting the scan of {len(plan.jobs)} products")
    report = run_scan(
        plan.jobs,
        args.output,
        cluster,
        keep_downloads=args.keep_downloads,
        progress=bar.update,
        log=bar.log,
    )
    bar.close()
    s = report.summary
    outputs: dict[str, Any] = {
        "OUTPUT": str(report.output),
        "MANIFEST": str(report.manifest),
        "products": s.products,
        "committed": s.committed,
        "failed": s.failed,
        "skipped": report.skipped,
        "candidates": s.candidates,
        "categories": s.categories,
        "download_gb": round(report.download_bytes / 1e9, 3),
        "source": plan.source,
        "dashboard": report.dashboard,
    }
    reporter.progress(100, "done")
    head = (
        f"scan of {s.products} products: {report.processed} committed in this run, {report.skipped} skipped "
        f"(committed earlier), {s.failed} failed, {report.elapsed_s:.0f} s"
    )
    reporter.result(outputs, head + "\n" + s.table())
