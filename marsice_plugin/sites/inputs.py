"""Read what ``marsice detect`` wrote: ice candidates, processed products and their chunk probabilities.

Several results GeoPackages may be given (one per batch, per machine, per season); a product that appears in more
than one file is taken from the last file given, as a re-run replaces earlier rows in one file.

Co-registration between products: where a ``products`` row carries ``offset_east_m`` and ``offset_north_m`` (the
shift that puts that product on the reference ground), its candidates and footprint are shifted by it before
grouping. ``marsice terrain`` aligns an image with its DTM only (``terrain_aligned``), which is not an offset
between products, so without these columns sites rest on the grouping tolerance alone.

Outlines are read through :func:`_outline`, which splits at the 180° meridian an outline that a run before that
rule wrote torn (a ring jumping from +180 to -180 spans the globe and would cover every site at its latitude).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..gpkg import layer_names, read_layer
from ..vectors import split_antimeridian
from .geometry import shift_metres


@dataclass
class CandidateRow:
    """One ``ice_candidates`` polygon (lon/lat, common CRS) and its attributes."""

    candidate_id: str
    product_id: str
    geometry: Any
    max_probability: float | None
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProcessedProduct:
    """One ``products`` row with its scored chunks (geometry, probability)."""

    product_id: str
    footprint: Any
    attrs: dict[str, Any]
    chunks: list[tuple[Any, float]] = field(default_factory=list)
    results_file: str = ""

    def get(self, key: str) -> Any:
        value = self.attrs.get(key)
        return None if isinstance(value, float) and math.isnan(value) else value


@dataclass
class ResultsInput:
    """Everything read from the results files."""

    candidates: list[CandidateRow]
    products: dict[str, ProcessedProduct]


#: What to give instead of a file the results readers cannot use.
RESULTS_HINT = "give results GeoPackages written by `marsice detect`"


def read_results(paths: list[Path]) -> ResultsInput:
    """Candidates and processed products from one or more results GeoPackages (later files win)."""
    products: dict[str, ProcessedProduct] = {}
    candidates: dict[str, list[CandidateRow]] = {}
    for path in paths:
        path = Path(path)
        file_products = _read_products(path)
        file_candidates = _read_candidates(path)
        if "chunks" in layer_names(path, hint=RESULTS_HINT):
            _attach_chunks(path, file_products)
        for pid, product in file_products.items():
            products[pid] = product
            candidates[pid] = []
        for cand in file_candidates:
            candidates.setdefault(cand.product_id, []).append(cand)
    for pid, cands in candidates.items():
        product = products.get(pid)
        dx, dy = _offset(product)
        if dx or dy:
            for cand in cands:
                cand.geometry = shift_metres(cand.geometry, dx, dy)
    if any(_offset(p) != (0.0, 0.0) for p in products.values()):
        for p in products.values():
            dx, dy = _offset(p)
            p.footprint = shift_metres(p.footprint, dx, dy)
            p.chunks = [(shift_metres(g, dx, dy), prob) for g, prob in p.chunks]
    flat = [c for cands in candidates.values() for c in cands]
    return ResultsInput(sorted(flat, key=lambda c: c.candidate_id), products)


def _offset(product: ProcessedProduct | None) -> tuple[float, float]:
    if product is None:
        return 0.0, 0.0
    return float(product.get("offset_east_m") or 0.0), float(product.get("offset_north_m") or 0.0)


def _outline(geometry: Any) -> Any:
    """A lon/lat outline, split at the 180° meridian if it was written torn."""
    return split_antimeridian(geometry)


def _read_products(path: Path) -> dict[str, ProcessedProduct]:
    out = {}
    for geom, row in read_layer(path, "products", require=("product_id",), hint=RESULTS_HINT):
        pid = row["product_id"]
        out[pid] = ProcessedProduct(pid, _outline(geom) if geom is not None else None, row, results_file=str(path))
    return out


def _read_candidates(path: Path) -> list[CandidateRow]:
    out = []
    for geom, row in read_layer(path, "ice_candidates", require=("candidate_id", "product_id"), hint=RESULTS_HINT):
        if geom is None:
            continue
        geom = _outline(geom)
        if geom.is_empty:
            continue
        out.append(CandidateRow(row["candidate_id"], row["product_id"], geom, row.get("max_probability"), row))
    return out


def _attach_chunks(path: Path, products: dict[str, ProcessedProduct]) -> None:
    columns = ["product_id", "probability"]
    for geom, row in read_layer(path, "chunks", columns, "probability IS NOT NULL", hint=RESULTS_HINT):
        if row["product_id"] in products and geom is not None:
            products[row["product_id"]].chunks.append((_outline(geom), float(row["probability"])))
