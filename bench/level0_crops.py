"""Can the 512 px member read full-resolution detail without retraining? Held-out chunks, level 0 crops.

The shipped models miss patches of a few tens of pixels because they read chunks at JPEG2000 level 1
or 2, where such a patch is a handful of input pixels. The cheapest way to give a model full detail is
to run the 512 px member, unchanged, on 512 px crops of the chunk read at level 0 (4 crops edge to
edge, or 9 overlapping by half) and keep the highest crop probability. This compares that with the
shipped ensemble on the same held-out chunks (``HELDOUT_SEED`` and up, as bench/heldout_compare.py),
with paired bootstrap intervals. Measured 2026-11-29 on 400 chunks: it does not work (ROC-AUC 0.77
against 0.967; the model is tied to the scale it learnt, twice as many pixels per metre here), and
averaging it into the ensemble lowers the ensemble (0.945); a full-resolution member has to be
trained. About 22 minutes for 400 chunks on 2 cores (9 crops per chunk dominate).

Usage::

    python bench/level0_crops.py [--count 400]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.heldout_compare import paired_bootstrap
from marsice_plugin.cnn.heldout import HELDOUT_SEED
from marsice_plugin.cnn.metrics import roc_auc
from marsice_plugin.cnn.model import load_model
from marsice_plugin.cnn.training_data import synthetic_chunks

MODELS = Path(__file__).resolve().parents[1] / "models"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=400)
    args = parser.parse_args()
    t0 = time.perf_counter()
    x1, y, _ = synthetic_chunks(args.count, seed=HELDOUT_SEED, input_size=512, read_level=1)
    x0, y0, _ = synthetic_chunks(args.count, seed=HELDOUT_SEED, input_size=1024, read_level=0)
    assert np.array_equal(y, y0), "labels must not depend on the read"
    print(f"rendered {args.count} chunks at level 1 and level 0: {time.perf_counter() - t0:.0f} s", flush=True)
    ensemble = load_model(MODELS / "marsice_ensemble_512_level1.keras")
    member = load_model(MODELS / "marsice_xception_512_level1.keras")
    shipped = ensemble.predict(x1, batch_size=25, verbose=0).reshape(-1)
    # crops at row/column offsets 0, 256, 512: index 3 * r + c; the corner ones tile the chunk edge to edge
    crops = np.stack(
        [
            member.predict(x0[:, r : r + 512, c : c + 512], batch_size=25, verbose=0).reshape(-1)
            for r in (0, 256, 512)
            for c in (0, 256, 512)
        ],
        axis=1,
    )
    scores = {
        "shipped ensemble (level 1)": shipped,
        "512 px member, max of 4 level-0 crops": crops[:, [0, 2, 6, 8]].max(1),
        "512 px member, max of 9 level-0 crops": crops.max(1),
        "mean of ensemble and max of 9 crops": (shipped + crops.max(1)) / 2,
    }
    for name, p in scores.items():
        line = f"{name}: ROC-AUC {roc_auc(y, p):.4f}"
        if p is not shipped:
            mean, lo, hi = paired_bootstrap(y, p, shipped)
            line += f"; minus the shipped ensemble {mean:+.4f} (95 % interval {lo:+.4f} to {hi:+.4f})"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
