"""The single writer of a results GeoPackage: one SQLite transaction per product, guarded by a lock file.

Every command that produces results (``detect`` for one product, the batch scan for many) writes
through :class:`ResultsWriter`, so the file's behaviour is the same everywhere:

* A new file is created atomically (built under a temporary name, then renamed).
* Appending a product keeps the other products' rows. Writing a product that is already there
  replaces its rows (``DELETE ... WHERE product_id = ?`` then ``INSERT``) inside one transaction, so
  re-runs never duplicate and a crash, a kill or a full disk mid-write leaves the file exactly as it
  was before that product (SQLite's rollback journal). The file itself is never copied or replaced
  once it exists: that would rewrite gigabytes and break a file QGIS holds open.
* Fields added to rows already there (``marsice terrain``'s) are set in place in one transaction too
  (:meth:`ResultsWriter.update_rows`), under the same lock.
* A lock file ``NAME.gpkg.lock`` makes a second concurrent writer wait up to ``wait_s`` seconds and then
  refuse with a clear message. It holds the writer's pid, host, process start time (``/proc/PID/stat`` field
  22, in clock ticks since boot) and boot id: a lock whose pid is dead, or alive but started at another time
  or in another boot (the pid was reused by an unrelated process after a crash or a reboot), is stale and
  taken over. A pid alone would make such a lock block every later run for good.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import OutputError
from .gpkg import (
    Field,
    GeoPackage,
    create_spatial_index,
    geometry_blob,
    has_spatial_index,
    parse_geometry_blob,
    update_rows,
    write_new,
)
from .gpkg.update import _add_missing
from .mars_crs import COMMON_CRS, common_crs
from .progress import raise_if_cancelled
from .styles import write_default_style


@dataclass(frozen=True)
class LayerSpec:
    """A result layer: name, geometry type, fields and description."""

    name: str
    geometry_type: str
    fields: Sequence[Field]
    description: str


Row = tuple[Any, dict[str, Any]]


class ResultsWriter:
    """Writes result layers product by product. Use as a context manager (it holds the lock)."""

    def __init__(self, path: str | Path, layers: Sequence[LayerSpec], wait_s: float = 0.0):
        self.path = Path(path)
        self.layers = {spec.name: spec for spec in layers}
        self.wait_s = wait_s
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._locked = False

    # -- lock ---------------------------------------------------------------------------------
    def __enter__(self) -> ResultsWriter:
        self._acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release()

    def _acquire(self) -> None:
        try:
            self._acquire_lock()
        except OSError as exc:  # an unwritable folder: an output problem, not an internal error
            raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}; the file is unchanged") from exc

    def _acquire_lock(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.wait_s
        while True:
            # the lock appears with its holder's pid already in it (written under a temporary name, then
            # hard-linked into place, which fails if the lock exists): never an empty, unattributable lock
            tmp = self.lock_path.with_name(f".{self.lock_path.name}.{os.getpid()}")
            tmp.write_text(lock_record())
            try:
                try:
                    os.link(tmp, self.lock_path)
                except FileExistsError:
                    raise
                except OSError:  # a file system without hard links: create-exclusive, then write
                    fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                    with os.fdopen(fd, "w") as handle:
                        handle.write(tmp.read_text())
            except FileExistsError:
                holder = _lock_holder(self.lock_path)
                if holder is not None and lock_is_stale(self.lock_path):
                    self.lock_path.unlink(missing_ok=True)  # stale lock of a dead writer
                    continue
                if time.monotonic() >= deadline:
                    who = f"process {holder}" if holder else "another process"
                    raise OutputError(
                        f"{self.path} is being written by {who} (lock file {self.lock_path.name}); "
                        "wait for it to finish or write to another file"
                    ) from None
                time.sleep(0.2)
                continue
            finally:
                tmp.unlink(missing_ok=True)
            self._locked = True
            return

    def _release(self) -> None:
        if self._locked:
            self.lock_path.unlink(missing_ok=True)
            self._locked = False

    # -- writing ------------------------------------------------------------------------------
    def _create(self, rows: dict[str, Iterable[Row]]) -> dict[str, int]:
        """A new file holding every layer and the first product's rows, built under a temporary name in one
        step: a cancel or crash leaves no file rather than an empty one."""
        counts: dict[str, int] = {}

        def build(gpkg: GeoPackage) -> None:
            srs = gpkg.add_srs(common_crs(), name=f"Mars 2015 sphere, planetocentric ({COMMON_CRS})")
            for spec in self.layers.values():
                gpkg.create_layer(spec.name, spec.fields, spec.geometry_type, srs, spec.description)
                write_default_style(gpkg.conn, spec.name)
            for name, spec in self.layers.items():
                counts[name] = gpkg.insert(name, spec.fields, list(rows.get(name, ())))

        write_new(self.path, build)
        return counts

    def write_product(self, product_id: str, rows: dict[str, Iterable[Row]]) -> dict[str, int]:
        """Replace ``product_id``'s rows in every layer by ``rows`` in one transaction; returns counts."""
        if not self._locked:
            raise RuntimeError("ResultsWriter must be used as a context manager")
        if not self.path.exists():
            return self._create(rows)
        try:
            gpkg = GeoPackage.open(self.path)
        except sqlite3.DatabaseError as exc:
            raise OutputError(f"{self.path} is not a readable GeoPackage ({exc}); write to a new file") from exc
        counts: dict[str, int] = {}
        try:
            self._ensure_layers(gpkg)
            with gpkg.conn:  # one transaction: all layers of the product, or nothing
                gpkg.conn.execute("BEGIN IMMEDIATE")
                self._upgrade_schema(gpkg)
                for name, spec in self.layers.items():
                    deleted = gpkg.conn.execute(f'DELETE FROM "{name}" WHERE product_id = ?', (product_id,)).rowcount
                    # a rerun may shrink the layer's extent: recompute it; a new product only grows it
                    counts[name] = gpkg.insert(
                        name, spec.fields, list(rows.get(name, ())), recompute_extent=deleted > 0
                    )
                raise_if_cancelled()  # last chance before the commit: the transaction rolls back
        except sqlite3.OperationalError as exc:
            raise OutputError(f"cannot write {self.path}: {exc}; the file is unchanged") from exc
        finally:
            gpkg.close()
        return counts

    def update_rows(
        self, layer: str, key: str, values: Mapping[Any, Mapping[str, Any]], fields: Sequence[Field] = ()
    ) -> int:
        """Set columns of existing rows in place (adding ``fields`` the layer lacks), in one transaction.

        Why through the writer: the lock keeps a concurrent ``marsice detect`` or scan out while columns change
        (``marsice terrain`` adds its fields this way). See :func:`marsice_plugin.gpkg.update_rows`.
        """
        if not self._locked:
            raise RuntimeError("ResultsWriter must be used as a context manager")
        return update_rows(self.path, layer, key, values, fields)

    def _upgrade_schema(self, gpkg: GeoPackage) -> None:
        """Bring a file written by an older version up to this one's layers, inside the product's transaction.

        POLYGON layers become MULTIPOLYGON, layers without an R-tree get one (filled), and fields added since (the
        products layer's ``domain_distance``) are added, NULL in the rows already there.
        """
        self._upgrade_to_multipolygons(gpkg)
        for name, spec in self.layers.items():
            if not has_spatial_index(gpkg.conn, name):
                create_spatial_index(gpkg.conn, name)
            columns = [row[1] for row in gpkg.conn.execute(f'PRAGMA table_info("{name}")')]
            _add_missing(gpkg.conn, name, spec.fields, columns)

    def _upgrade_to_multipolygons(self, gpkg: GeoPackage) -> None:
        """Turn a POLYGON layer of an older file into the MULTIPOLYGON layer this version writes, in place.

        Why: outlines across the 180° meridian are split there since results became MULTIPOLYGON layers; a
        file written before holds POLYGON layers, and appending MultiPolygon rows to them would break the
        GeoPackage rule that a layer's features are of its declared type. Inside the writer's transaction,
        every row's geometry is rewritten as a one-part MultiPolygon and the declared type changes (in
        ``gpkg_geometry_columns`` and in the table's own column declaration: both spellings have SQLite's
        NUMERIC affinity, so only the schema text changes), so the file is upgraded whole or not at all.
        """
        import shapely

        for name, spec in self.layers.items():
            if spec.geometry_type != "MULTIPOLYGON":
                continue
            row = gpkg.conn.execute(
                "SELECT column_name, geometry_type_name, srs_id FROM gpkg_geometry_columns WHERE table_name = ?",
                (name,),
            ).fetchone()
            if row is None or row[1].upper() != "POLYGON":
                continue
            column, _, srs_id = row
            for fid, blob in gpkg.conn.execute(f'SELECT fid, "{column}" FROM "{name}"').fetchall():
                if blob is None:
                    continue
                geom = parse_geometry_blob(blob)
                if geom.geom_type == "Polygon":
                    multi = geometry_blob(shapely.MultiPolygon([geom]), srs_id)
                    gpkg.conn.execute(f'UPDATE "{name}" SET "{column}" = ? WHERE fid = ?', (multi, fid))
            gpkg.conn.execute(
                "UPDATE gpkg_geometry_columns SET geometry_type_name = 'MULTIPOLYGON' WHERE table_name = ?", (name,)
            )
            (sql,) = gpkg.conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
            declared = sql[0].replace(f"{column} POLYGON", f"{column} MULTIPOLYGON", 1)
            if declared != sql[0]:
                (version,) = gpkg.conn.execute("PRAGMA schema_version").fetchone()
                gpkg.conn.execute("PRAGMA writable_schema = ON")
                gpkg.conn.execute(
                    "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?", (declared, name)
                )
                gpkg.conn.execute(f"PRAGMA schema_version = {version + 1}")
                gpkg.conn.execute("PRAGMA writable_schema = OFF")

    def _ensure_layers(self, gpkg: GeoPackage) -> None:
        """Add layers a file made by an older run lacks (same schema rules as on creation)."""
        existing = {name for (name,) in gpkg.conn.execute("SELECT table_name FROM gpkg_contents")}
        missing = [spec for name, spec in self.layers.items() if name not in existing]
        if not missing:
            return
        with gpkg.conn:
            srs = gpkg.add_srs(common_crs(), name=f"Mars 2015 sphere, planetocentric ({COMMON_CRS})")
            for spec in missing:
                gpkg.create_layer(spec.name, spec.fields, spec.geometry_type, srs, spec.description)
                write_default_style(gpkg.conn, spec.name)


def process_start(pid: int) -> str | None:
    """When process ``pid`` started, in clock ticks since boot (``/proc/PID/stat`` field 22); None if unknown.

    The command name (field 2) may hold spaces and parentheses, so fields are counted after its last ``)``.
    """
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        return text[text.rindex(")") + 1 :].split()[19]
    except (OSError, ValueError, IndexError):
        return None


def boot_id() -> str | None:
    """This boot's id (``/proc/sys/kernel/random/boot_id``): start times count from a boot, pids restart at one."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def lock_record(pid: int | None = None) -> str:
    """The lock file's line: ``PID HOST START BOOT_ID`` (``-`` for what this system does not tell)."""
    pid = os.getpid() if pid is None else pid
    return f"{pid} {socket.gethostname()} {process_start(pid) or '-'} {boot_id() or '-'}\n"


def lock_is_stale(path: Path) -> bool:
    """Whether the lock at ``path`` was left by a writer that is gone.

    Gone: its pid is dead; or its boot id is not this boot's; or its pid is alive but started at another
    time (the pid now belongs to another process). A lock of an older MarsIce (pid and host only) is
    judged by its pid alone. An unreadable lock is not stale: it may be one being written.
    """
    try:
        fields = path.read_text().split()
        pid = int(fields[0])
    except (OSError, ValueError, IndexError):
        return False
    start = fields[2] if len(fields) > 2 and fields[2] != "-" else None
    boot = fields[3] if len(fields) > 3 and fields[3] != "-" else None
    current_boot = boot_id()
    if boot is not None and current_boot is not None and boot != current_boot:
        return True
    if not _pid_alive(pid):
        return True
    now = process_start(pid)
    return start is not None and now is not None and now != start


def _lock_holder(path: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(path.read_text().split()[0])
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
