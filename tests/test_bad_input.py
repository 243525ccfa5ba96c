"""Bad input ends in one clear line and a non-zero exit, and leaves no output behind (issue 12, part)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from affine import Affine

from .conftest import DEMO_MODEL, REPO, message_lines


def _detect(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "marsice_plugin", "detect", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
    )


def _copy_product(sample, folder):
    folder.mkdir()
    for path in (sample.label_path, sample.image_path):
        shutil.copy(path, folder / path.name)
    return folder / sample.label_path.name, folder / sample.image_path.name


def _one_error_line(proc, *fragments):
    lines = message_lines(proc.stderr)  # a slow run may also print its periodic progress line
    assert len(lines) == 1 and lines[0].startswith("marsice: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_truncated_jpeg2000(small_product, tmp_path):
    label, image = _copy_product(small_product, tmp_path / "p")
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 3])
    proc = _detect(str(label), "-o", str(tmp_path / "o.gpkg"), "--model", str(DEMO_MODEL))
    assert proc.returncode == 2
    _one_error_line(
        proc, f"{image}: the JPEG2000 file is truncated or corrupt (the data of tile 0, image rows 0-383 is cut off"
    )
    assert proc.stderr.rstrip().endswith("download it again")
    assert not (tmp_path / "o.gpkg").exists()


@pytest.mark.parametrize(
    ("command", "options", "message"),
    [
        (
            "detect",
            ["--chunk-size", "256", "--overlap", "129"],
            "0..128 pixels (at most half the 256-px chunk), not 129",
        ),
        ("tile", ["--size", "256", "--overlap", "255"], "0..128 pixels (at most half the 256-px chunk), not 255"),
        ("scan", ["--overlap", "1023"], "0..512 pixels (at most half the 1024-px chunk), not 1023"),
    ],
)
def test_overlap_over_half_a_chunk_is_refused_before_anything_is_read(
    small_product, tmp_path, command, options, message
):
    """Up to chunk - 1 used to be accepted: a chunk per pixel. The bound is the default overlap's cap, size/2."""
    out = tmp_path / "out" / ("o.gpkg" if command != "tile" else "tiles")
    scan_band = ["--lat", "-50", "-40", "--ls", "0", "10", "--source", "bundled"]
    target = scan_band if command == "scan" else [str(small_product.label_path)]
    proc = subprocess.run(
        [sys.executable, "-m", "marsice_plugin", command, *target, "-o", str(out), *options],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"marsice: error: --overlap must be within {message}"]
    assert not (tmp_path / "out").exists()


def test_overlap_over_half_a_metre_sized_chunk_is_refused_by_the_reader(small_product, tmp_path):
    """With --chunk-m the chunk's pixel size comes from the product (64 m at 0.5 m/px: 128 px)."""
    out = tmp_path / "tiles"
    proc = subprocess.run(
        [sys.executable, "-m", "marsice_plugin", "tile", str(small_product.label_path), "-o", str(out),
         "--chunk-m", "64", "--overlap", "65"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    _one_error_line(proc, "overlap 65 px is outside 0..64 px: at most half the 128-px chunk")
    assert not out.exists()


def test_label_and_image_sizes_disagree(small_product, tmp_path):
    label, _ = _copy_product(small_product, tmp_path / "p")
    label.write_text(label.read_text().replace("LINE_SAMPLES               = 512", "LINE_SAMPLES               = 513"))
    proc = _detect(str(label), "-o", str(tmp_path / "o.gpkg"))
    assert proc.returncode == 2
    _one_error_line(proc, "label says 513x384 pixels", "do not belong together")


def test_unknown_projection(small_product, tmp_path):
    label, _ = _copy_product(small_product, tmp_path / "p")
    label.write_text(label.read_text().replace('"EQUIRECTANGULAR"', '"SINUSOIDAL"'))
    proc = _detect(str(label), "-o", str(tmp_path / "o.gpkg"))
    assert proc.returncode == 2
    _one_error_line(proc, "map projection SINUSOIDAL is not supported")


def _geotiff(path, data, crs):
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype=data.dtype,
        crs=crs,
        transform=Affine(0.5, 0, 1000.0, 0, -0.5, -2000.0),
        nodata=0,
    ) as ds:
        ds.write(data, 1)


def test_earth_crs_raster_is_refused(tmp_path):
    _geotiff(tmp_path / "earth.tif", np.full((64, 64), 100, np.uint8), "EPSG:32633")
    proc = _detect(str(tmp_path / "earth.tif"), "-o", str(tmp_path / "o.gpkg"))
    assert proc.returncode == 2
    _one_error_line(proc, "not a Mars CRS")


def test_geographic_mars_raster_is_refused(tmp_path):
    """Degrees per pixel would be read as metres (its scale 1e-5 m/px): one line naming the fix instead."""
    _geotiff(tmp_path / "lonlat.tif", np.full((64, 64), 100, np.uint8), "+proj=longlat +R=3396190 +no_defs")
    proc = _detect(str(tmp_path / "lonlat.tif"), "-o", str(tmp_path / "o.gpkg"))
    assert proc.returncode == 2
    _one_error_line(proc, "is in a geographic Mars CRS (pixel size in degrees)", "reproject it to a projected Mars CRS")
    assert not (tmp_path / "o.gpkg").exists()


def test_all_nodata_image_is_refused_not_scored(tmp_path):
    """No valid pixel, nothing to normalise: one line, no output (it used to be written as category 'none')."""
    mars_eqc = "+proj=eqc +lat_ts=-50 +lon_0=180 +R=3384416.5 +units=m +no_defs"
    _geotiff(tmp_path / "empty.tif", np.zeros((1100, 1100), np.uint8), mars_eqc)
    proc = _detect(str(tmp_path / "empty.tif"), "-o", str(tmp_path / "o.gpkg"), "--model", str(DEMO_MODEL))
    assert proc.returncode == 2
    _one_error_line(proc, "empty.tif: no valid pixel in", "pixels read across it")
    assert not (tmp_path / "o.gpkg").exists()


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_8_and_16_bit_mars_rasters_are_read(tmp_path, dtype):
    mars_eqc = "+proj=eqc +lat_ts=-50 +lon_0=180 +R=3384416.5 +units=m +no_defs"
    top = 250 if dtype == "uint8" else 4000
    data = np.random.default_rng(0).integers(20, top, (600, 900)).astype(dtype)
    _geotiff(tmp_path / "m.tif", data, mars_eqc)
    proc = _detect(str(tmp_path / "m.tif"), "-o", str(tmp_path / "o.gpkg"), "--model", str(DEMO_MODEL))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o.gpkg").exists()


def test_lambda_layer_model_is_refused_under_safe_mode(tmp_path):
    from marsice_plugin.cnn.model import keras_module, load_model
    from marsice_plugin.errors import ModelError

    keras = keras_module()
    inputs = keras.Input((32, 32, 1))
    outputs = keras.layers.Dense(1, activation="sigmoid")(
        keras.layers.Flatten()(keras.layers.Lambda(lambda t: t * 2.0)(inputs))
    )
    keras.Model(inputs, outputs).save(tmp_path / "lambda.keras")
    with pytest.raises(ModelError, match="not a loadable Keras model"):
        load_model(tmp_path / "lambda.keras")


def test_model_input_larger_than_chunks(small_product, tmp_path):
    proc = _detect(
        str(small_product.label_path),
        "-o",
        str(tmp_path / "o.gpkg"),
        "--model",
        str(DEMO_MODEL),
        "--chunk-size",
        "128",
    )
    assert proc.returncode == 2
    _one_error_line(proc, "takes 256-px inputs, larger than the 128-px chunks")
    assert not (tmp_path / "o.gpkg").exists()


def test_disk_full_during_geopackage_write_leaves_nothing(small_product, tmp_path):
    """RLIMIT_FSIZE in the child makes every write past 40 KB fail like a full disk."""
    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))\n"
        "from marsice_plugin.cli import main\n"
        f"sys.exit(main(['detect', {str(small_product.label_path)!r}, '-o', {str(tmp_path / 'o.gpkg')!r},"
        f" '--model', {str(DEMO_MODEL)!r}]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 4
    _one_error_line(proc, "cannot write", "o.gpkg")
    assert list(tmp_path.iterdir()) == []


def test_debug_shows_the_traceback(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "marsice_plugin",
            "--debug",
            "detect",
            str(tmp_path / "x.LBL"),
            "-o",
            str(tmp_path / "o.gpkg"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert "Traceback (most recent call last)" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"marsice: error: {tmp_path / 'x.LBL'} does not exist"
