"""The GeoPackage R-tree spatial index (``gpkg_rtree_index``) on every layer MarsIce writes.

Why: a scan of the paper's band writes about 10⁵ chunk polygons; without a spatial index QGIS reads every feature
for every redraw and crawls. The index is the standard extension (OGC GeoPackage 1.2, annex F.3): a virtual
``rtree_<table>_<column>`` table of feature envelopes kept in step with the feature table by six triggers. GDAL
and QGIS use and maintain it themselves; inside MarsIce the triggers run in the single writer's transactions,
so an index is never out of step with its layer, and a rollback undoes both.

The triggers call the standard SQL functions ``ST_IsEmpty``, ``ST_MinX`` ... ``ST_MaxY``, which GDAL provides
and plain SQLite does not: :func:`register_functions` adds them (read from the GeoPackage blob header, standard
library only) to every connection the gpkg module opens, so a trigger never meets a missing function.
"""

from __future__ import annotations

import sqlite3
import warnings

from .connect import quote, register_functions

EXTENSION = "gpkg_rtree_index"
DEFINITION = "http://www.geopackage.org/spec120/#extension_rtree"

_EXTENSIONS_TABLE = """
CREATE TABLE IF NOT EXISTS gpkg_extensions (
  table_name TEXT, column_name TEXT, extension_name TEXT NOT NULL, definition TEXT NOT NULL, scope TEXT NOT NULL,
  CONSTRAINT ge_tce UNIQUE (table_name, column_name, extension_name))
"""

# The six triggers of the standard (F.3), with <t> the table, <c> the geometry column, <i> the id column.
_TRIGGERS = """
CREATE TRIGGER "rtree_<t>_<c>_insert" AFTER INSERT ON <T>
  WHEN (NEW.<C> NOT NULL AND NOT ST_IsEmpty(NEW.<C>))
BEGIN
  INSERT OR REPLACE INTO <R> VALUES (NEW.<I>, ST_MinX(NEW.<C>), ST_MaxX(NEW.<C>), ST_MinY(NEW.<C>), ST_MaxY(NEW.<C>));
END;
CREATE TRIGGER "rtree_<t>_<c>_update1" AFTER UPDATE OF <C> ON <T>
  WHEN OLD.<I> = NEW.<I> AND (NEW.<C> NOTNULL AND NOT ST_IsEmpty(NEW.<C>))
BEGIN
  INSERT OR REPLACE INTO <R> VALUES (NEW.<I>, ST_MinX(NEW.<C>), ST_MaxX(NEW.<C>), ST_MinY(NEW.<C>), ST_MaxY(NEW.<C>));
END;
CREATE TRIGGER "rtree_<t>_<c>_update2" AFTER UPDATE OF <C> ON <T>
  WHEN OLD.<I> = NEW.<I> AND (NEW.<C> ISNULL OR ST_IsEmpty(NEW.<C>))
BEGIN
  DELETE FROM <R> WHERE id = OLD.<I>;
END;
CREATE TRIGGER "rtree_<t>_<c>_update3" AFTER UPDATE ON <T>
  WHEN OLD.<I> != NEW.<I> AND (NEW.<C> NOTNULL AND NOT ST_IsEmpty(NEW.<C>))
BEGIN
  DELETE FROM <R> WHERE id = OLD.<I>;
  INSERT OR REPLACE INTO <R> VALUES (NEW.<I>, ST_MinX(NEW.<C>), ST_MaxX(NEW.<C>), ST_MinY(NEW.<C>), ST_MaxY(NEW.<C>));
END;
CREATE TRIGGER "rtree_<t>_<c>_update4" AFTER UPDATE ON <T>
  WHEN OLD.<I> != NEW.<I> AND (NEW.<C> ISNULL OR ST_IsEmpty(NEW.<C>))
BEGIN
  DELETE FROM <R> WHERE id IN (OLD.<I>, NEW.<I>);
END;
CREATE TRIGGER "rtree_<t>_<c>_delete" AFTER DELETE ON <T>
  WHEN OLD.<C> NOT NULL
BEGIN
  DELETE FROM <R> WHERE id = OLD.<I>;
END;
"""


def rtree_available(conn: sqlite3.Connection) -> bool:
    """Whether the SQLite this connection runs on has the R-tree module (the system one has; TensorFlow's has not)."""
    return conn.execute("SELECT 1 FROM pragma_module_list WHERE name = 'rtree'").fetchone() is not None


def index_name(table: str, column: str = "geom") -> str:
    return f"rtree_{table}_{column}"


def has_spatial_index(conn: sqlite3.Connection, table: str, column: str = "geom") -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (index_name(table, column),))
    return row.fetchone() is not None


def create_spatial_index(conn: sqlite3.Connection, table: str, column: str = "geom", id_column: str = "fid") -> None:
    """Create the R-tree of ``table``'s ``column``, fill it from the rows already there, add its triggers.

    Runs inside the caller's transaction (a new file's build, or the results writer's): all of it or nothing.
    """
    register_functions(conn)
    if not rtree_available(conn):
        warnings.warn(
            f"this SQLite ({sqlite3.sqlite_version}) has no R-tree module: {table} is written without a spatial index "
            "(import marsice_plugin, or sqlite3, before TensorFlow: its bundled SQLite lacks the module)",
            RuntimeWarning,
            stacklevel=2,
        )
        return
    rtree = index_name(table, column)
    conn.execute(_EXTENSIONS_TABLE)
    conn.execute(
        "INSERT OR REPLACE INTO gpkg_extensions VALUES (?, ?, ?, ?, 'write-only')",
        (table, column, EXTENSION, DEFINITION),
    )
    conn.execute(f"CREATE VIRTUAL TABLE {quote(rtree)} USING rtree(id, minx, maxx, miny, maxy)")
    t, c, i = quote(table), quote(column), quote(id_column)
    conn.execute(
        f"INSERT INTO {quote(rtree)} SELECT {i}, ST_MinX({c}), ST_MaxX({c}), ST_MinY({c}), ST_MaxY({c}) FROM {t} "
        f"WHERE {c} NOT NULL AND NOT ST_IsEmpty({c})"
    )
    script = (
        _TRIGGERS.replace("<T>", t)
        .replace("<C>", c)
        .replace("<I>", i)
        .replace("<R>", quote(rtree))
        .replace("<t>", table.replace('"', '""'))
        .replace("<c>", column.replace('"', '""'))
    )
    for statement in script.split("END;"):
        if statement.strip():
            conn.execute(statement + "END;")
