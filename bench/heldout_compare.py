"""Models side by side on the same held-out chunks, with paired bootstrap intervals on the differences.

A model card's held-out figure comes from 200 chunks; two models 0.01 apart in ROC-AUC on 200
chunks are within noise (the standard error is about 0.01). Choosing the default needs more chunks
and a paired comparison: every model here scores the same scenes (seeds from ``HELDOUT_SEED``,
never drawn by training nor by the frozen evaluation sets), each decoded at its own card's read
level and size, and the difference of ROC-AUC to the first model is bootstrapped over chunks.

Usage::

    python bench/heldout_compare.py MODEL [MODEL ...] [--count 800] [--edge-nodata 0] [-o out.json]

Prints ROC-AUC per model, per block of 200 chunks (to show the spread), precision/recall/NPV at the
paper's 0.6, and the difference of every pair of models with a 95 % interval (speed is
bench/inference.py's). About 12 minutes for the three shipped models at 800 chunks on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from marsice_plugin.cnn.heldout import HELDOUT_SEED
from marsice_plugin.cnn.metrics import roc_auc, summary
from marsice_plugin.cnn.model import load_model, model_input_size
from marsice_plugin.cnn.training_data import synthetic_chunks
from marsice_plugin.model_registry import card_read_level


def paired_bootstrap(y: np.ndarray, p: np.ndarray, base: np.ndarray, rounds: int = 2000) -> tuple[float, float, float]:
    """Mean and 95 % interval of ROC-AUC(p) − ROC-AUC(base), resampling chunks with replacement."""
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(rounds):
        i = rng.integers(0, len(y), len(y))
        if y[i].min() == y[i].max():
            continue
        diffs.append(roc_auc(y[i], p[i]) - roc_auc(y[i], base[i]))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return float(np.mean(diffs)), float(lo), float(hi)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--count", type=int, default=800)
    parser.add_argument("--edge-nodata", type=float, default=0.0)
    parser.add_argument("--threshold", type=float, default=0.6)
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()

    models = {path: load_model(path) for path in args.models}
    reads = {path: (model_input_size(m), card_read_level(path)) for path, m in models.items()}
    chunks: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    for size, level in sorted(set(reads.values())):
        t0 = time.perf_counter()
        x, y, _ = synthetic_chunks(
            args.count, seed=HELDOUT_SEED, input_size=size, read_level=level, edge_nodata=args.edge_nodata
        )
        chunks[(size, level)] = (x, y)
        print(f"rendered {args.count} chunks at {size} px, level {level}: {time.perf_counter() - t0:.0f} s", flush=True)
    labels = [y for _, y in chunks.values()]
    assert all(np.array_equal(labels[0], y) for y in labels), "labels must not depend on the read"
    y = labels[0]

    probs = {}
    report: dict = {"count": args.count, "first_seed": HELDOUT_SEED, "edge_nodata": args.edge_nodata, "models": {}}
    for path, model in models.items():
        x, _ = chunks[reads[path]]
        probs[path] = np.asarray(model.predict(x, batch_size=25, verbose=0)).reshape(-1)
        s = summary(y, probs[path], args.threshold)
        blocks = [roc_auc(y[i : i + 200], probs[path][i : i + 200]) for i in range(0, len(y) - 199, 200)]
        entry = {
            "input_size": reads[path][0],
            "read_level": reads[path][1],
            "roc_auc": s["roc_auc"],
            "roc_auc_per_200": blocks,
            "precision": s["precision"],
            "recall": s["recall"],
            "npv": s["npv"],
        }
        report["models"][path.name] = entry
        print(
            f"{path.name}: ROC-AUC {s['roc_auc']:.4f} (per 200: {', '.join(f'{b:.3f}' for b in blocks)}); at "
            f"{args.threshold}: precision {s['precision']:.3f} recall {s['recall']:.3f} NPV {s['npv']:.3f}",
            flush=True,
        )
    report["differences"] = []
    for i, first in enumerate(args.models):
        for path in args.models[i + 1 :]:
            mean, lo, hi = paired_bootstrap(y, probs[path], probs[first])
            report["differences"].append({"model": path.name, "minus": first.name, "mean": mean, "ci95": [lo, hi]})
            print(f"{path.name} − {first.name}: {mean:+.4f} (95 % interval {lo:+.4f} to {hi:+.4f})", flush=True)
    if args.output:
        args.output.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
