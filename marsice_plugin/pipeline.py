"""Detection pipeline: product → chunks → CNN probabilities → GeoPackage (+ quick-look PNG).

This is the library function behind ``marsice detect`` and the QGIS "Detect ice patches"
algorithm. It streams chunks strip by strip, scores them in batches, and writes the product's rows of
the ``chunks`` and ``products`` layers through the single results writer (:mod:`marsice_plugin.results`):
a new file appears only when complete, an existing file gains or replaces this product's rows in one
transaction, so a cancelled or failed run leaves the output as it was.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .candidates import DESCRIPTION, Candidate, CandidateOptions, delineate
from .detect_defaults import DEFAULT_BATCH_SIZE
from .errors import ModelError, OutputError
from .gpkg import Field
from .product import Product, open_product
from .progress import Reporter
from .results import LayerSpec, ResultsWriter, Row
from .stitching import stitch, write_geotiff
from .tiling import ChunkReader, Window
from .vectors import transform_geometry, window_footprint

#: The model ``marsice detect`` and ``scan`` use when none is given (trained on generated scenes only; its card
#: is models/marsice_ensemble_512_level1.md): the mean of the 512-px level-1 and the 256-px level-2 models, read
#: at JPEG2000 level 1. It ranks held-out chunks better than either member; ``FAST_MODEL_NAME`` (the level-2
#: member alone) is about 4.5x faster per chunk, for surveys of many products. The full-read model and the demo
#: weights they descend from stay in models/ (the tests use the latter).
DEFAULT_MODEL_NAME = "marsice_ensemble_512_level1.keras"
FAST_MODEL_NAME = "marsice_xception_256_level2.keras"
#: The shipped models of this checkout.
MODELS_DIR = Path(__file__).resolve().parents[1] / "models"


def default_model_path() -> Path:
    """The shipped model: ``$MARSICE_MODEL`` or ``models/marsice_ensemble_512_level1.keras`` of this checkout."""
    import os

    env = os.environ.get("MARSICE_MODEL")
    if env:
        return Path(env)
    return MODELS_DIR / DEFAULT_MODEL_NAME


def fast_model_path() -> Path:
    """The shipped fast model (``--fast``): ``models/marsice_xception_256_level2.keras`` of this checkout."""
    return MODELS_DIR / FAST_MODEL_NAME


#: Attribute columns of the ``chunks`` layer (documented in the README).
CHUNK_FIELDS = [
    Field("product_id", str, "HiRISE product id"),
    Field("chunk_row", int, "chunk row in the product's chunk grid (0 = northernmost)"),
    Field("chunk_col", int, "chunk column (0 = westernmost)"),
    Field("row_off", int, "first image line of the chunk (0-based)"),
    Field("col_off", int, "first image sample of the chunk (0-based)"),
    Field("width", int, "chunk width in pixels"),
    Field("height", int, "chunk height in pixels"),
    Field("probability", float, "CNN probability of a bright patch consistent with remnant ice; NULL if skipped"),
    Field("above_threshold", bool, "probability >= threshold"),
    Field("skipped", bool, "chunk not scored (mostly no-data)"),
    Field("skip_reason", str, "why the chunk was skipped"),
    Field("nodata_fraction", float, "fraction of no-data pixels in the chunk"),
    Field("special_pixels", int, "pixels with label special values (saturation) repaired before scoring"),
    Field("outlier_pixels", int, "isolated bright outlier pixels repaired before scoring"),
    Field("ls", float, "solar longitude of the observation (degrees)"),
    Field("latitude", float, "planetocentric latitude of the chunk centre (degrees)"),
    Field("longitude", float, "east longitude of the chunk centre (degrees, -180..180)"),
    Field("incidence", float, "solar incidence angle (degrees)"),
    Field("sun_azimuth", float, "sun azimuth from north, clockwise (degrees)"),
    Field("scale_m", float, "ground scale of the product (m/pixel)"),
    Field("model", str, "model file name"),
    Field("marsice_version", str, "MarsIce version"),
    Field("run_id", str, "identifier of the detection run"),
    Field("run_time", str, "UTC time of the run (ISO 8601)"),
]


@dataclass(frozen=True)
class DetectOptions:
    """Parameters of a detection run."""

    model_path: Path | None = None
    #: None (default): the model card's threshold (cnn.model.card_threshold), else the paper's 0.6
    threshold: float | None = None
    chunk_size: int = 1024
    #: None (default): the tiling module's overlap, so every patch up to 32 m lies whole in some chunk and is scored
    #: whole, never "cut in half at chunk edges" as in the paper; 0: the paper's tiling
    overlap: int | None = None
    batch_size: int = DEFAULT_BATCH_SIZE  # why 8: detect_defaults
    precision: str = "float32"  # or mixed_float16 (GPU), mixed_bfloat16: see cnn.model.with_precision
    read_level: int | None = None  # JPEG2000 level to decode (0 every pixel, 1 half, ...); None: the model card's
    max_center_nodata: float = 0.01
    max_nodata: float = 0.5


@dataclass
class ChunkScore:
    """Result for one chunk."""

    chunk_row: int
    chunk_col: int
    window: Window
    probability: float | None
    skipped: bool
    skip_reason: str
    nodata_fraction: float
    special_pixels: int = 0
    outlier_pixels: int = 0


@dataclass
class DetectResult:
    """Everything a caller needs to report on a run."""

    product_id: str
    output: Path
    threshold: float
    chunks: list[ChunkScore] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    quicklook: Path | None = None
    probability_raster: Path | None = None

    @property
    def scored(self) -> list[ChunkScore]:
        return [c for c in self.chunks if not c.skipped]

    @property
    def above(self) -> list[ChunkScore]:
        return [c for c in self.scored if c.probability is not None and c.probability >= self.threshold]

    def outline_candidates(self, product: Product) -> Any:
        """Outline bright patches in the chunks at or above the threshold into ``candidates``.

        The one place detect, scan and evaluate turn scored chunks into candidate outlines. Returns the
        stitched probability raster the outlines were measured on (detect may also write it as a GeoTIFF).
        """
        raster = stitch(self.chunks, product.width, product.height, product.transform)
        flagged = [c.window for c in self.above]
        self.candidates = delineate(product, flagged, raster, CandidateOptions(threshold=self.threshold))
        return raster

    @property
    def category(self) -> str:
        """The paper's image-level summary: no chunk, exactly one, or several above the threshold."""
        n = len(self.above)
        return "none" if n == 0 else "one" if n == 1 else "several"

    def summary(self) -> str:
        best = max((c.probability for c in self.scored), default=None)
        best_text = f", highest probability {best:.2f}" if best is not None else ""
        return (
            f"{self.product_id}: {len(self.scored)} chunks scored, {len(self.chunks) - len(self.scored)} skipped, "
            f"{len(self.above)} at or above {self.threshold:.2f} (image category: {self.category}){best_text}, "
            f"{len(self.candidates)} ice candidates"
        )


def read_scale(read_level: int, chunk_size: int, input_size: int) -> float:
    """The chunk reader's ``scale`` for a JPEG2000 resolution level to decode (0: every pixel).

    Level 0 decodes every pixel, repairs special values and outliers at full resolution, then
    block-averages to the model's input (what ``marsice_xception_256.keras`` was trained on;
    ``marsice_xception_256_level2.keras`` was trained at level 2, as its card says). Level ``L`` asks
    the decoder for the image at 1/2**L of the resolution (a quarter of the pixels per level, so the
    reader keeps pace with the model on two cores), repairs there and block-averages the rest of the
    way. Its pixels are the wavelet low-pass rather than an area average, and a hot pixel is already
    blended with its neighbours when it reaches the repair; ``marsice evaluate --read-level`` and
    bench/inference.py measure what each level costs in accuracy and gains in speed.
    """
    if read_level < 0 or read_level != int(read_level):
        raise ValueError(f"read level must be 0, 1, 2, ..., got {read_level}")
    f = 2**read_level
    if chunk_size % f or chunk_size // f < input_size:
        raise ValueError(
            f"read level {read_level} gives {chunk_size / f:g}-px chunks, fewer than the model's {input_size}-px "
            f"input; use a level of at most {max(0, (chunk_size // input_size).bit_length() - 1)}"
        )
    return 1.0 / f


def model_threshold(threshold: float | None, model_path: str | Path | None) -> float:
    """The threshold of a run: the one given, else the model card's, else the paper's 0.6; checked to be 0..1."""
    from .cnn.model import card_threshold

    value = card_threshold(model_path) if threshold is None else threshold
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"threshold must be within 0..1, got {value}")
    return float(value)


def model_read_level(options: DetectOptions, input_size: int) -> int:
    """The JPEG2000 level to decode: ``options.read_level``, else the level in the model's card.

    The one place where "None" becomes a level: the card of ``options.model_path`` (0 without a
    model path or a card), so a model is read the way it was trained. The chunk size and the level
    are checked against the model's input size here (for detect, scan and evaluate alike), and what
    the model cannot take is a :class:`ModelError` naming it.
    """
    from .cnn.model import card_read_level

    name = Path(options.model_path).name if options.model_path else "the model"
    if input_size > options.chunk_size:
        raise ModelError(
            f"{name} takes {input_size}-px inputs, larger than the {options.chunk_size}-px chunks; "
            "use larger chunks (detect --chunk-size) or a model trained for smaller inputs"
        )
    level = options.read_level
    if level is None:
        level = card_read_level(options.model_path) if options.model_path else 0
    try:
        read_scale(level, options.chunk_size, input_size)
    except ValueError as exc:
        raise ModelError(f"{name}: {exc}") from exc
    return level


def score_chunks(
    product: Product, model: Any, options: DetectOptions, reporter: Reporter, overlapped: bool = True
) -> list[ChunkScore]:
    """Read, repair and score every chunk of a product in batches.

    With ``overlapped`` (the default) chunks are prepared in a feeder thread while the model scores
    the previous batch (:mod:`marsice_plugin.cnn.inference`); ``overlapped=False`` is the serial
    form, kept as the bench's baseline. Both give the same probabilities. ``options.read_level`` picks
    the JPEG2000 level decoded (:func:`read_scale`); None takes it from the card of
    ``options.model_path`` (0 without one), so a model is read the way it was trained. Chunk windows
    are full-resolution windows at every level.
    """
    from .cnn.inference import Feeder, batches, predict
    from .cnn.model import model_input_size

    input_size = model_input_size(model)
    read_level = model_read_level(options, input_size)
    if options.read_level is None and read_level:
        reporter.log(f"decoding JPEG2000 level {read_level}, as {Path(options.model_path or '').name} was trained")
    reader = ChunkReader(
        product,
        options.chunk_size,
        options.overlap,
        options.max_center_nodata,
        options.max_nodata,
        scale=1.0 / 2**read_level,
    )
    total = len(reader)
    results: list[ChunkScore] = []

    def make() -> Any:
        return batches(reader, input_size, product.valid_max, options.batch_size)

    source = Feeder(make) if overlapped else None
    try:
        for batch in source if source is not None else make():
            probs = predict(model, batch.x) if batch.scored else np.empty(0)
            by_index = dict(zip(batch.scored, probs, strict=True))
            for k, chunk in enumerate(batch.chunks):
                p = by_index.get(k)
                score = ChunkScore(
                    chunk.chunk_row,
                    chunk.chunk_col,
                    chunk.window,
                    None if p is None else float(p),
                    chunk.skipped,
                    chunk.skip_reason,
                    chunk.nodata_fraction,
                )
                score.special_pixels, score.outlier_pixels = chunk.special_pixels, chunk.outlier_pixels
                results.append(score)
            reporter.progress(5 + 85 * len(results) / total, f"chunk {len(results)}/{total}")
    finally:
        if source is not None:
            source.close()
    return results


#: Attribute columns of the ``products`` layer: one row per processed product.
PRODUCT_FIELDS = [
    Field("product_id", str, "HiRISE product id"),
    Field("ls", float, "solar longitude (degrees)"),
    Field("latitude", float, "planetocentric latitude of the image centre (degrees)"),
    Field("longitude", float, "east longitude of the image centre (degrees, -180..180)"),
    Field("incidence", float, "solar incidence angle (degrees)"),
    Field("sun_azimuth", float, "sun azimuth from north, clockwise (degrees)"),
    Field("scale_m", float, "ground scale (m/pixel)"),
    Field("chunks_total", int, "chunks in the product's grid"),
    Field("chunks_scored", int, "chunks scored by the CNN"),
    Field("chunks_skipped", int, "chunks skipped by the no-data rule"),
    Field("chunks_above", int, "chunks at or above the threshold"),
    Field("category", str, "the paper's image-level summary: none, one or several chunks above the threshold"),
    Field("max_probability", float, "highest chunk probability"),
    Field("threshold", float, "probability threshold of the run"),
    Field("model", str, "model file name"),
    Field("marsice_version", str, "MarsIce version"),
    Field("run_id", str, "identifier of the detection run"),
    Field("run_time", str, "UTC time of the run (ISO 8601)"),
    Field("source", str, "path of the product that was read"),
]

#: Attribute columns of the ``ice_candidates`` layer: one polygon per delineated bright patch.
CANDIDATE_FIELDS = [
    Field("product_id", str, "HiRISE product id"),
    Field("candidate_id", str, "product id and patch number"),
    Field("area_m2", float, "patch area on the product's sphere (m²)"),
    Field("max_probability", float, "highest stitched CNN probability over the patch"),
    Field("mean_probability", float, "mean stitched CNN probability over the patch"),
    Field("peak_contrast", float, "90th percentile brightness above the local background (relative)"),
    Field("centroid_lat", float, "planetocentric latitude of the patch centroid (degrees)"),
    Field("centroid_lon", float, "east longitude of the patch centroid (degrees, -180..180)"),
    Field("centroid_lon_360", float, "east longitude of the patch centroid (degrees, 0..360)"),
    Field("description", str, "what a candidate is (and is not)"),
    Field("ls", float, "solar longitude (degrees)"),
    Field("incidence", float, "solar incidence angle (degrees)"),
    Field("sun_azimuth", float, "sun azimuth from north, clockwise (degrees)"),
    Field("scale_m", float, "ground scale (m/pixel)"),
    Field("threshold", float, "probability threshold of the run"),
    Field("model", str, "model file name"),
    Field("marsice_version", str, "MarsIce version"),
    Field("run_id", str, "identifier of the detection run"),
    Field("run_time", str, "UTC time of the run (ISO 8601)"),
]

CHUNKS_LAYER = LayerSpec(
    "chunks",
    "POLYGON",
    CHUNK_FIELDS,
    "chunk footprints with the CNN probability of a bright patch consistent with remnant ice",
)
PRODUCTS_LAYER = LayerSpec("products", "POLYGON", PRODUCT_FIELDS, "processed products and their image-level summary")
CANDIDATES_LAYER = LayerSpec(
    "ice_candidates",
    "POLYGON",
    CANDIDATE_FIELDS,
    "bright patches consistent with remnant ice (water ice and CO2 frost look alike in grey images)",
)
RESULT_LAYERS = (CHUNKS_LAYER, CANDIDATES_LAYER, PRODUCTS_LAYER)


def result_rows(product: Product, result: DetectResult, model_name: str) -> dict[str, list[Row]]:
    """Rows of every result layer for one product (geometry in the common Mars CRS)."""
    run_id = uuid.uuid4().hex[:12]
    run_time = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    v = product.viewing
    common = {
        "product_id": product.product_id,
        "ls": v.solar_longitude,
        "incidence": v.incidence_angle,
        "sun_azimuth": v.sun_azimuth_from_north,
        "scale_m": product.scale_m,
        "model": model_name,
        "marsice_version": __version__,
        "run_id": run_id,
        "run_time": run_time,
    }
    chunks = []
    for c in result.chunks:
        w = c.window
        geom = window_footprint(product.transform, product.crs, w.col_off, w.row_off, w.width, w.height)
        centre = geom.centroid
        chunks.append(
            (
                geom,
                {
                    **common,
                    "chunk_row": c.chunk_row,
                    "chunk_col": c.chunk_col,
                    "row_off": w.row_off,
                    "col_off": w.col_off,
                    "width": w.width,
                    "height": w.height,
                    "probability": c.probability,
                    "above_threshold": c.probability is not None and c.probability >= result.threshold,
                    "skipped": c.skipped,
                    "skip_reason": c.skip_reason,
                    "nodata_fraction": c.nodata_fraction,
                    "special_pixels": c.special_pixels,
                    "outlier_pixels": c.outlier_pixels,
                    "latitude": centre.y,
                    "longitude": centre.x,
                },
            )
        )
    footprint = window_footprint(product.transform, product.crs, 0, 0, product.width, product.height, densify=32)
    lon, lat = product.center_lonlat()
    probs = [c.probability for c in result.scored if c.probability is not None]
    products = [
        (
            footprint,
            {
                **common,
                "latitude": lat,
                "longitude": lon,
                "chunks_total": len(result.chunks),
                "chunks_scored": len(result.scored),
                "chunks_skipped": len(result.chunks) - len(result.scored),
                "chunks_above": len(result.above),
                "category": result.category,
                "max_probability": max(probs) if probs else None,
                "threshold": result.threshold,
                "source": str(product.path),
            },
        )
    ]
    candidates = []
    for i, cand in enumerate(result.candidates, start=1):
        candidates.append(
            (
                transform_geometry(cand.geometry, product.crs),
                {
                    **common,
                    "candidate_id": f"{product.product_id}:{i}",
                    "area_m2": cand.area_m2,
                    "max_probability": cand.max_probability,
                    "mean_probability": cand.mean_probability,
                    "peak_contrast": cand.peak_contrast,
                    "centroid_lat": cand.centroid_lat,
                    "centroid_lon": cand.centroid_lon,
                    "centroid_lon_360": cand.centroid_lon % 360.0,
                    "description": DESCRIPTION,
                    "threshold": result.threshold,
                },
            )
        )
    return {"chunks": chunks, "ice_candidates": candidates, "products": products}


def write_results(path: Path, product: Product, result: DetectResult, model_name: str, wait_s: float = 0.0) -> Path:
    """Write (or replace) this product's rows in the results GeoPackage through the single writer."""
    with ResultsWriter(path, RESULT_LAYERS, wait_s=wait_s) as writer:
        writer.write_product(product.product_id, result_rows(product, result, model_name))
    return path


def detect(
    product_path: str | Path,
    output: str | Path,
    options: DetectOptions | None = None,
    reporter: Reporter | None = None,
    quicklook: str | Path | None = None,
    probability_raster: str | Path | None = None,
) -> DetectResult:
    """Score every chunk of a product and write the ``chunks`` layer (and optionally a quick-look PNG)."""
    from .cnn.model import load_model, with_precision

    options = options or DetectOptions()
    reporter = reporter or Reporter("quiet")
    if Path(output).suffix.lower() != ".gpkg":
        raise OutputError(f"{output}: results are written as a GeoPackage; give an output name ending in .gpkg")
    model_path = Path(options.model_path) if options.model_path else default_model_path()
    options = replace(options, model_path=model_path, threshold=model_threshold(options.threshold, model_path))
    reporter.progress(0, f"opening {Path(product_path).name}")
    with open_product(product_path) as product:
        reporter.log(
            f"{product.product_id}: {product.width}x{product.height} px at {product.scale_m:.2f} m/px, "
            f"Ls {_fmt(product.viewing.solar_longitude)}, incidence {_fmt(product.viewing.incidence_angle)}, "
            f"sun azimuth {_fmt(product.viewing.sun_azimuth_from_north)} from north"
        )
        reporter.progress(2, f"loading model {model_path.name}")
        model = with_precision(load_model(model_path), options.precision)
        result = DetectResult(product.product_id, Path(output), options.threshold)
        result.chunks = score_chunks(product, model, options, reporter)
        reporter.progress(90, "outlining bright patches in flagged chunks")
        raster = result.outline_candidates(product)
        if probability_raster:
            result.probability_raster = write_geotiff(raster, product.crs.to_wkt(), Path(probability_raster))
        reporter.progress(94, "writing GeoPackage")
        write_results(Path(output), product, result, model_path.name)
        if quicklook:
            from .quicklook import render_quicklook

            reporter.progress(96, "drawing quick-look")
            result.quicklook = render_quicklook(product, result, Path(quicklook))
    reporter.progress(100, "done")
    return result


def _fmt(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.1f}°"
