"""What a detection run produces: the result types and the GeoPackage layers they are written as.

One module for the three layers' schemas (``chunks``, ``ice_candidates``, ``products``), the rows built
from a product's detections, and the types that carry them, so ``detect`` (which writes the rows), ``scan``
(which hands them to its single writer) and ``evaluate`` (which compares them with the truth) share one
definition. Geometry is in the common Mars CRS of :mod:`marsice_plugin.vectors`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .candidates import DESCRIPTION, Candidate
from .detect_defaults import is_flagged
from .gpkg import Field
from .grid import Window
from .results import LayerSpec, Row
from .vectors import as_multipolygon, lonlat_centre, to_common, window_footprint

if TYPE_CHECKING:  # pragma: no cover
    from .product import Product

#: Attribute columns of the ``chunks`` layer (documented in the README).
CHUNK_FIELDS = [
    Field("product_id", str, "HiRISE product id"),
    Field("chunk_row", int, "chunk row in the product's chunk grid (0 = northernmost)"),
    Field("chunk_col", int, "chunk column (0 = westernmost)"),
    Field("row_off", int, "first image line of the chunk (0-based)"),
    Field("col_off", int, "first image sample of the chunk (0-based)"),
    Field("width", int, "chunk width in pixels"),
    Field("height", int, "chunk height in pixels"),
    Field(
        "probability",
        float,
        "probability of a bright patch consistent with remnant ice: the chunk CNN's, raised by the best patch the "
        "second stage keeps in the chunk; NULL if skipped",
    ),
    Field("above_threshold", bool, "probability >= threshold"),
    Field("cnn_probability", float, "the chunk CNN's own probability (first stage); NULL if skipped"),
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
    #: statistics of the model input (cnn.domain.input_statistics), for the product's domain check; None if skipped
    input_stats: Any = None
    #: the chunk CNN's own probability when ``probability`` combines it with the second stage
    #: (patches.chunk_score); None before that combination
    cnn_probability: float | None = None


@dataclass
class Detections:
    """What detecting one product gives: scored chunks, candidate outlines, the stitched raster, layer rows.

    Made by :func:`marsice_plugin.detection.detect_product` and nowhere else; ``detect`` writes it, ``scan``
    hands its rows to the client, ``evaluate`` compares it with the truth.
    """

    product_id: str
    threshold: float
    chunks: list[ChunkScore] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    #: the stitched chunk probabilities on a reduced grid of the image (stitching.stitch), None before scoring
    raster: Any = None
    #: rows of every result layer (result_rows), keyed by layer name
    rows: dict[str, list[Row]] = field(default_factory=dict)
    #: how far the product's pixels lie from the model's training (cnn.domain.DomainCheck); None without a reference
    domain: Any = None
    #: candidates the rule outlined before the second stage dropped those under its threshold (patches.stage)
    outlined: int = 0
    #: the second stage's threshold; None when no second stage ran
    patch_threshold: float | None = None
    #: where candidates were outlined ("flagged" or "all"), from which chunk probability flagged search outlined
    #: (detection.DetectOptions.search_threshold, resolved), and the second stage's model file ("" without one)
    search: str = "flagged"
    search_threshold: float | None = None
    patch_model: str = ""

    @property
    def scored(self) -> list[ChunkScore]:
        return [c for c in self.chunks if not c.skipped]

    @property
    def above(self) -> list[ChunkScore]:
        return [c for c in self.scored if is_flagged(c.probability, self.threshold)]

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
            f"{len(self.candidates)} ice candidates{self._second_stage()}"
        )

    def _second_stage(self) -> str:
        if self.patch_threshold is None:
            return ""
        where = ""  # the default (flagged chunks, from the threshold) goes unsaid
        if self.search == "all":
            where = " in every chunk"
        elif self.search_threshold is not None and self.search_threshold != self.threshold:
            where = f" in chunks from {self.search_threshold:.2f}"
        return (
            f" (of {self.outlined} bright patches outlined{where}; second stage at or above {self.patch_threshold:.2f})"
        )


@dataclass
class DetectResult(Detections):
    """Detections written to disk by :func:`marsice_plugin.pipeline.detect`, with where they went."""

    output: Path | None = None
    quicklook: Path | None = None
    probability_raster: Path | None = None


#: Attribute columns of the ``products`` layer: one row per processed product.
PRODUCT_FIELDS = [
    Field("product_id", str, "HiRISE product id"),
    Field("ls", float, "solar longitude (degrees)"),
    Field("latitude", float, "planetocentric latitude of the image centre (degrees)"),
    Field("longitude", float, "east longitude of the image centre (degrees, -180..180)"),
    Field("incidence", float, "solar incidence angle (degrees)"),
    Field("sun_azimuth", float, "sun azimuth from north, clockwise (degrees)"),
    Field(
        "sun_source",
        str,
        "where sun_azimuth came from: label, metadata, catalogue (the bundled one, by product id), option "
        "(--sun-azimuth) or latitude (assumed: HiRISE's typical sun at the product's latitude, in the bundled "
        "catalogue); NULL: unknown, the second stage turned crops as if the sun were in the north",
    ),
    Field("scale_m", float, "ground scale (m/pixel)"),
    Field("chunks_total", int, "chunks in the product's grid"),
    Field("chunks_scored", int, "chunks scored by the CNN"),
    Field("chunks_skipped", int, "chunks skipped by the no-data rule"),
    Field("chunks_above", int, "chunks at or above the threshold"),
    Field("category", str, "the paper's image-level summary: none, one or several chunks above the threshold"),
    Field("max_probability", float, "highest chunk probability"),
    Field("threshold", float, "probability threshold of the run"),
    Field("search", str, "where bright patches were outlined: 'flagged' chunks or 'all' chunks"),
    Field(
        "search_threshold",
        float,
        "flagged search outlined the chunks from this CNN probability (the threshold unless --search-threshold)",
    ),
    Field("outlined", int, "bright patches the rule outlined, before the second stage dropped those under it"),
    Field("patch_model", str, "second-stage model file name (empty: none ran)"),
    Field("patch_threshold", float, "second-stage threshold: candidates under it are dropped unless --all-candidates"),
    Field("domain_distance", float, "how far the product's pixels lie from the model's training (1: edge of 99 %)"),
    Field(
        "in_domain",
        bool,
        "domain_distance within the model card's threshold and scale_m within the training scales (0.2-0.6 m/px); "
        "false: do not trust the scores",
    ),
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
    Field("probability", float, "second stage: ice probability of this patch from its full-resolution crop"),
    Field("chunk_probability", float, "first stage: highest chunk CNN probability over the patch"),
    Field("rank", float, "order to inspect in (higher first): the probability until terrain is added"),
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

# MULTIPOLYGON: an outline across the 180° meridian is split there (vectors.split_antimeridian), as the search
# footprints are; every row is written as a MultiPolygon, one part where nothing is crossed.
CHUNKS_LAYER = LayerSpec(
    "chunks",
    "MULTIPOLYGON",
    CHUNK_FIELDS,
    "chunk footprints with the CNN probability of a bright patch consistent with remnant ice",
)
PRODUCTS_LAYER = LayerSpec(
    "products", "MULTIPOLYGON", PRODUCT_FIELDS, "processed products and their image-level summary"
)
CANDIDATES_LAYER = LayerSpec(
    "ice_candidates",
    "MULTIPOLYGON",
    CANDIDATE_FIELDS,
    "bright patches consistent with remnant ice (water ice and CO2 frost look alike in grey images)",
)
RESULT_LAYERS = (CHUNKS_LAYER, CANDIDATES_LAYER, PRODUCTS_LAYER)


def result_rows(product: Product, result: Detections, model_name: str) -> dict[str, list[Row]]:
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
        centre_lon, centre_lat = lonlat_centre(geom)  # of the place, also when the chunk is split at 180°
        chunks.append(
            (
                as_multipolygon(geom),
                {
                    **common,
                    "chunk_row": c.chunk_row,
                    "chunk_col": c.chunk_col,
                    "row_off": w.row_off,
                    "col_off": w.col_off,
                    "width": w.width,
                    "height": w.height,
                    "probability": c.probability,
                    "above_threshold": is_flagged(c.probability, result.threshold),
                    "cnn_probability": c.probability if c.cnn_probability is None else c.cnn_probability,
                    "skipped": c.skipped,
                    "skip_reason": c.skip_reason,
                    "nodata_fraction": c.nodata_fraction,
                    "special_pixels": c.special_pixels,
                    "outlier_pixels": c.outlier_pixels,
                    "latitude": centre_lat,
                    "longitude": centre_lon,
                },
            )
        )
    footprint = as_multipolygon(
        window_footprint(product.transform, product.crs, 0, 0, product.width, product.height, densify=32)
    )
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
                "sun_source": v.sun_source,
                "search": result.search,
                "search_threshold": result.search_threshold,  # None when every chunk was searched
                "outlined": result.outlined if result.patch_threshold is not None else len(result.candidates),
                "patch_model": result.patch_model,
                "patch_threshold": result.patch_threshold,
                "domain_distance": result.domain.distance if result.domain is not None else None,
                "in_domain": result.domain.inside if result.domain is not None else None,
                "source": str(product.path),
            },
        )
    ]
    candidates = []
    for i, cand in enumerate(result.candidates, start=1):
        candidates.append(
            (
                as_multipolygon(to_common(cand.geometry, product.crs)),
                {
                    **common,
                    "candidate_id": f"{product.product_id}:{i}",
                    "area_m2": cand.area_m2,
                    "max_probability": cand.max_probability,
                    "mean_probability": cand.mean_probability,
                    "peak_contrast": cand.peak_contrast,
                    "probability": cand.probability,
                    "chunk_probability": cand.chunk_probability,
                    "rank": cand.rank,
                    "centroid_lat": cand.centroid_lat,
                    "centroid_lon": cand.centroid_lon,
                    "centroid_lon_360": cand.centroid_lon % 360.0,
                    "description": DESCRIPTION,
                    "threshold": result.threshold,
                },
            )
        )
    return {"chunks": chunks, "ice_candidates": candidates, "products": products}
