"""Small, faint patches: the candidate rule outlines them, and every-chunk search reads tiles, finding the same."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from marsice_plugin.candidates import SMALL_PATCH_CONTRAST, CandidateOptions, delineate, search_windows
from marsice_plugin.grid import ChunkGrid, Window
from marsice_plugin.product import open_product
from marsice_plugin.stitching import ProbabilityRaster

from .conftest import QUIET_SCENE

#: A 3 m wide faint patch (albedo +20 %: about 0.45 over its background in DN at its 90th percentile): too few of
#: its pixels reach the old rule's 0.5 to seed it.
FAINT = (300, 700, 1.5, 0.2)


@pytest.fixture(scope="module")
def faint_product(tmp_path_factory):
    """A 1024 x 1024 product at 0.5 m/px with one small faint patch on open ground (no boulder beside it)."""
    from marsice_plugin.synthetic.product_writer import write_sample_product
    from marsice_plugin.synthetic.scene import SceneConfig

    config = SceneConfig(width=1024, height=1024, seed=31, scale_m=0.5, n_boulders=40, ice_at=(FAINT,), **QUIET_SCENE)
    return write_sample_product(tmp_path_factory.mktemp("faint"), config)


def _outlines(sample, windows_of, options):
    with open_product(sample.label_path) as product:
        raster = ProbabilityRaster(np.full((64, 64), 0.9, np.float32), 16, product.transform)
        return delineate(product, windows_of(product), raster, options), product


def _chunks(product):
    return [w for _, _, w in ChunkGrid(product.width, product.height, 512, 128)]


def _on_patch(product, candidates):
    x, y = product.transform @ (FAINT[1] + 0.5, FAINT[0] + 0.5)
    return [c for c in candidates if c.geometry.distance(shapely.Point(x, y)) < 1.0]


def test_the_rule_outlines_a_small_faint_patch_the_old_rule_missed(faint_product):
    ice = faint_product.scene.ice
    assert 20 < ice.sum() < 60  # about 3 m across at 0.5 m/px
    old, product = _outlines(faint_product, _chunks, CandidateOptions(threshold=0.6))  # 50 %: flagged search
    new, _ = _outlines(faint_product, _chunks, CandidateOptions(threshold=0.6, min_contrast=SMALL_PATCH_CONTRAST))
    assert not _on_patch(product, old)
    (hit,) = _on_patch(product, new)
    rows, cols = np.nonzero(ice)
    xs, ys = product.transform @ (cols + 0.5, rows + 0.5)
    assert shapely.contains_xy(hit.geometry, xs, ys).mean() > 0.4  # much of the faint, noisy patch lies inside
    x, y = product.transform @ (FAINT[1] + 0.5, FAINT[0] + 0.5)
    assert hit.geometry.centroid.distance(shapely.Point(x, y)) < 1.5  # centred on it (metres)
    assert 1.0 < hit.area_m2 < 15.0  # its own size, not grown over the ground around it
    assert hit.peak_contrast >= SMALL_PATCH_CONTRAST


def test_every_chunk_search_reads_tiles_and_finds_the_same_outlines(faint_product):
    with open_product(faint_product.label_path) as product:
        scored = _chunks(product)
        tiles = search_windows(product, scored, tile=512)
        assert tiles == [Window(c, r, 512, 512) for r in (0, 512) for c in (0, 512)]
        assert search_windows(product, scored[:1], tile=512) == [Window(0, 0, 512, 512)]  # only where scored
    by_chunk, _ = _outlines(faint_product, _chunks, CandidateOptions(threshold=0.0))
    by_tile, _ = _outlines(faint_product, lambda p: search_windows(p, _chunks(p), tile=512), CandidateOptions(0.0))
    assert len(by_chunk) == len(by_tile) > 0
    # the same patches; edges may move by a pixel where the background's 8-pixel blocks fall differently
    for ours, theirs in ((by_tile, by_chunk), (by_chunk, by_tile)):
        for c in ours:
            best = max(c.geometry.intersection(o.geometry).area / c.geometry.union(o.geometry).area for o in theirs)
            assert best > 0.5
    total = sum(c.area_m2 for c in by_chunk)
    assert sum(c.area_m2 for c in by_tile) == pytest.approx(total, rel=0.15)
