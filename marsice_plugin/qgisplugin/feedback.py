"""Which of a command's progress texts and log lines reach QGIS's log: a few per stage, not one per item.

QGIS's Processing dialog appends every progress text to its log pane, so a command that reports
"site 17/80" per site writes a line per site (``site_history`` on a demo: 184 lines), and the lines a
user needs (warnings, the result) scroll out of sight. The progress bar still gets every percent; the
texts and info lines go through :class:`FeedbackThrottle`, which keeps a few per stage and says how many
it held back. Plain Python (no ``qgis`` import) so the rules are tested without QGIS.

A *stage* is a message with its numbers taken out (up to its count, if it has one): "site 3/80" and "site
4/80" are one stage, "plot 3/80" the next, and a scan's "3/8 products; <id> committed" and "4/8 products;
<id> failed" one. A counted stage ("i/n") shows evenly spaced items from its first to its last.
"""

from __future__ import annotations

import re

#: Lines kept per stage (progress texts) and per kind of log line (a message with its numbers taken out).
LINES_PER_STAGE = 4

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_COUNT = re.compile(r"(\d+)/(\d+)")


def stage_of(message: str) -> str:
    """The message with its numbers replaced: the same for every item of one stage."""
    return _NUMBER.sub("#", message)


class FeedbackThrottle:
    """Decides which progress texts and log lines to show; every method returns the lines to push.

    Each returned line is ``(kind, text)`` with kind ``"progress"`` (a progress text), ``"info"``,
    ``"warning"`` or ``"debug"``. Log lines of one kind (warnings too) are capped per kind, and the
    run ends with a line counting what was held back, so nothing disappears without a trace.
    """

    def __init__(self, lines_per_stage: int = LINES_PER_STAGE):
        self.lines = max(2, lines_per_stage)
        self._stage = ""
        self._shown_in_stage = 0
        self._bucket = -1
        self._held: dict[tuple[str, str], int] = {}  # (level, stage) -> lines held back
        self._shown: dict[tuple[str, str], int] = {}

    def progress(self, message: str) -> list[tuple[str, str]]:
        """The progress text to show for this event, if any."""
        if not message:
            return []
        count = _COUNT.search(message)
        stage = stage_of(message[: count.end()] if count else message)  # a count's item text may vary
        if stage != self._stage:
            self._stage, self._shown_in_stage, self._bucket = stage, 0, -1
        if count:  # first, last and evenly spaced items: bucket k of lines-1 is reached at k/(lines-1) of n
            done, total = int(count.group(1)), max(1, int(count.group(2)))
            bucket = min(self.lines - 1, (done * (self.lines - 1)) // total)
            if bucket <= self._bucket:
                return []
            self._bucket = bucket
            return [("progress", message)]
        if self._shown_in_stage >= self.lines:
            return []
        self._shown_in_stage += 1
        return [("progress", message)]

    def log(self, level: str, message: str) -> list[tuple[str, str]]:
        """The log line to show, if fewer than ``lines`` of its kind were shown already."""
        key = (level, stage_of(message))
        shown = self._shown.get(key, 0)
        if shown < self.lines:
            self._shown[key] = shown + 1
            return [(level, message)]
        self._held[key] = self._held.get(key, 0) + 1
        return []

    def finish(self) -> list[tuple[str, str]]:
        """One line per kind of log line held back, at the end of the run (progress texts need none)."""
        out = [
            (level, f"({count} more {level} lines like '{stage}' not shown)")
            for (level, stage), count in self._held.items()
        ]
        self._held.clear()
        return out
