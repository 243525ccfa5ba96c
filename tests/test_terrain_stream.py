"""Terrain in bounded memory (issue 23): strips, windows and a DTM that covers only part of the image.

Each test compares the streamed result with the whole-grid computation it replaces (the DTM's posts under the image,
read straight from the file, and the whole-grid shadow march), on one small generated product whose terrain grid (its
2 m DTM beside 0.5 m pixels) is cut into many strips, so that every halo crosses strip boundaries.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import rasterio

from marsice_plugin.product import open_product
from marsice_plugin.terrain import stream as stream_module
from marsice_plugin.terrain.candidates import TERRAIN_FIELDS, candidate_terrain, terrain_fields
from marsice_plugin.terrain.coregistration import Coregistration
from marsice_plugin.terrain.dem import read_dtm
from marsice_plugin.terrain.derivatives import aspect_degrees, shadow_mask, slope_degrees
from marsice_plugin.terrain.stream import open_stream
from marsice_plugin.terrain.zonal import image_shadow_fraction, zonal_attributes
from marsice_plugin.vectors import window_footprint

NAMES = [f.name for f in TERRAIN_FIELDS]


@pytest.fixture(scope="module")
def product(tmp_path_factory):
    from marsice_plugin.synthetic.product_writer import write_sample_product
    from marsice_plugin.synthetic.scene import SceneConfig

    out = tmp_path_factory.mktemp("terrain_stream")
    return write_sample_product(out, SceneConfig(width=512, height=512, seed=5, n_boulders=60), dtm_factor=4)


@pytest.fixture
def thin_strips(monkeypatch):
    """Strips of 8 rows (the real ones are 256-row multiples of a few Mpx): 16 or 17 strips on the 512-px product's
    terrain grid (its 2 m DTM's 128 posts, and one more where the offset moves the grid by a fraction of a post)."""
    monkeypatch.setattr(stream_module, "TILE", 8)
    monkeypatch.setattr(stream_module, "STRIP_PIXELS", 1)
    monkeypatch.setattr(stream_module, "MAX_STRIP_PIXELS", 1)


def _rows(product, windows) -> list:
    with open_product(product.label_path) as p:
        geoms = [window_footprint(p.transform, p.crs, *w) for w in windows]
    return [(g, {"candidate_id": f"c{i}", "max_probability": 0.9}) for i, g in enumerate(geoms)]


def _candidates_file(path, product_id: str, rows: list):
    """A results GeoPackage whose ice_candidates layer holds ``rows`` (from :func:`_rows`) of ``product_id``."""
    from marsice_plugin.gpkg import Field, write_new
    from marsice_plugin.mars_crs import common_crs

    schema = [Field("product_id", str), Field("candidate_id", str), Field("max_probability", float)]
    file_rows = [(g, {**a, "product_id": product_id}) for g, a in rows]

    def build(gpkg) -> None:
        gpkg.create_layer("ice_candidates", schema, "POLYGON", gpkg.add_srs(common_crs()))
        gpkg.insert("ice_candidates", schema, file_rows)

    return write_new(path, build)


def _posts(dtm_path, grid) -> np.ndarray:
    """The grid's heights read straight from the DTM file: the posts under the grid's unshifted transform (which must
    lie on the DTM's lattice, at its pixel size), NaN past the DTM's edges."""
    posts, t, _ = read_dtm(dtm_path)
    col, row = ~t @ (grid.source.c, grid.source.f)
    assert (col, row) == (round(col), round(row)) and (grid.source.a, grid.source.e) == (t.a, t.e)
    pad = np.full((posts.shape[0] + 2 * grid.height, posts.shape[1] + 2 * grid.width), np.nan, np.float32)
    pad[grid.height : grid.height + posts.shape[0], grid.width : grid.width + posts.shape[1]] = posts
    r0, c0 = grid.height + round(row), grid.width + round(col)
    return pad[r0 : r0 + grid.height, c0 : c0 + grid.width]


def _whole(stream) -> dict[str, np.ndarray]:
    """The grids computed on the whole terrain grid at once, from the stream's own co-registration and sun; DTM gaps
    filled with the mean height the stream took."""
    g = stream.grid
    heights = _posts(stream.dtm.path, g)
    valid = np.isfinite(heights)
    filled = np.where(valid, heights, np.float32(stream.fill_height))
    aspect = aspect_degrees(filled, g.scale_m, crs=g.crs, transform=tuple(g.transform)[:6])
    return {
        "height": heights,
        "slope": np.where(valid, slope_degrees(filled, g.scale_m), np.nan).astype(np.float32),
        "aspect": np.where(valid, aspect, np.nan).astype(np.float32),
        "shadow": shadow_mask(filled, g.scale_m, stream.sun_azimuth, stream.incidence),
    }


def _expected(stream, rows, grids: dict[str, np.ndarray], image: np.ndarray) -> list[list[float | None] | None]:
    """Each row's eight terrain figures from the whole grids: the patch rasterised (all touched) on the whole terrain
    grid for the DTM figures, on the whole image for the dark-pixel one (the whole image's median); None where no
    DTM height is under it."""
    import pyproj
    import shapely
    from rasterio.features import rasterize

    from marsice_plugin.mars_crs import common_crs

    g, p = stream.grid, stream.product
    to_image = pyproj.Transformer.from_crs(common_crs(), p.crs, always_xy=True)
    out = []
    for geom, _ in rows:
        on_image = shapely.transform(geom, lambda xy: np.column_stack(to_image.transform(xy[:, 0], xy[:, 1])))
        mask = rasterize([(on_image, 1)], out_shape=(g.height, g.width), transform=g.transform, all_touched=True)
        mask = mask.astype(bool)
        if not np.isfinite(grids["height"][mask]).any():
            out.append(None)
            continue
        a = zonal_attributes(mask, **grids, azimuth_deg=stream.sun_azimuth, ring_px=math.ceil(5.0 / g.scale_m))
        image_mask = rasterize([(on_image, 1)], out_shape=image.shape, transform=p.transform, all_touched=True)
        dark = image_shadow_fraction(image_mask, image, stream.sun_azimuth, math.ceil(5.0 / p.scale_m))
        expected = [a.mean_slope, a.max_slope, a.mean_aspect, a.poleward_fraction, a.shadow_fraction]
        expected += [a.sunward_shade_fraction, dark, a.elevation]
        out.append([None if math.isnan(v) else v for v in expected])
    return out


@pytest.mark.parametrize(
    ("azimuth", "incidence", "offset"), [(20.0, 80.0, None), (200.0, 75.0, (3.2, -5.4)), (90.0, 60.0, (-7.0, 2.0))]
)
def test_strip_wise_shadows_equal_whole_grid_shadows(
    product, thin_strips, monkeypatch, azimuth, incidence, offset
) -> None:
    """North, south and east suns; the DTM moved by a co-registration offset (forced: the sun given here is not the
    image's, so the correlation itself is weak)."""
    if offset is not None:
        forced = Coregistration(*offset, peak_ratio=9.0, aligned=True)
        monkeypatch.setattr(stream_module, "phase_correlate", lambda image, shade: forced)
    strips = []
    with open_stream(product.dtm_path, product.label_path, azimuth, incidence) as stream:
        stream.run(on_strip=strips.append)
        whole = _whole(stream)
        above, below = stream.halo_rows()
        g = stream.grid
        longest = stream.relief / math.tan(math.radians(90 - incidence)) / g.scale_m
    assert g.own and g.scale_m == 2.0 and g.height in (128, 129)  # the 2 m DTM's posts under 256 m of image
    assert stream.strip_rows == 8 and len(strips) == -(-g.height // 8)
    # the halo is the longest shadow's rows on the sun's side: here several strips tall (north sun: rows above)
    sun_side = above if azimuth < 90 or azimuth > 270 else below
    assert sun_side == round((math.ceil(longest) + 1) * abs(math.cos(math.radians(azimuth)))) or azimuth == 90.0
    if azimuth != 90.0:
        assert sun_side > 2 * stream.strip_rows
    for name in ("shadow", "slope", "aspect", "height"):
        streamed = np.concatenate([getattr(s, "heights" if name == "height" else name) for s in strips])
        assert np.array_equal(streamed, whole[name], equal_nan=True), name
    assert 0.005 < whole["shadow"].mean() < 0.98  # shadows to compare, not an all-dark or all-lit grid
    assert stream.coregistration.aligned == (offset is not None)


def test_window_statistics_equal_whole_grid_statistics(product, thin_strips) -> None:
    """Each candidate is scored from windows around it (terrain grid and image); the figures are those of the whole
    grids, bit for bit."""
    # (col, row, width, height): inside, at the image's corner, at its right edge (no DTM), 300 rows tall
    windows = [(240, 240, 30, 30), (40, 300, 12, 20), (0, 0, 9, 7), (480, 100, 32, 80), (25, 5, 40, 300)]
    rows = _rows(product, windows)
    strips, progress = [], []
    with open_stream(product.dtm_path, product.label_path) as stream:
        fields = terrain_fields(
            stream, rows, on_strip=strips.append, progress=lambda pct, msg: progress.append((pct, msg))
        )
        whole = _whole(stream)
        p = stream.product
        image = p.read(0, 0, stream.height, stream.width).astype(np.float32)
        image[image == p.null_value] = np.nan
        grids = {n: np.concatenate([s.grids()[n] for s in strips]) for n in strips[0].grids()}
        expected = _expected(stream, rows, grids, image)
        assert np.array_equal(grids["shadow"], whole["shadow"])
        assert stream.image_median == float(np.nanmedian(image.astype(np.float64)))
    scored = 0
    for values, figures in zip(fields, expected, strict=True):
        if figures is None:  # the right edge, where the DTM has no height
            assert values == {**dict.fromkeys(NAMES), "terrain_note": "outside DTM"}
            continue
        assert [values[n] for n in NAMES[:8]] == figures
        scored += 1
    assert scored == 4
    # the tall patch (300 image rows: 75 grid rows) spans ten strips; progress names each candidate
    assert [m for _, m in progress if m.startswith("candidate")] == [f"candidate {k}/5" for k in range(1, 6)]
    assert sum(m.startswith("slope, aspect and shadows: strip") for _, m in progress) == len(strips) >= 16


def test_rasters_hold_the_grids_within_the_stated_lerc_error(product, tmp_path: Path) -> None:
    """Slope, aspect and height are LERC-compressed: every value within the error :data:`RASTERS` states (0.005
    degrees, 1 mm), NaN where the grid is NaN; the 0/1 masks are lossless."""
    from marsice_plugin.terrain.analysis import RASTERS, run_terrain

    result = run_terrain(product.dtm_path, product.label_path, tmp_path / "t")
    with open_stream(product.dtm_path, product.label_path) as stream:
        strips = []
        stream.run(on_strip=strips.append)
        grids = {name: np.concatenate([s.rasters()[name] for s in strips]) for name in RASTERS}
    for name, (dtype, _, max_error) in RASTERS.items():
        with rasterio.open(result.rasters[name]) as ds:
            written = ds.read(1)
            assert ds.dtypes[0] == dtype and ds.profile["compress"] == ("zstd" if max_error is None else "lerc")
        if max_error is None:
            assert np.array_equal(written, grids[name]), name
            continue
        assert np.array_equal(np.isnan(written), np.isnan(grids[name])), name
        error = np.nanmax(np.abs(written.astype(np.float64) - grids[name]))
        ulp = float(np.spacing(np.float32(np.nanmax(np.abs(grids[name])))))  # the float32 the value is rounded to
        assert 0.0 < error <= max_error + ulp, (name, error)


def _half_dtm(product, path: Path) -> Path:
    """The product's DTM cropped to its northern half (as a GeoTIFF in the same CRS)."""
    with rasterio.open(product.dtm_path) as src:
        rows = src.height // 2
        window = rasterio.windows.Window(0, 0, src.width, rows)
        data = src.read(1, window=window)
        profile = dict(
            driver="GTiff", width=src.width, height=rows, count=1, dtype="float32", crs=src.crs,
            transform=src.window_transform(window), nodata=src.nodata,
        )  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    return path


def test_dtm_over_half_the_image_gives_null_fields_and_a_note_outside_it(product, tmp_path: Path, monkeypatch) -> None:
    from marsice_plugin.gpkg import read_layer
    from marsice_plugin.terrain import analysis
    from marsice_plugin.terrain.analysis import run_terrain

    half = _half_dtm(product, tmp_path / "half.tif")
    rows = _rows(product, [(200, 60, 30, 30), (40, 120, 20, 20), (200, 400, 30, 30), (300, 300, 12, 12)])
    fields = candidate_terrain(half, product.label_path, rows)
    for values in fields[:2]:  # on the DTM's half: scored
        assert values["terrain_note"] is None and 0.0 <= values["terrain_score"] <= 1.0
        assert values["terrain_mean_slope"] is not None and values["terrain_elevation"] is not None
    for values in fields[2:]:  # on the other half: NULL terrain, and why
        assert values == {**dict.fromkeys(NAMES), "terrain_note": "outside DTM"}

    results = _candidates_file(tmp_path / "r.gpkg", product.product_id, rows)
    monkeypatch.setattr(analysis, "TILE", 32)  # tiles and overviews of 32 px: the grid is 128 posts a side
    result = run_terrain(half, product.label_path, tmp_path / "t", candidates=results)
    assert result.candidates_updated == 4 and len(result.scores) == 2
    written = read_layer(results, "ice_candidates", NAMES, geometry=False)
    assert [{n: a[n] for n in NAMES} for _, a in written] == fields
    g = result.grid
    with rasterio.open(result.rasters["height"]) as ds:
        height = ds.read(1)
        assert ds.profile["tiled"] and ds.profile["blockxsize"] == 32 and ds.profile["compress"] == "lerc"
        assert ds.overviews(1) == [2, 4, 8] and ds.transform == g.transform and ds.shape == (g.height, g.width)
    # the half DTM's posts as they are (within LERC's 1 mm), NaN on the grid rows past its last one
    posts = _posts(half, g)
    assert np.array_equal(np.isnan(height), np.isnan(posts)) and np.nanmax(np.abs(height - posts)) <= 0.001
    south = np.arange(g.height) + g.post_row >= 64  # the half DTM's 64 rows of posts
    assert 20 < south.sum() < 100 and np.isnan(height[south]).all() and np.isfinite(height[~south]).mean() > 0.8
    with rasterio.open(result.rasters["shadow"]) as ds:
        shadow = ds.read(1)
    assert set(np.unique(shadow[np.isfinite(height)])) == {0, 1} and (shadow[np.isnan(height)] == 255).all()
    # overviews: slope averaged (2 x 2 pixels where all four have a value), aspect the nearest pixel (no 180 degrees
    # between 350 and 10)
    with rasterio.open(result.rasters["slope"]) as ds, rasterio.open(result.rasters["slope"], overview_level=0) as ov:
        slope, slope2 = ds.read(1).astype(np.float64), ov.read(1)
    n_r, n_c = g.height // 2, g.width // 2
    blocks = slope[: 2 * n_r, : 2 * n_c].reshape(n_r, 2, n_c, 2).mean(axis=(1, 3))
    whole = np.isfinite(blocks)
    assert whole.mean() > 0.3 and np.allclose(slope2[:n_r, :n_c][whole], blocks[whole], atol=0.0101)
    with rasterio.open(result.rasters["aspect"]) as ds, rasterio.open(result.rasters["aspect"], overview_level=0) as ov:
        aspect, aspect2 = ds.read(1), ov.read(1)
    assert np.allclose(aspect2[:n_r, :n_c], aspect[: 2 * n_r : 2, : 2 * n_c : 2], atol=0.0051, equal_nan=True)


def test_truncated_dtm_is_one_clear_error_and_leaves_the_geopackage_as_it_was(product, tmp_path: Path) -> None:
    from marsice_plugin.errors import TerrainError
    from marsice_plugin.terrain.analysis import run_terrain

    with rasterio.open(product.dtm_path) as src:
        data, profile = src.read(1), src.profile
    dtm = tmp_path / "dtm.tif"
    profile.update(driver="GTiff", tiled=True, blockxsize=16, blockysize=16, compress="deflate")
    with rasterio.open(dtm, "w", **profile) as dst:
        dst.write(data, 1)
    dtm.write_bytes(dtm.read_bytes()[: dtm.stat().st_size * 6 // 10])  # cut partway through its tiles
    results = _candidates_file(tmp_path / "r.gpkg", product.product_id, _rows(product, [(200, 60, 30, 30)]))
    before = results.read_bytes()
    with pytest.raises(TerrainError, match=r"cannot be read at rows \d+-\d+ .*damaged or truncated: download it again"):
        run_terrain(dtm, product.label_path, tmp_path / "t", candidates=results)
    assert results.read_bytes() == before and not (tmp_path / "t").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dtm.tif", "r.gpkg"]


# -- a product wider than one FFT: co-registration on the JPEG2000 levels, level-0 windows for candidates ------------


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """4200 x 192 px: over 2048 px wide, so the co-registration reads a reduced level (f = 3: the 4x level)."""
    from marsice_plugin.synthetic.product_writer import write_sample_product
    from marsice_plugin.synthetic.scene import SceneConfig

    out = tmp_path_factory.mktemp("terrain_wide")
    return write_sample_product(out, SceneConfig(width=4200, height=192, seed=5, n_boulders=60), dtm_factor=4)


def _shifted_dtm(product, path: Path, rows: int, cols: int) -> Path:
    """The product's DTM as a GeoTIFF moved ``rows`` image pixels south and ``cols`` east."""
    with rasterio.open(product.dtm_path) as src:
        data, profile = src.read(1), src.profile
        scale = product.scene.config.scale_m
        t = src.transform
        profile.update(
            driver="GTiff", transform=rasterio.Affine(t.a, t.b, t.c + cols * scale, t.d, t.e, t.f - rows * scale)
        )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    return path


def test_wide_product_without_candidates_reads_level_0_only_in_three_tiles(wide, tmp_path, monkeypatch) -> None:
    """The strips equal the whole-grid computation, the image's level 0 is read only in the refinement tiles, and a
    DTM moved by (2, -6) px moves the measured offset by that much, to within half a pixel."""
    from marsice_plugin.product import Product

    reads: list[tuple[int, ...]] = []
    real_read = Product.read
    monkeypatch.setattr(Product, "read", lambda self, *a: reads.append(a) or real_read(self, *a))
    strips = []
    with open_stream(wide.dtm_path, wide.label_path) as stream:
        stream.run(on_strip=strips.append)
        whole = _whole(stream)
        base = stream.coregistration
    assert stream._factor == 3 and base.aligned
    assert reads == [(0, 1920, 192, 192)] * 3  # one storage tile (192 rows here) in the middle, three times
    for name in ("shadow", "slope", "aspect", "height"):
        streamed = np.concatenate([getattr(s, "heights" if name == "height" else name) for s in strips])
        assert np.array_equal(streamed, whole[name], equal_nan=True), name
    moved = _shifted_dtm(wide, tmp_path / "moved.tif", 2, -6)
    with open_stream(moved, wide.label_path) as stream:
        stream.run()
        c = stream.coregistration
    assert c.aligned
    assert abs((c.d_row - base.d_row) + 2) < 0.5 and abs((c.d_col - base.d_col) - 6) < 0.5, (base, c)


def test_wide_product_candidates_scored_from_level_0_windows_read_beside_the_strips(
    wide, thin_strips, monkeypatch
) -> None:
    """The candidates' image pixels are level-0 windows around them (read one by one: nothing else of level 0 but the
    co-registration's three tiles), and the median the dark figure compares with is the co-registration's reduced
    grid's; every figure equals the whole grids' with that median."""
    from marsice_plugin.product import Product
    from marsice_plugin.terrain.imagepass import reduced_image

    windows = [(2000, 80, 30, 30), (4100, 20, 60, 40), (10, 150, 25, 30)]
    rows = _rows(wide, windows)
    strips, progress, reads = [], [], []
    real_read = Product.read
    monkeypatch.setattr(Product, "read", lambda self, *a: reads.append(a) or real_read(self, *a))
    with open_stream(wide.dtm_path, wide.label_path) as stream:
        fields = terrain_fields(stream, rows, on_strip=strips.append, progress=lambda p, m: progress.append(m))
        p = stream.product
        median = float(np.nanmedian(reduced_image(p, stream._factor)[0]))
        assert stream.image_median == median and stream._factor == 3
        image = real_read(p, 0, 0, stream.height, stream.width).astype(np.float32)
        image[image == p.null_value] = np.nan
        grids = {n: np.concatenate([s.grids()[n] for s in strips]) for n in strips[0].grids()}
        expected = _expected(stream, rows, grids, image)
    m = math.ceil(5.0 / p.scale_m) + 1  # each window: the patch and its sunward ring, cut at the image's edges
    cut = [(max(0, r - m), min(192, r + h + m), max(0, c - m), min(4200, c + w + m)) for c, r, w, h in windows]
    got = sorted((r0, r0 + h, c0, c0 + w) for r0, c0, h, w in reads[3:])  # to within the projection's rounding
    assert len(got) == 3 and np.abs(np.subtract(got, sorted(cut), dtype=float)).max() <= 1
    assert reads[:3] == [(0, 1920, 192, 192)] * 3  # the co-registration's refinement tiles
    for values, figures in zip(fields, expected, strict=True):
        assert figures is not None and [values[n] for n in NAMES[:8]][:6] == figures[:6]
        assert values["terrain_elevation"] == figures[7]
    # the dark figure: the whole image's pixels in the ring, against the reduced grid's median
    assert [values["terrain_image_shadow_fraction"] for values in fields] == [
        _dark(stream, geom, image, median) for geom, _ in rows
    ]
    assert [m for m in progress if m.startswith("candidate")] == ["candidate 1/3", "candidate 2/3", "candidate 3/3"]


def _dark(stream, geom, image: np.ndarray, median: float) -> float | None:
    import pyproj
    import shapely
    from rasterio.features import rasterize

    from marsice_plugin.mars_crs import common_crs

    p = stream.product
    to_image = pyproj.Transformer.from_crs(common_crs(), p.crs, always_xy=True)
    on_image = shapely.transform(geom, lambda xy: np.column_stack(to_image.transform(xy[:, 0], xy[:, 1])))
    mask = rasterize([(on_image, 1)], out_shape=image.shape, transform=p.transform, all_touched=True)
    value = image_shadow_fraction(mask, image, stream.sun_azimuth, math.ceil(5.0 / p.scale_m), median)
    return None if math.isnan(value) else value


def test_image_read_failing_beside_the_strips_is_its_one_line_and_writes_nothing(wide, thin_strips, tmp_path) -> None:
    """A decode error in the thread's level-0 read (a damaged tile under a candidate's window) stops the run with
    that error: no raster, no temporary file, no output folder, the candidates GeoPackage byte-identical."""
    from marsice_plugin.errors import ProductError
    from marsice_plugin.product import Product
    from marsice_plugin.terrain.analysis import run_terrain

    results = _candidates_file(tmp_path / "r.gpkg", wide.product_id, _rows(wide, [(2000, 80, 30, 30)]))
    before = results.read_bytes()
    real_read = Product.read

    def damaged(self, row_off, col_off, height, width):
        if row_off >= 60:  # the candidate's window (rows 69-120), not the co-registration's tiles (rows 0-191)
            raise ProductError(
                f"{self.path}: cannot decode pixels at rows {row_off}-{row_off + height - 1}: tile damaged. The image "
                "file may be truncated or corrupt: download it again"
            )
        return real_read(self, row_off, col_off, height, width)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Product, "read", damaged)
        with pytest.raises(ProductError, match=r"cannot decode pixels at rows 69-120: .* download it again"):
            run_terrain(wide.dtm_path, wide.label_path, tmp_path / "t", candidates=results)
    assert results.read_bytes() == before and not (tmp_path / "t").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.gpkg"]
