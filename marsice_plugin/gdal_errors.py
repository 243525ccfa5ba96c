"""Errors that GDAL reports from its own worker threads, made visible to the read that caused them.

Why: GDAL's JPEG2000 driver decodes the tiles of a multi-tile read in worker threads it starts itself
(``GDAL_NUM_THREADS``, ``ALL_CPUS`` by default). When a tile fails to decode (a truncated or damaged file),
the worker reports the error to GDAL's *global* error handler, which prints ``ERROR 1: ...`` to stderr, and
the read still returns success with the tile left as zeros (measured with GDAL 3.9: a JP2 with one shortened
tile-part read as 41 % zeros, no exception, whether or not rasterio's own handler is active, since rasterio
installs its handler per calling thread). MarsIce would take those zeros for a no-data margin and score the
product.

:func:`watch` installs a global GDAL error handler (``CPLSetErrorHandler`` through ``ctypes``) for the
duration of a read and collects the failures reported from threads that have no handler of their own, which are
GDAL's workers; the caller turns them into a :class:`~marsice_plugin.errors.ProductError`. Errors from the
calling thread itself still reach rasterio, which raises them as usual. The handler is installed only while at
least one watched read runs (reads in several threads share it) and the previous handler is put back after the
last; while it is installed, GDAL's workers report through Python, which needs the GIL: the watched reads run
inside rasterio's ``read``, which releases it.

Where ``ctypes`` cannot reach GDAL's ``CPLSetErrorHandler`` (a GDAL build without that symbol in reach),
:func:`watch` collects nothing; the JPEG2000 structure check (:mod:`marsice_plugin.jp2check`) still refuses
truncated files before any pixel is read.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Iterator
from typing import Any

#: GDAL's CPLErr classes at and above which a report is an error (CE_Failure = 3, CE_Fatal = 4).
CE_FAILURE = 3

#: At most this many reports are kept while handlers are installed (a broken file can report per code block).
MAX_RECORDS = 1000

_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_int, ctypes.c_char_p)

_lock = threading.Lock()
_state: dict[str, Any] = {"set_handler": None, "loaded": False, "active": 0, "previous": None}
_records: list[tuple[int, str]] = []


def _on_error(error_class: int, error_no: int, message: bytes | None) -> None:
    """The global handler: record errors and warnings, pass debug messages on. Must never raise."""
    try:
        if error_class >= 2:  # CE_Warning and above
            if len(_records) < MAX_RECORDS:
                _records.append((error_class, (message or b"").decode("utf-8", "replace").strip()))
            return
        previous = _state["previous"]
        if previous:
            _HANDLER(previous)(error_class, error_no, message)
    except BaseException:  # noqa: BLE001 - an exception cannot cross back into GDAL's C code
        pass


_CALLBACK = _HANDLER(_on_error)  # kept alive for the life of the process: GDAL holds a raw pointer to it


def _set_handler() -> Any:
    """``CPLSetErrorHandler`` from the GDAL library rasterio is linked with, or None when out of reach."""
    if not _state["loaded"]:
        _state["loaded"] = True
        try:
            import rasterio._err

            function = ctypes.CDLL(rasterio._err.__file__).CPLSetErrorHandler
            function.restype = ctypes.c_void_p
            function.argtypes = [ctypes.c_void_p]
            _state["set_handler"] = function
        except (ImportError, OSError, AttributeError):
            _state["set_handler"] = None
    return _state["set_handler"]


def available() -> bool:
    """True when worker-thread errors can be collected on this platform."""
    with _lock:
        return _set_handler() is not None


@contextlib.contextmanager
def watch() -> Iterator[list[str]]:
    """Collect the GDAL errors reported by worker threads during the ``with`` block.

    Yields a list that holds, after the block, the messages of the errors (not warnings) reported while it ran.
    """
    errors: list[str] = []
    with _lock:
        set_handler = _set_handler()
        if set_handler is not None:
            if _state["active"] == 0:
                _records.clear()
                _state["previous"] = set_handler(ctypes.cast(_CALLBACK, ctypes.c_void_p))
            _state["active"] += 1
        start = len(_records)
    try:
        yield errors
    finally:
        if set_handler is not None:
            with _lock:
                errors.extend(message for level, message in _records[start:] if level >= CE_FAILURE)
                _state["active"] -= 1
                if _state["active"] == 0:
                    set_handler(_state["previous"])
                    _state["previous"] = None
                    _records.clear()
