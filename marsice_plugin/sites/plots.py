"""One PNG per site: CNN probability against Ls, one series per Mars Year.

Filled markers: the patch was outlined (a candidate in the site); open markers: processed, not outlined (the
probability is then that of the product's chunks over the site); crosses over a marker: dusty or low-contrast
observation (absence there is not melt); ticks along the bottom: catalogue observations not processed yet. The
dashed line is the detection threshold the results were made with.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..outputs import publish
from .observations import Observation


def _pyplot():
    import warnings

    # Debian's mpl_toolkits (visible through --system-site-packages) does not match pip's matplotlib;
    # only its 3-D axes are affected, which MarsIce never uses.
    warnings.filterwarnings("ignore", message="Unable to import Axes3D")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_site(site_id: str, rows: list[Observation], path: Path, threshold: float = 0.6) -> Path:
    """Write the site's probability-against-Ls plot to ``path`` (atomically); returns the path."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    try:
        years = sorted({r.mars_year for r in rows if r.processed}, key=lambda y: (y is None, y or 0))
        colours = plt.get_cmap("tab10")
        for k, year in enumerate(years):
            series = [r for r in rows if r.processed and r.mars_year == year and r.ls is not None]
            if not series:
                continue
            colour = colours(k % 10)
            xs = [r.ls for r in series]
            ys = [r.probability if r.probability is not None else 0.0 for r in series]
            label = f"MY {year}" if year is not None else "Mars Year unknown"
            ax.plot(xs, ys, "-", color=colour, alpha=0.6, label=label)
            for r, x, y in zip(series, xs, ys, strict=True):
                ax.plot(x, y, "o", color=colour, markerfacecolor=colour if r.detected else "white", markersize=7)
                if r.dusty or r.low_contrast:
                    ax.plot(x, y, "x", color="black", markersize=9)
        missing = [r.ls for r in rows if not r.processed and r.ls is not None]
        if missing:
            ax.plot(missing, [0.02] * len(missing), "|", color="grey", markersize=14, label="not yet processed")
        ax.axhline(threshold, color="grey", linestyle="--", linewidth=1)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("solar longitude Ls (°)")
        ax.set_ylabel("CNN probability")
        ax.set_title(f"{site_id}: filled = outlined, x = dusty / low contrast", fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
        os.close(fd)
        try:
            fig.savefig(tmp, format="png")
            publish(tmp, path)  # mkstemp's file is 0600: the plot gets a plain new file's mode
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    finally:
        plt.close(fig)
    return path
