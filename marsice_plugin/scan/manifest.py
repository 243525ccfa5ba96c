"""The scan manifest: one row per product with its state, so an interrupted scan resumes where it stopped.

Why SQLite beside the output (``NAME.manifest.sqlite`` for ``NAME.gpkg``): every state change is one
committed transaction, so a killed client leaves the manifest exactly as of its last change, never half
written; and only the scan's client process writes it (workers never touch it), so there is no concurrent
writer to guard against beyond the results writer's own lock. It is a plain SQLite database, not a
GeoPackage, but it is opened and written through :mod:`marsice_plugin.gpkg`'s ``connect`` and ``transaction``,
like every SQLite file MarsIce touches.

States, in order: ``queued`` (planned), ``downloading`` (handed to the cluster), ``detected`` (rows came
back), ``committed`` (rows are in the GeoPackage), or ``failed`` (with the error text). A resumed scan
skips ``committed`` products and re-submits every other one. ``commits`` counts how many times a
product's rows were written: the scan commits each product exactly once, whatever the retries below it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import OutputError
from ..gpkg import connect, transaction

STATES = ("queued", "downloading", "detected", "committed", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS products (
    product_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    commits INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    category TEXT,
    chunks INTEGER,
    chunks_above INTEGER,
    candidates INTEGER,
    download_bytes INTEGER,
    worker TEXT,
    cached_before INTEGER NOT NULL DEFAULT 0,
    updated TEXT NOT NULL
)
"""


def manifest_path(output: str | Path) -> Path:
    """The manifest that belongs to a results GeoPackage: ``NAME.manifest.sqlite`` beside ``NAME.gpkg``."""
    output = Path(output)
    return output.with_name(output.stem + ".manifest.sqlite")


@dataclass(frozen=True)
class ProductState:
    """One manifest row."""

    product_id: str
    state: str
    attempts: int
    commits: int
    error: str | None
    category: str | None
    chunks: int | None
    chunks_above: int | None
    candidates: int | None
    download_bytes: int | None
    worker: str | None
    cached_before: bool = False


class Manifest:
    """Product states of one scan output. Each method is one SQLite transaction."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = connect(self.path, read_only=False, timeout=30.0)
            self._conn.execute(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise OutputError(
                f"{self.path} is not a readable scan manifest ({exc}); delete it to start the scan afresh"
            ) from exc

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return transaction(self._conn)

    # -- reading ------------------------------------------------------------------------------
    def get(self, product_id: str) -> ProductState | None:
        row = self._conn.execute(f"SELECT {_COLUMNS} FROM products WHERE product_id = ?", (product_id,)).fetchone()
        return ProductState(*row) if row else None

    def all(self) -> list[ProductState]:
        return [ProductState(*r) for r in self._conn.execute(f"SELECT {_COLUMNS} FROM products ORDER BY product_id")]

    def states(self, product_ids: Iterable[str]) -> dict[str, ProductState]:
        wanted = set(product_ids)
        return {s.product_id: s for s in self.all() if s.product_id in wanted}

    # -- writing ------------------------------------------------------------------------------
    def plan(self, product_ids: Iterable[str], cached: Mapping[str, bool] | None = None) -> list[str]:
        """Add new products as ``queued``; returns the ids still to do (every one not committed).

        ``cached`` says which new products had all their files in the cache before the scan first saw
        them: those files belong to the user (e.g. ``marsice download``) and are never dropped.
        """
        ids = list(dict.fromkeys(product_ids))
        cached = cached or {}
        with self._transaction() as c:
            c.executemany(
                "INSERT OR IGNORE INTO products (product_id, state, cached_before, updated) VALUES (?, 'queued', ?, ?)",
                [(pid, int(bool(cached.get(pid))), _now()) for pid in ids],
            )
        done = {s.product_id for s in self.all() if s.state == "committed"}
        return [pid for pid in ids if pid not in done]

    def submitted(self, product_id: str) -> None:
        """Handed to the cluster: one more attempt, error of an earlier attempt cleared."""
        with self._transaction() as c:
            c.execute(
                "UPDATE products SET state = 'downloading', attempts = attempts + 1, error = NULL, updated = ? "
                "WHERE product_id = ?",
                (_now(), product_id),
            )

    def detected(self, product_id: str, worker: str | None, download_bytes: int | None) -> None:
        with self._transaction() as c:
            c.execute(
                "UPDATE products SET state = 'detected', worker = ?, download_bytes = ?, updated = ? "
                "WHERE product_id = ?",
                (worker, download_bytes, _now(), product_id),
            )

    def committed(self, product_id: str, category: str, chunks: int, chunks_above: int, candidates: int) -> None:
        with self._transaction() as c:
            c.execute(
                "UPDATE products SET state = 'committed', commits = commits + 1, error = NULL, category = ?, "
                "chunks = ?, chunks_above = ?, candidates = ?, updated = ? WHERE product_id = ?",
                (category, chunks, chunks_above, candidates, _now(), product_id),
            )

    def failed(self, product_id: str, error: str, worker: str | None = None) -> None:
        with self._transaction() as c:
            c.execute(
                "UPDATE products SET state = 'failed', error = ?, worker = COALESCE(?, worker), updated = ? "
                "WHERE product_id = ?",
                (error, worker, _now(), product_id),
            )


_COLUMNS = (
    "product_id, state, attempts, commits, error, category, chunks, chunks_above, candidates, download_bytes, worker, "
    "cached_before"
)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
