"""Height fields (metres) at the image's ground scale, with the shading landforms the paper names.

Grid convention everywhere in :mod:`marsice_plugin.synthetic`: row 0 is the northern edge (rows
increase southward), column 0 the western edge, like a north-up map-projected RDR.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Boulder:
    """A boulder: centre (row, col in pixels), radius and height in metres."""

    row: float
    col: float
    radius_m: float
    height_m: float


@dataclass(frozen=True)
class Crater:
    """A small simple crater: centre (row, col in pixels), rim radius and depth in metres."""

    row: float
    col: float
    radius_m: float
    depth_m: float


def low_frequency_relief(
    rng: np.random.Generator, shape: tuple[int, int], scale_m: float, amplitude_m: float, centred: bool = False
) -> np.ndarray:
    """Smooth rolling relief: Gaussian-filtered noise with a ~100 m correlation length.

    ``centred`` removes the field's mean before it is scaled to ``amplitude_m``. Without it (the renderer the frozen
    sets were made with) a grid only a few correlation lengths wide filters to a nearly constant field, and scaling
    its small spread up scales that constant too: offsets of hundreds of amplitudes, harmless for heights (only slopes
    are seen) but fatal for an albedo made from it, which is then clipped flat.
    """
    from scipy import ndimage

    sigma_px = max(2.0, 100.0 / scale_m)
    coarse = max(1, int(sigma_px // 8))
    small = rng.standard_normal((shape[0] // coarse + 2, shape[1] // coarse + 2)).astype(np.float32)
    small = ndimage.gaussian_filter(small, sigma_px / coarse, mode="wrap")
    if centred:
        small -= small.mean()
    small *= amplitude_m / max(1e-6, float(small.std()))
    field = ndimage.zoom(small, coarse, order=1)[: shape[0], : shape[1]]
    return np.ascontiguousarray(field, dtype=np.float32)


def _around(
    shape: tuple[int, ...], row: float, col: float, reach: float, radius_m: float, scale_m: float
) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """The window of a grid of ``shape`` within ``reach`` pixels of (``row``, ``col``), and each of its pixels'
    distance from that centre in units of ``radius_m``; None when the window falls off the grid.

    Craters and boulders are drawn in this window only: a full-grid distance per feature would cost the
    whole scene's size for each of hundreds of features.
    """
    r0, r1 = int(max(0, row - reach)), int(min(shape[0], row + reach + 1))
    c0, c1 = int(max(0, col - reach)), int(min(shape[1], col + reach + 1))
    if r0 >= r1 or c0 >= c1:
        return None
    rr, cc = np.mgrid[r0:r1, c0:c1]
    return (slice(r0, r1), slice(c0, c1)), np.hypot(rr - row, cc - col) * scale_m / radius_m


def add_craters(height: np.ndarray, craters: list[Crater], scale_m: float) -> None:
    """Add bowl-shaped craters with raised rims (rim height ~ depth / 4, ejecta decaying outward)."""
    for c in craters:
        around = _around(height.shape, c.row, c.col, c.radius_m * 2.0 / scale_m, c.radius_m, scale_m)
        if around is None:
            continue
        window, r = around
        rim = c.depth_m / 4.0
        inside = c.depth_m * (r**2 - 1.0) + rim
        outside = rim * np.exp(-(((r - 1.0) / 0.35) ** 2))
        height[window] += np.where(r < 1.0, inside, outside).astype(np.float32)


def add_boulders(height: np.ndarray, boulders: list[Boulder], scale_m: float) -> None:
    """Add boulders as half-ellipsoids: height * sqrt(1 - (r/R)^2) inside their radius."""
    for b in boulders:
        around = _around(height.shape, b.row, b.col, b.radius_m / scale_m + 1, b.radius_m, scale_m)
        if around is None:
            continue
        window, r = around
        bump = b.height_m * np.sqrt(np.clip(1.0 - r**2, 0.0, None))
        region = height[window]
        np.maximum(region, region.mean() + bump.astype(np.float32), out=region, where=bump > 0)


def add_polygon_troughs(
    height: np.ndarray,
    rng: np.random.Generator,
    scale_m: float,
    cell_m: float = 15.0,
    depth_m: float = 0.8,
    half_width_m: float = 1.5,
    variation: float = 0.0,
    variation_rng: np.random.Generator | None = None,
) -> None:
    """Polygonal cracks: V-shaped troughs along the edges of a random Voronoi tessellation.

    With ``variation`` v > 0 each Voronoi seed also gets a width and a depth factor in 1 ± v (drawn from
    ``variation_rng``, else from ``rng`` after the seeds) and a trough takes the mean of its two cells' factors,
    so the edges of one polygon differ as real cracks of different ages do; v = 0 draws nothing more and gives
    every trough the same section.
    """
    from scipy.spatial import cKDTree

    rows, cols = height.shape
    n = max(4, int(rows * cols * scale_m**2 / cell_m**2))
    seeds = rng.uniform([0, 0], [rows, cols], size=(n, 2))
    tree = cKDTree(seeds)
    rr, cc = np.mgrid[0:rows, 0:cols]
    dist, idx = tree.query(np.column_stack([rr.ravel(), cc.ravel()]), k=2)
    gap_m = (dist[:, 1] - dist[:, 0]).reshape(rows, cols) * scale_m / 2.0
    if variation > 0:
        width_f, depth_f = 1.0 + variation * (variation_rng or rng).uniform(-1.0, 1.0, (2, n))
        pair = idx.reshape(rows, cols, 2)
        half = half_width_m * 0.5 * (width_f[pair[..., 0]] + width_f[pair[..., 1]])
        depth = depth_m * 0.5 * (depth_f[pair[..., 0]] + depth_f[pair[..., 1]])
        height -= (depth * np.clip(1.0 - gap_m / half, 0.0, None)).astype(np.float32)
        return
    half_width = half_width_m
    height -= (depth_m * np.clip(1.0 - gap_m / half_width, 0.0, None)).astype(np.float32)


def random_boulders(
    rng: np.random.Generator, shape: tuple[int, int], scale_m: float, count: int, clustered: bool = True
) -> list[Boulder]:
    """Boulders 0.5-5 m across (power-law sizes, as in stone fields), optionally in clusters."""
    rows, cols = shape
    diam = np.clip(0.5 * (1.0 - rng.random(count)) ** (-1.0 / 1.8), 0.5, 5.0)
    if clustered and count > 20:
        centres = rng.uniform([0, 0], [rows, cols], size=(max(1, count // 60), 2))
        pick = centres[rng.integers(0, len(centres), count)]
        pos = pick + rng.normal(0, 40.0 / scale_m, size=(count, 2))
    else:
        pos = rng.uniform([0, 0], [rows, cols], size=(count, 2))
    return [
        Boulder(float(r), float(c), float(d / 2), float(d * rng.uniform(0.35, 0.6)))
        for (r, c), d in zip(pos, diam, strict=True)
        if 0 <= r < rows and 0 <= c < cols
    ]


def random_craters(rng: np.random.Generator, shape: tuple[int, int], scale_m: float, count: int) -> list[Crater]:
    """Small fresh-ish craters 10-80 m across with depth/diameter 0.1-0.2."""
    rows, cols = shape
    out = []
    for _ in range(count):
        d = float(np.clip(10.0 * (1.0 - rng.random()) ** (-1.0 / 1.5), 10.0, 80.0))
        out.append(
            Crater(float(rng.uniform(0, rows)), float(rng.uniform(0, cols)), d / 2, d * float(rng.uniform(0.1, 0.2)))
        )
    return out
