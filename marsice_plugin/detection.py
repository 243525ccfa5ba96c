"""The detect flow, once: product → chunks → CNN probabilities → candidate outlines → layer rows.

:func:`detect_product` is a function of an open product, a loaded model and the options: it reads nothing
else (but the second stage's small model, :mod:`marsice_plugin.patches`, loaded once, and the bundled catalogue
for a product that does not say where the sun was) and writes nothing; the product gains only its resolved sun.
``marsice detect`` (:func:`marsice_plugin.pipeline.detect`) writes what it returns, ``scan`` tasks return its rows
to the client, and ``evaluate`` compares it with the truth, so the three cannot drift apart. Chunks are streamed
strip by strip and scored in batches while the next batch is read (:mod:`marsice_plugin.cnn.inference`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .candidates import SMALL_PATCH_CONTRAST, CandidateOptions, outline_stream, search_windows
from .chunk_reader import ChunkReader
from .cnn.domain import DomainReference, check, load_reference
from .detect_defaults import batch_size_for, is_flagged
from .labels import check_sun_azimuth
from .model_registry import model_read_level
from .patches.chunk_score import CHUNK_SCORE_RULES, centroids_in_windows, combine_chunk_scores, default_chunk_score
from .patches.stage import SEARCH_MODES, PatchStage, score_stream
from .product import Product
from .progress import Reporter
from .result_layers import ChunkScore, Detections, result_rows
from .stitching import stitch

if TYPE_CHECKING:  # pragma: no cover
    from .candidates import Candidate
    from .grid import Window

#: GDAL's block cache while candidates are outlined and cropped from level-0 windows after scoring. GDAL's default
#: (5 % of RAM) kept every tile those windows touched: on a 1 Gpx product detect's peak rose from 1.8 GB while
#: scoring to 3.1 GB, and 120 windows of 1280 px read 984 MB uncapped against 400 MB capped (bench/fullsize.py).
#: A window touches at most four 1024 px tiles (8 MB of 16-bit pixels), so this holds many windows' worth.
WINDOW_READ_CACHE = 256 * 2**20


@dataclass(frozen=True)
class DetectOptions:
    """Parameters of a detection run."""

    model_path: Path | None = None
    #: None (default): the model card's threshold (model_registry.card_threshold), else the paper's 0.6
    threshold: float | None = None
    chunk_size: int = 1024
    #: None (default): the grid module's overlap, so every patch up to 32 m lies whole in some chunk and is scored
    #: whole, never "cut in half at chunk edges" as in the paper; 0: the paper's tiling
    overlap: int | None = None
    batch_size: int | None = None  # None: by the model's input size (detect_defaults.batch_size_for: memory)
    precision: str = "float32"  # or mixed_float16 (GPU), mixed_bfloat16: see cnn.model.with_precision
    read_level: int | None = None  # JPEG2000 level to decode (0 every pixel, 1 half, ...); None: the model card's
    max_center_nodata: float = 0.01
    max_nodata: float = 0.5
    #: the second stage (marsice_plugin.patches): its model (None: the shipped one), whether candidates under its
    #: threshold are kept (--all-candidates), and where candidates are searched ("flagged" chunks or "all")
    patch_model_path: Path | None = None
    all_candidates: bool = False
    search: str = "flagged"
    #: flagged search outlines the chunks from this CNN probability up (None: the threshold); between it and the
    #: threshold a chunk is searched but not flagged. Lower finds more patches and more false ones on real ground
    #: (README, *Second stage*: bench/search_area.py --question threshold)
    search_threshold: float | None = None
    #: how a chunk's probability combines the chunk CNN with the second stage's best patch in it (CHUNK_SCORE_RULES);
    #: None: "max_kept" when every chunk is searched, "confirm" when only flagged ones are (patches.chunk_score)
    chunk_score: str | None = None
    #: the sun's azimuth, clockwise from north (degrees), overriding the product's (its label or GeoTIFF metadata):
    #: the second stage turns every crop so the sun is at the top, so a raster that does not say where the sun was
    #: (a GeoTIFF export of an RDR not named by its product id) needs it given (:func:`resolve_sun_azimuth`)
    sun_azimuth: float | None = None


#: Progress bar spans (percent) of chunk scoring and of outlining, per search mode. Flagged search outlines a few
#: chunks in seconds; every-chunk search outlines the whole product at level 0, which took 30 of the 33 minutes of a
#: 1 Gpx `--fast --search all` detect (bench/fullsize.py, 2026-12-07); the default model scores about 4x slower than
#: `--fast`, so with every chunk searched scoring gets a quarter of the bar and outlining the rest.
PROGRESS_SPANS = {"flagged": ((5.0, 90.0), (90.0, 92.0)), "all": ((5.0, 30.0), (30.0, 92.0))}


#: Which outlines flagged search keeps, of those in the flagged chunks' reads (``bench/search_area.py``):
#:
#: * ``raster``: those reaching the threshold somewhere in the stitched raster. Where chunks overlap the raster is a
#:   weighted mean (:mod:`marsice_plugin.stitching`), so part of a flagged chunk can fall under the threshold and its
#:   patches are never outlined;
#: * ``window``: those whose centroid lies in the window of a flagged chunk, the chunk the patch belongs to
#:   (:func:`marsice_plugin.patches.chunk_score.centroids_in_windows`), whatever its neighbours say.
FLAGGED_AREAS = ("raster", "window")
DEFAULT_FLAGGED_AREA = "raster"


def check_search_threshold(search_threshold: float | None, threshold: float) -> None:
    """Refuse a search threshold outside 0..threshold: a chunk must be searched to be flagged (``confirm``), so
    searching from above the threshold would leave flagged chunks unconfirmed for no reason."""
    if search_threshold is not None and not 0.0 <= search_threshold <= threshold:
        raise ValueError(
            f"search threshold {search_threshold} is outside 0..{threshold:g} (the threshold): flagged chunks must "
            "be searched; give a value at most the threshold"
        )


def resolve_sun_azimuth(product: Product, sun_azimuth: float | None, reporter: Reporter | None = None) -> None:
    """Give ``product`` its sun azimuth (degrees clockwise from north) where it has none or one is given, logged.

    The second stage reads each crop with the sun at the top (:mod:`marsice_plugin.patches.crops`), so its
    probabilities rest on the product's sun azimuth. In order: ``sun_azimuth`` (``--sun-azimuth``) wins over the
    label's or the metadata's, as ``marsice terrain --sun-azimuth`` does for shadows; a product that gives none takes
    its observation's from the bundled catalogue by its product id (a GeoTIFF export of an RDR keeps its id as its
    name, not its label: :func:`marsice_plugin.catalogue.index.catalogue_sun_azimuth`); else it is given the
    typical HiRISE sun at its latitude, with a warning (:func:`_assume_typical_sun`); failing that it stays unknown
    and :func:`detect_product` warns. Refused (``ValueError``) when ``sun_azimuth`` is not in 0..360. A second call
    with the same value changes and logs nothing, so ``marsice detect`` may resolve it before its first log line and
    :func:`detect_product` again for every other caller (the library, ``scan``, ``evaluate``).
    """
    say = reporter.log if reporter is not None else (lambda message: None)
    own = product.viewing.sun_azimuth_from_north
    if sun_azimuth is not None:
        check_sun_azimuth(sun_azimuth)
        given = float(sun_azimuth) % 360.0
        if product.viewing.sun_source == "option" and own == given:  # resolved already (marsice detect): once
            return
        said = f"overrides the product's {own:g}°" if own is not None else "(the product does not give it)"
        say(f"{product.product_id}: sun azimuth {given:g}° from --sun-azimuth {said}")
        source = "option"
    elif own is None:
        from .catalogue.index import catalogue_sun_azimuth
        from .errors import CatalogueError

        try:
            given = catalogue_sun_azimuth(product.product_id)
        except CatalogueError as exc:  # a broken install: the warning below still says what to do
            say(f"{product.product_id}: the bundled catalogue could not be read for the sun azimuth: {exc}")
            return
        if given is None:
            _assume_typical_sun(product, reporter)
            return
        say(f"{product.product_id}: sun azimuth {given:g}° from the bundled catalogue (the product does not give it)")
        source = "catalogue"
    else:
        return
    product.viewing = replace(product.viewing, sun_azimuth_from_north=given, sun_source=source)


def _assume_typical_sun(product: Product, reporter: Reporter | None) -> None:
    """Give a product that says nothing of its sun the typical HiRISE sun at its latitude (:func:`sun_warning`).

    Why: turning crops as if the sun were in the north is 86° off at the median over the catalogue's observations,
    the latitude prior (:mod:`marsice_plugin.catalogue.sun_prior`) 13.5° (leave-one-out, ``bench/sun_prior.py``);
    on rendered products the second stage keeps 91 outlines (82 on ice) with the true sun and 487 (61) 60° off.
    A product whose centre has no latitude (a CRS pyproj cannot invert) or a latitude with too few observations
    keeps no sun. The warning is :func:`detect_product`'s, once the pixels are known to be scorable, so bad input
    still gets one line.
    """
    from .catalogue.sun_prior import typical_sun
    from .errors import MarsIceError

    try:
        prior = typical_sun(product.center_lonlat()[1])
    except (MarsIceError, RuntimeError, ValueError) as exc:  # pyproj's errors are RuntimeErrors (ProjError)
        if reporter is not None:
            reporter.log(f"{product.product_id}: no latitude prior for the sun azimuth: {exc}")
        return
    if prior is not None:
        azimuth = round(prior.azimuth, 1)
        product.viewing = replace(product.viewing, sun_azimuth_from_north=azimuth, sun_source="latitude")


def sun_warning(product: Product) -> str | None:
    """The warning detect logs about a product's sun: assumed from its latitude, or unknown; None when given."""
    if product.viewing.sun_azimuth_from_north is None:
        return unknown_sun_warning(product.product_id)
    if product.viewing.sun_source != "latitude":
        return None
    from .catalogue.sun_prior import typical_sun

    latitude = product.center_lonlat()[1]
    prior = typical_sun(latitude)
    spread = prior.within_deg if prior is not None else float("nan")
    return assumed_sun_warning(product.product_id, product.viewing.sun_azimuth_from_north, latitude, spread)


def assumed_sun_warning(product_id: str, azimuth: float, latitude: float, within_deg: float) -> str:
    """The line detect logs when it assumes the typical HiRISE sun at a product's latitude."""
    return (
        f"{product_id}: no sun azimuth (no PDS3 label, no SUN_AZIMUTH_FROM_NORTH metadata, not in the bundled "
        f"catalogue): assumed {azimuth:g}°, the typical HiRISE sun at {latitude:.1f}° latitude (9 in 10 of the "
        f"catalogue's observations within 5° of it lie within {within_deg:.0f}°); the second stage turns its crops by "
        "it. If you know the sun, pass --sun-azimuth DEG (clockwise from north: (SUB_SOLAR_AZIMUTH - NORTH_AZIMUTH) "
        "mod 360) or tag the raster (gdal_edit -mo SUN_AZIMUTH_FROM_NORTH=DEG)"
    )


def unknown_sun_warning(product_id: str) -> str:
    """The line detect logs when a product does not say where the sun was and the second stage runs anyway."""
    return (
        f"{product_id}: no sun azimuth (no PDS3 label, no SUN_AZIMUTH_FROM_NORTH metadata, not in the bundled "
        "catalogue): the second stage turns "
        "crops as if the sun were in the north, so its probabilities are not to be trusted; pass --sun-azimuth DEG "
        "(clockwise from north: (SUB_SOLAR_AZIMUTH - NORTH_AZIMUTH) mod 360, 290-303 in the paper's band) or tag "
        "the raster (gdal_edit -mo SUN_AZIMUTH_FROM_NORTH=DEG)"
    )


def progress_spans(search: str) -> tuple[tuple[float, float], tuple[float, float]]:
    """(scoring, outlining) spans of the bar for ``search`` (an unknown mode, refused later, gets flagged's)."""
    return PROGRESS_SPANS.get(search, PROGRESS_SPANS["flagged"])


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
    reporter.log(f"{product.product_id}: pixel values read as {product.pixel_scale.how}")  # or refused, before reading
    total = len(reader)
    results: list[ChunkScore] = []

    def make() -> Any:
        return batches(reader, input_size, product.valid_max, batch_size_for(input_size, options.batch_size))

    source = Feeder(make) if overlapped else None
    (start, end), _ = progress_spans(options.search)
    turns = quarter_turns(product)
    if turns:
        reporter.log(
            f"{product.product_id}: north points {product.grid_north:.0f}° clockwise from up in this grid; chunks "
            f"are turned {90 * turns}° counter-clockwise for the CNN, which learned north-up products"
        )
    try:
        for batch in source if source is not None else make():
            x = batch.x if not turns or batch.x is None else np.ascontiguousarray(np.rot90(batch.x, turns, axes=(1, 2)))
            probs = predict(model, x) if batch.scored else np.empty(0)
            by_index = dict(zip(batch.scored, probs, strict=True))
            stats = dict(zip(batch.scored, batch.stats, strict=True))
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
                score.input_stats = stats.get(k)
                results.append(score)
            reporter.progress(start + (end - start) * len(results) / total, f"chunk {len(results)}/{total}")
    finally:
        if source is not None:
            source.close()
    return results


def detect_product(
    product: Product,
    model: Any,
    options: DetectOptions,
    reporter: Reporter | None = None,
    model_name: str | None = None,
) -> Detections:
    """Detect one product: score its chunks, outline bright patches in the flagged ones, build the layer rows.

    The product's sun azimuth is resolved first (:func:`resolve_sun_azimuth`: ``options.sun_azimuth``, else, where
    the product gives none, the bundled catalogue by its id or HiRISE's typical sun at its latitude); that is the
    only change made to ``product``.

    ``options.threshold`` must be resolved (:func:`marsice_plugin.model_registry.model_threshold`);
    ``model_name`` is recorded in the rows (default: the file name of ``options.model_path``). Progress runs
    from 5 to 90 % while chunks are scored.
    """
    if options.threshold is None:
        raise ValueError("detect_product needs a resolved threshold (model_registry.model_threshold)")
    reporter = reporter or Reporter("quiet")
    name = model_name if model_name is not None else Path(options.model_path or "").name
    check_search_threshold(options.search_threshold, options.threshold)  # before the long part, as the model file
    resolve_sun_azimuth(product, options.sun_azimuth, reporter)  # the one thing it sets on the product: its sun
    patch = load_stage(options.patch_model_path, options.all_candidates)  # before the long part: a missing file fails
    chunks = score_chunks(product, model, options, reporter)
    warning = sun_warning(product)
    if warning is not None:  # said once the pixels are known to be scorable
        reporter.log(warning, level="warning")
    outline_start = progress_spans(options.search)[1][0]
    where = "flagged" if options.search == "flagged" else "every"
    reporter.progress(outline_start, f"outlining bright patches in {where} chunk")
    import rasterio

    with rasterio.Env(GDAL_CACHEMAX=WINDOW_READ_CACHE):  # the outlines' and crops' level-0 windows
        return detections_from_scores(
            product,
            chunks,
            options.threshold,
            name,
            load_reference(options.model_path),
            patch,
            options.search,
            options.chunk_score,
            reporter,
            search_threshold=options.search_threshold,
        )


def quarter_turns(product: Product) -> int:
    """Quarter turns (counter-clockwise) that bring a product's north within 45° of "up" for the chunk CNN.

    Why: the CNN learned north-up products, lit from the west-north-west as the paper's band is (its rotations
    stay inside that band). A polar stereographic product (poleward of ±65°) has north anywhere in its grid
    (:attr:`~marsice_plugin.product.Product.grid_north`), so its sun comes from a direction the CNN never saw; a
    lossless quarter turn puts it back within 45°. North-up grids are not turned. The second stage needs no turn:
    it cuts each crop turned by the sun's exact direction in the image.
    """
    return round(product.grid_north / 90.0) % 4


def load_stage(path: Path | None, keep_all: bool = False) -> PatchStage:
    """The second stage from its model file (None: the shipped one) and its card's threshold, loaded once per path."""
    from .patches.model import patch_model_path

    path = Path(path) if path is not None else patch_model_path()
    model, threshold = _stage_model(str(path.resolve()))
    return PatchStage(model, threshold, keep_all, path.name)


@functools.lru_cache(maxsize=2)
def _stage_model(path: str) -> tuple[Any, float]:
    from .patches.model import load_patch_model, patch_threshold

    return load_patch_model(path), patch_threshold(path)


def detections_from_scores(
    product: Product,
    chunks: list[ChunkScore],
    threshold: float,
    model_name: str = "",
    reference: DomainReference | None = None,
    patch: PatchStage | None = None,
    search: str = "flagged",
    chunk_score: str | None = None,
    reporter: Reporter | None = None,
    flagged_area: str = DEFAULT_FLAGGED_AREA,
    search_threshold: float | None = None,
) -> Detections:
    """The flow after the CNN: stitch the chunk probabilities, outline candidates in flagged chunks, build rows.

    Its own function so that chunk scores from elsewhere (a test's, an evaluation's hot-pixel-free twin) go
    through exactly the steps ``detect`` takes. ``reference`` (the model card's training statistics) gives the
    product its domain check (:mod:`marsice_plugin.cnn.domain`). ``patch`` is the second stage
    (:mod:`marsice_plugin.patches.stage`): each candidate gets its probability and rank, and those under its
    threshold are dropped unless it keeps all; None leaves the rule's candidates as they are. ``search`` "all"
    outlines candidates in every scored chunk, not only the flagged ones (README, *Second stage*). With a second
    stage, ``chunk_score`` says how each chunk's probability combines the chunk CNN with the best patch in it
    (:mod:`marsice_plugin.patches.chunk_score`); the chunk rows, the stitched raster and the image summary all carry
    the combination, and ``cnn_probability`` the first stage's value. Outlines are searched by the first stage's.
    None: :func:`~marsice_plugin.patches.chunk_score.default_chunk_score` of ``search``. ``reporter`` gets one
    progress line per outlined window. ``flagged_area`` says which outlines flagged search keeps
    (:data:`FLAGGED_AREAS`); the other one stays for ``bench/search_area.py`` to compare. ``search_threshold`` (None:
    ``threshold``) is the chunk probability from which flagged search outlines: under ``threshold`` a chunk is
    searched but not flagged (``bench/search_area.py --question threshold``).
    """
    chunk_score = chunk_score or default_chunk_score(search)
    if search not in SEARCH_MODES:
        raise ValueError(f"search must be one of {SEARCH_MODES}, not {search!r}")
    if chunk_score not in CHUNK_SCORE_RULES:
        raise ValueError(f"chunk_score must be one of {CHUNK_SCORE_RULES}, not {chunk_score!r}")
    if flagged_area not in FLAGGED_AREAS:
        raise ValueError(f"flagged_area must be one of {FLAGGED_AREAS}, not {flagged_area!r}")
    check_search_threshold(search_threshold, threshold)
    first = [c if c.cnn_probability is None else replace(c, probability=c.cnn_probability) for c in chunks]
    found = Detections(product.product_id, threshold, chunks=first, search=search)
    stats = [c.input_stats for c in found.chunks if c.input_stats is not None]
    found.domain = check(stats, reference, product.scale_m)
    found.raster = stitch(found.chunks, product.width, product.height, product.transform)
    if search == "all":
        windows = search_windows(product, [c.window for c in found.scored])
        rule = CandidateOptions(threshold=0.0, min_contrast=SMALL_PATCH_CONTRAST)
    else:
        searched = threshold if search_threshold is None else search_threshold
        found.search_threshold = searched
        windows = [c.window for c in found.chunks if is_flagged(c.probability, searched)]
        rule = CandidateOptions(threshold=0.0 if flagged_area == "window" else searched)
    # outlined, scored and dropped window by window: at real size every outline at once took gigabytes (README)
    outlines = outline_stream(product, windows, found.raster, rule)
    if search == "flagged" and flagged_area == "window":
        outlines = in_flagged_windows(outlines, windows, product.transform)
    span = progress_spans(search)[1]
    search_result = score_stream(
        product, outlines, patch, [c.window for c in found.chunks], len(windows), reporter, span
    )
    found.candidates = search_result.candidates
    if patch is not None:
        found.outlined = search_result.outlined
        found.patch_threshold = patch.threshold
        found.patch_model = patch.name
        if chunk_score != "cnn":  # each chunk's best outline is all its score needs (patches.chunk_score)
            found.chunks = combine_chunk_scores(
                found.chunks, search_result.best, chunk_score, patch.threshold, threshold
            )
            found.raster = stitch(found.chunks, product.width, product.height, product.transform)
    found.rows = result_rows(product, found, model_name)
    return found


def in_flagged_windows(
    outlines: Iterator[tuple[int, list[tuple[tuple[int, int], Candidate]]]], windows: list[Window], transform: Any
) -> Iterator[tuple[int, list[tuple[tuple[int, int], Candidate]]]]:
    """The outline stream (:func:`~marsice_plugin.candidates.outline_stream`) less outlines centred outside ``windows``.

    Flagged search reads each flagged chunk with a margin, so a patch cut by the chunk's edge is seen whole; an
    outline whose centroid lies only in that margin belongs to an unflagged chunk and is dropped here, before its
    crop is cut and scored.
    """
    for done, block in outlines:
        if block:
            inside = centroids_in_windows(windows, [c.geometry for _, c in block], transform).any(axis=1)
            block = [pair for pair, keep in zip(block, inside, strict=True) if keep]
        yield done, block
