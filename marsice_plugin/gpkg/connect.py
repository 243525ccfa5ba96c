"""The one place MarsIce opens an SQLite file: GeoPackages, and the scan manifest (a plain SQLite database).

Why here: every reader once opened its file with its own ``sqlite3.connect`` and its own error, so the same bad file
gave different messages; a read-only open by URI also broke on names holding ``?``, ``#`` or ``%``. :func:`connect`
opens by a quoted ``file:`` URI, and :func:`transaction` is the one ``BEGIN IMMEDIATE`` ... ``COMMIT`` (or
``ROLLBACK``) that writers use. Standard library only: QGIS's own Python imports this package.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

from .blob import blob_envelope


def connect(path: str | Path, *, read_only: bool = True, timeout: float = 5.0) -> sqlite3.Connection:
    """An SQLite connection in autocommit mode (``isolation_level=None``): writes go through :func:`transaction`.

    ``read_only`` opens with ``mode=ro``, which never creates the file and never writes to it; otherwise the file
    is created when missing. ``timeout`` is how long a statement waits for another process's lock.
    """
    path = Path(path)
    if read_only:
        _roll_back_hot_journal(path, timeout)
        uri = path.resolve().as_uri() + "?mode=ro"  # as_uri quotes '?', '#' and '%' in the name
        return register_functions(sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None))
    return register_functions(sqlite3.connect(path, timeout=timeout, isolation_level=None))


def _roll_back_hot_journal(path: Path, timeout: float) -> None:
    """Restore the last committed state of a file whose writer was killed in the middle of a transaction.

    Why: a process killed mid-write (SIGKILL, power loss, a cancelled QGIS task) leaves a *hot* rollback journal
    next to the file. SQLite undoes it on the next open that may write, but a ``mode=ro`` open cannot, and fails
    with "attempt to write a readonly database": a resumed scan then refused its own GeoPackage. Reading one page
    through a read-write connection lets SQLite roll the journal back (nothing is written but the committed
    state); a journal of a live transaction elsewhere is not hot and is left alone. Where the file cannot be
    opened for writing, the read-only open reports the fault as before.
    """
    if not path.with_name(path.name + "-journal").exists():
        return
    with contextlib.suppress(sqlite3.Error):
        conn = connect(path, read_only=False, timeout=timeout)
        try:
            conn.execute("PRAGMA schema_version").fetchone()
        finally:
            conn.close()


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` (the write lock at once, so no other writer slips in between), then ``COMMIT``.

    Any exception, a cancel included, rolls everything back: the file is as it was before the block.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def quote(name: str) -> str:
    """An SQL identifier (table or column name) in double quotes, inner quotes doubled."""
    return '"' + name.replace('"', '""') + '"'


def _bound(index: int) -> Callable[[bytes | None], float | None]:
    def value(blob: bytes | None) -> float | None:
        box = blob_envelope(blob)
        return None if box is None else box[index]

    return value


def _is_empty(blob: bytes | None) -> int | None:
    if blob is None:
        return None
    return int(len(blob) < 4 or bool(blob[3] & 0b1_0000))


def register_functions(conn: sqlite3.Connection) -> sqlite3.Connection:
    """Add ``ST_IsEmpty`` and ``ST_MinX/MaxX/MinY/MaxY`` (on GeoPackage blobs) to ``conn``; returns it.

    The R-tree index triggers (:mod:`marsice_plugin.gpkg.rtree`) call them on every insert, update and delete of
    a feature; GDAL provides them to its own connections, plain SQLite does not, so every connection MarsIce opens
    gets them (read from the blob header: standard library only).
    """
    conn.create_function("ST_IsEmpty", 1, _is_empty, deterministic=True)
    for name, index in (("ST_MinX", 0), ("ST_MinY", 1), ("ST_MaxX", 2), ("ST_MaxY", 3)):
        conn.create_function(name, 1, _bound(index), deterministic=True)
    return conn
