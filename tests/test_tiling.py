"""Chunk grid arithmetic, georeferencing of chunks, full coverage and the no-data rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from affine import Affine

from marsice_plugin.product import open_product
from marsice_plugin.tiling import ChunkGrid, ChunkReader, Window, axis_offsets


@pytest.mark.parametrize(
    ("length", "size", "overlap", "expected"),
    [
        (3072, 1024, 0, [0, 1024, 2048]),
        (3000, 1024, 0, [0, 1024, 1976]),  # last chunk shifted, never dropped
        (2048, 1024, 256, [0, 768, 1024]),
        (500, 1024, 0, [0]),
    ],
)
def test_axis_offsets(length, size, overlap, expected):
    assert axis_offsets(length, size, overlap) == expected


@pytest.mark.parametrize(("length", "size", "overlap"), [(20000, 1024, 0), (60001, 1024, 128), (1025, 1024, 512)])
def test_axis_offsets_count_and_coverage(length, size, overlap):
    offsets = axis_offsets(length, size, overlap)
    assert len(offsets) == 1 + math.ceil((length - size) / (size - overlap))
    covered = np.zeros(length, bool)
    for o in offsets:
        covered[o : o + size] = True
    assert covered.all()
    assert offsets[-1] + size == length


def test_grid_len_and_windows():
    grid = ChunkGrid(3000, 2100, 1024, 0)
    assert len(grid) == 9 == len(list(grid))
    assert grid.window(2, 2) == Window(1976, 1076, 1024, 1024)
    assert ChunkGrid(700, 500, 1024).window(0, 0) == Window(0, 0, 700, 500)


def test_chunk_transform_pixel_corner():
    parent = Affine(0.5, 0, -1000.0, 0, -0.5, 2000.0)
    t = Window(1024, 2048, 1024, 1024).transform(parent)
    assert (t.c, t.f) == (-1000.0 + 512.0, 2000.0 - 1024.0)
    assert (t.a, t.e) == (0.5, -0.5)


def test_reader_chunks_match_image_and_skip_margins(sample_product):
    dn = sample_product.scene.dn
    with open_product(sample_product.label_path) as product:
        reader = ChunkReader(product, 1024, 0)
        chunks = list(reader)
        assert len(chunks) == len(reader) == 6
        for c in chunks:
            rows, cols = c.window.slices
            assert np.array_equal(c.data, dn[rows, cols].astype(np.float32))
            x, y = c.transform @ (0, 0)
            assert (x, y) == product.transform @ (c.window.col_off, c.window.row_off)
            assert c.nodata_fraction == pytest.approx(float((dn[rows, cols] == 0).mean()))
        # the planted hot pixels at 1022/1023 are invalid, never valid surface
        for c in chunks:
            assert not c.valid[np.isin(c.data, (1022, 1023))].any()


def test_reader_skips_chunk_with_nodata_centre(small_product, tmp_path):
    with open_product(small_product.label_path) as product:
        reader = ChunkReader(product, 1024, 0, max_center_nodata=0.0)
        (chunk,) = list(reader)
        assert chunk.window == Window(0, 0, 700, 500)
        # the strip margins are at the corners, not the centre: kept with the paper's strict rule
        assert not chunk.skipped
        strict = ChunkReader(product, 1024, 0, max_center_nodata=0.0, max_nodata=0.0)
        (chunk,) = list(strict)
        assert chunk.skipped and "no-data" in chunk.skip_reason
