"""``marsice tile``: GeoTIFF chunks in the product CRS and a tile index in the common Mars CRS."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
import rasterio

from marsice_plugin.chunk_reader import ChunkReader
from marsice_plugin.cli import main
from marsice_plugin.gpkg import parse_geometry_blob
from marsice_plugin.product import open_product
from marsice_plugin.tile_export import export_tiles

from .small_rasters import smooth_image, write_raster


@pytest.fixture(scope="module")
def product_path(tmp_path_factory):
    img = smooth_image(600, 900, seed=11)
    img[:, :200] = 0  # a black margin: its chunks are skipped and recorded
    img[300, 500] = 850  # an ordinary-DN hot pixel
    return write_raster(tmp_path_factory.mktemp("export") / "mosaic.tif", img)


def _rows(index):
    conn = sqlite3.connect(index)
    conn.row_factory = sqlite3.Row
    rows = conn.execute("SELECT * FROM tiles ORDER BY chunk_row, chunk_col").fetchall()
    srs = conn.execute(
        "SELECT s.organization, s.definition FROM gpkg_geometry_columns g "
        "JOIN gpkg_spatial_ref_sys s USING (srs_id) WHERE g.table_name='tiles'"
    ).fetchone()
    conn.close()
    return rows, srs


def test_export_writes_georeferenced_geotiffs_and_an_index_with_skipped_chunks(product_path, tmp_path):
    result = export_tiles(product_path, tmp_path / "out", size=256, overlap=32)
    rows, (org, definition) = _rows(result.index)
    with open_product(product_path) as product:
        chunks = list(ChunkReader(product, 256, 32))
        crs = product.crs
    assert result.chunks == len(rows) == len(chunks) and result.skipped == sum(c.skipped for c in chunks) > 0
    assert org == "NONE" and "EPSG" not in definition and "Mars" in definition  # IAU_2015:49900, no Earth code
    for row, chunk in zip(rows, chunks, strict=True):
        assert (row["chunk_row"], row["chunk_col"], row["row_off"], row["col_off"]) == (
            chunk.chunk_row,
            chunk.chunk_col,
            chunk.window.row_off,
            chunk.window.col_off,
        )
        assert parse_geometry_blob(row["geom"]).equals_exact(chunk.footprint(), 1e-12)
        assert row["label"] is None and row["scale_m"] == 0.5 and row["method"] == "full"
        if chunk.skipped:
            assert row["skipped"] == 1 and row["file"] is None and "no-data" in row["skip_reason"]
            continue
        with rasterio.open(result.index.parent / row["file"]) as ds:
            assert ds.transform == chunk.transform
            assert ds.crs.to_wkt() == rasterio.crs.CRS.from_wkt(crs.to_wkt()).to_wkt()
            data = ds.read(1)
        expected = np.where(chunk.nodata, np.nan, chunk.data)
        assert np.array_equal(data, expected, equal_nan=True)
    assert sum(r["outlier_pixels"] for r in rows) >= 1
    assert result.images == len(rows) - result.skipped
    leftovers = [p.name for p in (tmp_path / "out").iterdir()]
    assert sorted(leftovers) == ["mosaic_tiles", "mosaic_tiles.gpkg"]  # no partial files


def test_cli_tile_refuses_to_overwrite_then_overwrites(product_path, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["--progress", "quiet", "tile", str(product_path), "-o", str(out), "--size", "512"]) == 0
    first = capsys.readouterr()
    assert "mosaic_tiles.gpkg" in first.out
    assert main(["tile", str(product_path), "-o", str(out), "--size", "512"]) == 4
    assert "--overwrite" in capsys.readouterr().err
    args = ["tile", str(product_path), "-o", str(out), "--size", "512", "--overwrite", "--index-only"]
    assert main(["--progress", "quiet", *args]) == 0
    rows, _ = _rows(out / "mosaic_tiles.gpkg")
    assert all(r["file"] is None for r in rows)


def test_cli_tile_reduced_resolution_from_jpeg2000_levels(tmp_path, capsys):
    img = smooth_image(1100, 1100, seed=12)
    path = write_raster(tmp_path / "levels.jp2", img, driver="JP2OpenJPEG")
    out = tmp_path / "reduced"
    assert main(["--progress", "quiet", "tile", str(path), "-o", str(out), "--scale", "0.25", "--size", "512"]) == 0
    rows, _ = _rows(out / "levels_tiles.gpkg")
    assert {r["method"] for r in rows} == {"jpeg2000-level"}
    assert {(r["out_width"], r["scale_m"]) for r in rows} == {(128, 2.0)}
    with rasterio.open(out / rows[0]["file"]) as ds:
        assert ds.shape == (128, 128) and ds.transform.a == 2.0
        # the level grid sits (f - 1) / 2 = 1.5 source pixels up-left of the image corner
        assert ds.transform.c == pytest.approx(-1000.0 - 1.5 * 0.5)


def test_cli_bad_option_is_one_line_and_exit_2(product_path, tmp_path, capsys):
    args = ["tile", str(product_path), "-o", str(tmp_path / "x"), "--scale", "0.5", "--model-scale", "0.3"]
    code = main(["--progress", "quiet", *args])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--model-scale alone" in err[0]
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())
