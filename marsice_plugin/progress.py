"""Progress and log reporting, as human text or as JSON lines.

The QGIS algorithms run the ``marsice`` CLI in a child process and read its standard output line
by line. With ``--progress json`` every line on stdout is one JSON object (nothing else is printed
there), so the parent can stream progress into ``QgsProcessingFeedback`` without parsing prose:

``{"type": "progress", "percent": 42.0, "message": "chunk 3/8"}``
``{"type": "log", "level": "info" | "warning", "message": "..."}``
``{"type": "result", "outputs": {"OUTPUT": "/path/out.gpkg", ...}, "summary": "..."}``
``{"type": "error", "error": "ProductError", "message": "...", "exit_code": 2}``

In text mode progress and informational lines go to stderr only when stderr is a terminal: a log
file or a pipe gets warnings and the one-line error, nothing else. Results go to stdout.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any, TextIO

#: Set by the CLI's SIGTERM handler. The handler also interrupts the main thread at once; this flag
#: catches the rare signal whose interrupt is swallowed (one landing inside a weak-reference callback
#: or a library's catch-all), so the next progress report still stops the command before it writes.
_cancel_requested = threading.Event()


def request_cancel() -> None:
    """Ask the running command to stop at its next progress report."""
    _cancel_requested.set()


def cancel_requested() -> bool:
    """Whether a cancel is pending: writers check it once more just before they commit."""
    return _cancel_requested.is_set()


def raise_if_cancelled() -> None:
    """Stop before a commit point if a cancel arrived whose interrupt was swallowed on the way."""
    if _cancel_requested.is_set():
        raise KeyboardInterrupt("cancel requested")


def quiet_swallowed_cancel(report: Any) -> bool:
    """For ``sys.unraisablehook``: true when ``report`` is the cancel's own interrupt, swallowed.

    A SIGTERM landing inside a weak-reference callback (importlib's module-lock callback while
    TensorFlow imports, measured) cannot propagate: Python prints "Exception ignored in ..." with a
    traceback and carries on. The cancel is not lost (the flag stops the command at its next
    progress report or commit point), so that report is noise on the one-line-error contract.
    """
    return isinstance(report.exc_value, KeyboardInterrupt) and _cancel_requested.is_set()


class Reporter:
    """Sink for progress, log lines and the final result of one CLI command."""

    def __init__(self, mode: str = "text", stdout: TextIO | None = None, stderr: TextIO | None = None):
        if mode not in ("text", "json", "quiet"):
            raise ValueError(f"unknown progress mode {mode!r}")
        self.mode = mode
        self._out = stdout or sys.stdout
        self._err = stderr or sys.stderr
        self._last_text_percent = -100.0
        self._tty = bool(getattr(self._err, "isatty", lambda: False)())

    def _emit(self, obj: dict[str, Any]) -> None:
        self._out.write(json.dumps(obj, default=str) + "\n")
        self._out.flush()

    def progress(self, percent: float, message: str = "") -> None:
        """Report overall progress in percent (0-100) of the current command (and honour a pending cancel)."""
        raise_if_cancelled()
        percent = float(max(0.0, min(100.0, percent)))
        if self.mode == "json":
            self._emit({"type": "progress", "percent": round(percent, 2), "message": message})
        elif self.mode == "text" and self._tty and (percent - self._last_text_percent >= 10 or percent >= 100):
            self._last_text_percent = percent
            self._err.write(f"[{percent:5.1f}%] {message}\n")
            self._err.flush()

    def log(self, message: str, level: str = "info") -> None:
        """A line a user may want to read (what is being done, what was skipped and why)."""
        if self.mode == "json":
            self._emit({"type": "log", "level": level, "message": message})
        elif self.mode == "text" and (self._tty or level == "warning"):
            prefix = "warning: " if level == "warning" else ""
            self._err.write(f"{prefix}{message}\n")
            self._err.flush()

    def result(self, outputs: dict[str, Any], summary: str = "") -> None:
        """The command's outputs (paths, counts) and a one-line summary."""
        if self.mode == "json":
            self._emit({"type": "result", "outputs": outputs, "summary": summary})
        else:
            if summary:
                self._out.write(summary + "\n")
            for key, value in outputs.items():
                self._out.write(f"  {key}: {value}\n")
            self._out.flush()

    def error(self, exc: BaseException, exit_code: int) -> None:
        """Report a failure: one JSON line, or one clear line on stderr."""
        if self.mode == "json":
            self._emit({"type": "error", "error": type(exc).__name__, "message": str(exc), "exit_code": exit_code})
        self._err.write(f"marsice: error: {exc}\n")
        self._err.flush()
