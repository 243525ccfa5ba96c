"""Held-out check of a model on generated chunks, beside the brightness baseline (for model cards).

Held-out chunks are rendered from seeds the training never draws (``HELDOUT_SEED``), with the same
renderer and distributions as the training chunks. This is *not* the frozen evaluation set; it says
how a model does on unseen scenes of its own kind, nothing about real Mars images.

Usage: ``python -m marsice_plugin.cnn.heldout MODEL.keras [COUNT] [EDGE_NODATA]`` prints JSON and
adds the figures to ``MODEL.card.json`` (``heldout_evaluation``; with ``EDGE_NODATA`` > 0, the
fraction of chunks given a strip-edge no-data band as in training, ``heldout_evaluation_edge_nodata``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ..model_registry import card_path, card_read_level
from .metrics import brightness_baseline, summary
from .model import load_model, model_input_size
from .training_data import synthetic_chunks

HELDOUT_SEED = 500_000


def evaluate_heldout(model_path: Path, count: int = 200, threshold: float = 0.6, edge_nodata: float = 0.0) -> dict:
    """Chunk-level metrics of the model and the baseline's ROC-AUC on ``count`` held-out chunks.

    The chunks are decoded at the JPEG2000 level the model was trained at (its card's ``read_level``).
    """
    model = load_model(model_path)
    level = card_read_level(model_path)
    x, y, _ = synthetic_chunks(
        count, seed=HELDOUT_SEED, input_size=model_input_size(model), read_level=level, edge_nodata=edge_nodata
    )
    p = np.asarray(model.predict(x, batch_size=25, verbose=0)).reshape(-1)
    result = {
        "heldout": {
            "source": "marsice synthetic chunks",
            "first_seed": HELDOUT_SEED,
            "count": count,
            "read_level": level,
            "edge_nodata": edge_nodata,
        },
        "model": summary(y, p, threshold),
        "brightness_baseline_roc_auc": summary(y, brightness_baseline(x), 0.5)["roc_auc"],
        "threshold": threshold,
    }
    return result


def main(argv: list[str]) -> int:
    model_path = Path(argv[0])
    count = int(argv[1]) if len(argv) > 1 else 200
    edge_nodata = float(argv[2]) if len(argv) > 2 else 0.0
    result = evaluate_heldout(model_path, count, edge_nodata=edge_nodata)
    path = card_path(model_path)
    card = json.loads(path.read_text()) if path.exists() else {}
    card["heldout_evaluation_edge_nodata" if edge_nodata else "heldout_evaluation"] = result
    path.write_text(json.dumps(card, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
