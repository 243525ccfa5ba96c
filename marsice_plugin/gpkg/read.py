"""Reading GeoPackage layers: which layers a file holds, a layer's columns and CRS, and its rows.

Why one reader: the footprints, sites, results and tile-index readers each opened the file themselves and raised
their own error class for the same fault. Every fault a reader can meet (the file is missing, is not a GeoPackage,
has no such layer, lacks a column) is now one :class:`~marsice_plugin.errors.GeoPackageError` whose message names
the file, what is missing and what to give instead (the reader's ``hint``), whichever command reads the file.

Rows come back as ``(geometry, attributes)``, the shape the writers take: the geometry parsed to shapely (None for
an attributes table or a NULL geometry), the attributes a dict by column name with the primary key (``fid``).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import GeoPackageError
from .blob import parse_geometry_blob
from .connect import connect, quote

#: What to give instead when a reader names nothing more precise.
DEFAULT_HINT = "give a GeoPackage written by MarsIce"

#: One row of a layer: (shapely geometry or None, attributes by column name).
Feature = tuple[Any, dict[str, Any]]


@dataclass(frozen=True)
class LayerInfo:
    """A layer's table: its columns (geometry included), primary key, geometry column and CRS definition."""

    name: str
    data_type: str | None  # 'features', 'attributes', or None for a table not listed in gpkg_contents
    columns: tuple[str, ...]
    primary_key: str | None
    geometry_column: str | None
    srs_definition: str | None

    @property
    def attributes(self) -> tuple[str, ...]:
        """The columns other than the geometry and the primary key."""
        return tuple(c for c in self.columns if c not in (self.geometry_column, self.primary_key))


@contextlib.contextmanager
def _open(path: str | Path, hint: str) -> Iterator[tuple[sqlite3.Connection, dict[str, str]]]:
    """A read-only connection and the file's ``gpkg_contents`` (table name -> data type)."""
    path = Path(path)
    if not path.exists():
        raise GeoPackageError(f"{path} does not exist; {hint}")
    try:
        conn = connect(path)
    except sqlite3.Error as exc:
        raise GeoPackageError(f"{path} is not a GeoPackage ({exc}); {hint}") from exc
    try:
        try:
            contents = dict(conn.execute("SELECT table_name, data_type FROM gpkg_contents").fetchall())
        except sqlite3.DatabaseError as exc:
            raise GeoPackageError(f"{path} is not a GeoPackage ({exc}); {hint}") from exc
        yield conn, contents
    finally:
        conn.close()


def _info(conn: sqlite3.Connection, path: Path, layer: str, contents: dict[str, str], hint: str) -> LayerInfo:
    try:
        if layer not in contents:
            # a table some other tool wrote without registering it is still read
            listed = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (layer,)).fetchone()
            if not listed:
                held = f" (it holds: {', '.join(sorted(contents))})" if contents else " (it holds no layer)"
                raise GeoPackageError(f"{path} has no layer '{layer}'{held}; {hint}")
        table = conn.execute(f"PRAGMA table_info({quote(layer)})").fetchall()
        try:
            geometry = conn.execute(
                "SELECT g.column_name, s.definition FROM gpkg_geometry_columns g "
                "LEFT JOIN gpkg_spatial_ref_sys s ON s.srs_id = g.srs_id WHERE g.table_name = ?",
                (layer,),
            ).fetchone()
        except sqlite3.OperationalError:  # a file of attribute tables only may lack gpkg_geometry_columns
            geometry = None
    except sqlite3.DatabaseError as exc:
        raise GeoPackageError(f"{path} is not a readable GeoPackage ({exc}); {hint}") from exc
    return LayerInfo(
        name=layer,
        data_type=contents.get(layer),
        columns=tuple(row[1] for row in table),
        primary_key=next((row[1] for row in table if row[5] == 1), None),
        geometry_column=geometry[0] if geometry else None,
        srs_definition=geometry[1] if geometry else None,
    )


def _check_columns(path: Path, info: LayerInfo, needed: Sequence[str], hint: str) -> None:
    missing = [c for c in dict.fromkeys(needed) if c not in info.columns]
    if missing:
        names = ", ".join(f"'{c}'" for c in missing)
        raise GeoPackageError(
            f"{path}: layer '{info.name}' has no column {names} (it has: {', '.join(info.columns)}); {hint}"
        )


def layer_names(path: str | Path, data_type: str | None = None, hint: str = DEFAULT_HINT) -> list[str]:
    """The layers listed in the file's ``gpkg_contents``, in the order they were added; ``data_type`` filters
    (``'features'``, ``'attributes'``)."""
    with _open(path, hint) as (_, contents):
        return [name for name, kind in contents.items() if data_type is None or kind == data_type]


def layer_info(path: str | Path, layer: str, require: Sequence[str] = (), hint: str = DEFAULT_HINT) -> LayerInfo:
    """Columns, primary key, geometry column and CRS of ``layer``; every column of ``require`` must exist."""
    with _open(path, hint) as (conn, contents):
        info = _info(conn, Path(path), layer, contents, hint)
    _check_columns(Path(path), info, require, hint)
    return info


def read_layer(
    path: str | Path,
    layer: str,
    columns: Sequence[str] | None = None,
    where: str | None = None,
    params: Sequence[Any] = (),
    *,
    order_by: str | None = None,
    geometry: bool = True,
    require: Sequence[str] = (),
    hint: str = DEFAULT_HINT,
) -> list[Feature]:
    """The rows of ``layer`` as ``(geometry, attributes)``, ordered by ``order_by`` (default: the primary key).

    ``columns`` picks the attributes (every one when None; the primary key always comes along, so a row can be
    updated later); each must exist, as must those of ``require``. ``where`` is an SQL condition with ``?``
    placeholders for ``params`` (quote column names with :func:`marsice_plugin.gpkg.quote`). ``geometry=False``
    skips the geometry column (None in every row), which also avoids importing shapely.
    """
    path = Path(path)
    with _open(path, hint) as (conn, contents):
        info = _info(conn, path, layer, contents, hint)
        wanted = list(info.attributes if columns is None else columns)
        _check_columns(path, info, [*wanted, *require, *([order_by] if order_by else [])], hint)
        names = ([info.primary_key] if info.primary_key and info.primary_key not in wanted else []) + wanted
        geometry_column = info.geometry_column if geometry else None
        selected = [*names, *([geometry_column] if geometry_column else [])]
        order = order_by or info.primary_key
        sql = f"SELECT {', '.join(quote(c) for c in selected) or 'rowid'} FROM {quote(layer)}"
        sql += f" WHERE {where}" if where else ""
        sql += f" ORDER BY {quote(order)}" if order else " ORDER BY rowid"
        try:
            rows = conn.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise GeoPackageError(f"{path}: cannot read layer '{layer}' ({exc}); {hint}") from exc
    out: list[Feature] = []
    for row in rows:
        attrs = dict(zip(names, row, strict=False))
        shape = _geometry(path, layer, row[len(names)], attrs) if geometry_column else None
        out.append((shape, attrs))
    return out


def _geometry(path: Path, layer: str, blob: Any, attrs: dict[str, Any]) -> Any:
    if blob is None:
        return None
    from shapely.errors import ShapelyError

    try:
        return parse_geometry_blob(bytes(blob))
    except (ValueError, KeyError, IndexError, TypeError, ShapelyError) as exc:
        where = ", ".join(f"{k} {v}" for k, v in list(attrs.items())[:1])
        raise GeoPackageError(
            f"{path}: layer '{layer}' holds a geometry that cannot be read ({where}: {exc}); "
            "the file is damaged: write it again"
        ) from exc
