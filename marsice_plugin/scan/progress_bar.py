"""The scan's progress: per product, through the command's reporter.

A scan reports per product, not per percent of one job, and runs for hours. Each product is a progress
report between 2 and 99 % carrying the product count, so the reporter draws its terminal bar with the
products' rate and the time left, writes a plain line every few seconds to a log file or a pipe, and
sends JSON progress events in ``--progress json`` mode (how QGIS drives the CLI).
"""

from __future__ import annotations

from ..progress import Reporter


class ProgressBar:
    """Per-product progress of a scan, counted failures included, reported through ``reporter``."""

    def __init__(self, reporter: Reporter):
        self.reporter = reporter
        self.failed = 0

    def update(self, done: int, total: int, message: str) -> None:
        if "failed" in message:
            self.failed += 1
        failed = f", {self.failed} failed" if self.failed else ""
        self.reporter.progress(
            2 + 97 * done / max(total, 1), f"{done}/{total} products{failed}; {message}", done=done, total=total,
            unit="products",
        )  # fmt: skip

    def log(self, message: str) -> None:
        self.reporter.log(message)

    def close(self) -> None:
        self.reporter.close()
