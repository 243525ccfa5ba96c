"""The set-up's last step, run by the new environment's Python: score one generated chunk with the default model.

A venv whose pip run "succeeded" can still fail at the first detection: a wheel without its shared library,
TensorFlow refusing the CPU, a model file missing from the plugin, rasterio without JPEG2000. This check walks
the same path a detection does, in the same process set-up the plugin uses (``PYTHONPATH`` at the plugin
folder): render one 1024-px chunk with planted ice (:mod:`marsice_plugin.synthetic`), decode it at the default
model's JPEG2000 level through rasterio as a product is read, prepare it and score it with the default model
(loaded with MarsIce's safety checks). It prints one JSON line: the probability, the model, the versions.
"""

from __future__ import annotations

import json
import sys
import time
from importlib import metadata
from typing import Any

#: The generated chunk: a seed outside the training and evaluation ranges' first seeds, 1024 px as detect reads.
CHECK_SEED = 7
CHUNK_SIZE = 1024


def run_check() -> dict[str, Any]:
    """Render, decode, prepare and score one chunk; the figures the set-up records in its stamp."""
    import numpy as np

    from .cnn.model import load_model, model_input_size
    from .cnn.preprocess import prepare
    from .cnn.training_data import SPECIAL_DNS, render_chunk
    from .model_registry import card_read_level, card_threshold, default_model_path

    started = time.monotonic()
    model_path = default_model_path()
    level = card_read_level(model_path)
    dn, ice, _ = render_chunk(CHECK_SEED, CHUNK_SIZE, with_ice=True, read_level=level)
    model = load_model(model_path)
    special = np.isin(dn, SPECIAL_DNS)
    x, _ = prepare(dn.astype(np.float32), ~special, dn == 0, dn.shape[0], model_input_size(model), 1023.0)
    probability = float(np.asarray(model.predict_on_batch(x[None, ..., None])).reshape(-1)[0])
    if not 0.0 <= probability <= 1.0:
        raise SystemExit(f"the self-check scored {probability}, not a probability: the model or TensorFlow is broken")
    return {
        "probability": round(probability, 4),
        "threshold": card_threshold(model_path),
        "model": str(model_path),
        "read_level": level,
        "ice_pixels": int(ice.sum()),
        "installed_version": metadata.version("marsice"),
        "tensorflow": metadata.version("tensorflow-cpu" if _has("tensorflow-cpu") else "tensorflow"),
        "seconds": round(time.monotonic() - started, 1),
    }


def _has(distribution: str) -> bool:
    try:
        metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


if __name__ == "__main__":
    print(json.dumps(run_check()))
    sys.exit(0)
