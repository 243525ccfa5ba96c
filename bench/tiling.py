"""Tiling throughput and memory benchmark (issue 5). Not a test: it times things and takes minutes.

What it prints, all on the same file in the same run:

* the decode rate of one whole-image read (``dataset.read(1)``): what the decoder can do;
* the rate of :class:`marsice_plugin.chunk_reader.ChunkReader` (the chunk generator) without and with
  anomaly repair, and with and without the background reader thread;
* the rate of a naive chunker that reads window by window (one ``read(window=...)`` per 1024² chunk,
  the approach of mars-ode-data-access);
* the ratios to the whole-image rate and the peak RSS of each run (each run is a fresh child
  process, so ``ru_maxrss`` is that run's own peak);
* with ``--big``, the peak RSS of the chunk generator over a 20,000 × 60,000 product.

Test files are numpy patterns written in strips (never the scene renderer, which would need the whole
image in memory): smooth relief (sines), 3-DN Gaussian noise, and black skewed no-data margins like a
map-projected strip, as 10-bit lossless JPEG2000 with the layout of ``JP2_OPTIONS`` (printed).

Usage::

    .venv/bin/python bench/tiling.py [--size 8192] [--big] [--workdir /tmp/marsice-bench] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from marsice_plugin.synthetic.product_writer import JP2_OPTIONS  # noqa: E402

NOISE_DN = 3.0


def pattern_rows(row0: int, height: int, width: int, total_height: int, seed: int) -> np.ndarray:
    """Rows ``row0 .. row0+height`` of the benchmark image (uint16, 10-bit DNs, 0 = no-data margin)."""
    rng = np.random.default_rng(seed + row0)
    yy = np.arange(row0, row0 + height, dtype=np.float32)[:, None]
    xx = np.arange(width, dtype=np.float32)[None, :]
    relief = 480 + 150 * np.sin(xx / 211.0 + yy / 97.0) * np.cos(yy / 173.0) + 60 * np.sin(xx / 23.0)
    dn = relief + rng.normal(0.0, NOISE_DN, (height, width)).astype(np.float32)
    dn = np.clip(np.rint(dn), 3, 1021).astype(np.uint16)
    # skewed strip margins: the left edge drifts right with the row, the right edge left
    skew = 0.06 * width
    left = (0.02 * width + skew * yy / total_height).astype(int)
    right = (width - 0.02 * width - skew * (1 - yy / total_height)).astype(int)
    dn[xx < left] = 0
    dn[xx >= right] = 0
    return dn


#: Bench products: an equirectangular Mars CRS (the sphere of the RDR labels) at 0.5 m/px.
BENCH_CRS = "+proj=eqc +lat_ts=-50 +lat_0=0 +lon_0=180 +x_0=0 +y_0=0 +R=3394839.8 +units=m +no_defs"
BENCH_SCALE_M = 0.5


def make_jp2(path: Path, width: int, height: int, seed: int = 0) -> Path:
    """Write the benchmark JP2 in strips (bounded memory: a tiled GeoTIFF first, then a JP2 copy)."""
    import rasterio
    import rasterio.shutil
    from rasterio.windows import Window

    if path.exists():
        if not path.with_name(path.name + ".aux.xml").exists():
            write_georef(path)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tif = path.with_suffix(".src.tif")
    profile = dict(
        driver="GTiff",
        width=width,
        height=height,
        count=1,
        dtype="uint16",
        tiled=True,
        blockxsize=1024,
        blockysize=1024,
        BIGTIFF="YES",
    )
    with rasterio.open(tif, "w", **profile) as ds:
        for r in range(0, height, 1024):
            h = min(1024, height - r)
            ds.write(pattern_rows(r, h, width, height, seed), 1, window=Window(0, r, width, h))
    partial = path.with_name(path.name + ".partial")
    rasterio.shutil.copy(tif, partial, driver="JP2OpenJPEG", **JP2_OPTIONS)
    partial.replace(path)
    tif.unlink()
    Path(str(partial) + ".aux.xml").unlink(missing_ok=True)
    write_georef(path)
    return path


def write_georef(path: Path) -> None:
    """Georeference the JP2 with a GDAL ``.aux.xml`` (Mars CRS, transform, nodata 0).

    GDAL's JP2 boxes cannot carry a non-EPSG planetary CRS through ``CreateCopy``; the side-car can.
    """
    from rasterio.crs import CRS

    t = bench_transform()
    wkt = CRS.from_proj4(BENCH_CRS).to_wkt()
    aux = path.with_name(path.name + ".aux.xml")
    aux.write_text(
        f"<PAMDataset><SRS>{wkt.replace('&', '&amp;').replace('<', '&lt;')}</SRS>"
        f"<GeoTransform>{t.c}, {t.a}, {t.b}, {t.f}, {t.d}, {t.e}</GeoTransform>"
        '<PAMRasterBand band="1"><NoDataValue>0</NoDataValue></PAMRasterBand></PAMDataset>\n'
    )


def bench_transform():
    from affine import Affine

    return Affine(BENCH_SCALE_M, 0, -1000.0, 0, -BENCH_SCALE_M, -2_900_000.0)


def jp2_layout(path: Path) -> dict:
    """Tiles, levels, progression, code-blocks and precincts from the codestream's SIZ and COD markers."""
    with open(path, "rb") as handle:  # the main header is at the start: not the whole file (1 GB at real size)
        blob = handle.read(1 << 16)
    start = blob.find(b"\xff\x4f\xff\x51")  # SOC followed by SIZ
    siz = start + 4
    xsiz, ysiz, _, _, xt, yt = (int.from_bytes(blob[siz + 4 + 4 * k : siz + 8 + 4 * k], "big") for k in range(6))
    bits = (blob[siz + 38] & 0x7F) + 1
    cod = blob.find(b"\xff\x52", siz)
    scod = blob[cod + 4]
    order = ["LRCP", "RLCP", "RPCL", "PCRL", "CPRL"][blob[cod + 5]]
    layers = int.from_bytes(blob[cod + 6 : cod + 8], "big")
    levels = blob[cod + 9]
    cbw, cbh = 2 ** (blob[cod + 10] + 2), 2 ** (blob[cod + 11] + 2)
    reversible = blob[cod + 13] == 1
    if scod & 1:
        pp = blob[cod + 14 : cod + 15 + levels]
        precincts = [f"{2 ** (b & 15)}x{2 ** (b >> 4)}" for b in pp]
    else:
        precincts = ["32768x32768 (default: one per resolution)"]
    return {
        "size": f"{xsiz}x{ysiz}",
        "bits": bits,
        "tiles": f"{xt}x{yt}",
        "decomposition_levels": levels,
        "progression": order,
        "layers": layers,
        "code_blocks": f"{cbw}x{cbh}",
        "precincts (lowest resolution first)": precincts,
        "reversible_5_3": reversible,
    }


# -- the measured runs (each in its own child process, so ru_maxrss is its own peak) -------------------


def _naive(path: Path, size: int, overlap: int = 0) -> int:
    """Window-by-window chunker: one read per chunk (the approach of mars-ode-data-access).

    Returns the image's pixel count (not the pixels read), so rates compare with the other modes.
    """
    import rasterio
    from rasterio.windows import Window

    from marsice_plugin.grid import ChunkGrid

    with rasterio.open(path) as ds:
        for _, _, w in ChunkGrid(ds.width, ds.height, size, overlap):
            ds.read(1, window=Window(w.col_off, w.row_off, w.width, w.height)).sum()
        return ds.width * ds.height


def _whole(path: Path) -> int:
    import rasterio

    with rasterio.open(path) as ds:
        return ds.read(1).size


def _generator(path: Path, size: int, **options: object) -> int:
    from marsice_plugin.chunk_reader import ChunkReader
    from marsice_plugin.product import open_product

    with open_product(path) as product:
        reader = ChunkReader(product, size, options.pop("overlap", 0), **options)
        for chunk in reader:
            chunk.data.sum()  # touch the pixels, as any consumer does
        return product.width * product.height


MODES = {
    "whole": lambda p, s: _whole(p),
    "generator": lambda p, s: _generator(p, s, repair=False),
    "generator-no-thread": lambda p, s: _generator(p, s, repair=False, prefetch=False),
    "generator+repair": lambda p, s: _generator(p, s, repair=True),
    "generator-scale-0.25": lambda p, s: _generator(p, s, repair=False, scale=0.25),
    "naive": lambda p, s: _naive(p, s),
    # with the default overlap at 0.5 m/px (64 px) chunk windows no longer match the 1024-px JPEG2000 tiles
    "generator-overlap-64": lambda p, s: _generator(p, s, repair=False, overlap=64),
    "naive-overlap-64": lambda p, s: _naive(p, s, 64),
}


def child(mode: str, path: Path, size: int) -> None:
    import resource
    import warnings

    warnings.simplefilter("ignore")
    t = time.perf_counter()
    pixels = MODES[mode](path, size)
    seconds = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"mode": mode, "mpx_s": pixels / seconds / 1e6, "seconds": seconds, "peak_rss_mb": rss}))


def run_child(mode: str, path: Path, size: int) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(path), str(size)], capture_output=True, text=True, check=False
    )
    if proc.returncode:
        raise SystemExit(f"{mode} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=8192, help="side of the square throughput file")
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3, help="runs per mode, interleaved; the best is kept")
    parser.add_argument("--big", action="store_true", help="also measure peak RSS on a 20,000 x 60,000 product")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/marsice-bench"))
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of " + ",".join(MODES))
    args = parser.parse_args()

    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start")
    path = make_jp2(args.workdir / f"bench_{args.size}.jp2", args.size, args.size)
    print(f"file: {path} ({path.stat().st_size / 2**20:.0f} MiB), layout: {json.dumps(jp2_layout(path))}")
    modes = args.modes.split(",")
    best: dict[str, dict] = {}
    for _ in range(args.repeat):
        for mode in modes:
            r = run_child(mode, path, args.chunk)
            if mode not in best or r["mpx_s"] > best[mode]["mpx_s"]:
                best[mode] = r
    whole = best.get("whole", {}).get("mpx_s")
    print(f"\n{'mode':<22} {'Mpx/s':>8} {'x whole':>8} {'seconds':>8} {'peak RSS MB':>12}")
    for mode in modes:
        r = best[mode]
        ratio = f"{r['mpx_s'] / whole:.2f}" if whole else "-"
        print(f"{mode:<22} {r['mpx_s']:8.1f} {ratio:>8} {r['seconds']:8.2f} {r['peak_rss_mb']:12.0f}")
    if "naive" in best and "generator" in best:
        print(f"generator / naive: {best['generator']['mpx_s'] / best['naive']['mpx_s']:.2f}")
    if args.big:
        big = make_jp2(args.workdir / "big_20000x60000.jp2", 20000, 60000)
        print(f"\nbig file: {big} ({big.stat().st_size / 2**20:.0f} MiB), layout: {json.dumps(jp2_layout(big))}")
        for mode in ("generator+repair",):
            r = run_child(mode, big, args.chunk)
            print(
                f"{mode} on 20000x60000: {r['mpx_s']:.1f} Mpx/s, {r['seconds']:.0f} s, "
                f"peak RSS {r['peak_rss_mb']:.0f} MB (target < 1536 MB)"
            )
    load = os.getloadavg()
    print(f"load average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--make-only":
        t = time.perf_counter()
        make_jp2(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
        print(f"written {sys.argv[2]} in {time.perf_counter() - t:.0f} s")
    elif len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
