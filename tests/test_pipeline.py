"""The whole pipeline on a generated product (chunks, probabilities, GeoPackage, quick-look), and the detect CLI on the
committed tiny product (progress events, errors)."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pyproj
import pytest
import shapely
from PIL import Image

from marsice_plugin.detection import DetectOptions
from marsice_plugin.gpkg import parse_geometry_blob
from marsice_plugin.pipeline import detect
from marsice_plugin.product import open_product
from marsice_plugin.quicklook import _colour
from marsice_plugin.truth import chunk_truth
from marsice_plugin.vectors import to_lonlat

from .conftest import DEMO_MODEL


@pytest.fixture(scope="module")
def detection(sample_product, tmp_path_factory):
    out = tmp_path_factory.mktemp("detect")
    result = detect(
        sample_product.label_path,
        out / "chunks.gpkg",
        DetectOptions(model_path=DEMO_MODEL, overlap=0),  # the paper's tiling: one chunk per grid cell
        quicklook=out / "quicklook.png",
        probability_raster=out / "probability.tif",
    )
    return result, out


def test_chunk_layer_features_and_attributes(detection, sample_product):
    result, out = detection
    conn = sqlite3.connect(out / "chunks.gpkg")
    rows = conn.execute(
        "SELECT chunk_row, chunk_col, probability, skipped, ls, incidence, sun_azimuth, product_id, latitude "
        "FROM chunks ORDER BY chunk_row, chunk_col"
    ).fetchall()
    conn.close()
    assert len(rows) == 6 == len(result.chunks)
    assert [(r[0], r[1]) for r in rows] == [(i, j) for i in range(2) for j in range(3)]
    for _, _, p, skipped, ls, inc, az, pid, lat in rows:
        assert skipped == 0 and 0.0 <= p <= 1.0
        assert ls == pytest.approx(172.0) and inc == pytest.approx(68.0) and az == pytest.approx(297.0)
        assert pid == sample_product.product_id
        assert -50.3 < lat < -50.1


def test_chunk_footprints_are_exact(detection, sample_product):
    _, out = detection
    conn = sqlite3.connect(out / "chunks.gpkg")
    blobs = {
        (r, c): parse_geometry_blob(g) for r, c, g in conn.execute("SELECT chunk_row, chunk_col, geom FROM chunks")
    }
    conn.close()
    with open_product(sample_product.label_path) as product:
        t = product.transform
        x0, y0 = t @ (1024, 1024)
        x1, y1 = t @ (2048, 2048)
        lon, lat = to_lonlat(product.crs, [x0, x1], [y0, y1])
    expected = shapely.box(lon[0], lat[1], lon[1], lat[0])
    assert blobs[(1, 1)].symmetric_difference(expected).area < 1e-12
    union = shapely.union_all(list(blobs.values()))
    assert union.area == pytest.approx(shapely.box(*union.bounds).area, rel=1e-9)  # no gaps


def test_probability_higher_on_chunks_with_ice(detection, sample_product):
    result, _ = detection
    truth = chunk_truth(sample_product.scene.ice, result.chunks)
    with_ice = [c.probability for c in result.chunks if truth[(c.chunk_row, c.chunk_col)]]
    without = [c.probability for c in result.chunks if not truth[(c.chunk_row, c.chunk_col)]]
    assert with_ice and without
    assert np.mean(with_ice) > np.mean(without)


def test_stitched_probability_raster_is_georeferenced_and_ranks_ice_chunks(detection, sample_product):
    """The GeoTIFF lies exactly on the product (its own Mars CRS, same bounds) and each chunk's area holds
    that chunk's probability, so chunks with planted ice read higher there too."""
    import rasterio

    result, out = detection
    with open_product(sample_product.label_path) as product, rasterio.open(out / "probability.tif") as tif:
        crs = pyproj.CRS.from_wkt(tif.crs.to_wkt())
        assert crs.to_epsg() is None and crs.equals(product.crs, ignore_axis_order=True)
        assert crs.ellipsoid.semi_major_metre == pytest.approx(product.crs.ellipsoid.semi_major_metre)  # Mars, ~3.39e6
        assert 3.37e6 < crs.ellipsoid.semi_major_metre < 3.40e6
        assert tif.bounds == pytest.approx(
            rasterio.transform.array_bounds(product.height, product.width, product.transform)
        )
        values = tif.read(1)
        inverse = ~tif.transform
    truth = chunk_truth(sample_product.scene.ice, result.chunks)
    read = {}
    for c in result.chunks:
        if c.skipped:
            continue
        x, y = product.transform * (c.window.col_off + c.window.width / 2, c.window.row_off + c.window.height / 2)
        col, row = (int(v) for v in inverse * (x, y))
        read[(c.chunk_row, c.chunk_col)] = values[row, col]
        assert values[row, col] == pytest.approx(c.probability, abs=1e-6)  # no overlap: each chunk its own value
    with_ice = [v for k, v in read.items() if truth[k]]
    without = [v for k, v in read.items() if not truth[k]]
    assert np.mean(with_ice) > np.mean(without)


def test_hot_pixels_repaired_and_recorded(detection, sample_product):
    result, _ = detection
    special = sum(c.special_pixels for c in result.chunks)
    planted = int(np.isin(sample_product.scene.dn, (1022, 1023)).sum())
    assert special == planted > 0


def test_quicklook_png(detection):
    result, out = detection
    with Image.open(out / "quicklook.png") as im:
        assert im.format == "PNG" and im.mode == "RGB"
        assert im.size == (1400, 933)
        pixels = np.asarray(im)
    # each chunk's top edge is drawn in the colour of its probability
    scale = 1400 / 3072
    for c in result.chunks:
        x = int((c.window.col_off + c.window.width / 2) * scale)
        y = int(c.window.row_off * 933 / 2048)
        above = c.probability >= result.threshold
        assert tuple(pixels[y, x]) == _colour(c.probability, above)
    assert sorted(p.name for p in out.iterdir()) == ["chunks.gpkg", "probability.tif", "quicklook.png"]


def test_cli_detect_json_progress(marsice_cli, small_product, tmp_path):
    out = tmp_path / "cli.gpkg"
    proc = marsice_cli(
        "--progress", "json", "detect", str(small_product.label_path), "-o", str(out), "--model", str(DEMO_MODEL),
        "--chunk-size", "256",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    progress = [e["percent"] for e in events if e["type"] == "progress"]
    assert progress == sorted(progress) and progress[-1] == 100
    (result,) = [e for e in events if e["type"] == "result"]
    # by default chunks overlap by 64 px at 0.5 m/px: 3 x 2 256-px chunks over 512 x 384 px (the paper's tiling
    # has 2 x 2)
    assert result["outputs"]["OUTPUT"] == str(out) and result["outputs"]["chunks"] == 6
    assert out.exists()
    raster = tmp_path / f"cli_{small_product.product_id}_probability.tif"  # written by default, styled
    assert result["outputs"]["PROBABILITY"] == str(raster)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli.gpkg", raster.with_suffix(".qml").name, raster.name]


def test_cli_bad_input_one_line_and_exit_code(marsice_cli, tmp_path):
    proc = marsice_cli("detect", str(tmp_path / "missing.LBL"), "-o", str(tmp_path / "o.gpkg"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"marsice: error: {tmp_path / 'missing.LBL'} does not exist"]
    assert not (tmp_path / "o.gpkg").exists()


def test_cli_label_without_image(marsice_cli, small_product, tmp_path):
    label = tmp_path / small_product.label_path.name
    label.write_text(small_product.label_path.read_text())
    proc = marsice_cli("--progress", "json", "detect", str(label), "-o", str(tmp_path / "o.gpkg"))
    assert proc.returncode == 2
    error = json.loads(proc.stdout.strip().splitlines()[-1])
    assert error["type"] == "error" and error["error"] == "ProductError"
    assert "download the .JP2 next to the label" in error["message"]


def test_cli_refuses_a_non_geopackage_output(marsice_cli, small_product, tmp_path):
    proc = marsice_cli("detect", str(small_product.label_path), "-o", str(tmp_path / "out.shp"))
    assert proc.returncode == 4
    message = "this output is written as a GeoPackage; give a name ending in .gpkg"
    assert proc.stderr.strip().splitlines() == [f"marsice: error: -o {tmp_path / 'out.shp'}: {message}"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-3", "--overlap must be at least 0 pixels, not -3"),
        ("lots", "--overlap must be a number of pixels or 'auto', not 'lots'"),
    ],
)
def test_cli_bad_overlap_says_what_it_takes(marsice_cli, small_product, tmp_path, value, message):
    proc = marsice_cli("detect", str(small_product.label_path), "-o", str(tmp_path / "o.gpkg"), "--overlap", value)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"marsice: error: {message}"]
    assert not (tmp_path / "o.gpkg").exists()


def test_overlap_argument_forms():
    from marsice_plugin.commands.arguments import overlap_arg

    assert overlap_arg("auto") is None and overlap_arg("AUTO") is None
    assert overlap_arg("0") == 0 and overlap_arg(128) == 128
