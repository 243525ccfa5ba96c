"""Every-chunk search (``detect --search all``): time, Mpx/s, outlines/s and peak RSS, beside an older package.

Usage::

    git archive <commit> marsice_plugin | tar -x -C /tmp/old_marsice     # the baseline, once
    .venv/bin/python bench/search_all.py [--side 4096] [--seed 4242] [--repeat 2] [--old /tmp/old_marsice]

A generated RED product of ``side`` x ``side`` px (0.25 m/px, planted ice, boulders, decoys) is written once into
``--work``. Each measurement runs ``detect --fast --search all`` on it in a fresh child process (so peak RSS is its
own), the current package and the ``--old`` one alternately, ``--repeat`` times each, on the same input and the same
model; the machine's other load moves both alike. Printed per package: the best and the median wall time, CPU time,
Mpx/s, outlines scored per second, peak RSS, and the outlines and candidates found. With ``--old`` the two outputs
are compared: the same candidates (outline vertices, area, chunk probability) and their second-stage probabilities
(the largest difference; TensorFlow's float32 rounding moves them by about 1e-7).

Every-chunk search outlines the whole product at level 0 and scores every outline with the second stage: on
generated 4096 px products most of its time is per-outline work (merging, measuring, cutting and scoring crops), so
outlines per second is the figure to watch.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAST_MODEL = REPO / "models" / "marsice_xception_256_level2.keras"
PATCH_MODEL = REPO / "models" / "marsice_patch_64.keras"  # given, so an --old package reads this repository's too


def _generate(work: Path, side: int, seed: int) -> Path:
    """The product's label (written once per side and seed; later runs reuse it)."""
    folder = work / f"product_{side}_{seed}"
    found = sorted(folder.glob("*_RED.LBL"))
    if found:
        return found[0]
    from marsice_plugin.synthetic.product_writer import write_sample_product
    from marsice_plugin.synthetic.scene import SceneConfig

    work.mkdir(parents=True, exist_ok=True)
    return write_sample_product(folder, SceneConfig(width=side, height=side, seed=seed)).label_path


def _child(label: Path, out: Path) -> None:
    sys.path.append(str(REPO))  # after PYTHONPATH, so the package measured is still the one it names
    from bench.terrain import _peak_mb
    from marsice_plugin.detection import DetectOptions
    from marsice_plugin.pipeline import detect

    out.unlink(missing_ok=True)
    t0 = time.perf_counter()
    result = detect(label, out, DetectOptions(model_path=FAST_MODEL, patch_model_path=PATCH_MODEL, search="all"))
    seconds = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report = {
        "seconds": seconds,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": _peak_mb(),
        "outlined": result.outlined,
        "kept": len(result.candidates),
    }
    print(json.dumps(report))


def _run(label: Path, out: Path, package: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(package)}
    cmd = [sys.executable, __file__, "--child", "--label", str(label), "--out", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, cwd=package)
    if proc.returncode != 0:
        raise SystemExit(f"detect with the package in {package} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _compare(new: Path, old: Path) -> str:
    """How the current output's candidates compare with the old one's."""
    from marsice_plugin.gpkg.read import read_layer

    def rows(path: Path) -> list:
        got = read_layer(path, "ice_candidates", ["area_m2", "chunk_probability", "probability"])
        return sorted(got, key=lambda f: (round(f[1]["area_m2"], 6), f[0].wkb))

    a, b = rows(new), rows(old)
    if len(a) != len(b):
        return f"DIFFERENT: {len(a)} candidates against {len(b)}"
    outlines = all(x[0].equals_exact(y[0], 0.0) for x, y in zip(a, b, strict=True))
    same = all(
        x[1]["area_m2"] == y[1]["area_m2"] and x[1]["chunk_probability"] == y[1]["chunk_probability"]
        for x, y in zip(a, b, strict=True)
    )
    dp = max((abs(x[1]["probability"] - y[1]["probability"]) for x, y in zip(a, b, strict=True)), default=0.0)
    verdict = "the same" if outlines and same else "DIFFERENT"
    what = "candidates (outlines, areas, chunk probabilities)"
    return f"{verdict} {len(a)} {what}; probability differs by at most {dp:.1e}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--side", type=int, default=4096, help="image side in pixels")
    ap.add_argument("--seed", type=int, default=4242, help="scene seed of the generated product")
    ap.add_argument("--repeat", type=int, default=2, help="runs of each package")
    ap.add_argument("--work", type=Path, default=Path("/tmp/search_all_bench"), help="folder for the generated data")
    ap.add_argument("--old", type=Path, default=None, help="folder holding an older marsice_plugin to compare")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--label", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.label, args.out)
        return
    sys.path.insert(0, str(REPO))
    label = _generate(args.work, args.side, args.seed)
    packages = {"current": REPO, **({"old": args.old.resolve()} if args.old else {})}
    runs: dict[str, list[dict]] = {name: [] for name in packages}
    for _ in range(args.repeat):
        for name, package in packages.items():
            runs[name].append(_run(label, args.work / f"{name}.gpkg", package))
    mpx = args.side**2 / 1e6
    print(f"detect --fast --search all on a generated {args.side} x {args.side} px product ({mpx:.1f} Mpx)")
    head = f"{'package':<10}{'best s':>8}{'median s':>10}{'CPU s':>8}{'Mpx/s':>8}{'outlines/s':>12}{'peak MB':>9}"
    print(head + f"{'outlined':>10}{'kept':>6}")
    for name, got in runs.items():
        best = min(got, key=lambda r: r["seconds"])
        median = statistics.median(r["seconds"] for r in got)
        print(
            f"{name:<10}{best['seconds']:>8.1f}{median:>10.1f}{best['cpu_s']:>8.1f}{mpx / best['seconds']:>8.2f}"
            f"{best['outlined'] / best['seconds']:>12.0f}{max(r['peak_rss_mb'] for r in got):>9.0f}"
            f"{best['outlined']:>10}{best['kept']:>6}"
        )
    if args.old:
        ratio = min(r["seconds"] for r in runs["old"]) / min(r["seconds"] for r in runs["current"])
        print(f"speed-up (best against best): {ratio:.2f}x")
        print("output:", _compare(args.work / "current.gpkg", args.work / "old.gpkg"))


if __name__ == "__main__":
    main()
