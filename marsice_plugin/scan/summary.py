"""The final table of a scan: products by the paper's image categories, candidates, failures.

Built from the manifest, not from this run's outcomes, so a resumed scan reports the whole scan (the
products an earlier run committed included), which is what a user resuming wants to read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from .manifest import ProductState

#: The paper's image-level categories: no chunk, exactly one, or several at or above the threshold.
CATEGORIES = ("none", "one", "several")


@dataclass
class ScanSummary:
    """Counts over the products of one scan."""

    products: int = 0
    committed: int = 0
    failed: int = 0
    pending: int = 0
    categories: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0))
    candidates: int = 0
    chunks: int = 0
    chunks_above: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def from_states(cls, states: Sequence[ProductState]) -> ScanSummary:
        s = cls(products=len(states))
        counts = Counter(st.category for st in states if st.state == "committed")
        for st in states:
            if st.state == "committed":
                s.committed += 1
                s.candidates += st.candidates or 0
                s.chunks += st.chunks or 0
                s.chunks_above += st.chunks_above or 0
            elif st.state == "failed":
                s.failed += 1
                s.failures.append((st.product_id, st.error or "unknown error"))
            else:
                s.pending += 1
        s.categories = {c: counts.get(c, 0) for c in CATEGORIES}
        return s

    def table(self, max_failures: int = 20) -> str:
        rows = [
            ("products in the scan", self.products),
            ("committed", self.committed),
            ("  category none (no chunk above the threshold)", self.categories["none"]),
            ("  category one (exactly one chunk)", self.categories["one"]),
            ("  category several (two or more chunks)", self.categories["several"]),
            ("chunks scored or skipped", self.chunks),
            ("chunks at or above the threshold", self.chunks_above),
            ("ice candidates", self.candidates),
            ("failed", self.failed),
        ]
        if self.pending:
            rows.append(("not finished (resume with the same command)", self.pending))
        width = max(len(name) for name, _ in rows)
        lines = [f"{name:<{width}}  {value:>7}" for name, value in rows]
        for pid, error in self.failures[:max_failures]:
            lines.append(f"  failed {pid}: {error}")
        if len(self.failures) > max_failures:
            lines.append(f"  ... and {len(self.failures) - max_failures} more failures (see the manifest)")
        return "\n".join(lines)
