"""Benchmark of ``marsice terrain`` on a generated ~25 Mpx product: time, Mpx/s and peak RSS (issue 23).

Usage::

    .venv/bin/python bench/terrain.py [--side 5000] [--candidates 200] [--work /tmp/terrain_bench] [--old DIR]

A product of ``side`` x ``side`` px at 0.5 m/px with its 4x coarser HiRISE-style DTM (``dtm_factor=4``) and a
results GeoPackage of ``candidates`` square patches is generated once into ``--work`` (kept for later runs). Each
measurement then runs in a fresh child process (so its peak RSS is its own):

- ``read``: the image read once at level 0, strip by strip (the yardstick of the issue's target "terrain >= 0.8 x
  the time of one level-0 read", read as throughput: Mpx/s of terrain over Mpx/s of the read; terrain itself decodes
  level 0 only in windows around the candidates, and works on the DTM's grid);
- ``terrain``: :func:`marsice_plugin.terrain.analysis.run_terrain` with the candidates (rasters and fields);
- ``old terrain``: the same with the package found in ``--old DIR`` (e.g. ``git archive <commit> marsice_plugin |
  tar -x -C DIR``), when given. Without it the issue's figures for the whole-image code (25 Mpx: 177 s, 3.8 GB) are
  printed beside the new ones.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ISSUE_OLD = {"seconds": 177.0, "peak_rss_mb": 3.8 * 1024}  # issue 23: the whole-image code on 25 Mpx


def _peak_mb() -> float:
    """This process's peak RSS: VmHWM (getrusage's ru_maxrss keeps the parent's peak across fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def _generate(work: Path, side: int, n_candidates: int) -> dict:
    """The product, its DTM and a candidates file (generated once; ``product.json`` says where they are)."""
    meta = work / "product.json"
    if meta.exists():
        return json.loads(meta.read_text())
    import numpy as np

    from marsice_plugin.gpkg import Field, write_new
    from marsice_plugin.mars_crs import common_crs
    from marsice_plugin.product import open_product
    from marsice_plugin.synthetic.product_writer import write_sample_product
    from marsice_plugin.synthetic.scene import SceneConfig
    from marsice_plugin.vectors import window_footprint

    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    sp = write_sample_product(work / "product", SceneConfig(width=side, height=side, seed=23), dtm_factor=4)
    rng = np.random.default_rng(23)
    with open_product(sp.label_path) as p:
        windows = [(int(rng.integers(0, side - 80)), int(rng.integers(0, side - 80))) for _ in range(n_candidates)]
        rows = [
            (
                window_footprint(p.transform, p.crs, c, r, int(rng.integers(8, 60)), int(rng.integers(8, 60))),
                {"product_id": sp.product_id, "candidate_id": f"c{i}", "max_probability": 0.8},
            )
            for i, (r, c) in enumerate(windows)
        ]
    schema = [Field("product_id", str), Field("candidate_id", str), Field("max_probability", float)]

    def build(gpkg) -> None:
        gpkg.create_layer("ice_candidates", schema, "POLYGON", gpkg.add_srs(common_crs()))
        gpkg.insert("ice_candidates", schema, rows)

    candidates = write_new(work / "candidates.gpkg", build)
    info = {
        "label": str(sp.label_path),
        "dtm": str(sp.dtm_path),
        "candidates": str(candidates),
        "side": side,
        "generated_s": time.perf_counter() - t0,
    }
    meta.write_text(json.dumps(info))
    return info


def _child(kind: str, info: dict, out: Path) -> None:
    """One measurement in this (fresh) process; prints one JSON line."""
    t0 = time.perf_counter()
    if kind == "read":
        from marsice_plugin.product import open_product

        with open_product(info["label"]) as p:
            rows = max(256, 4_000_000 // p.width)
            for r in range(0, p.height, rows):
                p.read(r, 0, min(rows, p.height - r), p.width)
    else:
        from marsice_plugin.terrain.analysis import run_terrain

        result = run_terrain(Path(info["dtm"]), Path(info["label"]), out, candidates=Path(info["candidates"]))
        assert result.candidates_updated > 0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    print(json.dumps({"seconds": time.perf_counter() - t0, "cpu_s": cpu, "peak_rss_mb": _peak_mb()}))


def _measure(kind: str, info: dict, work: Path, pythonpath: str | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": pythonpath or str(REPO)}
    out = work / f"out_{kind.replace(' ', '_')}"
    cmd = [sys.executable, __file__, "--child", "read" if kind == "read" else "terrain", "--work", str(work)]
    proc = subprocess.run([*cmd, "--out", str(out)], env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--side", type=int, default=5000, help="image side in pixels (5000: 25 Mpx)")
    ap.add_argument("--candidates", type=int, default=200, help="candidate patches in the results file")
    ap.add_argument("--work", type=Path, default=Path("/tmp/terrain_bench"), help="folder for the generated data")
    ap.add_argument("--old", type=Path, default=None, help="folder holding an older marsice_plugin to compare")
    ap.add_argument("--child", choices=("read", "terrain"), help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    info = _generate(args.work, args.side, args.candidates)
    if args.child:
        _child(args.child, info, args.out)
        return
    mpx = info["side"] ** 2 / 1e6
    print(f"product {info['side']} x {info['side']} px ({mpx:.1f} Mpx), DTM 4x coarser, {args.candidates} candidates")
    results = {"read": _measure("read", info, args.work), "terrain": _measure("terrain", info, args.work)}
    if args.old is not None:
        results["old terrain"] = _measure("old terrain", info, args.work, str(args.old))
    else:
        results["old terrain (issue, 25 Mpx)"] = ISSUE_OLD
    print(f"{'stage':<28}{'time s':>9}{'CPU s':>9}{'Mpx/s':>9}{'peak RSS MB':>13}")
    for name, r in results.items():
        cpu = f"{r['cpu_s']:>9.1f}" if "cpu_s" in r else f"{'':>9}"
        print(f"{name:<28}{r['seconds']:>9.1f}{cpu}{mpx / r['seconds']:>9.2f}{r['peak_rss_mb']:>13.0f}")
    ratio = results["read"]["seconds"] / results["terrain"]["seconds"]
    print(f"terrain throughput / level-0 read throughput: {ratio:.2f} (target >= 0.8)")
    cpu_ratio = results["read"]["cpu_s"] / results["terrain"]["cpu_s"]
    print(f"the same in CPU time (which other jobs on the machine do not inflate): {cpu_ratio:.2f}")


if __name__ == "__main__":
    main()
