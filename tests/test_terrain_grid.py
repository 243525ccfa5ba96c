"""Terrain on the DTM's own grid (issue 23): the rasters are the DTM's posts, moved by the co-registration offset, and
a candidate's figures are those of the posts it touches, at any DTM post spacing (finer or coarser than the image).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from marsice_plugin.product import open_product
from marsice_plugin.terrain import stream as stream_module
from marsice_plugin.terrain.analysis import run_terrain
from marsice_plugin.terrain.candidates import terrain_fields
from marsice_plugin.terrain.coregistration import Coregistration
from marsice_plugin.terrain.dem import read_dtm
from marsice_plugin.terrain.stream import ValueCounts, open_stream


@pytest.fixture(scope="module")
def product(tmp_path_factory):
    """512 x 512 px at 0.5 m/px beside its HiRISE-style 2 m DTM (4x coarser)."""
    from marsice_plugin.synthetic.product_writer import write_sample_product
    from marsice_plugin.synthetic.scene import SceneConfig

    out = tmp_path_factory.mktemp("terrain_grid")
    return write_sample_product(out, SceneConfig(width=512, height=512, seed=5, n_boulders=60), dtm_factor=4)


def _force(monkeypatch, d_row: float, d_col: float, aligned: bool = True) -> None:
    """The co-registration's answer, forced (the phase correlation is tested in tests/test_terrain_inputs.py)."""
    forced = Coregistration(d_row, d_col, peak_ratio=9.0 if aligned else 1.1, aligned=aligned)
    monkeypatch.setattr(stream_module, "phase_correlate", lambda image, shade: forced)


@pytest.mark.parametrize("aligned", [True, False], ids=["applied", "not-applied"])
def test_rasters_are_the_dtm_posts_on_its_grid_moved_by_the_offset(product, tmp_path, monkeypatch, aligned) -> None:
    """Every raster has the DTM's 2 m pixels; its geotransform is a DTM post corner moved by the offset (3.2 rows
    south, 5.4 columns west of 0.5 m: 1.6 m south, 2.7 m west) when it is applied, by nothing when not; it covers the
    image by less than a post on each side, in the product's CRS; the heights are the posts (LERC: within 1 mm)."""
    _force(monkeypatch, 3.2, -5.4, aligned)
    result = run_terrain(product.dtm_path, product.label_path, tmp_path / "t")
    posts, t_dtm, _ = read_dtm(product.dtm_path)
    with open_product(product.label_path) as p:
        (il, ib, ir, it), crs = p.bounds, CRS.from_wkt(p.crs.to_wkt())
        dx, dy = p.transform.a * -5.4, p.transform.e * 3.2
    assert (dx, dy) == pytest.approx((-2.7, -1.6)) and t_dtm.a == 2.0 and t_dtm.e == -2.0
    if not aligned:
        dx = dy = 0.0
    for name, path in result.rasters.items():
        with rasterio.open(path) as ds:
            t, (left, bottom, right, top) = ds.transform, ds.bounds
            assert ds.res == (2.0, 2.0) and ds.crs == crs, name
            assert (t.b, t.d) == (0.0, 0.0)
            col, row = ~t_dtm @ (t.c - dx, t.f - dy)
            assert (col, row) == (pytest.approx(round(col), abs=1e-9), pytest.approx(round(row), abs=1e-9)), name
            assert (
                left <= il < left + 2 and right - 2 < ir <= right and bottom <= ib < bottom + 2 and top - 2 < it <= top
            )
            if name == "height":
                height = ds.read(1)
    r0, c0 = round(row), round(col)  # the grid reaches a post past the DTM's edges where the shift moves it: NaN
    n_r, n_c = height.shape
    assert -1 <= r0 <= 1 and -1 <= c0 <= 1 and abs(posts.shape[0] - n_r) <= 1 and abs(posts.shape[1] - n_c) <= 1
    pad = np.full((posts.shape[0] + 2 * n_r, posts.shape[1] + 2 * n_c), np.nan, np.float32)
    pad[n_r : n_r + posts.shape[0], n_c : n_c + posts.shape[1]] = posts
    under = pad[n_r + r0 : 2 * n_r + r0, n_c + c0 : 2 * n_c + c0]
    assert np.array_equal(np.isnan(height), np.isnan(under)) and np.nanmax(np.abs(height - under)) <= 0.001
    assert np.isfinite(height).mean() > 0.8
    assert result.coregistration.aligned == aligned and result.grid.own


def _parabola_dtm(path: Path, p, post: float, x_mid: float, k: float) -> Path:
    """A DTM of ``post`` m posts over the image and 8 posts more, in the product's CRS: z = k (x - x_mid)^2 (m)."""
    il, ib, ir, it = p.bounds
    x0, y0 = math.floor(il / post) * post - 8 * post, math.ceil(it / post) * post + 8 * post
    cols, rows = math.ceil((ir - x0) / post) + 8, math.ceil((y0 - ib) / post) + 8
    xs = x0 + (np.arange(cols) + 0.5) * post
    z = np.broadcast_to(k * (xs - x_mid) ** 2, (rows, cols)).astype(np.float32)
    profile = dict(driver="GTiff", width=cols, height=rows, count=1, dtype="float32", nodata=None)
    transform = Affine(post, 0.0, x0, 0.0, -post, y0)
    with rasterio.open(path, "w", crs=CRS.from_wkt(p.crs.to_wkt()), transform=transform, **profile) as ds:
        ds.write(z, 1)
    return path


@pytest.mark.parametrize("post", [2.0, 1.0, 0.25], ids=["2m", "1m", "0.25m-finer-than-the-image"])
def test_candidate_slope_is_the_slope_of_the_dtm_posts_it_touches(product, tmp_path, monkeypatch, post) -> None:
    """A tiny synthetic DTM (a parabola rising east of the image's middle) at 2 m, 1 m and 0.25 m (finer than the
    0.5 m image) with an offset of (2, -3) image px applied: a 6 m patch 50 m east of the middle gets exactly the
    slope, aspect and height of the DTM posts it touches once moved by the offset (all touched: its edges fall
    inside posts), computed here straight from the DTM array; and the slope is the parabola's own, atan(2k |x|)."""
    import shapely

    k = 0.004
    _force(monkeypatch, 2.0, -3.0)
    with open_product(product.label_path) as p:
        il, ib, ir, it = p.bounds
        x_mid, y_mid = (il + ir) / 2, (ib + it) / 2
        dtm = _parabola_dtm(tmp_path / "parabola.tif", p, post, x_mid, k)
        dx, dy = p.transform.a * -3.0, p.transform.e * 2.0
        wkt = p.crs.to_wkt()
    z, t, _ = read_dtm(dtm)
    # posts (after the shift) touched by the patch: columns a..b, rows ra..rb; its edges 0.3 and 0.6 into them
    a, ra = math.floor((x_mid + 47 - (t.c + dx)) / post), math.floor(((t.f + dy) - (y_mid + 3)) / post)
    b, rb = a + math.ceil(6 / post), ra + math.ceil(6 / post)
    x0, x1 = t.c + dx + (a + 0.3) * post, t.c + dx + (b + 0.6) * post
    y1, y0 = t.f + dy - (ra + 0.3) * post, t.f + dy - (rb + 0.6) * post
    rows = [(shapely.box(x0, y0, x1, y1), {"candidate_id": "c0", "max_probability": 0.9})]
    with open_stream(dtm, product.label_path) as stream:
        (values,) = terrain_fields(stream, rows, candidates_crs=wkt)
        assert stream.grid.own and stream.grid.scale_m == post
    gx = np.gradient(z.astype(np.float64), post, axis=1)  # dz/dx: the rows are flat
    slope = np.degrees(np.arctan(np.abs(gx))).astype(np.float32)[ra : rb + 1, a : b + 1]
    assert values["terrain_mean_slope"] == pytest.approx(float(slope.mean()), rel=1e-6, abs=0)
    assert values["terrain_max_slope"] == float(slope.max())
    assert values["terrain_elevation"] == pytest.approx(float(z[ra : rb + 1, a : b + 1].mean()), rel=1e-6, abs=0)
    xs = t.c + (np.arange(a, b + 1) + 0.5) * post  # the posts' centres before the shift
    assert values["terrain_mean_slope"] == pytest.approx(np.degrees(np.arctan(2 * k * (xs - x_mid))).mean(), abs=1e-3)
    assert 15 < values["terrain_mean_slope"] < 30
    assert values["terrain_mean_aspect"] == pytest.approx(270.0, abs=1e-3)  # rising east: downhill is west
    assert values["terrain_aligned"] == 1 and values["terrain_note"] is None


def test_dtm_in_another_projection_is_resampled_onto_a_grid_of_its_spacing_in_the_image_crs(
    product, tmp_path, monkeypatch
) -> None:
    """A DTM whose CRS is not the label's (here the same 2 m DTM in an equirectangular projection centred 1 degree
    further east) cannot lend its lattice: the rasters are in the product's CRS at the DTM's 2 m spacing, anchored at
    the image's corner, the heights resampled bilinearly."""
    import pyproj
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    with rasterio.open(product.dtm_path) as src:
        data, src_crs, src_t = src.read(1, masked=True).filled(np.nan), src.crs, src.transform
        other = pyproj.CRS(src_crs.to_wkt()).to_dict()
        other["lon_0"] = other.get("lon_0", 0.0) + 1.0
        dst_crs = CRS.from_dict(other)
        t, w, h = calculate_default_transform(src_crs, dst_crs, src.width, src.height, *src.bounds, resolution=2.0)
    moved = np.full((h, w), np.nan, np.float32)
    reproject(data, moved, src_transform=src_t, src_crs=src_crs, dst_transform=t, dst_crs=dst_crs,
              src_nodata=np.nan, dst_nodata=np.nan, resampling=Resampling.bilinear)  # fmt: skip
    path = tmp_path / "other.tif"
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=1, dtype="float32", crs=dst_crs,
                       transform=t, nodata=np.nan) as ds:  # fmt: skip
        ds.write(moved, 1)
    _force(monkeypatch, 0.0, 0.0, aligned=False)  # both grids at the same places: the image's corner, no offset
    own = run_terrain(product.dtm_path, product.label_path, tmp_path / "own")
    result = run_terrain(path, product.label_path, tmp_path / "other")
    assert own.grid.own and not result.grid.own and result.grid.scale_m == pytest.approx(2.0, rel=1e-6)
    with open_product(product.label_path) as p, rasterio.open(result.rasters["height"]) as ds:
        assert pyproj.CRS(ds.crs.to_wkt()).equals(p.crs) and ds.res == pytest.approx((2.0, 2.0), rel=1e-6)
        # anchored at the image's corner (the heights sampled there less the offset, wherever it is applied)
        assert (ds.transform.c, ds.transform.f) == pytest.approx((p.bounds[0], p.bounds[3]), abs=1e-6)
        resampled = ds.read(1)
    with rasterio.open(own.rasters["height"]) as ds:
        posts = ds.read(1)
    n_r, n_c = min(posts.shape[0], resampled.shape[0]), min(posts.shape[1], resampled.shape[1])
    both = np.isfinite(posts[:n_r, :n_c]) & np.isfinite(resampled[:n_r, :n_c])
    assert both.mean() > 0.7
    error = np.abs(posts[:n_r, :n_c] - resampled[:n_r, :n_c])[both]
    # the other projection's lattice falls on the same places here (a whole number of posts east): the resampled
    # heights are the posts themselves, within LERC's 1 mm twice; a grid one post off would miss by metres
    assert error.max() <= 0.002


# -- the pieces the strips are made of -------------------------------------------------------------------------------


def test_exact_median_from_pieces() -> None:
    rng = np.random.default_rng(2)
    values = rng.integers(0, 1024, size=10_001).astype(np.float32)
    values[::7] = np.nan
    for n in (10_001, 10_000):
        counts = ValueCounts()
        for piece in np.array_split(values[:n], 13):
            counts.add(piece)
        assert counts.median() == float(np.nanmedian(values[:n].astype(np.float64)))
    assert math.isnan(ValueCounts().median())
    # grey values that are not whole numbers (an I/F raster) take the sorting path, with the same answer
    floats = rng.normal(0.2, 0.05, size=(40, 50)).astype(np.float32)
    floats[3, :7] = np.nan
    counts = ValueCounts()
    for piece in np.array_split(floats, 6):
        counts.add(piece)
    assert counts.median() == float(np.nanmedian(floats.astype(np.float64)))


def test_windows_are_copies_that_do_not_keep_their_strips_alive() -> None:
    """A kept window must own its pixels: a view would hold its whole full-width strip until the run ends."""
    from marsice_plugin.terrain.imagepass import WindowCollector

    strips = [np.arange(k * 400, (k + 1) * 400, dtype=np.float32).reshape(4, 100) for k in range(3)]
    collector = WindowCollector([(1, 3, 10, 20), (3, 6, 50, 60), None])
    got: dict[int, np.ndarray] = {}
    for k, strip in enumerate(strips):
        for index, arrays in collector.add(4 * k, {"image": strip}):
            got[index] = arrays["image"]
    whole = np.concatenate(strips)
    np.testing.assert_array_equal(got[0], whole[1:3, 10:20])  # inside one strip
    np.testing.assert_array_equal(got[1], whole[3:6, 50:60])  # across two strips
    for window in got.values():
        assert window.base is None and not any(np.shares_memory(window, s) for s in strips)
