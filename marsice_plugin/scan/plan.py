"""Plan a scan: search, DTM pairing, the resume set, worker jobs and what the scan would pull.

:func:`plan_scan` is everything ``marsice scan`` decides before a worker starts, so the command only maps
its arguments to :class:`ScanOptions` and reports: the model's threshold is read from its card before the
search (a broken card stops the scan before any request), the catalogue is searched, images are paired
with DTMs (ODE only: the bundled catalogue lists none), products committed by an earlier run of the same
scan (its manifest) are left out, and the files still needed are sized (``--dry-run``, ``--max-gb``).

Sizes follow the download command's rules: the size the listing gives (ODE's KBytes), else the size of
the file already in the cache, else what a HEAD request announces, else the catalogue's estimate from the
image size (the bundled catalogue; counted, and said to be an estimate), else unknown. A scan only pulls
what it still needs: products already committed by an earlier run of the same scan and files already
in the cache count as nothing. HEAD requests go out several at a time (``Downloader.probe_sizes``):
one at a time, a band of thousands of products took minutes. An unknown size is never counted as
zero: with ``--max-gb``, a plan with unknown sizes is refused unless the user accepts them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..catalogue.download import Downloader, FileRequest
from ..catalogue.dtm import DtmPair
from ..catalogue.records import CatalogueProduct
from ..catalogue.search import SearchQuery
from ..errors import DownloadError, ODEError, OutputError
from ..progress import Reporter
from .tasks import ProductJob


@dataclass(frozen=True)
class JobOptions:
    """Worker-side options shared by every product of a scan."""

    cache_dir: Path
    model_path: Path
    threshold: float = 0.6
    overlap: int | None = None  # chunk overlap in pixels; None: the tiling default (patches up to 32 m whole)
    cache_bytes: int | None = None
    threads: int | None = 1
    timeout_s: float = 60.0
    retries: int = 4


def make_jobs(
    products: Sequence[CatalogueProduct],
    options: JobOptions,
    dtms: dict[str, CatalogueProduct] | None = None,
    warn: Callable[[str], None] = lambda message: None,
) -> list[ProductJob]:
    """One job per product with a JP2 and a label URL; ``dtms`` maps a product id to its DTM."""
    jobs = []
    for p in products:
        if not p.jp2_url or not p.lbl_url:
            warn(f"{p.product_id}: the catalogue gives no image/label URL; skipped")
            continue
        files = (
            FileRequest.from_url(p.product_id, p.jp2_url, p.jp2_kbytes),
            FileRequest.from_url(p.product_id, p.lbl_url, p.lbl_kbytes),
        )
        dtm = (dtms or {}).get(p.product_id)
        dtm_req = FileRequest.from_url(dtm.product_id, dtm.jp2_url, dtm.jp2_kbytes) if dtm and dtm.jp2_url else None
        jobs.append(
            ProductJob(
                product_id=p.product_id,
                files=files,
                cache_dir=str(options.cache_dir),
                model_path=str(options.model_path),
                threshold=options.threshold,
                overlap=options.overlap,
                dtm=dtm_req,
                cache_bytes=options.cache_bytes,
                threads=options.threads,
                timeout_s=options.timeout_s,
                retries=options.retries,
            )
        )
    return jobs


def first_dtms(pairs: Iterable[DtmPair], dtms: Sequence[CatalogueProduct]) -> dict[str, CatalogueProduct]:
    """Each image's DTM: a stereo-source pair before a footprint-overlap one (see ``catalogue.dtm``)."""
    by_id = {d.product_id: d for d in dtms}
    chosen: dict[str, tuple[int, CatalogueProduct]] = {}
    for pair in pairs:
        rank = 0 if pair.rule == "source" else 1
        dtm, image_id = by_id.get(pair.dtm_id), pair.image_id
        if dtm is not None and (image_id not in chosen or rank < chosen[image_id][0]):
            chosen[image_id] = (rank, dtm)
    return {image_id: dtm for image_id, (_, dtm) in chosen.items()}


@dataclass
class PullPlan:
    """What a scan would download: files with their sizes (None: unknown)."""

    products: int = 0
    files: list[tuple[FileRequest, int | None]] = field(default_factory=list)
    cached_files: int = 0
    estimated: set[str] = field(default_factory=set)  # files whose size is an estimate from the image size

    @property
    def estimated_bytes(self) -> int:
        return sum(size for r, size in self.files if size and r.name in self.estimated)

    @property
    def known_bytes(self) -> int:
        return sum(size for _, size in self.files if size)

    @property
    def unknown(self) -> int:
        return sum(1 for _, size in self.files if size is None)

    def text(self) -> str:
        total = f"{self.products} products, {len(self.files)} files, {self.known_bytes / 1e9:.3f} GB"
        if self.estimated:
            guessed = self.estimated_bytes / 1e9
            total += f" ({guessed:.3f} GB of it estimated from image sizes, {len(self.estimated)} files)"
        if self.unknown:
            total += f" + {self.unknown} files of unknown size (not counted)"
        if self.cached_files:
            total += f" ({self.cached_files} files already in the cache)"
        return total

    def listing(self) -> list[str]:
        def size(r: FileRequest, s: int | None) -> str:
            return "?" if s is None else f"{'~' if r.name in self.estimated else ''}{s / 1e6:.1f} MB"

        return [f"{r.name}: {size(r, s)}  {r.url}" for r, s in self.files]


def pull_plan(
    jobs: Sequence[ProductJob], cache_dir: Path, probe: bool = True, estimates: dict[str, int] | None = None
) -> PullPlan:
    """Files the jobs still need and their sizes (cached files count as nothing).

    ``estimates`` (bytes by file name, from the catalogue's image sizes) size what neither the listing nor a HEAD
    request does; they are counted and marked, never used to check a download."""
    downloader = Downloader(cache_dir, timeout_s=30.0)
    plan = PullPlan(products=len(jobs))
    seen: set[str] = set()
    for job in jobs:
        for req in (*job.files, *((job.dtm,) if job.dtm else ())):
            if req.name in seen:
                continue
            seen.add(req.name)
            cached = Path(cache_dir) / req.name
            if cached.exists() and Downloader._size_ok(cached.stat().st_size, req.kbytes):
                plan.cached_files += 1
                continue
            plan.files.append((req, req.kbytes * 1024 if req.kbytes is not None else None))
    if probe:
        probed = downloader.probe_sizes([req.url for req, size in plan.files if size is None])
        plan.files = [(req, probed[req.url] if size is None else size) for req, size in plan.files]
    estimates = estimates or {}
    plan.estimated = {req.name for req, size in plan.files if size is None and req.name in estimates}
    plan.files = [(req, estimates[req.name] if req.name in plan.estimated else size) for req, size in plan.files]
    return plan


def size_estimates(products: Iterable[CatalogueProduct]) -> dict[str, int]:
    """Estimated sizes (bytes) by file name of the products whose size the catalogue only estimates."""
    from ..catalogue.size_estimate import LABEL_BYTES

    out = {}
    for p in products:
        if p.size_estimated and p.estimated_bytes and p.jp2_url and p.lbl_url:
            out[p.jp2_url.rsplit("/", 1)[-1]] = p.estimated_bytes - LABEL_BYTES
            out[p.lbl_url.rsplit("/", 1)[-1]] = LABEL_BYTES
    return out


def check_max_gb(plan: PullPlan, max_gb: float | None, allow_unknown: bool = False) -> None:
    """Refuse a scan that would pull more than ``max_gb``, or could (unknown sizes, unless ``allow_unknown``)."""
    if max_gb is None:
        return
    if plan.known_bytes > max_gb * 1e9:
        raise DownloadError(
            f"this scan would pull {plan.text()}, more than --max-gb {max_gb:g}; narrow the search "
            "(--lat, --ls, --limit) or raise --max-gb"
        )
    if plan.unknown and not allow_unknown:
        example = next(req.name for req, size in plan.files if size is None)
        raise DownloadError(
            f"this scan would pull {plan.text()}, so it could exceed --max-gb {max_gb:g} ({example}, for one, "
            "has no size in the catalogue and none announced by its server); search with --source ode (it lists "
            "sizes), or pass --allow-unknown-size to start anyway"
        )


@dataclass(frozen=True)
class ScanOptions:
    """What a scan is asked for: the search, the model, the download limits (``marsice scan``'s options)."""

    lat: tuple[float, float]
    ls: tuple[float, float]
    output: Path
    cache: Path  # the download cache (``marsice download``'s folder by default)
    source: str = "auto"
    ode_url: str | None = None
    limit: int | None = None  # scan only the first N products found
    products: tuple[str, ...] = ()  # scan only these product ids (e.g. footprints selected in QGIS); () = all
    terrain: bool = True  # pair products with DTMs (ODE only)
    model: Path | None = None  # None: model_registry.default_model_path()
    threshold: float | None = None  # None: the model card's
    overlap: int | None = None
    cache_gb: float = 50.0
    max_gb: float | None = None
    allow_unknown_size: bool = False
    dry_run: bool = False  # a dry run sizes every file (HEAD requests) to list them
    threads_per_worker: int = 1
    timeout_s: float = 60.0


@dataclass
class ScanPlan:
    """A planned scan: every job, those still to run, and what they would pull."""

    jobs: list[ProductJob]
    pending: list[ProductJob]
    committed: int  # jobs of this scan already committed by an earlier run (its manifest)
    source: str  # the catalogue that answered
    pull: PullPlan
    model: Path


def plan_scan(options: ScanOptions, reporter: Reporter) -> ScanPlan:
    """Search, pair DTMs, leave out what an earlier run committed, size the downloads; refuse over ``max_gb``."""
    from ..model_registry import default_model_path, model_threshold
    from .manifest import Manifest, manifest_path

    if options.output.suffix.lower() != ".gpkg":
        raise OutputError(f"{options.output}: scan results are written as a GeoPackage; give a name ending in .gpkg")
    cache = options.cache.resolve()
    model = (options.model or default_model_path()).resolve()
    threshold = model_threshold(options.threshold, model)
    reporter.progress(0, f"searching ({options.source})")
    products, used, dtms = _search(options, reporter)
    job_options = JobOptions(
        cache_dir=cache,
        model_path=model,
        threshold=threshold,
        overlap=options.overlap,
        cache_bytes=int(options.cache_gb * 1e9),
        threads=options.threads_per_worker,
        timeout_s=options.timeout_s,
    )
    jobs = make_jobs(products, job_options, dtms, warn=lambda m: reporter.log(m, "warning"))
    done: set[str] = set()
    if manifest_path(options.output).exists():
        with Manifest(manifest_path(options.output)) as manifest:
            done = {s.product_id for s in manifest.all() if s.state == "committed"}
    pending = [j for j in jobs if j.product_id not in done]
    pull = pull_plan(pending, cache, probe=options.dry_run or options.max_gb is not None,
                     estimates=size_estimates(products))  # fmt: skip
    committed = len(done & {j.product_id for j in jobs})
    reporter.log(f"{len(jobs)} products from the {used} catalogue, {committed} already committed; "
                 f"to pull: {pull.text()}")  # fmt: skip
    check_max_gb(pull, options.max_gb, options.allow_unknown_size)
    return ScanPlan(jobs, pending, committed, used, pull, model)


def _search(options: ScanOptions, reporter: Reporter) -> tuple[list, str, dict]:
    from ..catalogue.sources import find_products

    query = SearchQuery(lat=tuple(options.lat), ls=tuple(options.ls))
    warn = lambda message: reporter.log(message, "warning")  # noqa: E731
    products, used = find_products(
        query, options.source, ode_url=options.ode_url, timeout_s=options.timeout_s, warn=warn
    )
    if options.products:
        wanted = {pid.strip().upper() for pid in options.products}
        missing = sorted(wanted - {p.product_id for p in products})
        products = [p for p in products if p.product_id in wanted]
        if missing:
            reporter.log(f"{len(missing)} of the products asked for are not in this band and season ({missing[0]}, "
                         "for one); widen --lat/--ls to scan them", "warning")  # fmt: skip
    if options.limit is not None:
        products = products[: max(0, options.limit)]
    dtms: dict = {}
    if options.terrain and products:
        if used != "ode":
            reporter.log("no DTMs paired: the DTM list comes from ODE (the bundled catalogue has none)", "warning")
        else:
            dtms = _dtms(products, query, options, reporter)
    return products, used, dtms


def _dtms(products: list, query: SearchQuery, options: ScanOptions, reporter: Reporter) -> dict:
    from ..catalogue.dtm import pair_dtms
    from ..catalogue.sources import find_products

    dtm_query = replace(query, product_type="DTM", ls=None, lat_rule="intersect")
    try:
        found, _ = find_products(dtm_query, "ode", ode_url=options.ode_url, timeout_s=options.timeout_s)
    except ODEError as exc:
        reporter.log(f"{exc}; scanning without terrain attributes", "warning")
        return {}
    dtms = first_dtms(pair_dtms(products, found), found)
    reporter.log(f"{len(found)} DTMs in the band; {len(dtms)} of {len(products)} products have one")
    return dtms
