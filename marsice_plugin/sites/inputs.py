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

import contextlib
import math
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ProductError
from ..gpkg import parse_geometry_blob
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


def _rows(db: sqlite3.Connection, table: str) -> list[dict[str, Any]]:
    db.row_factory = sqlite3.Row
    return [dict(r) for r in db.execute(f'SELECT * FROM "{table}"')]


def _geometry_column(db: sqlite3.Connection, table: str) -> str | None:
    row = db.execute("SELECT column_name FROM gpkg_geometry_columns WHERE table_name = ?", (table,)).fetchone()
    return row[0] if row else None


def read_results(paths: list[Path]) -> ResultsInput:
    """Candidates and processed products from one or more results GeoPackages (later files win)."""
    products: dict[str, ProcessedProduct] = {}
    candidates: dict[str, list[CandidateRow]] = {}
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise ProductError(f"{path} does not exist; give results GeoPackages written by `marsice detect`")
        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                tables = {r[0] for r in db.execute("SELECT table_name FROM gpkg_contents")}
                missing = {"ice_candidates", "products"} - tables
                if missing:
                    raise ProductError(
                        f"{path} has no {' or '.join(sorted(missing))} layer; give a results GeoPackage written by "
                        "`marsice detect`"
                    )
                file_products = _read_products(db, path)
                file_candidates = _read_candidates(db)
                if "chunks" in tables:
                    _attach_chunks(db, file_products)
        except sqlite3.Error as exc:
            raise ProductError(
                f"{path} is not a readable GeoPackage ({exc}); give a results file of marsice detect"
            ) from exc
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


def _outline(blob: bytes) -> Any:
    """A lon/lat outline from a geometry blob, split at the 180° meridian if it was written torn."""
    return split_antimeridian(parse_geometry_blob(blob))


def _read_products(db: sqlite3.Connection, path: Path) -> dict[str, ProcessedProduct]:
    column = _geometry_column(db, "products") or "geom"
    out = {}
    for row in _rows(db, "products"):
        blob = row.pop(column, None)
        geom = _outline(blob) if blob else None
        pid = row["product_id"]
        out[pid] = ProcessedProduct(pid, geom, row, results_file=str(path))
    return out


def _read_candidates(db: sqlite3.Connection) -> list[CandidateRow]:
    column = _geometry_column(db, "ice_candidates") or "geom"
    out = []
    for row in _rows(db, "ice_candidates"):
        blob = row.pop(column, None)
        if not blob:
            continue
        geom = _outline(blob)
        if geom.is_empty:
            continue
        out.append(CandidateRow(row["candidate_id"], row["product_id"], geom, row.get("max_probability"), row))
    return out


def _attach_chunks(db: sqlite3.Connection, products: dict[str, ProcessedProduct]) -> None:
    column = _geometry_column(db, "chunks") or "geom"
    sql = f'SELECT product_id, "{column}", probability FROM chunks WHERE probability IS NOT NULL'
    for pid, blob, probability in db.execute(sql):
        if pid in products and blob:
            products[pid].chunks.append((_outline(blob), float(probability)))
