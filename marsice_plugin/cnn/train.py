"""Training: the paper's recipe (batch 25, 25 epochs, 20 % validation, Adam, binary cross-entropy).

Training writes, beside ``NAME.keras``: ``NAME.history.json`` (per-epoch loss/accuracy),
``NAME.curves.png`` (the paper's Figure 3: loss and accuracy per epoch) and ``NAME.card.json``
(data, split, metrics, input size, seed), which the model card in ``models/`` quotes.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..model_registry import card_path
from .model import build_model, compile_model, keras_module


@dataclass
class TrainingConfig:
    """Hyper-parameters; the defaults are the paper's."""

    input_size: int = 256
    epochs: int = 25
    batch_size: int = 25
    validation_split: float = 0.2
    learning_rate: float = 1e-3
    dropout: float = 0.5
    bn_momentum: float = 0.99
    seed: int = 0
    augment: str = "sun"
    #: A ``.keras`` model whose weights training starts from (fine-tuning), or None for a fresh net.
    init: str | None = None
    #: Save the weights of the epoch with the lowest validation loss instead of the last epoch's.
    keep_best: bool = False
    #: JPEG2000 resolution level the training chunks were decoded at; detect reads products the same way.
    read_level: int = 0
    data: dict[str, Any] = field(default_factory=dict)


#: Augmentation choices: ``sun`` (mirror across the sun's azimuth axis, rotations inside the band,
#: radiometric jitter; see :mod:`marsice_plugin.cnn.augment`) or ``none``.
AUGMENT_MODES = ("sun", "none")


def augmented_batches(x: np.ndarray, y: np.ndarray, sun_azimuth: np.ndarray, batch_size: int, seed: int) -> Any:
    """A Keras ``PyDataset`` drawing fresh sun-aware augmentations of the training chunks every epoch."""
    from .augment import SunAwareAugmenter

    keras = keras_module()
    augmenter = SunAwareAugmenter()

    class _Batches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(len(x))

        def __len__(self) -> int:
            return -(-len(x) // batch_size)

        def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
            idx = self.order[i * batch_size : (i + 1) * batch_size]
            batch = np.stack([augmenter(x[j], float(sun_azimuth[j]), self.rng) for j in idx])
            return batch, y[idx]

        def on_epoch_end(self) -> None:
            self.order = self.rng.permutation(len(x))

    return _Batches()


def initial_model(config: TrainingConfig) -> Any:
    """A fresh paper net, or the net of ``config.init`` to fine-tune (its architecture, dropout and
    BatchNormalization momentum are kept; only the optimizer is new).

    Fine-tuning is how a geologist adapts the shipped weights to a few hundred chunks labelled in QGIS
    without paying for a training from scratch. When ``config.input_size`` differs from the starting
    model's, the same weights are carried over to a net for the new size (:func:`.model.at_input_size`).
    """
    if config.init is None:
        return build_model(config.input_size, dropout=config.dropout, bn_momentum=config.bn_momentum)
    from .model import at_input_size, load_model

    return at_input_size(load_model(config.init), config.input_size)


def split_indices(n: int, validation_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random train/validation split (the paper validated on randomly selected samples)."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = round(n * validation_split)
    return order[n_val:], order[:n_val]


def train(
    x: np.ndarray,
    y: np.ndarray,
    config: TrainingConfig,
    out_path: str | Path,
    on_epoch: Any = None,
    sun_azimuth: np.ndarray | None = None,
    keep: dict[str, Any] | None = None,
) -> dict[str, list[float]]:
    """Train a fresh model on ``x`` (N, S, S, 1) in [0, 1] and labels ``y``; save it and its records.

    ``sun_azimuth`` (degrees from north, per chunk) steers the sun-aware augmentation; chunks without
    it are taken to be lit from the middle of the paper's band. When ``keep`` is a dict, the trained
    in-memory model is put into it under ``"model"`` (tests compare it with the saved file).
    """
    if config.augment not in AUGMENT_MODES:
        raise ValueError(f"augment must be one of {AUGMENT_MODES}, got {config.augment!r}")
    keras = keras_module()
    keras.utils.set_random_seed(config.seed)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    train_idx, val_idx = split_indices(len(x), config.validation_split, config.seed)
    model = compile_model(initial_model(config), config.learning_rate)

    callbacks = []
    if on_epoch is not None:
        callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: on_epoch(epoch, logs)))
    validation = (x[val_idx], y[val_idx]) if len(val_idx) else None
    if config.keep_best and validation is not None:
        # patience = all epochs: nothing stops early, the best epoch's weights are restored at the end
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=config.epochs, restore_best_weights=True, start_from_epoch=0
            )
        )
    if config.augment == "sun":
        from .augment import DEFAULT_SUN_AZIMUTH

        suns = sun_azimuth if sun_azimuth is not None else np.full(len(x), DEFAULT_SUN_AZIMUTH)
        batches = augmented_batches(x[train_idx], y[train_idx], suns[train_idx], config.batch_size, config.seed)
        fit = model.fit(batches, validation_data=validation, epochs=config.epochs, verbose=0, callbacks=callbacks)
    else:
        fit = model.fit(
            x[train_idx],
            y[train_idx],
            validation_data=validation,
            batch_size=config.batch_size,
            epochs=config.epochs,
            shuffle=True,
            verbose=0,
            callbacks=callbacks,
        )
    history = {k: [float(v) for v in vals] for k, vals in fit.history.items()}
    save_for_inference(model, out_path)
    if keep is not None:
        keep["model"] = model
    stem = out_path.with_suffix("")
    Path(f"{stem}.history.json").write_text(json.dumps(history, indent=1))
    plot_curves(history, Path(f"{stem}.curves.png"))
    training = asdict(config)
    momenta = [layer.momentum for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if momenta:  # what the net really uses (a fine-tuned net keeps its starting model's momentum)
        training["bn_momentum"] = float(momenta[0])
    card = {
        "model": out_path.name,
        "parameters": int(model.count_params()),
        "read_level": config.read_level,
        "training": training,
        "samples": {
            "train": len(train_idx),
            "validation": len(val_idx),
            "positive_fraction": float(y.mean()) if len(y) else 0.0,
        },
        "final": {k: v[-1] for k, v in history.items()},
    }
    if config.keep_best and "val_loss" in history:
        best = int(np.argmin(history["val_loss"]))
        card["saved_epoch"] = {"epoch": best + 1, **{k: v[best] for k, v in history.items()}}
    card_path(out_path).write_text(json.dumps(card, indent=1))
    return history


def save_for_inference(model: Any, out_path: Path) -> None:
    """Save weights and architecture only (no optimizer state: a third of the size), atomically.

    The copy is rebuilt from the config, not with ``clone_model``: Keras 3.10's clone of a compiled
    model comes back compiled, and saving it wrote Adam's two moment tensors per weight (measured:
    32.8 MB instead of 11.0 MB for the paper's net).
    """
    keras = keras_module()
    tmp = out_path.with_name(f".{out_path.stem}.{os.getpid()}.keras")
    inference = keras.Model.from_config(model.get_config())
    inference.set_weights(model.get_weights())
    inference.save(tmp)
    os.replace(tmp, out_path)


def plot_curves(history: dict[str, list[float]], path: Path) -> None:
    """Loss and accuracy per epoch (the paper's Figure 3), training and validation."""
    import warnings

    # Debian's mpl_toolkits (visible through --system-site-packages) does not match pip's matplotlib;
    # only its 3-D axes are affected, which MarsIce never uses.
    warnings.filterwarnings("ignore", message="Unable to import Axes3D")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    for key, ax in (("loss", ax1), ("accuracy", ax2)):
        if key in history:
            ax.plot(epochs, history[key], "o-", label="training")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], "s--", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("MarsIce CNN training")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
