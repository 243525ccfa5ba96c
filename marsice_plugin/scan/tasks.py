"""What a Dask worker does for one product: download it, detect, add terrain, and hand back the rows.

Tasks are plain functions of picklable arguments that return picklable results, so they run the same
on a :class:`distributed.LocalCluster`, on a remote cluster, or called directly. They never write the
results GeoPackage or the manifest: the client commits every product through the single results
writer, which keeps SQLite free of concurrent writers and makes commits exactly-once even when a task
runs twice (a worker killed mid-task has its tasks rerun elsewhere: execution is at-least-once).

A product that cannot be processed (corrupt image, failed download, DTM that does not overlap) is an
*outcome* with an error, not an exception: Dask retries exceptions, but a corrupt JPEG2000 stays
corrupt, so the scan records the error and goes on.

Each worker process loads the model once and keeps it (:func:`cached_model`), because a TensorFlow
import and model load cost seconds while one small product's inference costs a fraction of that.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..catalogue.cache import CacheRecords
from ..catalogue.download import Downloader, FileRequest
from ..errors import MarsIceError, ModelError
from ..results import Row

#: Marker a worker keeps in the cache folder while it uses a product's files (no eviction meanwhile).
INFLIGHT_SUFFIX = ".inflight"


@dataclass(frozen=True)
class ProductJob:
    """Everything a worker needs for one product (small and picklable: URLs and options, no data)."""

    product_id: str
    files: tuple[FileRequest, ...]
    cache_dir: str
    model_path: str
    threshold: float = 0.6
    overlap: int | None = None
    dtm: FileRequest | None = None
    cache_bytes: int | None = None
    threads: int | None = None
    timeout_s: float = 60.0
    retries: int = 4

    @property
    def label_name(self) -> str:
        return next((f.name for f in self.files if f.name.upper().endswith(".LBL")), self.files[0].name)


@dataclass
class Downloaded:
    """Files of one product in the cache (or the download error)."""

    product_id: str
    paths: dict[str, str] = field(default_factory=dict)
    fetched: list[str] = field(default_factory=list)  # names this scan downloaded (not cache hits)
    bytes: int = 0
    seconds: float = 0.0
    error: str | None = None
    worker: str | None = None


@dataclass
class ProductOutcome:
    """What a worker hands back for one product: rows to commit and the figures of the summary."""

    product_id: str
    ok: bool
    error: str | None = None
    rows: dict[str, list[Row]] | None = None
    label_product_id: str | None = None
    category: str | None = None
    chunks: int = 0
    chunks_above: int = 0
    candidates: int = 0
    download_bytes: int = 0
    fetched: list[str] = field(default_factory=list)
    terrain: str = "none"  # "none" (no DTM or --no-terrain), "applied", or the terrain error text
    worker: str | None = None
    pid: int = 0
    max_rss_bytes: int = 0
    seconds: float = 0.0


# -- worker state ----------------------------------------------------------------------------------
_MODELS: dict[tuple[str, float], Any] = {}
_MODEL_LOCK = threading.Lock()
_THREADS_SET = False


def cached_model(path: str | Path, threads: int | None = None) -> Any:
    """The model at ``path``, loaded once per worker process (reloaded only when the file changes)."""
    from ..cnn.model import load_model

    path = Path(path)
    try:
        key = (str(path.resolve()), path.stat().st_mtime)
    except OSError as exc:
        raise ModelError(
            f"model file {path} is not readable on this worker ({exc}); give --model a shared path"
        ) from exc
    with _MODEL_LOCK:
        if key not in _MODELS:
            _pin_threads(threads)
            _MODELS.clear()  # one model per worker: a scan uses one model
            _MODELS[key] = load_model(path)
        return _MODELS[key]


def warm_up(model_path: str | Path, threads: int | None = None) -> int:
    """Load the model on this worker now (``client.run(warm_up, path)``); returns the worker's pid."""
    cached_model(model_path, threads)
    return os.getpid()


def _pin_threads(threads: int | None) -> None:
    """Limit TensorFlow's thread pools to the worker's share of cores (only possible before first use)."""
    global _THREADS_SET
    if not threads or _THREADS_SET:
        return
    from ..cnn.model import keras_module

    keras_module()
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already initialised in this process: keep its pools
        pass
    _THREADS_SET = True


def worker_address() -> str | None:
    """This Dask worker's address, or None when called outside a worker."""
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return None


def max_rss_bytes() -> int:
    """Peak resident memory of this process (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


# -- cache -----------------------------------------------------------------------------------------
class ScanDownloader(Downloader):
    """The catalogue's downloader, except that it never evicts files of products a worker is using.

    Several workers share one cache folder; each marks the products it works on with
    ``.PRODUCT_ID.inflight``, and eviction (MarsIce's own downloads only, least recently used first)
    skips those products' files. Evictions go to the worker's log (the module logger of
    :mod:`marsice_plugin.catalogue.cache`).
    """

    def make_room(self, needed: int) -> list[Path]:
        busy = inflight_products(self.folder)
        # ".ID.JP2.partial" is a download in progress, ".ID.inflight" a marker: both count as ID's
        self.cache.keep.update(p for p in self.cached_files() if p.name.lstrip(".").split(".")[0] in busy)
        return super().make_room(needed)


def inflight_products(folder: Path) -> set[str]:
    if not folder.exists():
        return set()
    return {p.name[1 : -len(INFLIGHT_SUFFIX)] for p in folder.iterdir() if p.name.endswith(INFLIGHT_SUFFIX)}


def _marker(job: ProductJob) -> Path:
    return Path(job.cache_dir) / f".{job.product_id}{INFLIGHT_SUFFIX}"


def drop_files(job: ProductJob, names: list[str]) -> int:
    """Delete a committed product's files ``names`` from the cache; returns bytes freed.

    Only files MarsIce downloaded and nobody replaced since are deleted (:class:`CacheRecords`): a file
    the user put there, even under a product's name, stays.
    """
    records = CacheRecords(Path(job.cache_dir))
    freed = 0
    for name in names:
        path = Path(job.cache_dir) / name
        if not records.owns(path):
            continue
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            continue
        finally:
            records.remove(name)
        freed += size
    _marker(job).unlink(missing_ok=True)
    return freed


# -- tasks -----------------------------------------------------------------------------------------
def download_product(job: ProductJob) -> Downloaded:
    """Fetch the product's files (and its DTM) into the shared cache; a cache hit costs nothing."""
    start = time.monotonic()
    out = Downloaded(job.product_id, worker=worker_address())
    folder = Path(job.cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    _marker(job).write_text(str(os.getpid()))
    downloader = ScanDownloader(folder, max_cache_bytes=job.cache_bytes, timeout_s=job.timeout_s, retries=job.retries)
    try:
        for req in (*job.files, *((job.dtm,) if job.dtm else ())):
            if not (folder / req.name).exists():
                out.fetched.append(req.name)
            path = downloader.fetch(req)
            out.paths[req.name] = str(path)
            if req.name in out.fetched:
                out.bytes += path.stat().st_size
    except MarsIceError as exc:
        out.error = str(exc)
    out.seconds = time.monotonic() - start
    return out


def detect_product(job: ProductJob, downloaded: Downloaded | None = None) -> ProductOutcome:
    """Detect one product and return its rows (with terrain fields when a DTM is paired)."""
    start = time.monotonic()
    outcome = ProductOutcome(job.product_id, ok=False, worker=worker_address(), pid=os.getpid())
    try:
        fetched = list(downloaded.fetched) if downloaded is not None else []
        if downloaded is None or downloaded.error is None:
            # On a cluster without a shared cache folder this downloads again; on a shared one it is a cache hit.
            downloaded = download_product(job)
        outcome.fetched = sorted({*fetched, *downloaded.fetched})
        if downloaded.error is not None:
            outcome.error = f"download failed: {downloaded.error}"
            return outcome
        cached = [Path(job.cache_dir) / name for name in outcome.fetched]
        outcome.download_bytes = sum(path.stat().st_size for path in cached if path.exists())
        _marker(job).write_text(str(os.getpid()))
        label = Path(job.cache_dir) / job.label_name
        _detect_into(outcome, job, label)
        if job.dtm is not None and outcome.rows is not None:
            outcome.terrain = _add_terrain(outcome, job, label, Path(job.cache_dir) / job.dtm.name)
        outcome.ok = True
    except MarsIceError as exc:
        outcome.error = str(exc)
    except Exception as exc:  # noqa: BLE001 - one bad product is recorded and the scan goes on
        outcome.error = f"{type(exc).__name__}: {exc}"
    finally:
        _marker(job).unlink(missing_ok=True)
        outcome.seconds = time.monotonic() - start
        outcome.max_rss_bytes = max_rss_bytes()
    if not outcome.ok:
        outcome.rows = None
    return outcome


def _detect_into(outcome: ProductOutcome, job: ProductJob, label: Path) -> None:
    """Detect the product (:func:`marsice_plugin.detection.detect_product`, as ``marsice detect``) into ``outcome``."""
    from ..detection import DetectOptions, detect_product
    from ..product import open_product

    options = DetectOptions(model_path=Path(job.model_path), threshold=job.threshold, overlap=job.overlap)
    model = cached_model(job.model_path, job.threads)
    with open_product(label) as product:
        found = detect_product(product, model, options)
    outcome.rows = found.rows
    outcome.label_product_id = found.product_id
    outcome.category = found.category
    outcome.chunks = len(found.chunks)
    outcome.chunks_above = len(found.above)
    outcome.candidates = len(found.candidates)


def _add_terrain(outcome: ProductOutcome, job: ProductJob, label: Path, dtm: Path) -> str:
    """Terrain fields of the candidates' rows, computed in memory (:func:`terrain.candidates.candidate_terrain`).

    The rows go to the client as they are, with the fields added: no file is written on the worker.
    """
    from ..errors import TerrainError
    from ..result_layers import CANDIDATES_LAYER
    from ..terrain.candidates import candidate_terrain, with_rank

    assert outcome.rows is not None
    candidates = outcome.rows.get(CANDIDATES_LAYER.name, [])
    try:
        fields = candidate_terrain(dtm, label, candidates)
    except TerrainError as exc:
        return f"terrain skipped: {exc}"
    for (_geom, attrs), values in zip(candidates, fields, strict=True):
        if values is not None:
            attrs.update(with_rank(values))
    return "applied"
