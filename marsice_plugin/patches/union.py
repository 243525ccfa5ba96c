"""Two second-stage models as one: an outline is kept when either keeps it at its own threshold.

Why: the second stage trained on rendered scenes keeps rendered ice well, large patches included, but reads real
HiRISE texture as "not ice"; one trained with patches planted into real tiles finds them there but loses rendered
recall at a threshold that holds real false passes down (``models/marsice_patch_64.md``). Their union keeps every
outline the first keeps and adds what the second is sure of.

How, without code in the model file: each member's probability ``p`` is mapped piecewise-linearly so that its own
threshold ``t`` lands on :data:`UNION_THRESHOLD` (``[0, t] -> [0, 0.5]``, ``[t, 1] -> [0.5, 1]``), written as
``a * p + b * relu(p - t)`` with two fixed ``Dense`` units, and the output is the larger of the mapped values
(``Maximum``). So the union's probability is at or over 0.5 exactly when some member's is at or over its threshold,
and each member's ordering is kept. The file holds only layers :mod:`marsice_plugin.cnn.model_safety` allows and
loads through the same check as every MarsIce model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError

#: The union's threshold: every member's own threshold is mapped onto it.
UNION_THRESHOLD = 0.5


def _mapping(threshold: float) -> tuple[float, float]:
    """Slopes ``a`` and ``b`` of ``a * p + b * relu(p - t)`` taking ``t`` to 0.5 and 1 to 1."""
    if not 0.0 < threshold < 1.0:
        raise ModelError(f"a union member's threshold must lie strictly between 0 and 1, not {threshold}")
    below = UNION_THRESHOLD / threshold
    above = (1.0 - UNION_THRESHOLD) / (1.0 - threshold)
    return below, above - below


def mapped_probability(p: np.ndarray, threshold: float) -> np.ndarray:
    """A member's probabilities as the union maps them (``threshold`` onto 0.5), for figures outside Keras."""
    a, b = _mapping(threshold)
    return a * p + b * np.maximum(p - threshold, 0.0)


def build_union(members: Sequence[Any], thresholds: Sequence[float], name: str = "marsice_patch_union") -> Any:
    """One Keras model: the largest of the members' probabilities, each mapped so its threshold becomes 0.5."""
    from ..cnn.ensemble import copy_member
    from ..cnn.model import keras_module

    if len(members) < 2 or len(members) != len(thresholds):
        raise ModelError("a union needs at least two second-stage models, each with its threshold")
    keras = keras_module()
    layers = keras.layers
    inputs = keras.Input(shape=members[0].input_shape[1:], name="crop")
    mapped = []
    for i, (member, t) in enumerate(zip(members, thresholds, strict=True)):
        p = copy_member(member, f"member_{i}", inputs)
        t = float(t)
        a, b = _mapping(t)
        linear = layers.Dense(1, use_bias=False, trainable=False, name=f"below_{i}")
        over = layers.Dense(1, activation="relu", trainable=False, name=f"over_{i}")
        extra = layers.Dense(1, use_bias=False, trainable=False, name=f"above_{i}")
        terms = [linear(p), extra(over(p))]
        linear.set_weights([np.array([[a]], np.float32)])
        over.set_weights([np.ones((1, 1), np.float32), np.array([-t], np.float32)])
        extra.set_weights([np.array([[b]], np.float32)])
        mapped.append(layers.Add(name=f"mapped_{i}")(terms))
    output = layers.Maximum(name="ice_probability")(mapped)
    return keras.Model(inputs, output, name=name)


def build_mean(members: Sequence[Any], name: str = "marsice_patch_mean") -> Any:
    """One Keras model: the mean probability of second-stage ``members`` (copied, so the originals stay usable).

    Why: one small network's draw weighs much in what it keeps; the mean of members trained differently depends
    less on any one (``bench/train_patch_model.py --mean``). It can itself be a member of a union.
    """
    from ..cnn.ensemble import copy_member
    from ..cnn.model import keras_module

    if len(members) < 2:
        raise ModelError("a mean needs at least two second-stage models")
    keras = keras_module()
    inputs = keras.Input(shape=members[0].input_shape[1:], name="crop")
    outputs = [copy_member(m, f"member_{i}", inputs) for i, m in enumerate(members)]
    return keras.Model(inputs, keras.layers.Average(name="ice_probability")(outputs), name=name)


def write_union(
    member_paths: Sequence[Path],
    out_path: Path,
    thresholds: Sequence[float] | None = None,
    note: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Combine second-stage model files into ``out_path`` and its card (written atomically).

    ``thresholds``: each member's threshold in the union (default: its own card's). Every member is loaded before
    anything is written, so ``out_path`` may be one of them.
    """
    from .model import load_patch_model, patch_threshold

    members = [load_patch_model(p) for p in member_paths]
    thresholds = list(thresholds) if thresholds is not None else [patch_threshold(p) for p in member_paths]
    cards = [json.loads(Path(p).with_suffix(".card.json").read_text()) for p in member_paths]
    return save_stage(
        build_union(members, thresholds),
        out_path,
        {
            "threshold": UNION_THRESHOLD,
            "threshold_rule": "kept when any member is at or over its own threshold (marsice_plugin.patches.union)",
            "members": [
                {"file": Path(p).name, "threshold_in_union": t, "card": c}
                for p, t, c in zip(member_paths, thresholds, cards, strict=True)
            ],
            **(note or {}),
        },
    )


def save_stage(model: Any, out_path: Path, fields: dict[str, Any]) -> dict[str, Any]:
    """Write a second-stage model and its card (name, size, input, then ``fields``), each atomically; the card."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.stem + ".tmp.keras")
    model.save(tmp)
    tmp.replace(out_path)
    card = {
        "model": out_path.name,
        "parameters": int(model.count_params()),
        "input": "64 x 64 x 2 level-0 crop at 0.5 m/px, sun at the top (marsice_plugin.patches.crops)",
        **fields,
    }
    card_path = out_path.with_suffix(".card.json")
    tmp_card = card_path.with_name(card_path.name + ".tmp")
    tmp_card.write_text(json.dumps(card, indent=1) + "\n")
    tmp_card.replace(card_path)
    return card
