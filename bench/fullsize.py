"""A generated product of real size through ``marsice detect`` and ``marsice terrain`` (issue 23). Not a test.

Usage::

    nice -n 10 .venv/bin/python bench/fullsize.py [--width 20000] [--height 50000] [--work /tmp/marsice-fullsize]
        [--stages read,detect,fast,terrain] [--keep]

**The product.** A HiRISE RED RDR as the archive serves it: ``ID.JP2`` (10-bit lossless JPEG2000, the layout of
:data:`marsice_plugin.synthetic.product_writer.JP2_OPTIONS`, printed from the codestream) with its detached PDS3
label ``ID.LBL`` (the synthetic writer's label: real keywords, equirectangular at 50°S, 0.25 m/px) and a HiRISE DTM
``DTEEC_..._A01.IMG`` (PC_REAL, attached label, 1 m/px: 4x coarser, as real DTMs beside 0.25 m images). The default
size is a real RED product's (the real ESP_013951_1955_RED label in ``../shared`` gives 19,243 x 67,395 px at
0.5 m/px; a 0.25 m/px product is about 20,000 x 50,000 px, 1 Gpx).

Why it is generated in strips: the scene renderer holds a whole scene in memory (a dozen float arrays: tens of GB at
1 Gpx) and takes ~7 s per 4 Mpx. A palette of :data:`PALETTE` scenes of :data:`TILE` px (each its own seed: terrain,
boulders, craters, ice patches, decoys, hot pixels, shadows rendered for the product's sun) is rendered once and laid
out as a mosaic, one row of tiles at a time, into a tiled GeoTIFF (2 GB at 1 Gpx), which GDAL then copies into the
JPEG2000 tile by tile. Each tile's DNs are put on the first tile's stretch (one SCALING_FACTOR/OFFSET in the label)
and its heights on a common median; the DTM is the heights averaged over 4 x 4 pixels, strip by strip. Seams between
tiles are steps of a few metres in the DTM (real terrain has such steps too: scarps, crater rims). The product's skewed
black margins (a map-projected strip) are drawn over the whole mosaic. Only :data:`ICE_TILES` of the palette scenes
hold planted ice (a sixth of the mosaic). Generation is kept in ``--work`` for later runs.

**The stages.** Each runs as its own child process (``python -m marsice_plugin``: the command line a user or the QGIS
plugin runs), so its peak RSS (VmHWM, see :func:`run_stage`) and CPU time are its own; by default in the order
below (terrain scores detect's candidates; each stage's figures are printed and saved as it ends):

- ``detect``: the default model, with ``--quicklook`` (reduced JPEG2000 levels) and ``--probability-raster``;
- ``terrain``: co-registration, slope/aspect/poleward/shadow/height rasters on the DTM's own grid with overviews,
  and the terrain fields of the candidates of the detect stage run before it (the default model's, else ``--fast``'s);
- ``read``: the image read once at level 0, strip by strip (the yardstick of terrain's target);
- ``fast``: ``detect --fast``, the same outputs.

End-to-end per product is detect + terrain (``scan`` runs them one after the other); ``--fast`` uses the same
terrain time (terrain does not depend on the model, only on the number of candidates). Products per hour are for
one machine of 2 cores running one product at a time (each stage already uses both cores). Results go to
``fullsize_<width>x<height>.json`` in ``--work``; a run at another size there is printed beside it (Mpx/s at two
sizes: a stage is not super-linear when its rate does not fall with size).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

#: Side (px) of the rendered palette scenes, and how many distinct ones the mosaic is made of.
TILE = 2048
PALETTE = 6
#: Palette scenes with planted ice (the renderer's 7 patches per 4 Mpx); the others have none. Remnant ice is rare: a
#: product covered in patches would make the candidate stages, not the reading and scoring, the whole cost.
ICE_TILES = 1
SCALE_M = 0.25
DTM_FACTOR = 4
#: Skewed black margins of the strip (fraction of the width), as the renderer draws them.
MARGIN = 0.06
#: In this order by default: the end-to-end stages first (terrain scores detect's candidates), each stage's figures
#: printed and saved as it ends, so a run cut short still gives them.
STAGES = ("detect", "terrain", "read", "fast")
RSS_TARGET_MB = 2048


def _palette(seed: int) -> list[dict]:
    """The rendered scenes: DNs on the first scene's stretch, heights around a common median (memory: ~150 MB)."""
    from marsice_plugin.synthetic.scene import SceneConfig, render

    tiles = []
    for i in range(PALETTE):
        ice = {} if i < ICE_TILES else {"n_ice_boulder": 0, "n_ice_crater": 0}
        config = SceneConfig(width=TILE, height=TILE, scale_m=SCALE_M, seed=seed + i, nodata_margin=0.0, **ice)
        scene = render(config)
        if not tiles:
            stretch = (scene.scaling_factor, scene.offset)
        iof = scene.dn.astype(np.float64) * scene.scaling_factor + scene.offset
        dn = np.clip(np.rint((iof - stretch[1]) / stretch[0]), 3, 1021).astype(np.uint16)
        dn[scene.dn >= 1022] = scene.dn[scene.dn >= 1022]  # keep the planted special-value hot pixels
        height = (scene.height - np.median(scene.height)).astype(np.float32)
        tiles.append({"dn": dn, "height": height, "scene": scene})
    return tiles


def _tile_index(tile_row: int, tile_col: int) -> int:
    """Which palette scene sits at a mosaic cell: the four neighbours of a cell are other scenes."""
    return (tile_row + 2 * tile_col) % PALETTE


def _strip_rows(tiles: list[dict], row0: int, rows: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Mosaic rows ``row0 .. row0 + rows`` (within one row of tiles): DNs with the black margins, and heights."""
    tile_row, r_in = divmod(row0, TILE)
    dn = np.empty((rows, width), dtype=np.uint16)
    hgt = np.empty((rows, width), dtype=np.float32)
    for c0 in range(0, width, TILE):
        t = tiles[_tile_index(tile_row, c0 // TILE)]
        w = min(TILE, width - c0)
        dn[:, c0 : c0 + w] = t["dn"][r_in : r_in + rows, :w]
        hgt[:, c0 : c0 + w] = t["height"][r_in : r_in + rows, :w]
    rr = np.arange(row0, row0 + rows, dtype=np.float64)[:, None] / height
    cc = np.arange(width)[None, :]
    edge = MARGIN * width
    dn[(cc < edge * (1.0 - rr)) | (cc >= width - edge * rr)] = 0
    return dn, hgt


def generate(work: Path, width: int, height: int, seed: int = 2300) -> dict:
    """Write the product, its label and its DTM into ``work/product`` (once; ``product.json`` says where)."""
    meta = work / f"product_{width}x{height}.json"
    if meta.exists():
        return json.loads(meta.read_text())
    import dataclasses

    import rasterio
    import rasterio.shutil
    from rasterio.crs import CRS
    from rasterio.windows import Window

    from marsice_plugin.labels import parse_label_text
    from marsice_plugin.mars_crs import label_crs, label_transform, local_radius
    from marsice_plugin.synthetic.dtm_writer import MISSING_CONSTANT, write_dtm
    from marsice_plugin.synthetic.product_writer import (
        JP2_OPTIONS,
        ProductGeometry,
        _label_text,
        _lonlat_extent,
        product_id_for,
        projection_center_latitude,
    )
    from marsice_plugin.synthetic.scene import SceneConfig

    t0 = time.perf_counter()
    out = work / f"product_{width}x{height}"
    out.mkdir(parents=True, exist_ok=True)
    tiles = _palette(seed)
    render_s = time.perf_counter() - t0
    # the label: the synthetic writer's geometry (equirectangular, standard parallel rounded to 5 degrees)
    config = SceneConfig(width=width, height=height, scale_m=SCALE_M, seed=seed)
    g = ProductGeometry()
    lat_0 = projection_center_latitude(g.center_latitude)
    radius = local_radius(lat_0)
    proj = f"+proj=eqc +lat_ts={lat_0} +lat_0=0 +lon_0=180 +x_0=0 +y_0=0 +R={radius} +units=m"
    import pyproj

    x_c, y_c = pyproj.Transformer.from_crs(
        pyproj.CRS.from_proj4(f"+proj=longlat +R={radius} +no_defs +type=crs"),
        pyproj.CRS.from_proj4(proj),
        always_xy=True,
    ).transform(g.center_longitude, g.center_latitude)
    x_ul = math.floor((x_c - width * SCALE_M / 2) / SCALE_M) * SCALE_M
    y_ul = math.floor((y_c + height * SCALE_M / 2) / SCALE_M) * SCALE_M
    pid = product_id_for(92300, g.center_latitude)
    extent = _lonlat_extent(proj, radius, x_ul, y_ul, width * SCALE_M, height * SCALE_M)
    offsets = (-x_ul / SCALE_M - 0.5, y_ul / SCALE_M - 0.5)
    text = _label_text(pid, config, g, tiles[0]["scene"], (lat_0, 180.0), radius, *offsets, extent)
    label_path = out / f"{pid}.LBL"
    label = parse_label_text(text, label_path)
    crs, transform = label_crs(label), label_transform(label)
    # the image strip by strip into a tiled GeoTIFF, the DTM's posts beside it
    tif = out / f"{pid}.src.tif"
    dtm = np.empty((height // DTM_FACTOR, width // DTM_FACTOR), dtype="<f4")
    profile = dict(driver="GTiff", width=width, height=height, count=1, dtype="uint16", tiled=True)
    profile.update(blockxsize=1024, blockysize=1024, BIGTIFF="YES", crs=CRS.from_wkt(crs.to_wkt()), transform=transform)
    f = DTM_FACTOR
    with rasterio.open(tif, "w", **profile) as ds:
        for r0 in range(0, height, TILE):
            rows = min(TILE, height - r0)
            dn, hgt = _strip_rows(tiles, r0, rows, width, height)
            ds.write(dn, 1, window=Window(0, r0, width, rows))
            d0, d1 = r0 // f, min(dtm.shape[0], (r0 + rows) // f)
            block = hgt[: (d1 - d0) * f, : dtm.shape[1] * f].reshape(d1 - d0, f, dtm.shape[1], f)
            posts = block.mean(axis=(1, 3))
            empty = (dn[: (d1 - d0) * f, : dtm.shape[1] * f] == 0).reshape(d1 - d0, f, dtm.shape[1], f).all(axis=(1, 3))
            posts[empty] = MISSING_CONSTANT
            dtm[d0:d1] = posts
    mosaic_s = time.perf_counter() - t0 - render_s
    jp2 = out / f"{pid}.JP2"
    partial = out / f"{pid}.JP2.partial"
    rasterio.shutil.copy(tif, partial, driver="JP2OpenJPEG", **JP2_OPTIONS)
    partial.replace(jp2)
    Path(str(partial) + ".aux.xml").unlink(missing_ok=True)
    tif.unlink()
    jp2_s = time.perf_counter() - t0 - render_s - mosaic_s
    label_path.write_text(text, encoding="ascii")
    # the DTM's own grid: 4x the scale, the same upper-left corner (write_dtm with factor 1 keeps what it is given)
    p = label.projection
    dtm_projection = dataclasses.replace(
        p,
        map_scale_m=p.map_scale_m * f,
        sample_projection_offset=(p.sample_projection_offset + 0.5) / f - 0.5,
        line_projection_offset=(p.line_projection_offset + 0.5) / f - 0.5,
    )
    dtm_path = write_dtm(out, pid, dtm, dtm == MISSING_CONSTANT, dtm_projection, factor=1)
    info = {
        "label": str(label_path),
        "jp2": str(jp2),
        "dtm": str(dtm_path),
        "width": width,
        "height": height,
        "jp2_mb": jp2.stat().st_size / 2**20,
        "generate_s": {"render palette": render_s, "mosaic + DTM": mosaic_s, "JPEG2000 encode": jp2_s},
    }
    meta.write_text(json.dumps(info, indent=1))
    return info


def _read_once(label: str) -> None:
    """The ``read`` stage's child: the image at level 0 once, in full-width strips of ~4 Mpx."""
    from marsice_plugin.product import open_product

    with open_product(label) as p:
        rows = max(256, 4_000_000 // p.width)
        for r in range(0, p.height, rows):
            p.read(r, 0, min(rows, p.height - r), p.width)


def _hwm_mb(pid: int) -> float:
    """A live process's peak RSS so far (VmHWM: this program's own, reset at exec), in MB; 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def run_stage(argv: list[str], log: Path) -> dict:
    """One child process: wall time, its CPU time and its peak RSS.

    Why VmHWM polled every 0.1 s and not ``ru_maxrss`` alone: Linux carries the parent's RSS into the child's
    ``ru_maxrss`` across fork and exec, so a large parent would be counted. VmHWM is monotonic; only growth in the
    last 0.1 s before exit could be missed. ``ru_maxrss`` is printed beside it as an upper bound.
    """
    t0 = time.perf_counter()
    peak = 0.0
    with open(log, "w") as handle:
        proc = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, _hwm_mb(proc.pid))
            time.sleep(0.1)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n" + "\n".join(tail))
    cpu = usage.ru_utime + usage.ru_stime
    return {"seconds": seconds, "cpu_s": cpu, "peak_rss_mb": peak, "ru_maxrss_mb": usage.ru_maxrss / 1024.0}


def _count(gpkg: Path, layer: str) -> int:
    import sqlite3

    with sqlite3.connect(gpkg) as db:
        return int(db.execute(f'SELECT COUNT(*) FROM "{layer}"').fetchone()[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=20_000)
    ap.add_argument("--height", type=int, default=50_000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/marsice-fullsize"))
    ap.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of {', '.join(STAGES)}")
    ap.add_argument(
        "--keep",
        action="store_true",
        help="keep the stages' outputs (rasters: ~16 GB at 1 Gpx; a later --stages "
        "terrain run scores the kept detect's candidates)",
    )
    ap.add_argument("--generate-only", action="store_true", help="write the product and stop")
    ap.add_argument("--patch-model", type=Path, help="detect's second-stage model (default: the shipped one)")
    ap.add_argument(
        "--detect-args",
        default="",
        help='more options for the detect and fast stages, as one string (e.g. "--search all")',
    )
    ap.add_argument("--child-read", help=argparse.SUPPRESS)
    ap.add_argument("--child-generate", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_read:
        _read_once(args.child_read)
        return
    from tiling import jp2_layout

    if args.child_generate:
        generate(args.work, args.width, args.height)
        return
    meta = args.work / f"product_{args.width}x{args.height}.json"
    if meta.exists() and not Path(json.loads(meta.read_text())["jp2"]).exists():
        meta.unlink()  # the product was removed (a cleaned /tmp): generate it again
    if not meta.exists():  # in a child process: this one stays small (its RSS would reach the stages' ru_maxrss)
        cmd = [sys.executable, __file__, "--child-generate", "--work", str(args.work)]
        subprocess.run([*cmd, "--width", str(args.width), "--height", str(args.height)], check=True)
    info = json.loads(meta.read_text())
    mpx = info["width"] * info["height"] / 1e6
    gen = ", ".join(f"{k} {v:.0f} s" for k, v in info["generate_s"].items())
    print(f"product {info['width']} x {info['height']} px ({mpx:.0f} Mpx) at {SCALE_M} m/px, DTM {DTM_FACTOR}x coarser")
    print(f"JP2 {info['jp2_mb']:.0f} MiB; generated in strips ({gen})")
    print(f"JP2 layout: {json.dumps(jp2_layout(Path(info['jp2'])))}")
    if args.generate_only:
        return
    runs = args.work / f"runs_{args.width}x{args.height}"
    runs.mkdir(parents=True, exist_ok=True)  # each stage clears its own outputs; an earlier detect's stay for terrain
    cli = [sys.executable, "-m", "marsice_plugin"]
    label = info["label"]
    argv = {
        "read": [sys.executable, __file__, "--child-read", label],
        "detect": [*cli, "detect", label, "-o", str(runs / "default.gpkg"), "--quicklook", str(runs / "default.png")],
        "fast": [*cli, "detect", label, "--fast", "-o", str(runs / "fast.gpkg"), "--quicklook", str(runs / "fast.png")],
        "terrain": [*cli, "terrain", "--dtm", info["dtm"], "--image", label, "-o", str(runs / "terrain")],
    }
    argv["detect"] += ["--probability-raster", str(runs / "default_probability.tif")]
    argv["fast"] += ["--probability-raster", str(runs / "fast_probability.tif")]
    if args.patch_model:
        argv["detect"] += ["--patch-model", str(args.patch_model)]
        argv["fast"] += ["--patch-model", str(args.patch_model)]
    argv["detect"] += shlex.split(args.detect_args)
    argv["fast"] += shlex.split(args.detect_args)
    wanted = [s for s in args.stages.split(",") if s]
    if "terrain" in wanted:  # the candidates of the detect run before it: the default model's, else --fast's
        before = wanted[: wanted.index("terrain")]
        source = next((f"{n}.gpkg" for s, n in (("detect", "default"), ("fast", "fast")) if s in before), None)
        if source is None:  # an earlier invocation's, kept with --keep (figures of one stage per run, when loaded)
            source = next((n for n in ("default.gpkg", "fast.gpkg") if (runs / n).exists()), None)
        if source is None:
            print("terrain without a detect stage before it: rasters only, no candidates to score")
        else:
            argv["terrain"] += ["--candidates", str(runs / source)]
            print(f"terrain scores the candidates of {source}")
    out = args.work / f"fullsize_{args.width}x{args.height}.json"
    # stages of earlier invocations at this size stay in the table (each row says when it ran and the load)
    results: dict[str, dict] = json.loads(out.read_text())["results"] if out.exists() else {}
    outputs = {"detect": "default", "fast": "fast", "terrain": "terrain"}
    for stage in wanted:
        print(f"running {stage} ...", flush=True)
        for old in runs.glob(f"{outputs.get(stage, stage)}*"):
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        load = os.getloadavg()[0]
        # a detect with other options is its own row (e.g. "fast --search all"), beside the defaults' rows
        key = f"{stage} {args.detect_args}".strip() if stage in ("detect", "fast") else stage
        results[key] = run_stage(argv[stage], runs / f"{stage}.log")
        results[key]["when"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        results[key]["load"] = round((load + os.getloadavg()[0]) / 2, 1)
        if stage in ("detect", "fast"):
            gpkg = runs / f"{'default' if stage == 'detect' else 'fast'}.gpkg"
            results[key]["chunks"] = _count(gpkg, "chunks")
            results[key]["candidates"] = _count(gpkg, "ice_candidates")
        r = results[key]
        rate = mpx / r["seconds"]
        print(f"  {r['seconds']:.1f} s, {r['cpu_s']:.1f} s CPU, {rate:.2f} Mpx/s, peak RSS {r['peak_rss_mb']:.0f} MB")
        out.write_text(json.dumps({"mpx": mpx, "results": results}, indent=1))  # kept if a later stage is cut short
    names = {"read": "read (level 0, once)", "detect": "detect (default)", "fast": "detect --fast"}
    print(f"\n{'stage':<22}{'time s':>9}{'CPU s':>9}{'Mpx/s':>8}{'peak RSS MB':>13}{'ru_maxrss':>11}  notes")
    for stage, r in results.items():
        note = f"{r['chunks']} chunks, {r['candidates']} candidates; " if "chunks" in r else ""
        note += f"{r.get('when', '')}, load {r.get('load', '?')}"
        row = f"{names.get(stage, stage):<22}{r['seconds']:>9.1f}{r['cpu_s']:>9.1f}{mpx / r['seconds']:>8.2f}"
        print(f"{row}{r['peak_rss_mb']:>13.0f}{r['ru_maxrss_mb']:>11.0f}  {note}")
    if "terrain" in results and "read" in results:
        ratio = results["read"]["seconds"] / results["terrain"]["seconds"]
        print(f"terrain throughput / level-0 read throughput: {ratio:.2f} (target >= 0.8)")
    peak = max((r["peak_rss_mb"] for s, r in results.items() if s != "read"), default=0.0)
    print(f"peak RSS of detect and terrain: {peak:.0f} MB (target < {RSS_TARGET_MB} MB)")
    if "terrain" in results:
        for stage in ("detect", "fast"):
            if stage in results:
                total = results[stage]["seconds"] + results["terrain"]["seconds"]
                print(
                    f"end to end, {names[stage]} + terrain: {total / 60:.1f} min per product, "
                    f"{3600 / total:.1f} products per hour on 2 cores; a Dask cluster of N such machines: "
                    f"N x {3600 / total:.1f} per hour (downloads apart)"
                )
    out.write_text(json.dumps({"mpx": mpx, "results": results}, indent=1))
    for other in sorted(args.work.glob("fullsize_*.json")):
        if other != out:
            prev = json.loads(other.read_text())
            rates = ", ".join(
                f"{s} {prev['mpx'] / r['seconds']:.2f} -> {mpx / results[s]['seconds']:.2f}"
                for s, r in prev["results"].items()
                if s in results
            )
            print(f"Mpx/s at {prev['mpx']:.0f} Mpx -> {mpx:.0f} Mpx: {rates}")
    if not args.keep:  # keep the logs (and, with --keep, a detect's GeoPackage for a later terrain-only run)
        for path in runs.iterdir():
            if path.suffix != ".log":
                shutil.rmtree(path) if path.is_dir() else path.unlink()


if __name__ == "__main__":
    main()
