"""Truncated and corrupt JPEG2000 products are refused, never scored (issue 26, item 3).

Before the fix a JP2 cut at 50 % was scored, exit 0 (the sample of ``marsice sample --seed 7``: "several",
1,028 candidates with ``--fast``, 2,728 at ``--read-level 0``): GDAL's multi-threaded JPEG2000 reads return
the tiles that fail to decode as zeros, which the no-data rule takes for a margin. Two guards, tested here on a
generated 2100 × 600 px product (three 1024-px JPEG2000 tiles in a row, so GDAL decodes a band's tiles in its
worker threads):

* the file's structure is checked before any pixel is decoded (``marsice_plugin.jp2check``);
* a decoder error while reading, also one reported only by GDAL's worker threads, is a ProductError
  (``marsice_plugin.gdal_errors``), at every resolution level.
"""

from __future__ import annotations

import ctypes
import shutil
import struct
import subprocess
import sys
import threading

import numpy as np
import pytest
import rasterio
from affine import Affine

from marsice_plugin import gdal_errors
from marsice_plugin.chunk_reader import ChunkReader
from marsice_plugin.errors import ProductError
from marsice_plugin.jp2check import check_jpeg2000
from marsice_plugin.product import open_product

from .conftest import DEMO_MODEL, REPO

MARS_EQC = "+proj=eqc +lat_ts=-50 +lon_0=180 +R=3384416.5 +units=m +no_defs"


@pytest.fixture(scope="module")
def wide_product(tmp_path_factory):
    """2100 × 600 px: tiles 0 and 1 are 1024 px wide, tile 2 holds the last 52 columns."""
    from marsice_plugin.synthetic.product_writer import write_sample_product
    from marsice_plugin.synthetic.scene import SceneConfig

    config = SceneConfig(width=2100, height=600, seed=2, n_craters=0, n_boulders=20, polygons=False)
    return write_sample_product(tmp_path_factory.mktemp("wide"), config)


def _copy(product, folder):
    folder.mkdir()
    for path in (product.label_path, product.image_path):
        shutil.copy(path, folder / path.name)
    return folder / product.label_path.name, folder / product.image_path.name


def _tile_parts(data: bytes) -> list[tuple[int, int]]:
    """(offset, Psot) of every tile-part of a raw codestream (SOT markers occur nowhere else: bit stuffing)."""
    parts, pos = [], data.index(b"\xff\x90")
    while data[pos : pos + 2] == b"\xff\x90":
        (psot,) = struct.unpack(">I", data[pos + 6 : pos + 10])
        parts.append((pos, psot))
        pos += psot
    assert data[pos:] == b"\xff\xd9"
    return parts


def _one_error_line(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("marsice: error: "), proc.stderr  # no GDAL "ERROR 1:" lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _marsice(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "marsice_plugin", *args], capture_output=True, text=True, cwd=REPO, timeout=300
    )


# -- the structure check ------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.75, 0.95, "1 byte short", "2 bytes short"])
def test_cut_jpeg2000_is_refused_when_opened(wide_product, tmp_path, fraction):
    label, image = _copy(wide_product, tmp_path / "p")
    data = image.read_bytes()
    keep = int(len(data) * fraction) if isinstance(fraction, float) else len(data) - int(fraction[0])
    image.write_bytes(data[:keep])
    with pytest.raises(ProductError) as caught:
        open_product(label)
    message = str(caught.value)
    assert message.startswith(f"{image}: the JPEG2000 file is truncated or corrupt (")
    assert message.endswith("download it again")
    if isinstance(fraction, float):  # cut inside a tile's data: the tile and its rows are named
        assert "image rows 0-599 is cut off" in message
    else:  # every tile-part complete, only the end marker missing
        assert "without the end-of-codestream marker (FFD9)" in message


def test_complete_jpeg2000_passes_and_reads_with_its_nodata_margin(wide_product):
    """The check leaves a complete file alone; its genuine no-data margin is skipped as before, not an error."""
    check_jpeg2000(wide_product.image_path)
    dn = wide_product.scene.dn
    for scale in (1.0, 0.25):
        with open_product(wide_product.label_path) as product:
            chunks = list(ChunkReader(product, 512, 0, scale=scale, repair=False))
        assert len(chunks) == 10 and not any(c.skipped for c in chunks)
        assert chunks[0].nodata_fraction > 0.05 and chunks[4].nodata_fraction > 0.05  # the skewed strip margins
        if scale == 1.0:
            for c in chunks:
                rows, cols = c.window.slices
                assert np.array_equal(c.data, dn[rows, cols].astype(np.float32))
                assert np.array_equal(c.nodata, dn[rows, cols] == 0)


def test_jp2_box_file_cut_or_padded_is_refused(tmp_path):
    """JP2-format files (signature, header and codestream boxes) as downloaded: box lengths must add up."""
    data = (np.arange(300 * 500).reshape(300, 500) % 1000 + 3).astype(np.uint16)
    path = tmp_path / "box.jp2"
    with rasterio.open(
        path, "w", driver="JP2OpenJPEG", width=500, height=300, count=1, dtype="uint16", crs=MARS_EQC,
        transform=Affine(0.5, 0, 1000.0, 0, -0.5, -2000.0), REVERSIBLE="YES", QUALITY="100",
        BLOCKXSIZE="256", BLOCKYSIZE="256",
    ) as ds:  # fmt: skip
        ds.write(data, 1)
    whole = path.read_bytes()
    assert whole.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n")
    with open_product(path) as product:
        assert np.array_equal(product.read(0, 0, 300, 500), data.astype(np.float32))
    for keep in (len(whole) // 4, len(whole) // 2, len(whole) - 1):
        path.write_bytes(whole[:keep])
        with pytest.raises(ProductError, match=r"the JP2 box 'jp2c' at byte \d+ claims \d+ bytes, \d+ more than"):
            open_product(path)
    path.write_bytes(whole + b"\0\0")
    with pytest.raises(ProductError, match="2 stray bytes after the last JP2 box .*download it again"):
        open_product(path)


def test_flipped_bytes_in_tile_part_headers_are_refused(wide_product, tmp_path):
    label, image = _copy(wide_product, tmp_path / "p")
    data = image.read_bytes()
    (_, _), (second, _), _ = _tile_parts(data)
    cases = (
        (second, f"expected a tile-part (FF90) or the end marker (FFD9) at byte {second}, found 006F"),
        (second + 6, f"the data of tile 1, image rows 0-599 is cut off: its tile-part at byte {second} claims"),
    )
    for offset, expected in cases:
        broken = bytearray(data)
        for k in range(offset, offset + 4):
            broken[k] ^= 0xFF
        image.write_bytes(bytes(broken))
        with pytest.raises(ProductError, match="truncated or corrupt") as caught:
            open_product(label)
        assert expected in str(caught.value)


def test_cli_detect_refuses_a_cut_jp2_at_every_read_level(wide_product, tmp_path):
    """The issue's runs: a JP2 cut at 50 % with --fast (level 2) and at --read-level 0; refused before scoring."""
    label, image = _copy(wide_product, tmp_path / "p")
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    for extra in (["--fast"], ["--model", str(DEMO_MODEL), "--read-level", "0"]):
        out = tmp_path / "out" / "o.gpkg"
        proc = _marsice("detect", str(label), "-o", str(out), *extra)
        assert proc.returncode == 2, proc.stderr
        _one_error_line(proc, str(image), "truncated or corrupt", "download it again")
        assert not out.exists()


# -- decoder errors while reading ----------------------------------------------------------------------


def _shorten_tile_part(image, tile: int = 1) -> None:
    """Halve one tile-part and fix its length: a consistent structure around data the decoder cannot decode."""
    data = image.read_bytes()
    offset, psot = _tile_parts(data)[tile]
    keep = psot // 2
    part = bytearray(data[offset : offset + keep])
    part[6:10] = struct.pack(">I", keep)
    image.write_bytes(data[:offset] + bytes(part) + data[offset + psot :])


@pytest.mark.parametrize("level", [0, 1, 2])
def test_decoder_errors_become_product_errors_at_every_level(wide_product, tmp_path, level):
    """Measured without the worker-thread check: every level read the broken tile as zeros, no exception."""
    label, image = _copy(wide_product, tmp_path / "p")
    _shorten_tile_part(image)
    check_jpeg2000(image)  # the structure is consistent: only the decoder can tell
    with open_product(label) as product:
        reader = ChunkReader(product, 512, 0, scale=1 / 2**level)
        assert reader.plan.level == level
        with pytest.raises(ProductError) as caught:
            list(reader)
    message = str(caught.value)
    assert message.startswith(f"{image}: cannot decode pixels at rows 0-")
    assert (f"(JPEG2000 level {level})" in message) == (level > 0)
    assert message.endswith("The image file may be truncated or corrupt: download it again")


def test_cli_tile_with_an_undecodable_tile_fails_with_one_line(wide_product, tmp_path):
    label, image = _copy(wide_product, tmp_path / "p")
    _shorten_tile_part(image)
    out = tmp_path / "tiles"
    proc = _marsice("tile", str(label), "-o", str(out), "--size", "512", "--scale", "0.25")
    assert proc.returncode == 2, proc.stderr
    _one_error_line(proc, f"{image}: cannot decode pixels at rows 0-", "(JPEG2000 level 2)", "download it again")
    assert not out.exists()


def test_watch_collects_errors_of_threads_without_their_own_handler():
    """A thread with no GDAL handler of its own (like GDAL's workers) reports to the global one: collected."""
    import rasterio._err

    assert gdal_errors.available()  # Linux wheels of rasterio: CPLSetErrorHandler is in reach of ctypes

    cpl_error = ctypes.CDLL(rasterio._err.__file__).CPLError
    cpl_error.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p]

    def report(level: int, text: bytes) -> None:
        worker = threading.Thread(target=cpl_error, args=(level, 1, b"%s", text))
        worker.start()
        worker.join()

    with gdal_errors.watch() as errors:
        report(2, b"only a warning")
        report(3, b"tile 7 failed")
    assert errors == ["tile 7 failed"]
    with gdal_errors.watch() as errors:
        pass
    assert errors == []  # nothing carried over from the previous watch
