"""Updating rows of an existing layer in place, and adding the columns they need, in one transaction.

Why in place: ``marsice terrain`` and a scan add fields to candidates a results file already holds; copying the file
to change a few columns would rewrite gigabytes and break a file QGIS holds open. Everything happens in one SQLite
transaction (columns added, rows set, the layer's ``last_change`` stamped), so a crash, a full disk or a cancel leaves
the file exactly as it was. Writers of a results file call this through
:meth:`marsice_plugin.results.ResultsWriter.update_rows`, which holds the file's lock.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import GeoPackageError, OutputError
from ..progress import raise_if_cancelled
from .connect import connect, quote, transaction
from .read import DEFAULT_HINT, layer_info
from .write import Field, cast_value


def _add_missing(conn: sqlite3.Connection, layer: str, fields: Sequence[Field], existing: Sequence[str]) -> list[str]:
    added = [f for f in fields if f.name not in existing]
    for f in added:
        conn.execute(f"ALTER TABLE {quote(layer)} ADD COLUMN {quote(f.name)} {f.sql_type}")
    return [f.name for f in added]


def _writing(path: Path, layer: str, key: str | None, hint: str) -> tuple[sqlite3.Connection, tuple[str, ...]]:
    info = layer_info(path, layer, require=[key] if key else [], hint=hint)
    try:
        return connect(path, read_only=False, timeout=30.0), info.columns
    except sqlite3.Error as exc:
        raise OutputError(f"cannot write {path}: {exc}; the file is unchanged") from exc


def add_columns(path: str | Path, layer: str, fields: Sequence[Field], hint: str = DEFAULT_HINT) -> list[str]:
    """Add the ``fields`` that ``layer`` lacks (NULL in every row); returns their names. One transaction."""
    return _update(Path(path), layer, None, {}, fields, hint)[1]


def update_rows(
    path: str | Path,
    layer: str,
    key: str,
    values: Mapping[Any, Mapping[str, Any]],
    fields: Sequence[Field] = (),
    *,
    hint: str = DEFAULT_HINT,
) -> int:
    """Set, in each row whose ``key`` column equals a key of ``values``, the columns of its mapping.

    ``fields`` are columns to add when the layer lacks them (their values are stored as their type); every other
    column named must exist. Returns how many rows were updated. One transaction: all of it, or nothing.
    """
    return _update(Path(path), layer, key, values, fields, hint)[0]


def _update(
    path: Path,
    layer: str,
    key: str | None,
    values: Mapping[Any, Mapping[str, Any]],
    fields: Sequence[Field],
    hint: str,
) -> tuple[int, list[str]]:
    conn, existing = _writing(path, layer, key, hint)
    types = {f.name: f.type for f in fields}
    known = set(existing) | set(types)
    unknown = sorted({c for row in values.values() for c in row} - known)
    if unknown:
        conn.close()
        raise GeoPackageError(f"{path}: layer '{layer}' has no column {', '.join(map(repr, unknown))}; {hint}")
    updated = 0
    try:
        with transaction(conn):
            added = _add_missing(conn, layer, fields, existing)
            groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
            for k, row in values.items():
                columns = tuple(row)
                cast = (cast_value(row[c], types[c]) if c in types else row[c] for c in columns)
                groups.setdefault(columns, []).append((*cast, k))
            for columns, params in groups.items():
                if not columns:
                    continue
                sets = ", ".join(f"{quote(c)} = ?" for c in columns)
                cursor = conn.executemany(f"UPDATE {quote(layer)} SET {sets} WHERE {quote(key or '')} = ?", params)
                updated += max(cursor.rowcount, 0)
            if updated or added:
                conn.execute(
                    "UPDATE gpkg_contents SET last_change = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE table_name = ?",
                    (layer,),
                )
            raise_if_cancelled()  # last chance before the commit: the transaction rolls back
    except sqlite3.Error as exc:
        raise OutputError(f"cannot write {path}: {exc}; the file is unchanged") from exc
    finally:
        conn.close()
    return updated, added
