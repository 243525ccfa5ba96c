"""``marsice scan``: search, then download → detect → terrain for every product on Dask, into one GeoPackage."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from ..progress import Reporter
from .arguments import add_model_args, chosen_model, overlap_arg

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
    p.add_argument("--max-gb", type=float, default=None, help="refuse to start when the scan would pull more")
    p.add_argument(
        "--allow-unknown-size",
        action="store_true",
        help="with --max-gb: start even when some files' sizes stay unknown (the scan could pull more)",
    )
    p.add_argument("--dry-run", action="store_true", help="list what the scan would pull; write nothing")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="scan only the first N products found")
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


def _search(args: argparse.Namespace, reporter: Reporter) -> tuple[list, str, dict]:
    from ..catalogue.search import SearchQuery
    from ..catalogue.sources import find_products

    query = SearchQuery(lat=tuple(args.lat), ls=tuple(args.ls))
    warn = lambda message: reporter.log(message, "warning")  # noqa: E731
    products, used = find_products(query, args.source, ode_url=args.ode_url, timeout_s=args.timeout, warn=warn)
    if args.limit is not None:
        products = products[: max(0, args.limit)]
    dtms: dict = {}
    if not args.no_terrain and products:
        if used != "ode":
            reporter.log("no DTMs paired: the DTM list comes from ODE (the bundled catalogue has none)", "warning")
        else:
            dtms = _dtms(products, query, args, reporter)
    return products, used, dtms


def _dtms(products: list, query: Any, args: argparse.Namespace, reporter: Reporter) -> dict:
    from ..catalogue.dtm import pair_dtms
    from ..catalogue.sources import find_products
    from ..errors import ODEError
    from ..scan.plan import first_dtms

    dtm_query = dataclasses.replace(query, product_type="DTM", ls=None, lat_rule="intersect")
    try:
        found, _ = find_products(dtm_query, "ode", ode_url=args.ode_url, timeout_s=args.timeout)
    except ODEError as exc:
        reporter.log(f"{exc}; scanning without terrain attributes", "warning")
        return {}
    dtms = first_dtms(pair_dtms(products, found), found)
    reporter.log(f"{len(found)} DTMs in the band; {len(dtms)} of {len(products)} products have one")
    return dtms


def run(args: argparse.Namespace, reporter: Reporter) -> None:
    from ..detection import DetectOptions
    from ..errors import OutputError
    from ..model_registry import default_model_path, model_threshold
    from ..scan.manifest import Manifest, manifest_path
    from ..scan.plan import JobOptions, check_max_gb, make_jobs, pull_plan
    from .download import default_folder

    if args.output.suffix.lower() != ".gpkg":
        raise OutputError(f"{args.output}: scan results are written as a GeoPackage; give a name ending in .gpkg")
    if args.workers < 1 or args.threads_per_worker < 1:
        raise ValueError("--workers and --threads-per-worker must be at least 1")
    overlap = overlap_arg(args.overlap, DetectOptions.chunk_size)  # scan cuts detect's default chunks
    cache = (args.cache or default_folder()).resolve()
    model = (chosen_model(args) or default_model_path()).resolve()
    threshold = model_threshold(args.threshold, model)
    reporter.progress(0, f"searching ({args.source})")
    products, used, dtms = _search(args, reporter)
    options = JobOptions(
        cache_dir=cache,
        model_path=model,
        threshold=threshold,
        overlap=overlap,
        cache_bytes=int(args.cache_gb * 1e9),
        threads=args.threads_per_worker,
        timeout_s=args.timeout,
    )
    jobs = make_jobs(products, options, dtms, warn=lambda m: reporter.log(m, "warning"))
    done: set[str] = set()
    if manifest_path(args.output).exists():
        with Manifest(manifest_path(args.output)) as manifest:
            done = {s.product_id for s in manifest.all() if s.state == "committed"}
    pending = [j for j in jobs if j.product_id not in done]
    plan = pull_plan(pending, cache, probe=args.dry_run or args.max_gb is not None)
    reporter.log(f"{len(jobs)} products from the {used} catalogue, {len(done & {j.product_id for j in jobs})} "
                 f"already committed; to pull: {plan.text()}")  # fmt: skip
    check_max_gb(plan, args.max_gb, args.allow_unknown_size)
    if args.dry_run:
        reporter.result(
            {"OUTPUT": None, "products": len(jobs), "to_process": len(pending), "files": len(plan.files),
             "download_gb": round(plan.known_bytes / 1e9, 3), "unknown_sizes": plan.unknown,
             "dtms": sum(1 for j in pending if j.dtm)},
            "\n".join([*plan.listing(), f"dry run: {plan.text()}; nothing downloaded or written"]),
        )  # fmt: skip
        return
    if not model.exists():
        from ..errors import ModelError

        raise ModelError(f"model file {model} does not exist; give --model or set MARSICE_MODEL")
    _scan(args, reporter, jobs, used)


def _scan(args: argparse.Namespace, reporter: Reporter, jobs: list, used: str) -> None:
    from ..scan.runner import ClusterOptions, run_scan

    bar = ProgressBar(reporter)
    cluster = ClusterOptions(workers=args.workers, threads_per_worker=args.threads_per_worker, scheduler=args.scheduler)
    reporter.progress(2, f"starting the scan of {len(jobs)} products")
    report = run_scan(
        jobs,
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
        "source": used,
        "dashboard": report.dashboard,
    }
    reporter.progress(100, "done")
    head = (
        f"scan of {s.products} products: {report.processed} committed in this run, {report.skipped} skipped "
        f"(committed earlier), {s.failed} failed, {report.elapsed_s:.0f} s"
    )
    reporter.result(outputs, head + "\n" + s.table())


class ProgressBar:
    """A one-line progress bar on a terminal's stderr; JSON progress events in ``--progress json`` mode."""

    def __init__(self, reporter: Reporter, width: int = 30):
        self.reporter = reporter
        self.width = width
        self.stream = sys.stderr
        self.tty = reporter.mode == "text" and bool(getattr(self.stream, "isatty", lambda: False)())
        self.failed = 0
        self.drawn = False

    def update(self, done: int, total: int, message: str) -> None:
        if "failed" in message:
            self.failed += 1
        if self.reporter.mode == "json":
            self.reporter.progress(2 + 97 * done / max(total, 1), f"{done}/{total} products; {message}")
            return
        if not self.tty:
            return
        filled = round(self.width * done / max(total, 1))
        bar = "#" * filled + "." * (self.width - filled)
        text = f"\r[{bar}] {done}/{total} products, {self.failed} failed  {message[:60]:<60}"
        self.stream.write(text)
        self.stream.flush()
        self.drawn = True

    def log(self, message: str) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.drawn = False
        self.reporter.log(message)

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
