"""The second stage's network: a small CNN that gives one candidate crop an ice probability.

Small on purpose: the crops are 64 x 64 x 2 (:mod:`.crops`), the physics it must see (a diffuse bright patch
below a shadow, with the sun at the top, versus a sunlit facet above one) spans a few metres, and it must run on a
CPU at a fraction of ``detect``'s time. Three convolution blocks (8, 16, 32 filters; batch normalisation before
each ReLU, max-pooling), global average pooling, dropout and one sigmoid unit: about 7,000 parameters, built only
from layers :mod:`marsice_plugin.cnn.model_safety` already allows, so the file loads through the same check as every
other MarsIce model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError
from .crops import CROP_PX

#: The shipped second-stage model, beside the chunk models (its card: models/marsice_patch_64.md).
PATCH_MODEL_NAME = "marsice_patch_64.keras"
#: Crops per predict call: the whole candidate list of a product usually fits in one or two.
BATCH = 256


def patch_model_path() -> Path:
    """The shipped second-stage model (``models/marsice_patch_64.keras``), where the chunk models are."""
    from ..model_registry import MODELS_DIR

    return MODELS_DIR / PATCH_MODEL_NAME


def build_patch_model(filters: tuple[int, ...] = (8, 16, 32), dropout: float = 0.3) -> Any:
    """The (uncompiled) network for CROP_PX x CROP_PX x 2 crops."""
    from ..cnn.model import keras_module

    keras = keras_module()
    layers = keras.layers
    inputs = keras.Input((CROP_PX, CROP_PX, 2), name="crop")
    x = inputs
    for f in filters:
        x = layers.Conv2D(f, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.Conv2D(f, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(1, activation="sigmoid", name="ice_probability")(x)
    return keras.Model(inputs, outputs, name="marsice_patch")


def load_patch_model(path: str | Path) -> Any:
    """Load a second-stage model after the archive check every MarsIce model passes (no code in a model file)."""
    from ..cnn.model import load_checked_archive

    path = Path(path)
    if not path.is_file():
        raise ModelError(
            f"second-stage model {path} does not exist; give --patch-model or rebuild it (make model-patch)"
        )
    model = load_checked_archive(path)
    if tuple(model.input_shape[1:]) != (CROP_PX, CROP_PX, 2):
        raise ModelError(
            f"{path}: a second-stage model takes {CROP_PX}x{CROP_PX}x2 crops, this one {model.input_shape}"
        )
    return model


def patch_threshold(path: str | Path) -> float:
    """The threshold in the model's card (``NAME.card.json``: ``threshold``), chosen on tuning data only."""
    card = Path(path).with_suffix(".card.json")
    try:
        value = float(json.loads(card.read_text())["threshold"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{card}: the second-stage model's card has no threshold ({exc}); rebuild it") from exc
    if not 0.0 <= value <= 1.0:
        raise ModelError(f"{card}: threshold {value} is not a probability")
    return value


def predict_crops(model: Any, crops: np.ndarray) -> np.ndarray:
    """Ice probability of each crop (n, CROP_PX, CROP_PX, 2); an empty array for no crops.

    Clipped to [0, 1]: a union's piecewise mapping (:mod:`.union`) can land a float rounding over 1. Run through
    Keras's compiled predict step (``predict_on_batch``), as the chunk CNN is: calling the model eagerly on each
    batch cost 1.4 times as long on 2 cores (every-chunk search scores thousands of crops per 4096 px of product).
    """
    if len(crops) == 0:
        return np.empty(0, np.float32)
    out = [np.asarray(model.predict_on_batch(crops[i : i + BATCH])).reshape(-1) for i in range(0, len(crops), BATCH)]
    return np.clip(np.concatenate(out).astype(np.float32), 0.0, 1.0)
