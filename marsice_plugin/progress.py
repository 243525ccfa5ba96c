"""Progress and log reporting, as human text or as JSON lines.

The QGIS algorithms run the ``marsice`` CLI in a child process and read its standard output line
by line. With ``--progress json`` every line on stdout is one JSON object (nothing else is printed
there), so the parent can stream progress into ``QgsProcessingFeedback`` without parsing prose:

``{"type": "progress", "percent": 42.0, "message": "chunk 3/8"}``
``{"type": "log", "level": "info" | "warning", "message": "..."}``
``{"type": "result", "outputs": {"OUTPUT": "/path/out.gpkg", ...}, "summary": "..."}``
``{"type": "error", "error": "ProductError", "message": "...", "exit_code": 2}``

In text mode on a terminal, progress is a ``rich`` bar on stderr with the rate and the time left, and
informational lines print above it. When stderr is a log file or a pipe (a batch job, ``nohup``), a bar
would fill the file with redraws, and silence would leave an hours-long scan looking hung: it gets one
plain line every few seconds (percent, done/total, rate, time left), the warnings and the one-line error.
Results go to stdout.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

#: Seconds between two progress lines when stderr is not a terminal.
LOG_INTERVAL_S = 5.0

#: "chunk 3/8", "3/8 products": where a message names its count, the rate is of that unit.
_COUNT = re.compile(r"(?:([A-Za-z]+) )?(\d+)/(\d+)(?: ([A-Za-z]+))?")

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


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def _quantity(value: float, unit: str) -> str:
    return f"{value / 1e6:.1f} MB" if unit == "B" else f"{value:g}"


class RateTracker:
    """Rate and time left of one command, from its percent and, where known, its done/total count.

    Averaged over the whole run rather than the last few reports: a scan's products or a detect's
    chunk batches arrive in bursts, and an average is the estimate that does not jump about.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._start: tuple[float, float] | None = None  # (time, percent) at the first report
        self._count_start: tuple[float, float] | None = None  # (time, done) at the first report of this count
        self.percent = 0.0
        self.done: float | None = None
        self.total: float | None = None
        self.unit = ""

    def update(self, percent: float, message: str, done: float | None, total: float | None, unit: str) -> None:
        if done is None:
            match = _COUNT.search(message)
            if match:
                done, total = float(match.group(2)), float(match.group(3))
                unit = unit or match.group(1) or match.group(4) or ""
        now = self._clock()
        if self._start is None:
            self._start = (now, percent)
        if done is None:
            self._count_start = None
        elif self._count_start is None or total != self.total or unit != self.unit or done < (self.done or 0):
            self._count_start = (now, done)  # a new count (the next stage, the next file): its rate starts here
        self.percent, self.done, self.total, self.unit = percent, done, total, unit

    def elapsed(self) -> float:
        return 0.0 if self._start is None else self._clock() - self._start[0]

    def rate_text(self) -> str:
        """Units per second (per minute when slow), or '' before a count has run for any time."""
        if self._count_start is None or self.done is None:
            return ""
        elapsed = self._clock() - self._count_start[0]
        if elapsed <= 0:
            return ""
        rate = (self.done - self._count_start[1]) / elapsed
        if self.unit == "B":
            return f"{rate / 1e6:.1f} MB/s"
        unit = self.unit or "items"
        return f"{rate:.2f} {unit}/s" if rate >= 0.1 else f"{rate * 60:.2f} {unit}/min"

    def eta_seconds(self) -> float | None:
        """Seconds left at the average pace so far (None until some progress was made)."""
        if self._start is None:
            return None
        gained = self.percent - self._start[1]
        elapsed = self.elapsed()
        if gained <= 0 or elapsed <= 0:
            return None
        return elapsed * (100.0 - self.percent) / gained

    def stats(self) -> str:
        """The parts known so far, as in ``3/8, 0.52 chunk/s, ETA 0:00:10``."""
        parts = []
        if self.done is not None and self.total is not None:
            parts.append(f"{_quantity(self.done, self.unit)}/{_quantity(self.total, self.unit)}")
        rate = self.rate_text()
        if rate:
            parts.append(rate)
        eta = self.eta_seconds()
        parts.append(f"ETA {_duration(eta)}" if eta is not None else "ETA ?")
        return ", ".join(parts)


class Reporter:
    """Sink for progress, log lines and the final result of one CLI command."""

    def __init__(
        self,
        mode: str = "text",
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        interval: float = LOG_INTERVAL_S,
    ):
        if mode not in ("text", "json", "quiet"):
            raise ValueError(f"unknown progress mode {mode!r}")
        self.mode = mode
        self._out = stdout or sys.stdout
        self._err = stderr or sys.stderr
        self._tty = bool(getattr(self._err, "isatty", lambda: False)())
        self._clock = clock
        self._interval = interval
        self._rate = RateTracker(clock)
        self._last_line: float | None = None  # when the last plain progress line was written (not a terminal)
        self._bar: Any = None  # the rich Progress on a terminal, started at the first report
        self._task: Any = None

    def _emit(self, obj: dict[str, Any]) -> None:
        self._out.write(json.dumps(obj, default=str) + "\n")
        self._out.flush()

    def progress(
        self,
        percent: float,
        message: str = "",
        *,
        done: float | None = None,
        total: float | None = None,
        unit: str = "",
    ) -> None:
        """Report overall progress in percent (0-100) of the current command (and honour a pending cancel).

        ``done``/``total`` (in ``unit``; "B" shows megabytes) give the rate; without them a count in the
        message ("chunk 3/8") is used. The JSON line QGIS reads is unchanged by them.
        """
        raise_if_cancelled()
        percent = float(max(0.0, min(100.0, percent)))
        if self.mode == "json":
            self._emit({"type": "progress", "percent": round(percent, 2), "message": message})
            return
        if self.mode != "text":
            return
        self._rate.update(percent, message, done, total, unit)
        if self._tty:
            self._draw(percent, message)
            return
        now = self._clock()
        if self._last_line is None:
            self._last_line = now  # the first line comes one interval in: short commands stay silent
        elif now - self._last_line >= self._interval:
            self._last_line = now
            self._err.write(f"[{percent:5.1f}%] {message} ({self._rate.stats()})\n")
            self._err.flush()

    def _draw(self, percent: float, message: str) -> None:
        """The rich bar on a terminal: description, bar, percent, count, rate and time left."""
        if self._bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn

            console = Console(file=self._err)
            self._bar = Progress(
                TextColumn("{task.description}", style="bold"),
                BarColumn(),
                TextColumn("{task.percentage:>5.1f}%"),
                TextColumn("{task.fields[stats]}"),
                console=console,
                transient=True,
            )
            self._task = self._bar.add_task("", total=100.0, stats="")
            self._bar.start()
        self._bar.update(self._task, completed=percent, description=message[:50], stats=self._rate.stats())

    def close(self) -> None:
        """Take the terminal bar down (before the result or an error is printed, and at exit)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def log(self, message: str, level: str = "info") -> None:
        """A line a user may want to read (what is being done, what was skipped and why)."""
        if self.mode == "json":
            self._emit({"type": "log", "level": level, "message": message})
        elif self.mode == "text" and (self._tty or level == "warning"):
            prefix = "warning: " if level == "warning" else ""
            if self._bar is not None:  # printed above the bar, which stays at the bottom
                self._bar.console.print(f"{prefix}{message}", markup=False, highlight=False, soft_wrap=True)
                return
            self._err.write(f"{prefix}{message}\n")
            self._err.flush()

    def result(self, outputs: dict[str, Any], summary: str = "") -> None:
        """The command's outputs (paths, counts) and a one-line summary."""
        self.close()
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
        self.close()
        if self.mode == "json":
            self._emit({"type": "error", "error": type(exc).__name__, "message": str(exc), "exit_code": exit_code})
        self._err.write(f"marsice: error: {exc}\n")
        self._err.flush()
