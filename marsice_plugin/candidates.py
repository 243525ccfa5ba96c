"""Ice candidates: outlines of bright patches inside the areas the CNN flags.

The CNN scores whole chunks; a geologist needs the patches. Inside every chunk at or above the
threshold (read with a margin of ``margin_px`` so a patch cut by the chunk edge is seen whole), a patch
is a connected group of pixels brighter than their local background:

1. Special values and isolated hot pixels are repaired first (:mod:`marsice_plugin.anomalies`), so a
   single saturated pixel never becomes a candidate.
2. Local background: median over ``background_m`` metres, computed on an 8× block-averaged copy and
   interpolated back bilinearly (the background varies over tens of metres, so this costs ~1% of its
   value, measured, and is 7× faster than a median on the 4× copy, which dominated scans of small products).
3. Seeds: pixels at least ``min_contrast`` (relative, 50 %) above the background, in groups of at least
   ``min_area_m2``; 25 % (:data:`SMALL_PATCH_CONTRAST`) when every chunk is searched: faint small patches lie
   30-50 % over their background and were never outlined; there the second stage, not the seed threshold, keeps
   the list short (README, *Second stage*).
4. Each seed grows to its half-maximum outline: the connected pixels whose relative brightness is at
   least half of the seed's peak (the 90th percentile of its contrast). For a patch with diffuse edges
   this is where its opacity is one half, the same rule the scene renderer's truth uses.
5. Outlines from all flagged chunks are merged (one patch is one polygon, never split at a chunk
   edge; but parts of a patch that meet only at a pixel's corner are outlined apart, as GDAL polygonises 4-connected
   regions, unless ``join_diagonals``), simplified to half a pixel, and measured on the product's own sphere.
   Window after window: a group of pieces is merged, measured and handed on as soon as no later window can touch it
   (:func:`outline_stream`), so a real-size product never holds all its pieces at once. Long thin shapes
   (minimum rotated rectangle longer than ``max_elongation`` times its width: sunlit trough walls and
   ridges), patches under ``min_area_m2`` (sunlit boulder faces) and, optionally, shapes of low
   isoperimetric compactness 4πA/P² (``min_compactness``, off by default: measured on generated scenes
   it drops real patches that touch other bright ground) are dropped.

A candidate is a *bright patch consistent with remnant ice*: grey images cannot tell water ice from
CO₂ frost, and bright dust looks alike too (the terrain ranking addresses that).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .anomalies import repair
from .grid import Window
from .product import nodata_mask, special_mask

if TYPE_CHECKING:  # pragma: no cover
    import shapely

    from .product import Product
    from .stitching import ProbabilityRaster

DESCRIPTION = "bright patch consistent with remnant ice (grey images cannot tell water ice from CO2 frost)"


@dataclass(frozen=True)
class CandidateOptions:
    """Parameters of the patch delineation."""

    threshold: float = 0.6
    margin_px: int = 128
    background_m: float = 40.0
    min_contrast: float = 0.5
    min_area_m2: float = 2.0
    max_area_m2: float = 20_000.0
    min_compactness: float = 0.0
    max_elongation: float = 3.0
    #: True: one outline per 8-connected patch (:func:`bridge_diagonals`). False (default): GDAL's 4-connected
    #: polygons, which cut a patch where its pixels meet only at a corner. Joining was judged on tuning products by a
    #: rule fixed before its run (bench/small_patches.py) and not adopted: the same patches found, fewer outlines
    #: and faster, but every-chunk search's polygon precision fell 0.742 -> 0.705 (the rule allowed 0.02); a
    #: rendered member retrained on joined outlines was worse on them than the shipped one (2026-12-08, its card)
    join_diagonals: bool = False


@dataclass
class Candidate:
    """One merged patch outline (product CRS) with its measurements."""

    geometry: shapely.Polygon
    area_m2: float
    max_probability: float
    mean_probability: float
    peak_contrast: float
    centroid_lon: float
    centroid_lat: float
    #: the second stage's (marsice_plugin.patches): its ice probability, the first stage's and the rank; None before
    probability: float | None = None
    chunk_probability: float | None = None
    rank: float | None = None


def _background(data: np.ndarray, scale_m: float, background_m: float) -> np.ndarray:
    from scipy import ndimage

    f = 8
    h, w = data.shape
    ph, pw = -h % f, -w % f
    padded = np.pad(data, ((0, ph), (0, pw)), mode="edge")
    small = padded.reshape(padded.shape[0] // f, f, padded.shape[1] // f, f).mean(axis=(1, 3))
    size = max(3, int(background_m / (scale_m * f)) | 1)
    bg = ndimage.median_filter(small, size=size, mode="reflect")
    full = ndimage.zoom(bg, f, order=1, mode="nearest", grid_mode=True)[:h, :w]
    return np.maximum(full, 1e-6)


def percentile_by_label(values: np.ndarray, labels: np.ndarray, index: np.ndarray, q: float) -> np.ndarray:
    """``np.percentile(values[labels == i], q)`` for every label ``i`` of ``index`` (each present), in one sort.

    The same numbers as NumPy's own (its linear method, its rounding: the neighbours' difference in the values'
    dtype, the interpolation in float64), without a call per label: a search tile holds about 10^4 seed groups.
    """
    index = np.asarray(index, dtype=np.int64)
    if not len(index):
        return np.empty(0)
    inside = labels > 0
    v, lab = values[inside], labels[inside]
    order = np.lexsort((v, lab))
    v = v[order]
    counts = np.bincount(lab, minlength=int(index.max()) + 1)
    starts = np.cumsum(counts) - counts
    n = counts[index]
    virtual = (n - 1) * (q / 100.0)
    below = np.floor(virtual).astype(np.int64)
    a, b = v[starts[index] + below], v[starts[index] + np.minimum(below + 1, n - 1)]
    t = virtual - below
    diff = b - a
    return np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)


def bridge_diagonals(labels: np.ndarray) -> np.ndarray:
    """``labels`` with one pixel added at every corner-only link, so each 8-connected label is 4-connected.

    A patch is 8-connected (:func:`patch_mask`), but GDAL polygonises 4-connected regions: a patch whose pixels meet
    only at a corner came out as several polygons, each merged, measured and judged on its own, the small ones
    dropped under ``min_area_m2`` (on a 2304 px tile of a real-size mosaic, 2,023 of 5,518 patches). An 8-connected
    polygon is no way out: its ring touches itself at the corner, which is not a valid polygon. So each corner-only
    link of two pixels of a label gets one of the two empty pixels of its 2 × 2 block, labelled like them: one pixel
    of ground per link. The upper one is taken, else the lower one, whichever touches no other label, not even at a
    corner (a label that touched another would share its peak when touching outlines merge); where both would, the
    link stays cut (rare: where labels crowd each other, 0.8 % of the links of a random mask at 10 % cover, 1.4 % at
    30 %).
    """
    h, w = labels.shape
    out = labels.copy()
    a, b, c, d = labels[:-1, :-1], labels[:-1, 1:], labels[1:, :-1], labels[1:, 1:]
    falling = (a > 0) & (d > 0) & (b == 0) & (c == 0)  # upper-left and lower-right meet at a corner
    rising = (b > 0) & (c > 0) & (a == 0) & (d == 0)  # upper-right and lower-left
    rows, cols = np.nonzero(falling | rising)
    value = np.where(falling[rows, cols], a[rows, cols], b[rows, cols])
    # each link's two choices (row, column of its block's empty pixel): upper first, lower second
    upper_col = np.where(falling[rows, cols], cols + 1, cols)
    lower_col = np.where(falling[rows, cols], cols, cols + 1)
    choices = ((rows, upper_col), (rows + 1, lower_col))

    def clashes(r: np.ndarray, col: np.ndarray, k: np.ndarray, grid: np.ndarray) -> np.ndarray:
        bad = np.zeros(len(r), bool)
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                rr, cc = r + dr, col + dc
                inside = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
                n = np.zeros(len(r), grid.dtype)
                n[inside] = grid[rr[inside], cc[inside]]
                bad |= (n > 0) & (n != k)
        return bad

    pending = np.ones(len(rows), bool)
    for r, col in choices:
        free = pending & ~clashes(r, col, value, labels)
        out[r[free], col[free]] = value[free]
        pending &= ~free
    # two links' new pixels of different labels may meet each other: such pixels are taken out again (a choice is
    # always an empty pixel of ``labels``, so holding its link's label there means the link placed it)
    for r, col in choices:
        undo = (out[r, col] == value) & clashes(r, col, value, out)
        out[r[undo], col[undo]] = 0
    return out


def patch_mask(
    data: np.ndarray, valid: np.ndarray, scale_m: float, options: CandidateOptions
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean mask of delineated patches in a (repaired) window, and the relative-contrast image."""
    from scipy import ndimage

    rel = data / _background(data, scale_m, options.background_m) - 1.0
    rel[~valid] = 0.0
    seeds = rel >= options.min_contrast
    labels, count = ndimage.label(seeds, structure=np.ones((3, 3), bool))
    out = np.zeros(data.shape, dtype=bool)
    if count == 0:
        return out, rel
    min_px = max(1, int(options.min_area_m2 / scale_m**2))
    max_px = int(options.max_area_m2 / scale_m**2)
    objects = ndimage.find_objects(labels)
    grow = int(max(2, 3.0 / scale_m))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    peaks = percentile_by_label(rel, labels, np.arange(1, count + 1), 90)
    for index, box in enumerate(objects, start=1):
        if box is None or sizes[index] < min_px or sizes[index] > max_px:
            continue
        peak = float(peaks[index - 1])
        r0, r1 = max(0, box[0].start - grow), min(data.shape[0], box[0].stop + grow)
        c0, c1 = max(0, box[1].start - grow), min(data.shape[1], box[1].stop + grow)
        local = (rel[r0:r1, c0:c1] >= 0.5 * peak) & valid[r0:r1, c0:c1]
        local_labels, n_local = ndimage.label(local, structure=np.ones((3, 3), bool))
        seed_local = labels[r0:r1, c0:c1] == index
        grown = np.zeros(n_local + 1, bool)  # the local groups that hold seed pixels
        grown[local_labels[seed_local & local]] = True
        grown[0] = False
        out[r0:r1, c0:c1] |= grown[local_labels]
    return out, rel


#: Seed contrast of every-chunk search (``--search all``), which looks for the small patches the chunk CNN misses:
#: chosen among 0.5, 0.35 and 0.25 on tuning products (bench/small_patches.py: patch recall 36 -> 38 of 43, polygon
#: precision 0.72 -> 0.79). Flagged search keeps 0.5: there it gained one patch of 43 and would change every output.
SMALL_PATCH_CONTRAST = 0.25

#: Side (pixels) of the tiles every-chunk search (``--search all``) reads: one tile instead of each overlapping chunk
#: window, so each pixel is read, repaired and filtered about once, not three or four times (README, *Second stage*).
SEARCH_TILE = 2048


def search_windows(product: Product, scored: list[Window], tile: int = SEARCH_TILE) -> list[Window]:
    """Tiles of ``tile`` pixels covering the product, those that meet a scored chunk window (``--search all``).

    The patches are those found chunk by chunk (each tile is read with the same margin, and outlines merge across
    tile borders as across chunk borders; an edge may move by a pixel where the background's 8-pixel blocks fall
    differently); the cost is what changes: on 2048 x 2048 products one read instead of nine overlapping ones.
    """
    out = []
    for r in range(0, product.height, tile):
        for c in range(0, product.width, tile):
            h, w = min(tile, product.height - r), min(tile, product.width - c)
            if any(
                s.row_off < r + h and r < s.row_off + s.height and s.col_off < c + w and c < s.col_off + s.width
                for s in scored
            ):
                out.append(Window(c, r, w, h))
    return out


def delineate(
    product: Product, windows: list[Window], probability: ProbabilityRaster, options: CandidateOptions
) -> list[Candidate]:
    """Outline bright patches in the given chunk windows and merge them across chunk borders.

    Every outline in one list, in the order of :func:`outline_stream`'s keys (the order of one merge of every
    piece). For a whole real-size product use the stream itself: this list holds all of them at once.
    """
    found = [pair for _, block in outline_stream(product, windows, probability, options) for pair in block]
    return [c for _, c in sorted(found, key=lambda pair: pair[0])]


def outline_stream(
    product: Product, windows: list[Window], probability: ProbabilityRaster, options: CandidateOptions
) -> Iterator[tuple[int, list[tuple[tuple[int, int], Candidate]]]]:
    """Outline window after window, yielding ``(windows done, [(key, candidate), ...])`` as outlines become final.

    Why a stream: every-chunk search on a real-size product outlines about 10^5 patches from millions of pieces;
    held together with their merge they took 7.5 GB (README, *Second stage*). An outline is final once no later
    window can touch it: pieces of a window lie inside its read (the window and ``margin_px``), so a group of
    touching pieces ending above every later read's top row is merged, measured and handed on, and the caller may
    score it and drop it. Windows in row order (as chunks and search tiles come) keep only about one band of
    pieces pending. ``key`` (first piece's number, part) sorts the candidates into the order of one merge of every
    piece, so the outlines, their measurements and their order are those of :func:`delineate`.
    """
    import shapely

    extents = [_read_extent(product, w, options.margin_px) for w in windows]
    tops = np.array([e[0] for e in extents] + [product.height + 2])  # after the last: none
    later_top = np.minimum.accumulate(tops[::-1])[::-1][1:].tolist()  # the highest top row of the reads after each
    pieces: list[Any] = []  # pending pieces, their peak contrast and their number in read order
    peaks: list[float] = []
    numbers: list[int] = []
    count = 0
    last_final = -1
    inv = ~product.transform
    for i in range(len(windows)):
        for poly, peak in _window_pieces(product, extents[i], _shared_area(extents, i), options):
            pieces.append(poly)
            peaks.append(peak)
            numbers.append(count)
            count += 1
        done: list[tuple[tuple[int, int], Candidate]] = []
        if pieces and (later_top[i] > last_final or i == len(windows) - 1):
            last_final = later_top[i]
            tree = shapely.STRtree(pieces)
            keep: list[int] = []
            final: list[list[int]] = []
            bounds = shapely.bounds(pieces)
            lowest = np.maximum(*((inv @ (bounds[:, 0], bounds[:, j]))[1] for j in (1, 3)))  # each piece's last row
            for group in touching_groups(pieces, tree):
                if lowest[group].max() >= later_top[i] - 1:  # a later window's pieces may still touch it
                    keep.extend(group)
                else:
                    final.append(group)
            done.extend(_final_groups(product, probability, options, final, pieces, peaks, numbers))
            pieces, peaks, numbers = [pieces[k] for k in keep], [peaks[k] for k in keep], [numbers[k] for k in keep]
        yield i + 1, done


#: A measured area never exceeds the convex hull of the unsimplified outline (simplifying keeps a subset of its
#: vertices) times the sphere's area over the map's, which this bounds with a wide margin; outlines under
#: ``min_area_m2`` by this bound are dropped before they are measured (97 % of every-chunk search's pieces are
#: specks of a few pixels, and measuring each cost a millisecond).
AREA_BOUND = 2.0


def _read_extent(product: Product, w: Window, margin: int) -> tuple[int, int, int, int]:
    """(r0, c0, r1, c1): the pixels read for a window, with its margin, clipped to the product."""
    r0, c0 = max(0, w.row_off - margin), max(0, w.col_off - margin)
    r1, c1 = min(product.height, w.row_off + w.height + margin), min(product.width, w.col_off + w.width + margin)
    return r0, c0, r1, c1


def _shared_area(extents: list[tuple[int, int, int, int]], i: int) -> np.ndarray:
    """Pixels of read ``i`` within two pixels of another window's read: pieces there may merge with that one's."""
    r0, c0, r1, c1 = extents[i]
    shared = np.zeros((r1 - r0, c1 - c0), bool)
    for j, (o0, p0, o1, p1) in enumerate(extents):
        if j != i and o0 - 2 < r1 and r0 < o1 + 2 and p0 - 2 < c1 and c0 < p1 + 2:
            shared[max(0, o0 - 2 - r0) : max(0, o1 + 2 - r0), max(0, p0 - 2 - c0) : max(0, p1 + 2 - c0)] = True
    return shared


def _window_pieces(
    product: Product, extent: tuple[int, int, int, int], shared: np.ndarray, options: CandidateOptions
) -> Iterator[tuple[Any, float]]:
    """The outline pieces of one window's read with the 90th percentile of their contrast.

    A patch whose pixels' bounding box is too small to ever reach ``min_area_m2`` (:data:`AREA_BOUND`) and that
    lies away from every other read (``shared``) can merge with nothing, so it would be measured and dropped:
    it is dropped here, before it is turned into polygons.
    """
    import shapely
    from rasterio import features
    from scipy import ndimage

    r0, c0, r1, c1 = extent
    data = product.read(r0, c0, r1 - r0, c1 - c0)
    nodata = nodata_mask(data, product.special_values)
    valid = ~(nodata | special_mask(data, product.special_values))
    fixed, _ = repair(data, valid, nodata=nodata)
    del data, valid  # a 2304 px tile's arrays are tens of MB each: only what is still needed stays
    mask, rel = patch_mask(fixed, ~nodata, product.scale_m, options)
    del fixed, nodata
    if not mask.any():
        return
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    boxes = ndimage.find_objects(labels)
    small_px = options.min_area_m2 / (AREA_BOUND * product.scale_m**2)
    speck = np.zeros(count + 1, bool)
    for index, box in enumerate(boxes, start=1):
        if (box[0].stop - box[0].start) * (box[1].stop - box[1].start) < small_px and not shared[box].any():
            speck[index] = True
    index = np.flatnonzero(~speck[1:]) + 1
    if not len(index):
        return
    peak_of = dict(zip(index.tolist(), percentile_by_label(rel, labels, index, 90).tolist(), strict=True))
    transform = Window(c0, r0, c1 - c0, r1 - r0).transform(product.transform)
    if options.join_diagonals:
        labels = bridge_diagonals(labels)
        mask = labels > 0
    shapes = features.shapes(labels.astype(np.int32, copy=False), mask=mask & ~speck[labels], transform=transform)
    # polygons built in bulk from the rings' vertices: the same polygons as one shapely.geometry.shape() each, in a
    # quarter of the time (a 2048 px tile of every-chunk search gives ~16,000 pieces)
    coords: list[Any] = []
    ring_of: list[int] = []
    polygon_of: list[int] = []
    values: list[float] = []
    for geom, value in shapes:  # never empty: some label is not a speck
        for ring in geom["coordinates"]:
            coords.extend(ring)
            ring_of.extend([len(polygon_of)] * len(ring))
            polygon_of.append(len(values))
        values.append(float(peak_of[int(value)]))
    del labels, rel, mask, shared  # freed before the caller merges and scores
    rings = shapely.linearrings(np.asarray(coords, float), indices=np.asarray(ring_of))
    yield from zip(shapely.polygons(rings, indices=np.asarray(polygon_of)).tolist(), values, strict=True)


#: Groups of up to this many touching pieces find each merged part's pieces by testing every pair (one array call);
#: larger ones query a tree, whose cost per part does not grow with the group.
GROUP_PAIRWISE = 64


def _final_groups(
    product: Product,
    probability: ProbabilityRaster,
    options: CandidateOptions,
    groups: list[list[int]],
    pieces: list[Any],
    peaks: list[float],
    numbers: list[int],
) -> list[tuple[tuple[int, int], Candidate]]:
    """The measured candidates of groups of touching pieces, each keyed by (its group's first piece's number, part).

    Pieces are merged group by group (most groups are one piece and need no merge); every part of every group is
    then measured in one :func:`_measure_many`, which costs far less per part than one call each.
    """
    import shapely

    keys: list[tuple[int, int]] = []
    parts: list[Any] = []
    part_peaks: list[float] = []
    for group in groups:
        if len(group) == 1:
            keys.append((numbers[group[0]], 0))
            parts.append(pieces[group[0]])
            part_peaks.append(peaks[group[0]])
            continue
        members = np.asarray([pieces[k] for k in group], dtype=object)
        group_parts = shapely.get_parts(shapely.union_all(members))
        group_peaks = np.asarray([peaks[k] for k in group])
        # a part's peak: the highest of the pieces it is made of (those it intersects); a pairwise test for the
        # usual handful of pieces, a tree for the rare large group
        if len(group_parts) == 1:
            part_max = [float(group_peaks.max())]
        elif len(members) <= GROUP_PAIRWISE:
            touching = shapely.intersects(group_parts[:, None], members[None, :])
            part_max = np.where(touching, group_peaks[None, :], -np.inf).max(axis=1).tolist()
        else:
            tree = shapely.STRtree(members)
            part_max = [float(group_peaks[tree.query(part, predicate="intersects")].max()) for part in group_parts]
        keys.extend((numbers[group[0]], j) for j in range(len(group_parts)))
        parts.extend(group_parts.tolist())
        part_peaks.extend(part_max)
    if not parts:
        return []
    geoms = np.asarray(parts, dtype=object)
    big = shapely.area(shapely.convex_hull(geoms)) * AREA_BOUND >= options.min_area_m2
    index = np.flatnonzero(big)
    measured = _measure_many(geoms[index], [part_peaks[i] for i in index], product, probability, options)
    return [(keys[i], cand) for i, cand in zip(index.tolist(), measured, strict=True) if cand is not None]


def _measure_many(
    polys: np.ndarray, peaks: list[float], product: Product, probability: ProbabilityRaster, options: CandidateOptions
) -> list[Candidate | None]:
    """Each outline simplified, tested and measured (None where a test drops it), all in a few array calls.

    Per outline: simplified to half a pixel; sampled on the probability raster's cells whose centres it holds (at
    its centroid when it holds none) and dropped under ``options.threshold``; dropped when elongated
    (:func:`_elongated_many`), under ``min_area_m2`` on the product's sphere or under ``min_compactness``. Why arrays:
    every-chunk search measures tens of thousands of outlines per 4096 px of product, and a call per outline and
    per step cost about a millisecond each, most of it call overhead.
    """
    import pyproj
    import shapely

    from .vectors import to_lonlat, transform_geometry

    n = len(polys)
    if n == 0:
        return []
    simple = shapely.simplify(polys, product.scale_m / 2, preserve_topology=True)
    inv = ~product.transform
    xy, ring = shapely.get_coordinates(shapely.get_exterior_ring(simple), return_index=True)
    cols, rows = inv @ (xy[:, 0], xy[:, 1])
    starts = np.searchsorted(ring, np.arange(n))
    r_lo = np.maximum(0, np.minimum.reduceat(rows, starts)).astype(int)
    r_hi = np.minimum(product.height, np.maximum.reduceat(rows, starts) + 1).astype(int)
    c_lo = np.maximum(0, np.minimum.reduceat(cols, starts)).astype(int)
    c_hi = np.minimum(product.width, np.maximum.reduceat(cols, starts) + 1).astype(int)
    cell = probability.cell
    # the raster cells of each outline's pixel box, row by row as np.mgrid lists them
    n_r = np.maximum(0, -(-(r_hi - r_lo) // cell))
    n_c = np.maximum(0, -(-(c_hi - c_lo) // cell))
    size = n_r * n_c
    offsets = np.cumsum(size) - size  # where each outline's cells start
    owner = np.repeat(np.arange(n), size)
    k = np.arange(owner.size) - np.repeat(offsets, size)
    rr = r_lo[owner] + (k // np.maximum(n_c[owner], 1)) * cell
    cc = c_lo[owner] + (k % np.maximum(n_c[owner], 1)) * cell
    px, py = product.transform @ (cc + 0.5, rr + 0.5)
    shapely.prepare(simple)
    inside = shapely.contains_xy(simple[owner], px, py)
    centroids = shapely.centroid(simple)
    cx, cy = shapely.get_x(centroids), shapely.get_y(centroids)
    c_col, c_row = inv @ (cx, cy)
    samples = np.full(owner.size, np.nan)
    samples[inside] = probability.sample(rr[inside], cc[inside])
    has_inside = np.zeros(n, bool)
    has_inside[owner[inside]] = True
    keep: list[tuple[int, np.ndarray]] = []
    for i in range(n):
        if has_inside[i]:
            s = slice(offsets[i], offsets[i] + size[i])
            probs = samples[s][inside[s]]
        else:
            probs = probability.sample(np.array([int(c_row[i])]), np.array([int(c_col[i])]))
        probs = probs[np.isfinite(probs)]
        if len(probs) and probs.max() >= options.threshold:
            keep.append((i, probs))
    if keep:  # sunlit trough walls and ridges: long thin strips, unlike a patch
        long = _elongated_many(simple[[i for i, _ in keep]], options.max_elongation)
        keep = [pair for pair, drop in zip(keep, long.tolist(), strict=True) if not drop]
    out: list[Candidate | None] = [None] * n
    if not keep:
        return out
    chosen = np.array([i for i, _ in keep])
    lonlat = transform_geometry(simple[chosen], product.crs)
    radius = product.crs.ellipsoid.semi_major_metre
    geod = pyproj.Geod(a=radius, b=radius)
    lon, lat = to_lonlat(product.crs, cx[chosen], cy[chosen])
    plane_area, length = shapely.area(simple[chosen]), shapely.length(simple[chosen])
    for j, (i, probs) in enumerate(keep):
        area = abs(geod.geometry_area_perimeter(lonlat[j])[0])
        if area < options.min_area_m2:
            continue
        compactness = 4 * np.pi * plane_area[j] / max(length[j], 1e-9) ** 2
        if compactness < options.min_compactness:  # sunlit trough walls and ridges are long and thin
            continue
        out[i] = Candidate(
            geometry=simple[i],
            area_m2=float(area),
            max_probability=float(probs.max()),
            mean_probability=float(probs.mean()),
            peak_contrast=float(peaks[i]),
            centroid_lon=float(lon[j]),
            centroid_lat=float(lat[j]),
        )
    return out


def _elongated_many(polys: np.ndarray, limit: float) -> np.ndarray:
    """Per polygon, whether its minimum rotated rectangle is more than ``limit`` times longer than wide.

    The rectangles on every convex-hull edge at once in numpy, hulls of the same vertex count together, as
    shapely's own (pure Python for GEOS < 3.12, 2 ms a polygon) builds them one by one; where that could decide
    otherwise (a ratio within 1e-6 of the limit, two edges' areas within 1e-9 with other ratios, a degenerate hull)
    shapely's rectangle decides, so the answer is always shapely's.
    """
    import shapely

    out = np.zeros(len(polys), bool)
    if not len(polys):
        return out
    hulls = shapely.convex_hull(polys)
    rings = np.where(shapely.get_type_id(hulls) == 3, shapely.get_exterior_ring(hulls), hulls)
    xy, owner = shapely.get_coordinates(rings, return_index=True)
    counts = np.bincount(owner, minlength=len(polys))
    starts = np.cumsum(counts) - counts
    decided = np.zeros(len(polys), bool)
    for m in np.unique(counts[counts >= 4]).tolist():  # hulls of m vertices (the first repeated last)
        which = np.flatnonzero(counts == m)
        ring = xy[starts[which, None] + np.arange(m)]  # (k, m, 2)
        d = np.diff(ring, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            u = d / np.sqrt(d[..., 0] ** 2 + d[..., 1] ** 2)[..., None]
            along = u[..., :1] * ring[:, None, :, 0] + u[..., 1:] * ring[:, None, :, 1]
            across = u[..., :1] * ring[:, None, :, 1] - u[..., 1:] * ring[:, None, :, 0]
            w, h = np.ptp(along, axis=2), np.ptp(across, axis=2)
            area, ratio = w * h, np.maximum(w, h) / np.minimum(w, h)
        finite = np.isfinite(ratio).all(axis=1) & np.isfinite(area).all(axis=1)
        k = np.argmin(np.where(np.isfinite(area), area, np.inf), axis=1)
        best_area = np.take_along_axis(area, k[:, None], axis=1)
        best_ratio = np.take_along_axis(ratio, k[:, None], axis=1)
        near = area <= best_area * (1 + 1e-9)
        tied = np.where(near, np.abs(ratio - best_ratio) <= 1e-9 * best_ratio, True).all(axis=1)
        clear = finite & tied & (np.abs(best_ratio[:, 0] - limit) > 1e-6 * limit)
        out[which[clear]] = best_ratio[clear, 0] > limit
        decided[which[clear]] = True
    for i in np.flatnonzero(~decided).tolist():
        box = np.asarray(polys[i].minimum_rotated_rectangle.exterior.coords)
        sides = np.hypot(*np.diff(box[:3], axis=0).T)
        out[i] = sides.min() <= 0 or sides.max() / sides.min() > limit
    return out


def touching_groups(pieces: list[Any], tree: Any) -> list[list[int]]:
    """Indices of ``pieces`` in groups that touch, each group in increasing order, groups by their first index."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(pieces)
    left, right = tree.query(pieces, predicate="intersects")
    graph = coo_matrix((np.ones(len(left), dtype=np.int8), (left, right)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    order = np.argsort(component, kind="stable")
    return [g.tolist() for g in np.split(order, np.flatnonzero(np.diff(component[order])) + 1)]
