"""The scan's progress on screen: a one-line bar on a terminal, JSON progress events for QGIS.

A scan reports per product, not per percent of one job, and runs for hours: a bar that redraws one
line says how far it is without filling a terminal with lines, and a log line moves the bar down
instead of being drawn over. In ``--progress json`` mode (how QGIS drives the CLI) each product is a
progress event between 2 and 99 %; a pipe or a log file gets no bar at all.
"""

from __future__ import annotations

import sys

from ..progress import Reporter


class ProgressBar:
    """A one-line progress bar on a terminal's stderr; JSON progress events in ``--progress json`` mode."""

    def __init__(self, reporter: Reporter, width: int = 30):
        self.reporter = reporter
        self.width = width
        self.stream = sys.stderr
        self.tty = reporter.mode == "text" and bool(getattr(self.stream, "isatty", lambda: False)())
        self.failed = 0
        self.drawn = False

    def update(self, done: int, total: int, message: str) -> None:
        if "failed" in message:
            self.failed += 1
        if self.reporter.mode == "json":
            self.reporter.progress(2 + 97 * done / max(total, 1), f"{done}/{total} products; {message}")
            return
        if not self.tty:
            return
        filled = round(self.width * done / max(total, 1))
        bar = "#" * filled + "." * (self.width - filled)
        text = f"\r[{bar}] {done}/{total} products, {self.failed} failed  {message[:60]:<60}"
        self.stream.write(text)
        self.stream.flush()
        self.drawn = True

    def log(self, message: str) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.drawn = False
        self.reporter.log(message)

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
