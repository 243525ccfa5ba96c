"""``marsice detect`` writes the stitched probability raster by default, beside the GeoPackage (issue 22, point 4).

Named ``<gpkg stem>_<PRODUCT_ID>_probability.tif`` so that several products detected into one GeoPackage keep one
raster each; ``--probability-raster PATH`` picks another name, ``--no-probability-raster`` writes none. The CLI runs in
this process (TensorFlow loaded once) on the committed 512 x 384 px product with the demo model and 256-px chunks, no
overlap: 2 x 2 chunks, about a second a run.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pyproj
import pytest
import rasterio
from affine import Affine

from marsice_plugin import pipeline
from marsice_plugin.pipeline import probability_raster_path
from marsice_plugin.product import open_product
from marsice_plugin.styles import MARKER

from .conftest import DEMO_MODEL, tiny_product

#: 256-px chunks, the paper's tiling: each chunk its own value in the raster (nothing blended).
CHUNKS = ["--model", str(DEMO_MODEL), "--chunk-size", "256", "--overlap", "0"]


@pytest.fixture
def cli(capsys):
    """Run ``marsice --progress json ...`` in this process; returns (exit code, result outputs or None, error text).

    The error text is the error event's message (JSON progress reports errors on stdout), else stderr.
    """
    from marsice_plugin.cli import main

    def run(*args: str | Path) -> tuple[int, dict | None, str]:
        term, hook = signal.getsignal(signal.SIGTERM), sys.unraisablehook
        try:
            code = main(["--progress", "json", *(str(a) for a in args)])
        finally:
            signal.signal(signal.SIGTERM, term)
            sys.unraisablehook = hook
        captured = capsys.readouterr()
        events = [json.loads(line) for line in captured.out.splitlines() if line.startswith("{")]
        results = [e["outputs"] for e in events if e["type"] == "result"]
        errors = [e["message"] for e in events if e["type"] == "error"]
        return code, results[0] if results else None, errors[0] if errors else captured.err

    return run


@pytest.fixture
def product(tmp_path):
    return tiny_product(tmp_path / "product")


def _second_product(product, folder: Path):
    """The same pixels under another product id (``ESP_090005_1300_RED``): a second product for one GeoPackage."""
    old, new = "ESP_090003_1300", "ESP_090005_1300"
    folder.mkdir()
    label = folder / product.label_path.name.replace(old, new)
    label.write_text(product.label_path.read_text().replace(old, new))
    (folder / product.image_path.name.replace(old, new)).write_bytes(product.image_path.read_bytes())
    return label


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_default_name_joins_the_geopackage_and_the_product(tmp_path):
    assert probability_raster_path(tmp_path / "results.gpkg", "ESP_011319_1305_RED") == (
        tmp_path / "results_ESP_011319_1305_RED_probability.tif"
    )
    assert probability_raster_path("a/b.GPKG", "P") == Path("a/b_P_probability.tif")


def test_detect_writes_a_styled_raster_on_the_products_grid_beside_the_geopackage(cli, product, tmp_path):
    out = tmp_path / "out"
    gpkg = out / "results.gpkg"
    code, outputs, err = cli("detect", product.label_path, "-o", gpkg, *CHUNKS)
    assert code == 0, err
    raster = out / f"results_{product.product_id}_probability.tif"
    assert outputs["PROBABILITY"] == str(raster)
    assert _listing(out) == sorted(["results.gpkg", raster.name, raster.with_suffix(".qml").name])
    qml = raster.with_suffix(".qml").read_text()
    assert MARKER in qml and "colorrampshader" in qml

    with open_product(product.label_path) as opened, rasterio.open(raster) as tif:
        crs = pyproj.CRS.from_wkt(tif.crs.to_wkt())
        assert crs.to_epsg() is None and crs.equals(opened.crs, ignore_axis_order=True)  # the product's own CRS
        assert 3.37e6 < crs.ellipsoid.semi_major_metre < 3.40e6  # Mars
        cell = opened.width // tif.width
        assert (tif.width * cell, tif.height * cell) == (opened.width, opened.height)
        assert tif.transform.almost_equals(opened.transform @ Affine.scale(cell), precision=1e-9)
        values = tif.read(1)
        inverse = ~tif.transform
        transform = opened.transform
    with sqlite3.connect(gpkg) as db:
        chunks = db.execute("SELECT chunk_row, chunk_col, probability FROM chunks").fetchall()
    assert len(chunks) == 4
    for row, col, probability in chunks:  # a pixel only its own chunk covers holds that chunk's probability
        x, y = transform @ (col * 256 + 128, row * 256 + 64)
        c, r = (int(v) for v in inverse @ (x, y))
        assert values[r, c] == pytest.approx(probability, abs=1e-6)

    before = {name: (out / name).read_bytes() for name in _listing(out) if name != "results.gpkg"}
    code, outputs, err = cli("detect", product.label_path, "-o", gpkg, *CHUNKS)  # a rerun replaces its own raster
    assert code == 0, err
    assert _listing(out) == sorted(["results.gpkg", raster.name, raster.with_suffix(".qml").name])  # no temporary left
    with rasterio.open(raster) as tif:
        np.testing.assert_array_equal(tif.read(1), values)
    assert raster.with_suffix(".qml").read_bytes() == before[raster.with_suffix(".qml").name]


def test_a_second_product_into_the_same_geopackage_gets_its_own_raster(cli, product, tmp_path):
    out = tmp_path / "out"
    gpkg = out / "results.gpkg"
    second = _second_product(product, tmp_path / "second")
    assert cli("detect", product.label_path, "-o", gpkg, *CHUNKS)[0] == 0
    first = out / f"results_{product.product_id}_probability.tif"
    kept = first.read_bytes()
    code, outputs, err = cli("detect", second, "-o", gpkg, *CHUNKS)
    assert code == 0, err
    other = out / "results_ESP_090005_1300_RED_probability.tif"
    assert outputs["PROBABILITY"] == str(other)
    assert _listing(out) == sorted(
        ["results.gpkg", first.name, first.with_suffix(".qml").name, other.name, other.with_suffix(".qml").name]
    )
    assert first.read_bytes() == kept  # the first product's raster untouched
    with sqlite3.connect(gpkg) as db:
        assert db.execute("SELECT count(*) FROM products").fetchone() == (2,)
    with rasterio.open(first) as a, rasterio.open(other) as b:  # same pixels, same grid: the same probabilities
        assert a.transform == b.transform
        np.testing.assert_allclose(a.read(1), b.read(1), atol=1e-6)


def test_no_probability_raster_writes_the_geopackage_only(cli, product, tmp_path):
    out = tmp_path / "out"
    code, outputs, err = cli("detect", product.label_path, "-o", out / "r.gpkg", *CHUNKS, "--no-probability-raster")
    assert code == 0, err
    assert "PROBABILITY" not in outputs
    assert _listing(out) == ["r.gpkg"]


def test_a_named_raster_replaces_the_default(cli, product, tmp_path):
    out = tmp_path / "out"
    code, outputs, err = cli(
        "detect", product.label_path, "-o", out / "r.gpkg", *CHUNKS, "--probability-raster", tmp_path / "p" / "p.tif"
    )
    assert code == 0, err
    assert outputs["PROBABILITY"] == str(tmp_path / "p" / "p.tif")
    assert _listing(out) == ["r.gpkg"] and _listing(tmp_path / "p") == ["p.qml", "p.tif"]


def test_naming_and_refusing_the_raster_at_once_is_a_usage_error(product, tmp_path, capsys):
    from marsice_plugin.cli import main

    with pytest.raises(SystemExit) as info:
        main([
            "detect", str(product.label_path), "-o", str(tmp_path / "r.gpkg"), "--probability-raster",
            str(tmp_path / "p.tif"), "--no-probability-raster",
        ])  # fmt: skip
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "marsice detect: error: argument --no-probability-raster: not allowed with argument --probability-raster"
    )
    assert _listing(tmp_path) == ["product"]


def test_the_default_raster_name_is_checked_before_any_work(cli, product, tmp_path, monkeypatch):
    """A folder where the default raster goes is refused like a named output: exit 4, nothing read or written."""

    def forbidden(*args, **kwargs):
        raise AssertionError("detect started work before refusing its outputs")

    monkeypatch.setattr(pipeline, "open_product", forbidden)
    monkeypatch.setattr("marsice_plugin.cnn.model.load_model", forbidden)
    out = tmp_path / "out"
    blocking = out / f"r_{product.product_id}_probability.tif"
    blocking.mkdir(parents=True)
    code, outputs, err = cli("detect", product.label_path, "-o", out / "r.gpkg", *CHUNKS)
    assert code == 4 and outputs is None
    assert err == (
        f"the probability raster (default name; --probability-raster PATH names another) {blocking} is a folder; "
        "give a file name"
    )
    assert _listing(out) == [blocking.name]


def test_api_detect_writes_the_default_raster_too(product, tmp_path):
    from marsice_plugin import api

    frames = api.detect(product.label_path, tmp_path / "a.gpkg", model=DEMO_MODEL, chunk_size=256, overlap=0)
    raster = tmp_path / f"a_{product.product_id}_probability.tif"
    assert _listing(tmp_path) == sorted(["a.gpkg", raster.name, raster.with_suffix(".qml").name, "product"])
    with rasterio.open(raster) as tif:
        top_left = float(tif.read(1)[0, 0])
    chunk = frames["chunks"].set_index(["chunk_row", "chunk_col"]).loc[(0, 0), "probability"]
    assert top_left == pytest.approx(chunk, abs=1e-6)
    api.detect(product.label_path, tmp_path / "b.gpkg", model=DEMO_MODEL, chunk_size=256, probability_raster=None)
    assert not any(p.name.startswith("b_") for p in tmp_path.iterdir())
    with pytest.raises(ValueError, match="needs an output GeoPackage"):
        api.detect(product.label_path, model=DEMO_MODEL, probability_raster=tmp_path / "c.tif")
