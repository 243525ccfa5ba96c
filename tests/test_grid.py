"""Chunk grid arithmetic: offsets, coverage, the overlap guarantee, the default overlap, windows and transforms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from affine import Affine

from marsice_plugin.errors import TilingError
from marsice_plugin.grid import ChunkGrid, Window, axis_offsets, default_overlap

# -- grid arithmetic ----------------------------------------------------------------------------------


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


@pytest.mark.parametrize(("length", "size", "overlap"), [(100, 20, 5), (97, 20, 7), (61, 30, 15), (45, 16, 3)])
def test_every_feature_up_to_the_overlap_lies_whole_in_one_chunk(length, size, overlap):
    """The documented guarantee: any interval of extent <= O (cut by an edge or not) fits in some chunk."""
    offsets = axis_offsets(length, size, overlap)
    for width in range(1, overlap + 1):
        for start in range(0, length - width + 1):
            assert any(o <= start and start + width <= o + size for o in offsets), (start, width)
    # and the overlap is what buys it: two pixels more and a feature across the first edge fits nowhere
    start = offsets[1] - 1
    assert not any(o <= start and start + overlap + 2 <= o + size for o in offsets)


def test_default_overlap_formula():
    assert default_overlap(0.25, 1024) == 128
    assert default_overlap(0.5, 1024) == 64
    assert default_overlap(1.0, 1024) == 32
    assert default_overlap(0.25, 100) == 50  # capped at half a chunk
    with pytest.raises(TilingError, match="--overlap"):
        default_overlap(0.0, 1024)


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
