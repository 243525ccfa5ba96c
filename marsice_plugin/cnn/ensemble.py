"""Several trained classifiers as one model: the mean of their ice probabilities.

Two models that read a chunk at different detail make different mistakes: the 256-px level-2 model
sees a whole chunk's context at a quarter of the resolution, the 512-px level-1 model sees patches of
a few metres that are one pixel wide at level 2. Averaging their probabilities ranks chunks better
than either alone (the shipped ensemble's card gives the held-out figures).

The ensemble is an ordinary Keras functional model, so everything that takes a model (``detect``,
``scan``, ``evaluate``, the QGIS algorithms, ``safe_mode=True`` loading) takes it unchanged:

* its input is the largest member's input size, and it is read at the JPEG2000 level of that member
  (the finest read; the card's ``read_level``);
* a member with a smaller input gets the input block-averaged (``AveragePooling2D``) by the integer
  ratio of the sizes. For a member trained on a coarser JPEG2000 level this replaces the wavelet
  low-pass of that level by a block average of the finer one; measured on 400 held-out chunks, the
  256-px level-2 model ranks them as well either way (ROC-AUC 0.952 on block-averaged level-1 reads,
  0.950 on level-2 reads);
* the output, named ``ice_probability`` as a single model's, is the plain mean of the members'
  probabilities. No weights are fitted: choosing them on the held-out chunks would make those chunks
  part of the training.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ModelError
from .model import keras_module, model_input_size


def copy_member(member: Any, name: str, inputs: Any) -> Any:
    """``member`` copied under ``name`` (its weights too, so the original stays usable) and called on ``inputs``.

    Renamed so two models built by the same code can sit side by side in one file; also the union of second stages
    (:mod:`marsice_plugin.patches.union`) builds its members this way.
    """
    keras = keras_module()
    config = member.get_config()
    config["name"] = name
    copy = keras.Model.from_config(config)
    copy.set_weights(member.get_weights())
    out = copy(inputs)
    # Keras 3.15 returns a one-output functional model's output as a one-element list (3.10 gave the tensor)
    return out[0] if isinstance(out, list | tuple) else out


def build_ensemble(members: Sequence[Any], name: str = "marsice_ensemble") -> Any:
    """One model whose output is the mean probability of ``members`` (loaded Keras models).

    The members keep their weights (copied, so the originals stay usable) and are renamed
    ``member_0``, ``member_1``, ... so two models built by the same code can sit side by side.
    """
    if len(members) < 2:
        raise ModelError("an ensemble needs at least two models")
    keras = keras_module()
    layers = keras.layers
    sizes = [model_input_size(m) for m in members]
    size = max(sizes)
    for member, s in zip(members, sizes, strict=True):
        if size % s:
            raise ModelError(
                f"{member.name} takes {s}-px inputs, which do not divide the ensemble's {size}-px input; "
                "combine models whose input sizes are multiples of each other"
            )
    inputs = keras.Input(shape=(size, size, 1), name="chunk")
    outputs = []
    for i, (member, s) in enumerate(zip(members, sizes, strict=True)):
        x = inputs if s == size else layers.AveragePooling2D(size // s, name=f"to_{s}px_{i}")(inputs)
        outputs.append(copy_member(member, f"member_{i}", x))
    mean = layers.Average(name="ice_probability")(outputs)
    return keras.Model(inputs, mean, name=name)


def member_models(model: Any) -> list[Any]:
    """The member networks of an ensemble built by :func:`build_ensemble` (empty for a single model)."""
    keras = keras_module()
    return [layer for layer in model.layers if isinstance(layer, keras.Model)]


def ensemble_read_level(member_sizes: Sequence[int], member_levels: Sequence[int]) -> int:
    """The JPEG2000 level to read an ensemble at: that of its largest-input member.

    Every member must see the chunk at its own detail or coarser: a member trained at a finer level
    than the largest-input one would be given less detail than it learnt from, so it is refused.
    """
    size = max(member_sizes)
    level = min(lv for s, lv in zip(member_sizes, member_levels, strict=True) if s == size)
    for s, lv in zip(member_sizes, member_levels, strict=True):
        if lv < level:
            raise ModelError(
                f"a {s}-px member trained at JPEG2000 level {lv} would be read at level {level}, coarser than it "
                "was trained; its input size should be the largest of the ensemble"
            )
    return level


def combine(model_paths: Sequence[Path], out_path: Path) -> dict:
    """Write the ensemble of the models at ``model_paths`` to ``out_path`` with its card; return the card.

    The card records each member (file, input size, read level, parameters, its own held-out ROC-AUC
    where its card has one) and the ensemble's ``read_level``, so ``detect`` reads products the way
    the finest member was trained. Model and card are written atomically.
    """
    from ..model_registry import card_path, card_read_level
    from .model import load_model
    from .train import save_for_inference

    models = [load_model(p) for p in model_paths]
    sizes = [model_input_size(m) for m in models]
    levels = [card_read_level(p) for p in model_paths]
    level = ensemble_read_level(sizes, levels)
    ensemble = build_ensemble(models, name=Path(out_path).stem)
    members = []
    for path, model, size, lv in zip(model_paths, models, sizes, levels, strict=True):
        member = {"model": Path(path).name, "input_size": size, "read_level": lv, "parameters": model.count_params()}
        card = card_path(path)
        heldout = json.loads(card.read_text()).get("heldout_evaluation") if card.exists() else None
        auc = (heldout or {}).get("model", {}).get("roc_auc")
        if auc is not None:
            member["heldout_roc_auc"] = auc
        members.append(member)
    card = {
        "model": Path(out_path).name,
        "parameters": int(ensemble.count_params()),
        "input_size": max(sizes),
        "read_level": level,
        "ensemble": {"combination": "mean of the members' probabilities", "members": members},
    }
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_for_inference(ensemble, out_path)
    target = card_path(out_path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    tmp.write_text(json.dumps(card, indent=1))
    os.replace(tmp, target)
    return card
