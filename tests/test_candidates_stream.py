"""Streamed outlining and scoring (every-chunk search in bounded memory) give what one pass over all outlines gave."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import shapely

from marsice_plugin.candidates import (
    SMALL_PATCH_CONTRAST,
    Candidate,
    CandidateOptions,
    bridge_diagonals,
    delineate,
    outline_stream,
    patch_mask,
    search_windows,
    touching_groups,
)
from marsice_plugin.grid import ChunkGrid, Window
from marsice_plugin.product import open_product
from marsice_plugin.result_layers import ChunkScore
from marsice_plugin.stitching import stitch

RULE = CandidateOptions(threshold=0.0, min_contrast=SMALL_PATCH_CONTRAST)


def merge_touching(pieces: list, tree) -> list:
    """The union of ``pieces`` as separate polygons, one union per group of pieces that touch: the merge of every
    piece at once that outlining did before it streamed (the reference below)."""
    polygons: list = []
    for group in touching_groups(pieces, tree):
        merged = pieces[group[0]] if len(group) == 1 else shapely.union_all([pieces[i] for i in group])
        polygons.extend(getattr(merged, "geoms", [merged]))
    return polygons


def _measure(poly, product, probability, peak: float, options: CandidateOptions) -> Candidate | None:
    """One outline measured on its own, as outlining measured each before it measured them in arrays."""
    import pyproj
    import shapely

    from marsice_plugin.candidates import _elongated_many
    from marsice_plugin.vectors import to_lonlat, transform_geometry

    poly = poly.simplify(product.scale_m / 2, preserve_topology=True)
    inv = ~product.transform
    xs, ys = np.asarray(poly.exterior.coords).T
    cols, rows = inv @ (xs, ys)
    r_lo, r_hi = int(max(0, rows.min())), int(min(product.height, rows.max() + 1))
    c_lo, c_hi = int(max(0, cols.min())), int(min(product.width, cols.max() + 1))
    cell = probability.cell
    rr, cc = np.mgrid[r_lo:r_hi:cell, c_lo:c_hi:cell]
    px, py = product.transform @ (cc + 0.5, rr + 0.5)
    inside = shapely.contains_xy(poly, px, py)
    centroid = poly.centroid
    c_col, c_row = inv @ (centroid.x, centroid.y)
    probs = (
        probability.sample(rr[inside], cc[inside])
        if inside.any()
        else probability.sample(np.array([int(c_row)]), np.array([int(c_col)]))
    )
    probs = probs[np.isfinite(probs)].astype(float)  # the mean in float64, as outlining takes it
    if not len(probs) or probs.max() < options.threshold:
        return None
    if _elongated_many(np.asarray([poly], dtype=object), options.max_elongation)[0]:  # before the area on the sphere
        return None  # sunlit trough walls and ridges: long thin strips, unlike a patch
    lonlat = transform_geometry(poly, product.crs)
    radius = product.crs.ellipsoid.semi_major_metre
    area = abs(pyproj.Geod(a=radius, b=radius).geometry_area_perimeter(lonlat)[0])
    if area < options.min_area_m2:
        return None
    compactness = 4 * np.pi * poly.area / max(poly.length, 1e-9) ** 2
    if compactness < options.min_compactness:  # sunlit trough walls and ridges are long and thin
        return None
    lon, lat = to_lonlat(product.crs, [centroid.x], [centroid.y])
    return Candidate(
        geometry=poly,
        area_m2=float(area),
        max_probability=float(probs.max()),
        mean_probability=float(probs.mean()),
        peak_contrast=peak,
        centroid_lon=float(lon[0]),
        centroid_lat=float(lat[0]),
    )


def _reference_outlines(product, windows, raster, options) -> list[Candidate]:
    """The outlining before it streamed: every window's pieces at once, one merge, every outline measured."""
    from rasterio import features
    from scipy import ndimage

    from marsice_plugin.anomalies import repair
    from marsice_plugin.product import nodata_mask, special_mask

    pieces, contrasts = [], []
    for w in windows:
        r0, c0 = max(0, w.row_off - options.margin_px), max(0, w.col_off - options.margin_px)
        r1 = min(product.height, w.row_off + w.height + options.margin_px)
        c1 = min(product.width, w.col_off + w.width + options.margin_px)
        data = product.read(r0, c0, r1 - r0, c1 - c0)
        nodata = nodata_mask(data, product.special_values)
        valid = ~(nodata | special_mask(data, product.special_values))
        fixed, _ = repair(data, valid, nodata=nodata)
        mask, rel = patch_mask(fixed, ~nodata, product.scale_m, options)
        if not mask.any():
            continue
        transform = Window(c0, r0, c1 - c0, r1 - r0).transform(product.transform)
        labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
        peaks = ndimage.labeled_comprehension(
            rel, labels, np.arange(1, count + 1), lambda v: np.percentile(v, 90), float, 0.0
        )
        if options.join_diagonals:  # one polygon per 8-connected patch (tested on its own in test_candidates.py)
            labels = bridge_diagonals(labels)
            mask = labels > 0
        for geom, value in features.shapes(labels.astype(np.int32), mask=mask, transform=transform):
            pieces.append(shapely.geometry.shape(geom))
            contrasts.append(float(peaks[int(value) - 1]))
    tree = shapely.STRtree(pieces)
    peak = np.asarray(contrasts)
    measured = (
        _measure(p, product, raster, float(peak[tree.query(p, predicate="intersects")].max()), options)
        for p in merge_touching(pieces, tree)
    )
    return [c for c in measured if c is not None]


@pytest.fixture(scope="module")
def busy_product(tmp_path_factory):
    """A 1536 px product with boulders, dust, hot pixels and planted ice: thousands of pieces, most of them specks."""
    from marsice_plugin.synthetic.product_writer import write_sample_product
    from marsice_plugin.synthetic.scene import SceneConfig

    config = SceneConfig(width=1536, height=1536, seed=23, n_boulders=400, nodata_margin=0.05)
    return write_sample_product(tmp_path_factory.mktemp("busy"), config)


def _chunks(product, size=512):
    """Chunk scores without a CNN: values that vary over the product, so the stitched raster is not flat."""
    grid = ChunkGrid(product.width, product.height, size, size // 4)
    return [ChunkScore(i, j, w, 0.1 + 0.8 * ((i + 2 * j) % 5) / 4, False, "", 0.0) for i, j, w in grid]


def _same_candidates(got: list[Candidate], want: list[Candidate]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert a.geometry.equals_exact(b.geometry, 0.0)  # the same vertices, in the same order
        assert (a.area_m2, a.peak_contrast, a.max_probability, a.mean_probability) == (
            b.area_m2,
            b.peak_contrast,
            b.max_probability,
            b.mean_probability,
        )


def test_streamed_outlines_are_those_of_one_merge_in_the_same_order(busy_product):
    """512 px tiles (9 windows in 3 rows, as real-size search tiles come): the same outlines, measured alike."""
    with open_product(busy_product.label_path) as product:
        chunks = _chunks(product)
        raster = stitch(chunks, product.width, product.height, product.transform)
        tiles = search_windows(product, [c.window for c in chunks], tile=512)
        assert len(tiles) == 9
        want = _reference_outlines(product, tiles, raster, RULE)
        _same_candidates(delineate(product, tiles, raster, RULE), want)
        # the stream hands outlines on before the last window: only a band of pieces is ever pending
        done = [(n, len(block)) for n, block in outline_stream(product, tiles, raster, RULE)]
        chunk_windows = [c.window for c in chunks]
        # overlapping chunk windows, 50 % seeds (flagged search's rule)
        flagged = _reference_outlines(product, chunk_windows, raster, CandidateOptions(threshold=0.0))
        _same_candidates(delineate(product, chunk_windows, raster, CandidateOptions(threshold=0.0)), flagged)
        # outlines joined at corners (an option, bench/small_patches.py): streamed alike, one per 8-connected patch
        joined_rule = replace(RULE, join_diagonals=True)
        joined = _reference_outlines(product, tiles, raster, joined_rule)
        _same_candidates(delineate(product, tiles, raster, joined_rule), joined)
    assert len(want) > 500 and len(flagged) > 5
    assert 200 < len(joined) < 0.7 * len(want)  # the parts of a patch that meet at corners are one outline
    assert [n for n, _ in done] == list(range(1, 10))
    assert sum(k for _, k in done) == len(want)
    assert sum(k for n, k in done if n <= 6) > len(want) / 3  # the first two rows were final before the last one


def test_merged_parts_get_the_same_peaks_by_pairs_or_by_tree(busy_product, monkeypatch):
    """A part's peak contrast is that of the pieces it is made of, whether found pairwise or by a tree query."""
    from marsice_plugin import candidates

    with open_product(busy_product.label_path) as product:
        chunks = _chunks(product)
        raster = stitch(chunks, product.width, product.height, product.transform)
        tiles = search_windows(product, [c.window for c in chunks], tile=512)[:3]
        pairwise = delineate(product, tiles, raster, RULE)
        monkeypatch.setattr(candidates, "GROUP_PAIRWISE", 1)  # every merged group by the tree
        _same_candidates(delineate(product, tiles, raster, RULE), pairwise)
    assert len({c.peak_contrast for c in pairwise}) > 50


def test_streamed_search_keeps_the_same_candidates_probabilities_and_chunk_scores(busy_product, monkeypatch):
    """detections_from_scores streams (second stage in blocks of 4 here) and gives one pass's results."""
    from marsice_plugin.detection import detections_from_scores, load_stage
    from marsice_plugin.patches import stage as stage_module
    from marsice_plugin.patches.chunk_score import best_in_chunks, combine_chunk_scores
    from marsice_plugin.progress import Reporter

    patch = load_stage(None)
    every = load_stage(None, keep_all=True)
    lines = []

    class Recorder(Reporter):
        def progress(self, percent, message="", **kwargs):
            lines.append((percent, message))

    monkeypatch.setattr(stage_module, "CROP_BLOCK", 4)
    with open_product(busy_product.label_path) as product:
        chunks = _chunks(product, size=256)  # flagged search over 256 px chunks: 81 windows, streamed
        raster = stitch(chunks, product.width, product.height, product.transform)
        flagged = [c.window for c in chunks if c.probability >= 0.3]
        outlines = _reference_outlines(product, flagged, raster, CandidateOptions(threshold=0.3))
        scored = stage_module.score_candidates(product, outlines, every)  # sets every outline's probability
        best = best_in_chunks([c.window for c in chunks], outlines, product.transform)
        want_chunks = combine_chunk_scores(chunks, best, "max_kept", patch.threshold, 0.3)
        kept = detections_from_scores(product, chunks, 0.3, "", None, patch, "flagged", "max_kept", Recorder("quiet"))
        kept_all = detections_from_scores(product, chunks, 0.3, "", None, every, "flagged", "max_kept")
        confirm = combine_chunk_scores(chunks, best, "confirm", patch.threshold, 0.3)
        confirmed = detections_from_scores(product, chunks, 0.3, "", None, patch, "flagged", "confirm")
    want_kept = [c for c in scored if c.probability >= patch.threshold]
    assert kept.outlined == kept_all.outlined == len(outlines) > 4 * 3  # several blocks of the second stage
    assert 0 < len(want_kept) < len(scored)
    for got, want in ((kept.candidates, want_kept), (kept_all.candidates, scored)):
        order = np.argsort([c.centroid_lon for c in got]), np.argsort([c.centroid_lon for c in want])
        _same_candidates([got[i] for i in order[0]], [want[i] for i in order[1]])
        # float32 network outputs in blocks of another size: equal to TensorFlow's rounding (~3e-8)
        np.testing.assert_allclose(
            [got[i].probability for i in order[0]], [want[i].probability for i in order[1]], atol=1e-6
        )
        assert [c.rank for c in got] == sorted((c.rank for c in got), reverse=True)
    np.testing.assert_allclose([c.probability for c in kept.chunks], [c.probability for c in want_chunks], atol=1e-6)
    assert [c.cnn_probability for c in kept.chunks] == [c.probability for c in chunks]
    # detect's default with flagged search: both stages must agree (each chunk's best outline is all it needs too)
    np.testing.assert_allclose([c.probability for c in confirmed.chunks], [c.probability for c in confirm], atol=1e-6)
    assert sum(c.probability < 0.3 <= c.cnn_probability for c in confirmed.chunks) > 0
    assert sum(a.probability > b.probability + 1e-3 for a, b in zip(want_chunks, chunks, strict=True)) > 0
    # the bar moves while outlining: one line per window, from 90 to 92 %
    outlining = [(p, m) for p, m in lines if m.startswith("outlining window")]
    assert len(outlining) == len(flagged) and outlining[-1][0] == pytest.approx(92.0)
    assert [p for p, _ in outlining] == sorted(p for p, _ in outlining) and outlining[0][0] < 91
    assert f"{len(outlines)} outlines, {len(want_kept)} kept" in outlining[-1][1]


def test_fast_elongation_test_decides_as_shapely_rectangle():
    """The numpy minimum-rectangle test gives shapely's answer, also at limits equal to a polygon's own ratio."""
    from rasterio import features
    from scipy import ndimage

    from marsice_plugin.candidates import _elongated_many

    def _elongated(p, limit):  # one polygon at a time
        return bool(_elongated_many(np.asarray([p], dtype=object), limit)[0])

    rng = np.random.default_rng(1)
    mask = ndimage.binary_opening(rng.random((300, 300)) > 0.45)
    labels, _ = ndimage.label(mask)
    polygons = [
        shapely.geometry.shape(g).simplify(0.5, preserve_topology=True)
        for g, _ in features.shapes(labels.astype(np.int32), mask=mask)
    ]
    polygons = [p for p in polygons if p.area > 3]

    def ratio(p):
        box = np.asarray(p.minimum_rotated_rectangle.exterior.coords)
        sides = np.hypot(*np.diff(box[:3], axis=0).T)
        return sides.max() / sides.min()

    ratios = [ratio(p) for p in polygons]
    assert len(polygons) > 1000 and min(ratios) < 1.5 and max(ratios) > 2.5
    for limit in (1.25, 1.5, 2.0, 2.5):
        assert [_elongated(p, limit) for p in polygons] == [r > limit for r in ratios]
        # all at once, as outlining asks (hulls of many vertex counts side by side)
        assert _elongated_many(np.asarray(polygons, dtype=object), limit).tolist() == [r > limit for r in ratios]
    for p, r in zip(polygons[:200], ratios[:200], strict=True):
        assert [_elongated(p, r * f) for f in (1 - 1e-7, 1.0, 1 + 1e-7)] == [
            r > r * f for f in (1 - 1e-7, 1.0, 1 + 1e-7)
        ]


def test_merging_touching_pieces_gives_the_union_of_all():
    """Per-group unions equal one union of every piece (bounded at real size, where one union did not finish)."""
    rng = np.random.default_rng(3)
    corners = rng.uniform(0, 200, size=(300, 2))
    pieces = [shapely.box(x, y, x + s, y + s) for (x, y), s in zip(corners, rng.uniform(1, 8, 300), strict=True)]
    merged = merge_touching(pieces, shapely.STRtree(pieces))
    whole = shapely.union_all(pieces)
    assert len(merged) == len(whole.geoms) > 50
    assert shapely.union_all(merged).symmetric_difference(whole).area < 1e-9
    assert sum(p.area for p in merged) == pytest.approx(whole.area)  # disjoint: no piece counted twice


def test_window_search_keeps_the_outlines_centred_in_flagged_chunks_whatever_the_blend(busy_product):
    """flagged_area="window": every outline of the flagged chunks' reads whose centroid lies in a flagged window, in
    the order outlining gives, including those where the blended raster is under the threshold; "raster" loses
    those."""
    from marsice_plugin.detection import detections_from_scores

    with open_product(busy_product.label_path) as product:
        chunks = _chunks(product, size=256)
        raster = stitch(chunks, product.width, product.height, product.transform)
        flagged = [c.window for c in chunks if c.probability >= 0.5]
        every = delineate(product, flagged, raster, CandidateOptions(threshold=0.0))
        by_raster = detections_from_scores(product, chunks, 0.5, search="flagged", flagged_area="raster")
        by_window = detections_from_scores(product, chunks, 0.5, search="flagged", flagged_area="window")
        with pytest.raises(ValueError, match="flagged_area must be one of"):
            detections_from_scores(product, chunks, 0.5, flagged_area="chunk")
        inverse = ~product.transform

    def centred(c: Candidate) -> bool:
        col, row = inverse @ (c.geometry.centroid.x, c.geometry.centroid.y)
        return any(w.row_off <= row < w.row_off + w.height and w.col_off <= col < w.col_off + w.width for w in flagged)

    want = [c for c in every if centred(c)]
    _same_candidates(by_window.candidates, want)
    assert len(want) < len(every)  # outlines centred in an unflagged chunk's margin: dropped
    under = [c for c in want if c.max_probability < 0.5]  # the blend of flagged and unflagged neighbours
    assert under and not any(c.max_probability < 0.5 for c in by_raster.candidates)
    kept = {c.geometry.wkb for c in by_window.candidates}
    assert all(c.geometry.wkb in kept for c in by_raster.candidates if centred(c))
    assert len(by_window.candidates) > len([c for c in by_raster.candidates if centred(c)])


def test_a_lower_search_threshold_outlines_more_chunks_and_flags_no_more(busy_product):
    """search_threshold 0.3 under a 0.5 threshold: the outlines of the chunks from 0.3 (kept where the raster
    reaches 0.3), covering the threshold's own; the chunk rows are the CNN's, flags unchanged."""
    from marsice_plugin.detection import detections_from_scores

    with open_product(busy_product.label_path) as product:
        chunks = _chunks(product, size=256)
        raster = stitch(chunks, product.width, product.height, product.transform)
        lower = [c.window for c in chunks if c.probability >= 0.3]
        want = delineate(product, lower, raster, CandidateOptions(threshold=0.3))
        base = detections_from_scores(product, chunks, 0.5)
        same = detections_from_scores(product, chunks, 0.5, search_threshold=0.5)
        wide = detections_from_scores(product, chunks, 0.5, search_threshold=0.3)
    _same_candidates(wide.candidates, want)
    _same_candidates(same.candidates, base.candidates)
    assert len(wide.candidates) > len(base.candidates) > 0
    # each of the threshold's outlines is found again (merged with more of its surroundings where a window is added)
    tree = shapely.STRtree([c.geometry for c in wide.candidates])
    assert all(len(tree.query(c.geometry, predicate="intersects")) for c in base.candidates)
    assert min(c.max_probability for c in wide.candidates) < 0.5  # outlines in chunks searched, not flagged
    assert (
        [c.probability for c in wide.chunks] == [c.probability for c in base.chunks] == [c.probability for c in chunks]
    )
    assert len(wide.above) == len(base.above)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_percentile_by_label_is_numpys_percentile_of_each_label(dtype):
    """One sort for every seed group gives NumPy's own 90th percentiles, to the last bit, in either dtype."""
    from scipy import ndimage

    from marsice_plugin.candidates import percentile_by_label

    rng = np.random.default_rng(5)
    values = (rng.random((300, 300)) * rng.random((300, 300)) * 3 - 0.5).astype(dtype)
    labels, count = ndimage.label(rng.random((300, 300)) > 0.45)
    index = np.arange(1, count + 1)
    sizes = np.bincount(labels.ravel())[1:]
    assert count > 2000 and sizes.min() == 1 and sizes.max() > 50  # single pixels and large groups
    want = np.array([np.percentile(values[labels == i], 90) for i in index])
    np.testing.assert_array_equal(percentile_by_label(values, labels, index, 90), want)
    some = index[::7]
    np.testing.assert_array_equal(percentile_by_label(values, labels, some, 90), want[::7])
