"""Writing GeoPackages: the required tables, layers, features and their extents, and atomic creation.

Why not OGR: MarsIce needs control that the OGR bindings make awkward from a child process that
must not load a second GDAL: the CRS definition written without authority ids (QGIS 3.22 rejects
``IAU`` authorities), one SQLite transaction per product so a crash leaves the file as it was, and
a stable schema. The format is the OGC GeoPackage 1.2 encoding: ``gpkg_spatial_ref_sys``,
``gpkg_contents``, ``gpkg_geometry_columns`` and feature tables whose geometry blobs are
:mod:`marsice_plugin.gpkg.blob`'s.

The spec requires the three default rows of ``gpkg_spatial_ref_sys`` (-1, 0 and EPSG:4326); they
are written because every reader expects them, and no MarsIce layer ever uses them.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import OutputError
from ..outputs import publish
from ..progress import raise_if_cancelled
from .blob import blob_envelope, geometry_blob
from .connect import register_functions
from .rtree import create_spatial_index

if TYPE_CHECKING:  # pragma: no cover
    import pyproj
    import shapely

APPLICATION_ID = 0x47504B47  # "GPKG"
USER_VERSION = 10200  # GeoPackage 1.2
MARS_SRS_ID = 100000

_WGS84_WKT = (
    'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563,AUTHORITY["EPSG","7030"]],'
    'AUTHORITY["EPSG","6326"]],PRIMEM["Greenwich",0,AUTHORITY["EPSG","8901"]],UNIT["degree",0.0174532925199433,'
    'AUTHORITY["EPSG","9122"]],AXIS["Latitude",NORTH],AXIS["Longitude",EAST],AUTHORITY["EPSG","4326"]]'
)

_SCHEMA = """
CREATE TABLE gpkg_spatial_ref_sys (
  srs_name TEXT NOT NULL, srs_id INTEGER NOT NULL PRIMARY KEY, organization TEXT NOT NULL,
  organization_coordsys_id INTEGER NOT NULL, definition TEXT NOT NULL, description TEXT);
CREATE TABLE gpkg_contents (
  table_name TEXT NOT NULL PRIMARY KEY, data_type TEXT NOT NULL, identifier TEXT UNIQUE,
  description TEXT DEFAULT '', last_change DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
  min_x DOUBLE, min_y DOUBLE, max_x DOUBLE, max_y DOUBLE, srs_id INTEGER,
  CONSTRAINT fk_gc_r_srs_id FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys(srs_id));
CREATE TABLE gpkg_geometry_columns (
  table_name TEXT NOT NULL, column_name TEXT NOT NULL, geometry_type_name TEXT NOT NULL,
  srs_id INTEGER NOT NULL, z TINYINT NOT NULL, m TINYINT NOT NULL,
  CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name),
  CONSTRAINT uk_gc_table_name UNIQUE (table_name),
  CONSTRAINT fk_gc_tn FOREIGN KEY (table_name) REFERENCES gpkg_contents(table_name),
  CONSTRAINT fk_gc_srs FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys (srs_id));
"""

_SQL_TYPES = {int: "INTEGER", float: "REAL", str: "TEXT", bool: "BOOLEAN"}


@dataclass(frozen=True)
class Field:
    """An attribute column: name, Python type (int, float, str, bool) and a description for the docs."""

    name: str
    type: type
    description: str = ""

    @property
    def sql_type(self) -> str:
        return _SQL_TYPES[self.type]


class GeoPackage:
    """An open GeoPackage connection with helpers to create layers and insert features."""

    def __init__(self, path: Path, connection: sqlite3.Connection):
        self.path = path
        self.conn = connection

    # -- creation -----------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path) -> GeoPackage:
        """Create an empty GeoPackage (the caller writes it to a temporary path and renames it)."""
        path = Path(path)
        conn = register_functions(sqlite3.connect(path))
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {USER_VERSION}")
        conn.executescript(_SCHEMA)
        conn.executemany(
            "INSERT INTO gpkg_spatial_ref_sys VALUES (?,?,?,?,?,?)",
            [
                (
                    "Undefined cartesian SRS",
                    -1,
                    "NONE",
                    -1,
                    "undefined",
                    "undefined cartesian coordinate reference system",
                ),
                (
                    "Undefined geographic SRS",
                    0,
                    "NONE",
                    0,
                    "undefined",
                    "undefined geographic coordinate reference system",
                ),
                (
                    "WGS 84 geodetic",
                    4326,
                    "EPSG",
                    4326,
                    _WGS84_WKT,
                    "required by the GeoPackage standard; unused",
                ),
            ],
        )
        conn.commit()
        return cls(path, conn)

    @classmethod
    def open(cls, path: str | Path) -> GeoPackage:
        path = Path(path)
        if not path.exists():
            raise OutputError(f"{path} does not exist")
        conn = register_functions(sqlite3.connect(path))
        (app_id,) = conn.execute("PRAGMA application_id").fetchone()
        if app_id != APPLICATION_ID:
            conn.close()
            raise OutputError(f"{path} is not a GeoPackage (application_id {app_id:#x})")
        return cls(path, conn)

    def add_srs(self, crs: pyproj.CRS, srs_id: int = MARS_SRS_ID, name: str | None = None) -> int:
        """Register a CRS (written without authority ids, see :mod:`marsice_plugin.mars_crs`)."""
        from ..mars_crs import wkt_without_authority

        exists = self.conn.execute("SELECT 1 FROM gpkg_spatial_ref_sys WHERE srs_id=?", (srs_id,)).fetchone()
        if not exists:
            self.conn.execute(
                "INSERT INTO gpkg_spatial_ref_sys VALUES (?,?,?,?,?,?)",
                (name or crs.name, srs_id, "NONE", srs_id, wkt_without_authority(crs), crs.name),
            )
        return srs_id

    def create_layer(
        self, name: str, fields: Sequence[Field], geometry_type: str, srs_id: int, description: str = ""
    ) -> None:
        """Create a feature table with an integer ``fid``, a ``geom`` column and its R-tree spatial index."""
        columns = ", ".join(f'"{f.name}" {f.sql_type}' for f in fields)
        self.conn.execute(
            f'CREATE TABLE "{name}" (fid INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, geom {geometry_type}'
            + (f", {columns}" if columns else "")
            + ")"
        )
        self.conn.execute(
            "INSERT INTO gpkg_contents (table_name, data_type, identifier, description, srs_id) VALUES (?,?,?,?,?)",
            (name, "features", name, description, srs_id),
        )
        self.conn.execute(
            "INSERT INTO gpkg_geometry_columns VALUES (?,?,?,?,0,0)", (name, "geom", geometry_type, srs_id)
        )
        create_spatial_index(self.conn, name)

    def insert(
        self,
        layer: str,
        fields: Sequence[Field],
        rows: Iterable[tuple[shapely.Geometry, dict[str, Any]]],
        recompute_extent: bool = True,
    ) -> int:
        """Insert features; returns how many. Runs inside the caller's transaction.

        The layer's extent in ``gpkg_contents`` is recomputed from every feature, or, with
        ``recompute_extent=False`` (nothing was deleted since it was last right), grown by the new
        features only: appending product after product then costs the new rows, not the whole layer.
        """
        (srs_id,) = self.conn.execute(
            "SELECT srs_id FROM gpkg_geometry_columns WHERE table_name=?", (layer,)
        ).fetchone()
        names = ["geom"] + [f.name for f in fields]
        columns = ", ".join(f'"{n}"' for n in names)
        sql = f'INSERT INTO "{layer}" ({columns}) VALUES ({", ".join("?" * len(names))})'
        values = [
            (geometry_blob(geom, srs_id), *(cast_value(attrs.get(f.name), f.type) for f in fields))
            for geom, attrs in rows
        ]
        self.conn.executemany(sql, values)
        if recompute_extent:
            self.update_extent(layer)
        else:
            self.grow_extent(layer, [blob for blob, *_ in values])
        return len(values)

    def grow_extent(self, layer: str, blobs: Sequence[bytes | None]) -> None:
        """Widen the layer's extent to include ``blobs`` (new features), keeping what it covered."""
        bounds = [b for b in (blob_envelope(blob) for blob in blobs) if b is not None]
        (old,) = self.conn.execute(
            "SELECT min_x, min_y, max_x, max_y FROM gpkg_contents WHERE table_name=?", (layer,)
        ).fetchall() or [(None, None, None, None)]
        if old[0] is not None:
            bounds.append(tuple(old))
        if not bounds:
            return
        row = (
            min(b[0] for b in bounds),
            min(b[1] for b in bounds),
            max(b[2] for b in bounds),
            max(b[3] for b in bounds),
        )
        self.conn.execute(
            "UPDATE gpkg_contents SET min_x=?, min_y=?, max_x=?, max_y=?, "
            "last_change=strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE table_name=?",
            (*row, layer),
        )

    def update_extent(self, layer: str) -> None:
        """Recompute the layer's extent in gpkg_contents from its geometry envelopes."""
        bounds = [blob_envelope(blob) for (blob,) in self.conn.execute(f'SELECT geom FROM "{layer}"')]
        bounds = [b for b in bounds if b is not None]
        row = (
            (
                min(b[0] for b in bounds),
                min(b[1] for b in bounds),
                max(b[2] for b in bounds),
                max(b[3] for b in bounds),
            )
            if bounds
            else (None, None, None, None)
        )
        self.conn.execute(
            "UPDATE gpkg_contents SET min_x=?, min_y=?, max_x=?, max_y=?, "
            "last_change=strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE table_name=?",
            (*row, layer),
        )

    def close(self) -> None:
        self.conn.close()


def cast_value(value: Any, kind: type) -> Any:
    """``value`` as a field of type ``kind`` stores it (booleans as 0/1); None stays NULL."""
    if value is None:
        return None
    if kind is bool:
        return int(bool(value))
    return kind(value)


def write_new(path: str | Path, build: Any) -> Path:
    """Create a GeoPackage atomically: ``build(gpkg)`` fills a temporary file that then replaces ``path``.

    A crash or cancel while building leaves ``path`` untouched and no temporary file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    gpkg = None
    try:
        gpkg = GeoPackage.create(tmp)
        with gpkg.conn:
            build(gpkg)
        gpkg.close()
        gpkg = None
        raise_if_cancelled()  # last chance before the file appears
        publish(tmp, path)  # SQLite creates 0644 whatever the umask: give it the mode of a plain new file
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except sqlite3.Error as exc:
        raise OutputError(f"cannot write {path}: {exc}") from exc
    finally:
        if gpkg is not None:
            gpkg.close()
        for leftover in (tmp, Path(f"{tmp}-journal")):
            leftover.unlink(missing_ok=True)
    return path
