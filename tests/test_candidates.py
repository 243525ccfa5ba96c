"""Stitched probability raster and ice-candidate outlines (merged across chunk borders)."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine

from marsice_plugin.candidates import CandidateOptions, delineate
from marsice_plugin.gpkg import GeoPackage, parse_geometry_blob
from marsice_plugin.grid import ChunkGrid, Window
from marsice_plugin.product import open_product
from marsice_plugin.result_layers import ChunkScore
from marsice_plugin.stitching import ProbabilityRaster, stitch


def _score(window, p):
    return ChunkScore(0, 0, window, p, p is None, "", 0.0)


def test_stitch_blends_overlaps_and_keeps_single_coverage():
    t = Affine(0.5, 0, 1000.0, 0, -0.5, 2000.0)
    chunks = [
        _score(Window(0, 0, 64, 64), 0.0),
        _score(Window(32, 0, 64, 64), 1.0),
        _score(Window(0, 64, 64, 32), None),
    ]
    raster = stitch(chunks, 96, 96, t, cell=8)
    assert raster.values.shape == (12, 12)
    assert raster.transform == Affine(4.0, 0, 1000.0, 0, -4.0, 2000.0)
    assert raster.values[4, 0] == 0.0 and raster.values[4, 11] == 1.0  # covered by one chunk only
    overlap = raster.values[4, 4:8]
    assert ((overlap > 0) & (overlap < 1)).all() and np.all(np.diff(overlap) > 0)
    assert np.isnan(raster.values[10, 2])  # only a skipped chunk covers it


@pytest.fixture(scope="module")
def straddling_product(tmp_path_factory):
    """A product with a 6 m patch centred on the border between chunk columns 0 and 1 (column 1024)."""
    from marsice_plugin.synthetic.product_writer import write_sample_product
    from marsice_plugin.synthetic.scene import SceneConfig

    config = SceneConfig(
        width=2048,
        height=1024,
        seed=11,
        n_craters=0,
        n_boulders=150,
        polygons=False,
        n_ice_boulder=0,
        n_ice_crater=0,
        n_dust=0,
        n_hot_special=6,
        n_hot_ordinary=6,
        nodata_margin=0.0,
        ice_at=((512, 1024, 6.0, 1.2),),
    )
    return write_sample_product(tmp_path_factory.mktemp("straddle"), config)


def test_patch_across_chunk_border_is_one_polygon_with_true_area(straddling_product):
    truth_gpkg = GeoPackage.open(straddling_product.truth_path)
    truth = shapely.union_all(
        [parse_geometry_blob(b) for (b,) in truth_gpkg.conn.execute("SELECT geom FROM ice_truth")]
    )
    truth_gpkg.close()
    with open_product(straddling_product.label_path) as product:
        grid = ChunkGrid(product.width, product.height, 1024)
        windows = [w for _, _, w in grid]
        raster = ProbabilityRaster(np.full((64, 128), 0.9, np.float32), 16, product.transform)
        candidates = delineate(product, windows, raster, CandidateOptions(threshold=0.6))
    hits = [c for c in candidates if c.geometry.intersects(truth)]
    assert len(hits) == 1  # one patch, one polygon, although two chunks saw it
    (hit,) = hits
    assert hit.area_m2 == pytest.approx(truth.area, rel=0.2)
    assert hit.geometry.intersection(truth).area / truth.area > 0.8
    assert hit.max_probability == pytest.approx(0.9)
    assert -50.1 < hit.centroid_lat < -49.9
    # no hot pixel became a candidate
    hot_rows, hot_cols = np.nonzero(straddling_product.scene.hot)
    xs, ys = product.transform @ (hot_cols + 0.5, hot_rows + 0.5)
    for c in candidates:
        assert not shapely.contains_xy(c.geometry, xs, ys).any()


def test_bridged_labels_are_one_valid_polygon_each_and_keep_every_pixel():
    """Corner-only links get one pixel each; each 8-connected label becomes one valid polygon; labels never meet."""
    from rasterio import features
    from scipy import ndimage

    from marsice_plugin.candidates import bridge_diagonals

    rng = np.random.default_rng(4)
    mask = rng.random((200, 200)) < 0.3
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    joined = bridge_diagonals(labels)
    assert (joined[mask] == labels[mask]).all()  # every pixel keeps its label
    added = (joined > 0) & ~mask
    # each added pixel is in a 2 x 2 block where two pixels of its label met only at a corner
    padded, before = np.pad(joined, 1), np.pad(labels, 1)
    for r, c in zip(*np.nonzero(added), strict=True):
        k = joined[r, c]
        assert set(np.unique(padded[r : r + 3, c : c + 3])) <= {0, k}  # no other label, not even at a corner
        blocks = [before[r + i : r + i + 2, c + j : c + j + 2] for i in (0, 1) for j in (0, 1)]
        assert any(
            (blk[0, 0] == blk[1, 1] == k and blk[0, 1] == blk[1, 0] == 0)
            or (blk[0, 1] == blk[1, 0] == k and blk[0, 0] == blk[1, 1] == 0)
            for blk in blocks
        )
    four, n_four = ndimage.label(joined > 0)  # edge-connected regions
    assert all(len(np.unique(joined[four == k])) == 1 for k in range(1, n_four + 1))
    _, n_cut = ndimage.label(mask)
    assert n_cut - count > 1000 and n_four - count <= 0.03 * (n_cut - count)  # all but a few corner links joined
    # different labels never touch, even at a corner: an 8-connected labelling of the result finds the same groups
    regrouped, n_regrouped = ndimage.label(joined > 0, structure=np.ones((3, 3), bool))
    assert n_regrouped == count
    polygons = [(shapely.geometry.shape(g), v) for g, v in features.shapes(joined.astype(np.int32), mask=joined > 0)]
    assert len(polygons) == n_four and len({v for _, v in polygons}) == count
    assert all(p.is_valid for p, _ in polygons)


def test_patch_linked_by_corners_is_one_candidate(tmp_path):
    """Five 1 m² squares meeting at corners (an X of 2 px blocks): joined, one 5 m² patch, kept; cut at its corners
    (detect's outlines, the option was not adopted), each part falls under the 2 m² minimum and the patch is lost."""
    from .small_rasters import smooth_image, write_raster

    image = smooth_image(256, 256, seed=3)
    patch = np.zeros(image.shape, bool)
    for br, bc in ((0, 0), (0, 2), (1, 1), (2, 0), (2, 2)):
        patch[120 + 2 * br : 122 + 2 * br, 120 + 2 * bc : 122 + 2 * bc] = True
    image[patch] = np.minimum(image[patch] * 2, 1000)
    path = write_raster(tmp_path / "corners.tif", image)
    with open_product(path) as product:
        raster = ProbabilityRaster(np.full((16, 16), 0.9, np.float32), 16, product.transform)
        window = [Window(0, 0, 256, 256)]
        joined = delineate(product, window, raster, CandidateOptions(threshold=0.6, join_diagonals=True))
        cut = delineate(product, window, raster, CandidateOptions(threshold=0.6))  # detect's outlines
        xs, ys = product.transform @ (np.nonzero(patch)[1] + 0.5, np.nonzero(patch)[0] + 0.5)
    (one,) = joined
    assert shapely.contains_xy(one.geometry, xs, ys).all()
    assert 5.0 <= one.area_m2 <= 6.5  # its 20 pixels and the 4 that join them, at 0.25 m² each
    assert cut == []
