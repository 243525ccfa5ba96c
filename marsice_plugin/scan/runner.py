"""Run a scan on Dask: submit products to workers, commit each result on the client, keep the manifest.

Why this shape:

* Workers only compute (download, detect, terrain). The client is the one process that writes the
  results GeoPackage (through :class:`~marsice_plugin.results.ResultsWriter`, whose lock it holds for the
  whole scan) and the manifest, so SQLite never sees two writers.
* Each product is two tasks: download (any worker) then detect (declared ``resources={"GPU": 1}`` when
  the cluster has workers offering a ``GPU`` resource, so inference goes to them). Dask reruns the tasks
  of a worker that dies (at-least-once); the client consumes each product's result once and the writer
  replaces a product's rows, so every product is committed exactly once.
* At most a few products per worker thread are in flight at a time, so downloads never run far ahead
  of detection: with raw files dropped after each commit, the disk holds only the products in flight
  (plus the cache's own limit), not the whole archive.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import OutputError, SetupError
from ..results import ResultsWriter
from .layers import SCAN_LAYERS, add_terrain_columns
from .manifest import Manifest, manifest_path
from .summary import ScanSummary
from .tasks import ProductJob, ProductOutcome, detect_product, download_product, drop_files

#: Environment of LocalCluster workers: every thread pool pinned to the worker's thread count.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
)


@dataclass(frozen=True)
class ClusterOptions:
    """Where the tasks run: a LocalCluster of ``workers`` processes, or the scheduler at ``scheduler``."""

    workers: int = 2
    threads_per_worker: int = 1
    scheduler: str | None = None
    memory_limit: str = "auto"
    dashboard_address: str = ":8787"


@dataclass
class WorkerStats:
    """What the scan learnt about one worker (from the outcomes it returned)."""

    products: int = 0
    max_rss_bytes: int = 0
    seconds: float = 0.0
    pids: set[int] = field(default_factory=set)


@dataclass
class ScanReport:
    """The result of :func:`run_scan`."""

    output: Path
    manifest: Path
    summary: ScanSummary
    processed: int = 0
    skipped: int = 0
    download_bytes: int = 0
    freed_bytes: int = 0
    dashboard: str | None = None
    elapsed_s: float = 0.0
    workers: dict[str, WorkerStats] = field(default_factory=dict)
    terrain_applied: int = 0


#: Progress callback: (products finished in this run, products to do in this run, last message).
Progress = Callable[[int, int, str], None]


@contextlib.contextmanager
def connect(options: ClusterOptions) -> Iterator[Any]:
    """A Dask client: on a new LocalCluster on this machine, or on an existing scheduler by address."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise SetupError("Dask is not installed: run `make setup` (or pip install -e .) in the checkout") from exc
    if options.scheduler:
        try:
            client = Client(options.scheduler, timeout="20s")
        except OSError as exc:
            raise SetupError(
                f"cannot reach the Dask scheduler at {options.scheduler} ({exc}); start it "
                "(`dask scheduler`) or run without --scheduler for a local cluster"
            ) from exc
        with client:
            yield client
        return
    threads = str(options.threads_per_worker)
    env = {name: threads for name in THREAD_VARIABLES} | {"TF_NUM_INTEROP_THREADS": "1"}
    with (
        LocalCluster(
            n_workers=options.workers,
            threads_per_worker=options.threads_per_worker,
            processes=True,
            memory_limit=options.memory_limit,
            dashboard_address=options.dashboard_address,
            silence_logs=logging.ERROR,
            env=env,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def dashboard_link(client: Any, remote: bool, log: Callable[[str], None]) -> str | None:
    """The Dask dashboard's address; a local cluster serves it only where bokeh is installed."""
    import importlib.util

    link = getattr(client, "dashboard_link", None)
    if link and not remote and importlib.util.find_spec("bokeh") is None:
        log("the Dask dashboard is not served: bokeh is not installed (see docs/scan.md)")
        return None
    if link:
        log(f"Dask dashboard: {link}")
    return link


def _files(job: ProductJob) -> tuple:
    return (*job.files, *((job.dtm,) if job.dtm else ()))


def _all_cached(job: ProductJob) -> bool:
    """Whether every file of the product is already in the cache (the user's files, kept after the commit)."""
    return all((Path(job.cache_dir) / f.name).exists() for f in _files(job))


def gpu_resources(client: Any) -> dict[str, float] | None:
    """``{"GPU": 1}`` when some worker declares a GPU resource (``dask worker --resources GPU=1``)."""
    workers = client.scheduler_info().get("workers", {})
    if any(w.get("resources", {}).get("GPU", 0) > 0 for w in workers.values()):
        return {"GPU": 1}
    return None


def total_threads(client: Any) -> int:
    workers = client.scheduler_info().get("workers", {})
    return max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))


def run_scan(
    jobs: Sequence[ProductJob],
    output: str | Path,
    cluster: ClusterOptions | None = None,
    *,
    client: Any = None,
    keep_downloads: bool = False,
    retries: int = 2,
    progress: Progress | None = None,
    log: Callable[[str], None] = lambda message: None,
    stop_after: int | None = None,
) -> ScanReport:
    """Process every job not yet committed in the manifest beside ``output``; returns the report.

    ``client`` reuses a connected Dask client (its cluster is left running); otherwise one is made from
    ``cluster``. ``stop_after`` stops cleanly after that many commits in this run (what an interrupted
    scan leaves behind, without killing anything).
    """
    output = Path(output)
    if output.suffix.lower() != ".gpkg":
        raise OutputError(f"{output}: scan results are written as a GeoPackage; give a name ending in .gpkg")
    start = time.monotonic()
    report = ScanReport(output, manifest_path(output), ScanSummary())
    by_id = {job.product_id: job for job in jobs}
    with Manifest(report.manifest) as manifest:
        todo = manifest.plan(by_id, {job.product_id: _all_cached(job) for job in jobs})
        report.skipped = len(by_id) - len(todo)
        if report.skipped:
            log(f"{report.skipped} products already committed by an earlier run of this scan are skipped")
        if todo:
            with contextlib.ExitStack() as stack:
                if client is None:
                    client = stack.enter_context(connect(cluster or ClusterOptions()))
                report.dashboard = dashboard_link(client, remote=bool(cluster and cluster.scheduler), log=log)
                writer = stack.enter_context(ResultsWriter(output, SCAN_LAYERS, wait_s=5.0))
                add_terrain_columns(output)
                _process(client, [by_id[p] for p in todo], manifest, writer, report, keep_downloads, retries,
                         progress, log, stop_after)  # fmt: skip
        report.summary = ScanSummary.from_states(list(manifest.states(by_id).values()))
    report.elapsed_s = time.monotonic() - start
    return report


def _process(
    client: Any,
    jobs: list[ProductJob],
    manifest: Manifest,
    writer: ResultsWriter,
    report: ScanReport,
    keep_downloads: bool,
    retries: int,
    progress: Progress | None,
    log: Callable[[str], None],
    stop_after: int | None,
) -> None:
    from distributed import as_completed

    token = uuid.uuid4().hex[:8]  # task keys unique to this run: a shared cluster may hold older ones
    resources = gpu_resources(client)
    if resources:
        log("workers with a GPU resource found: inference tasks go to them")
    window = 2 * total_threads(client) + 1
    users_files = {job.product_id for job in jobs if (state := manifest.get(job.product_id)) and state.cached_before}
    queue = list(jobs)
    inflight: dict[Any, ProductJob] = {}
    done = 0

    def submit_next() -> Any:
        job = queue.pop(0)
        manifest.submitted(job.product_id)
        fetched = client.submit(
            download_product, job, key=f"download-{job.product_id}-{token}", retries=retries, pure=False
        )
        future = client.submit(
            detect_product, job, fetched, key=f"detect-{job.product_id}-{token}", retries=retries,
            resources=resources, pure=False,
        )  # fmt: skip
        inflight[future] = job
        return future

    pending = as_completed([submit_next() for _ in range(min(window, len(queue)))])
    try:
        for future in pending:
            job = inflight.pop(future)
            message = _finish(future, job, manifest, writer, report, keep_downloads or job.product_id in users_files)
            future.release()
            done += 1
            if progress:
                progress(done, len(jobs), message)
            if stop_after is not None and report.processed >= stop_after:
                log(f"stopping after {report.processed} commits as asked; run the same command to resume")
                break
            if queue:
                pending.add(submit_next())
    finally:
        for future in list(inflight):
            future.cancel()


def _finish(
    future: Any,
    job: ProductJob,
    manifest: Manifest,
    writer: ResultsWriter,
    report: ScanReport,
    keep: bool,
) -> str:
    """Commit one product's outcome (or record its failure); returns a one-line message."""
    pid = job.product_id
    try:
        outcome: ProductOutcome = future.result()
    except Exception as exc:  # noqa: BLE001 - a task that failed on every try (e.g. KilledWorker) fails its product
        error = f"{type(exc).__name__}: {exc}"
        manifest.failed(pid, error)
        return f"{pid}: failed ({error})"
    stats = report.workers.setdefault(outcome.worker or "local", WorkerStats())
    stats.products += 1
    stats.max_rss_bytes = max(stats.max_rss_bytes, outcome.max_rss_bytes)
    stats.seconds += outcome.seconds
    stats.pids.add(outcome.pid)
    if not outcome.ok or outcome.rows is None:
        manifest.failed(pid, outcome.error or "no result", outcome.worker)
        return f"{pid}: failed ({outcome.error})"
    manifest.detected(pid, outcome.worker, outcome.download_bytes)
    writer.write_product(outcome.label_product_id or pid, outcome.rows)
    manifest.committed(pid, outcome.category or "none", outcome.chunks, outcome.chunks_above, outcome.candidates)
    report.processed += 1
    report.download_bytes += outcome.download_bytes
    if outcome.terrain == "applied":
        report.terrain_applied += 1
    if not keep:
        report.freed_bytes += drop_files(job, [f.name for f in _files(job)])
    terrain = "" if outcome.terrain in ("none", "applied") else f"; {outcome.terrain}"
    return f"{pid}: {outcome.category}, {outcome.candidates} candidates{terrain}"
