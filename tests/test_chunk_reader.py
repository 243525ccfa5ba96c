"""The chunk reader: georeferencing of chunks, streaming reads, masks, reduced and resampled reads."""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest
import shapely
from affine import Affine

from marsice_plugin.chunk_reader import PREFETCH_BANDS, ChunkReader, plan_read
from marsice_plugin.errors import ProductError, TilingError
from marsice_plugin.grid import ChunkGrid, Window, axis_offsets
from marsice_plugin.product import open_product
from marsice_plugin.vectors import to_lonlat

from .small_rasters import HIRISE_SPECIAL, TRANSFORM, RecordingDataset, smooth_image, write_raster

# -- the reader on small rasters ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def image():
    img = smooth_image(700, 1100, seed=1)
    img[:, :90] = 0  # a black margin on the west side
    return img


@pytest.fixture(scope="module")
def image_path(image, tmp_path_factory):
    return write_raster(tmp_path_factory.mktemp("tif") / "img.tif", image)


def test_reader_len_full_coverage_exact_data_and_transforms(image, image_path):
    with open_product(image_path) as product:
        reader = ChunkReader(product, 256, 40, repair=False)
        chunks = list(reader)
        assert len(chunks) == len(reader) == len(axis_offsets(700, 256, 40)) * len(axis_offsets(1100, 256, 40))
        covered = np.zeros(image.shape, dtype=int)
        for c in chunks:
            rows, cols = c.window.slices
            covered[rows, cols] += 1
            assert c.data.shape == (256, 256)
            assert np.array_equal(c.data, image[rows, cols].astype(np.float32))
            assert c.transform == TRANSFORM @ Affine.translation(c.window.col_off, c.window.row_off)
            assert (c.transform.c, c.transform.f) == (
                -1000.0 + 0.5 * c.window.col_off,
                -2_950_000.0 - 0.5 * c.window.row_off,
            )
            assert c.scale_m == 0.5
        assert covered.min() >= 1  # every pixel, including the last row and column
        assert chunks[-1].window.row_off + 256 == 700 and chunks[-1].window.col_off + 256 == 1100


def test_the_read_plan_is_decided_from_metadata_before_any_pixel_is_read(image_path):
    """plan_read takes every decision the reader acts on; the reader stores that plan and reads nothing yet."""
    with open_product(image_path) as product:
        recorder = RecordingDataset(product._ds)
        product._ds = recorder
        plan = plan_read(product, 256, None, scale=0.5)
        reader = ChunkReader(product, 256, None, scale=0.5)
        assert recorder.windows == []
    assert reader.plan == plan
    # 0.5 m/px: 64 px default overlap; a GeoTIFF has no JPEG2000 levels, so level 1 is computed
    assert (plan.method, plan.factor, plan.level, plan.resample_to) == ("wavelet-lowpass", 2, 0, None)
    assert (plan.source_size, plan.out_size, plan.overlap, plan.chunk_scale_m) == (256, 128, 64, 1.0)
    assert plan.grid == ChunkGrid(550, 350, 128, 32)
    assert plan.grid_transform == TRANSFORM @ Affine.scale(2)
    # 256-row storage blocks are taller than a 128-px grid chunk: bands a chunk tall, the last one shorter
    assert plan.band_rows == [(0, 128), (128, 128), (256, 94)]
    assert len(reader) == len(plan.grid) == 4 * 6  # rows at 0, 96, 192, 222; columns every 96 px up to 422


def test_footprints_exact_in_product_and_common_crs(image_path):
    with open_product(image_path) as product:
        chunk = list(ChunkReader(product, 256, 0, repair=False))[5]
        w = chunk.window
        x0, y0 = TRANSFORM @ (w.col_off, w.row_off)
        x1, y1 = TRANSFORM @ (w.col_off + w.width, w.row_off + w.height)
        own = chunk.footprint(to_common=False)
        assert own.bounds == (x0, y1, x1, y0)
        assert own.symmetric_difference(shapely.box(x0, y1, x1, y0)).area == 0.0
        common = chunk.footprint()
        lon, lat = to_lonlat(product.crs, [x0, x1], [y0, y1])
        assert common.symmetric_difference(shapely.box(lon[0], lat[1], lon[1], lat[0])).area < 1e-14
        assert -51 < lat[0] < -49


@pytest.mark.parametrize("prefetch", [True, False])
def test_reads_are_full_width_bands_never_taller_than_a_strip(image_path, prefetch):
    """Bounded memory, structurally: every read is one full-width band of at most one strip of rows,
    each image row is decoded exactly once (also with overlap), and reading runs at most
    PREFETCH_BANDS + 1 bands ahead of the chunks handed out."""
    with open_product(image_path) as product:
        recorder = RecordingDataset(product._ds)
        product._ds = recorder
        reader = ChunkReader(product, 256, 100, repair=False, prefetch=prefetch)
        band_of_row = {}
        for start, height in reader.plan.band_rows:
            for r in range(start, start + height):
                band_of_row[r] = start
        for chunk in reader:
            needed = {band_of_row[r] for r in range(chunk.window.row_off, chunk.window.row_off + chunk.window.height)}
            bands_needed = sum(1 for start, _ in reader.plan.band_rows if start <= max(needed))
            assert len(recorder.windows) <= bands_needed + PREFETCH_BANDS + 1
        windows = recorder.windows
        assert all(w.col_off == 0 and w.width == 1100 for w in windows)
        assert max(w.height for w in windows) <= 256
        rows = sorted((w.row_off, w.row_off + w.height) for w in windows)
        assert rows[0][0] == 0 and rows[-1][1] == 700
        assert all(a[1] == b[0] for a, b in itertools.pairwise(rows))  # no row decoded twice
        assert [t.name for t in threading.enumerate() if t.name == "marsice-band-reader"] == []


def test_stopping_early_ends_the_reading_thread(image_path):
    with open_product(image_path) as product:
        chunks = iter(ChunkReader(product, 128, 0, repair=False))
        next(chunks)
        chunks.close()
        assert not [t for t in threading.enumerate() if t.name == "marsice-band-reader"]


def test_decoder_error_in_the_reading_thread_reaches_the_caller(image_path):
    with open_product(image_path) as product:
        product._ds = RecordingDataset(product._ds, fail=True)
        with pytest.raises(ProductError, match="truncated or corrupt"):
            list(ChunkReader(product, 256, 0))
        assert not [t for t in threading.enumerate() if t.name == "marsice-band-reader"]


def test_nodata_chunks_are_skipped_and_recorded_not_dropped(image, image_path):
    with open_product(image_path) as product:
        reader = ChunkReader(product, 128, 0, max_center_nodata=0.01, max_nodata=0.5)
        chunks = list(reader)
        assert len(chunks) == len(reader)  # skipped chunks are still yielded
        west = [c for c in chunks if c.window.col_off == 0]
        assert west and all(c.skipped and "no-data" in c.skip_reason for c in west)
        assert all(c.nodata_fraction == pytest.approx(90 / 128) for c in west)
        assert all(not c.repaired and c.outlier_pixels == 0 for c in west)  # not repaired: not scored
        kept = [c for c in chunks if c.window.col_off >= 128]
        assert kept and not any(c.skipped for c in kept)
        # a chunk straddling the margin edge holds exactly its no-data pixels in the mask
        edge = ChunkReader(product, 128, 0, max_center_nodata=1.0, max_nodata=1.0, repair=False)
        first = next(iter(edge))
        assert first.nodata.sum() == 90 * 128 and not first.skipped


def test_special_pixels_masked_and_repaired_with_counts(tmp_path):
    img = smooth_image(200, 300, seed=2)
    img[50, 60] = 1023
    img[120, 200:202] = 1022
    img[10, 250] = 1  # low saturation
    img[150:160, 0:40] = 0  # null
    path = write_raster(tmp_path / "special.tif", img)
    with open_product(path) as product:
        product.special_values = HIRISE_SPECIAL  # as a HiRISE label gives them
        (raw,) = list(ChunkReader(product, 512, 0, max_center_nodata=1, max_nodata=1, repair=False))
        special = np.isin(img, (1, 2, 1022, 1023))
        assert np.array_equal(raw.valid, ~(special | (img == 0)))
        assert np.array_equal(raw.nodata, img == 0)
        assert raw.special_pixels == 4
        (fixed,) = list(ChunkReader(product, 512, 0, max_center_nodata=1, max_nodata=1))
        assert fixed.repaired and fixed.special_pixels == 4
        for r, c in [(50, 60), (120, 200), (120, 201), (10, 250)]:
            assert abs(fixed.data[r, c] - np.median(img[r - 2 : r + 3, c - 2 : c + 3])) < 25
        assert np.array_equal(fixed.valid, raw.valid)  # the mask still says what was repaired


def test_isolated_outliers_at_ordinary_dns_repaired_while_a_real_patch_survives(tmp_path):
    img = smooth_image(256, 256, seed=3).astype(np.int32)
    yy, xx = np.mgrid[0:256, 0:256]
    patch = (yy - 128) ** 2 + ((xx - 100) / 1.4) ** 2 <= 36  # ~6 x 8 m ice patch at 0.5 m/px
    img[patch] += 180
    img[40, 40] = 760  # single hot pixel at an ordinary DN
    img[200:202, 30:32] = 720  # 2 x 2 group
    img[90, 200:203] = 740  # 1 x 3 streak
    path = write_raster(tmp_path / "hot.tif", img.astype(np.uint16))
    with open_product(path) as product:
        (chunk,) = list(ChunkReader(product, 256, 0))
    assert chunk.outlier_pixels == 1 + 4 + 3 and chunk.special_pixels == 0
    assert np.array_equal(chunk.data[patch], img[patch].astype(np.float32))  # every patch pixel intact
    for r, c in [(40, 40), (200, 30), (201, 31), (90, 201)]:
        assert abs(chunk.data[r, c] - np.median(img[r - 3 : r + 4, c - 3 : c + 4])) < 30


def test_color_products_become_grey(tmp_path):
    rgb = np.stack([smooth_image(100, 120, seed=s) for s in (4, 5, 6)])
    rgb[:, :10, :] = 0  # null in every band: no-data
    rgb[1, 50, 50] = 0  # null in one band only: not no-data
    rgb[2, 60, 60] = 1023  # special in one band
    path = write_raster(tmp_path / "color.tif", rgb)
    with open_product(path) as product:
        product.special_values = HIRISE_SPECIAL
        (chunk,) = list(ChunkReader(product, 128, 0, max_center_nodata=1, max_nodata=1, repair=False))
    assert np.allclose(chunk.data, rgb.astype(np.float32).mean(axis=0), atol=1e-4)
    assert chunk.nodata[:10].all() and not chunk.nodata[10:].any()
    assert not chunk.valid[60, 60] and chunk.valid[50, 50] is not None


def _weighted_centre(data: np.ndarray, background: float) -> tuple[float, float]:
    """Centre of (data - background) in pixel-corner coordinates of the array (no clipping: linear)."""
    w = data.astype(np.float64) - background
    rows, cols = np.mgrid[0 : data.shape[0], 0 : data.shape[1]]
    return float((w * (cols + 0.5)).sum() / w.sum()), float((w * (rows + 0.5)).sum() / w.sum())


def test_reduced_resolution_reads_jpeg2000_levels_georeferenced_right(tmp_path):
    img = np.full((1040, 1040), 100, dtype=np.uint16)
    img[200:208, 304:312] = 900  # a bright block centred on pixel corner (308, 204)
    path = write_raster(tmp_path / "levels.jp2", img, driver="JP2OpenJPEG")
    true_x, true_y = TRANSFORM @ (308, 204)
    with open_product(path) as product:
        assert product.level_count() >= 2
        reader = ChunkReader(product, 512, 0, scale=0.25, repair=False)
        assert reader.plan.method == "jpeg2000-level" and reader.plan.level == 2 and reader.plan.grid.size == 128
        chunks = list(reader)
    assert len(chunks) == len(reader)
    chunk = chunks[0]
    assert chunk.data.shape == (128, 128) and chunk.scale_m == 2.0
    assert chunk.window == Window(0, 0, 512, 512)
    col, row = _weighted_centre(chunk.data, 100.0)
    x, y = chunk.transform @ (col, row)
    assert abs(x - true_x) < 0.2 * 0.5 and abs(y - true_y) < 0.2 * 0.5  # within 0.2 source pixels
    # GDAL's overview (box) convention would misplace it by 1.5 source pixels at this level
    bx, by = (TRANSFORM @ Affine.scale(4)) @ (col, row)
    assert abs(bx - true_x) > 1.0 * 0.5
    # the last chunk still reaches the image edge
    last = chunks[-1]
    assert last.window.col_off + last.window.width == 1040


def test_reduced_resolution_of_other_rasters_is_the_jpeg2000_level_of_the_same_pixels(image, image_path):
    """A GeoTIFF read at half resolution gives what the JPEG2000 decoder gives at level 1 for the same pixels (the
    models were trained on those decodes), not a block average, which differs by DNs."""
    from marsice_plugin.cnn.training_data import decode_level

    with open_product(image_path) as product:
        reader = ChunkReader(product, 256, 0, scale=0.5, repair=False)
        assert reader.plan.method == "wavelet-lowpass"
        chunk = next(iter(reader))
    assert chunk.data.shape == (128, 128) and chunk.scale_m == 1.0
    assert chunk.transform == TRANSFORM @ Affine.scale(2)
    whole = decode_level(image.astype(np.uint16), 1).astype(np.float32)  # two 1024 px tiles side by side
    level1 = whole[:128, :128]
    diff = np.abs(chunk.data - level1)
    assert diff.max() == 0.0
    # every chunk, those across the tile edge at source column 1024 included: the decoder's values, pixel for pixel
    with open_product(image_path) as product:
        chunks = list(ChunkReader(product, 256, 0, scale=0.5, repair=False))
    assert len(chunks) == 3 * 5
    across = 0
    for c in chunks:
        col0, row0 = (~(TRANSFORM @ Affine.scale(2))) @ (c.transform.c, c.transform.f)
        r, k = round(row0), round(col0)
        assert np.array_equal(c.data, whole[r : r + c.data.shape[0], k : k + c.data.shape[1]])
        across += k < 512 < k + c.data.shape[1]  # the tile edge, at level 1
    assert across == 3  # one chunk per chunk row straddles it (transformed as one image, these differed there)
    block = image[:256, :256].astype(np.float64).reshape(128, 2, 128, 2).mean(axis=(1, 3))
    assert np.abs(block - level1)[:126, 50:].mean() > 0.2  # what the old block average was off by
    counts = (image[:256, :256] != 0).reshape(128, 2, 128, 2).sum(axis=(1, 3))
    assert np.array_equal(chunk.nodata, counts == 0)


def test_chunks_in_metres_resampled_to_a_model_ground_scale(image, image_path):
    with open_product(image_path) as product:
        down = ChunkReader(product, 64, 0, model_scale_m=1.0, repair=False)  # 64 px at 1 m = 128 source px
        assert (down.plan.source_size, down.plan.out_size, down.plan.method) == (128, 64, "resample")
        chunk = list(down)[3]
        assert chunk.data.shape == (64, 64) and chunk.scale_m == 1.0
        assert chunk.window.width == 128
        assert chunk.transform == TRANSFORM @ Affine.translation(chunk.window.col_off, chunk.window.row_off) @ (
            Affine.scale(2)
        )
        rows, cols = chunk.window.slices
        expected = image[rows, cols].astype(np.float64).reshape(64, 2, 64, 2).mean(axis=(1, 3))
        assert np.allclose(chunk.data, expected, atol=1e-3)  # an exact area average
        up = ChunkReader(product, 1024, 0, chunk_m=40.0, model_scale_m=0.4, repair=False)
        assert (up.plan.source_size, up.plan.out_size) == (80, 100)
        c = list(up)[7]
        assert c.data.shape == (100, 100) and c.scale_m == pytest.approx(0.4)
        w = c.window
        x0, y0 = TRANSFORM @ (w.col_off, w.row_off)
        x1, y1 = TRANSFORM @ (w.col_off + w.width, w.row_off + w.height)
        assert np.allclose(c.footprint(to_common=False).bounds, (x0, y1, x1, y0), rtol=0, atol=1e-6)


def test_non_power_of_two_scale_resamples(image_path):
    with open_product(image_path) as product:
        reader = ChunkReader(product, 200, 0, scale=0.3, repair=False)
        chunk = next(iter(reader))
    assert reader.plan.method == "resample" and chunk.data.shape == (60, 60)
    assert chunk.scale_m == pytest.approx(0.5 / 0.3)


def test_default_overlap_follows_the_ground_scale(image_path):
    with open_product(image_path) as product:
        assert ChunkReader(product, 256).plan.overlap == 64  # ceil(32 m / 0.5 m/px)
        assert ChunkReader(product, 100).plan.overlap == 50


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scale": 1.5}, "--scale must be within"),
        ({"scale": 0.5, "model_scale_m": 0.3}, "cannot be combined"),
        ({"overlap": 256}, "overlap 256 px"),
        ({"overlap": 129}, r"overlap 129 px is outside 0\.\.128 px: at most half the 256-px chunk"),
        ({"overlap": 33, "chunk_m": 32.0}, r"overlap 33 px is outside 0\.\.32 px: at most half the 64-px chunk"),
        ({"model_scale_m": -1.0}, "positive number of metres"),
        ({"max_nodata": 2.0}, "fractions"),
    ],
)
def test_bad_options_say_what_to_do(image_path, kwargs, message):
    with open_product(image_path) as product, pytest.raises(TilingError, match=message):
        ChunkReader(product, 256, **kwargs)


def test_overlap_of_half_a_chunk_is_the_largest_accepted(image_path):
    """Up to size/2 (the cap of the default overlap) the grid is as the arithmetic says; one more is refused."""
    with open_product(image_path) as product:
        reader = ChunkReader(product, 256, 128)
        assert reader.plan.overlap == 128
        assert reader.plan.grid.rows == axis_offsets(700, 256, 128) == [0, 128, 256, 384, 444]
        with pytest.raises(TilingError, match="outside 0..128 px"):
            ChunkReader(product, 256, 255)  # was accepted: a chunk every pixel


# -- on the generated HiRISE-like product (label + JP2) -------------------------------------------------


def test_reader_chunks_match_image_and_skip_margins(small_product):
    import rasterio

    with rasterio.open(small_product.image_path) as ds:  # the lossless JPEG2000's pixels, read without MarsIce
        dn = ds.read(1)
    with open_product(small_product.label_path) as product:
        reader = ChunkReader(product, 128, 0, repair=False)  # 4 x 3 chunks tile the 512 x 384 px exactly
        chunks = list(reader)
        assert len(chunks) == len(reader) == 12
        for c in chunks:
            rows, cols = c.window.slices
            assert np.array_equal(c.data, dn[rows, cols].astype(np.float32))
            x, y = c.transform @ (0, 0)
            assert (x, y) == product.transform @ (c.window.col_off, c.window.row_off)
            assert c.nodata_fraction == pytest.approx(float((dn[rows, cols] == 0).mean()))
        # the planted hot pixels at 1022/1023 are invalid, never valid surface
        for c in chunks:
            assert not c.valid[np.isin(c.data, (1022, 1023))].any()
        assert sum(c.special_pixels for c in chunks) == int(np.isin(dn, (1, 2, 1022, 1023)).sum()) > 0
        assert 0 < sum(c.nodata_fraction for c in chunks) < 12  # the strip's margins are read as no-data


def test_reader_skips_chunk_with_nodata_centre(small_product):
    with open_product(small_product.label_path) as product:
        reader = ChunkReader(product, 1024, 0, max_center_nodata=0.0)
        (chunk,) = list(reader)
        assert chunk.window == Window(0, 0, 512, 384)
        # the strip margins are at the corners, not the centre: kept with the paper's strict rule
        assert not chunk.skipped
        strict = ChunkReader(product, 1024, 0, max_center_nodata=0.0, max_nodata=0.0)
        (chunk,) = list(strict)
        assert chunk.skipped and "no-data" in chunk.skip_reason
