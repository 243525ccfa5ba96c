"""The paper's small Xception classifier (Keras 3 functional API).

Gergácz & Kereszturi used the "image classification from scratch" Xception of the Keras examples:
an entry Conv2D with stride 2, BatchNormalization before every ReLU, three residual blocks of two
separable convolutions each (256, 512, 728 filters) with max-pooling and a strided 1×1 projection
shortcut, a 1024-filter separable convolution, global average pooling, dropout 0.5 and one
sigmoid unit, trained with binary cross-entropy and Adam. On one grey channel it has 2.73 M
parameters. The input size is configurable (1024 is the full chunk; 256 reads a 1024 chunk at a
quarter of the resolution) and is recorded in the saved model as its input shape.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ModelError

#: Filters of the residual separable-convolution blocks, as in the paper's network.
BLOCK_FILTERS = (256, 512, 728)


def keras_module() -> Any:
    """Import Keras quietly, once: the TensorFlow backend unless ``KERAS_BACKEND`` names another.

    MarsIce installs and tests TensorFlow; another Keras 3 backend (``torch``, ``jax``) loads the same
    ``.keras`` files, which lets ``bench/gpu.py`` run on a GPU machine that has PyTorch but no TensorFlow.
    """
    # TensorFlow's C++ info and warning lines would otherwise reach stderr, where the CLI promises one
    # clear line per error; real failures still raise Python exceptions.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    backend = os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import warnings

    # Debian's mpl_toolkits (visible through --system-site-packages) does not match pip's matplotlib,
    # which Keras imports; only 3-D axes are affected, which MarsIce never uses.
    warnings.filterwarnings("ignore", message="Unable to import Axes3D")
    import keras

    if backend != "tensorflow":
        return keras
    import tensorflow as tf

    # Grappler's remapper fails on this network's residual adds ("remapper failed ... fanout") and logs
    # it through absl straight to stderr; turning that one rewrite off removes the noise, not a feature.
    tf.config.optimizer.set_experimental_options({"remapping": False})
    return keras


def build_model(
    input_size: int = 256,
    dropout: float = 0.5,
    entry_filters: int = 128,
    block_filters: tuple[int, ...] = BLOCK_FILTERS,
    exit_filters: int = 1024,
    bn_momentum: float = 0.99,
) -> Any:
    """Build (uncompiled) the small Xception for ``input_size`` × ``input_size`` grey chunks in [0, 1].

    ``bn_momentum`` is Keras's default 0.99; with a few hundred training chunks (a few dozen steps per
    epoch) the moving statistics lag far behind the weights and validation predictions stay constant
    for many epochs, so small training sets use 0.9 (measured: validation accuracy stuck at 0.525 for
    7 epochs of 26 steps with 0.99).
    """
    keras = keras_module()
    layers = keras.layers
    inputs = keras.Input(shape=(input_size, input_size, 1), name="chunk")
    x = layers.Conv2D(entry_filters, 3, strides=2, padding="same")(inputs)
    x = layers.BatchNormalization(momentum=bn_momentum)(x)
    x = layers.Activation("relu")(x)
    previous = x
    for filters in block_filters:
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(filters, 3, padding="same")(x)
        x = layers.BatchNormalization(momentum=bn_momentum)(x)
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(filters, 3, padding="same")(x)
        x = layers.BatchNormalization(momentum=bn_momentum)(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        residual = layers.Conv2D(filters, 1, strides=2, padding="same")(previous)
        x = layers.add([x, residual])
        previous = x
    x = layers.SeparableConv2D(exit_filters, 3, padding="same")(x)
    x = layers.BatchNormalization(momentum=bn_momentum)(x)
    x = layers.Activation("relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(1, activation="sigmoid", name="ice_probability")(x)
    return keras.Model(inputs, outputs, name="marsice_xception")


def compile_model(model: Any, learning_rate: float = 1e-3) -> Any:
    """Binary cross-entropy and Adam, as in the paper."""
    keras = keras_module()
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    return model


def load_checked_archive(path: Path) -> Any:
    """A ``.keras`` file loaded with ``safe_mode=True`` after :func:`.model_safety.check_archive` has read it: the
    safe part of every MarsIce model loader (chunk models here, the second stage in :mod:`marsice_plugin.patches`)."""
    from .model_safety import check_archive

    if path.suffix != ".keras":
        raise ModelError(f"{path}: MarsIce loads Keras 3 '.keras' model files only")
    check_archive(path)
    keras = keras_module()
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:
        raise ModelError(f"{path} is not a loadable Keras model ({type(exc).__name__}: {exc})") from exc


def load_model(path: str | Path) -> Any:
    """Load a ``.keras`` model that holds only what MarsIce builds, with ``safe_mode=True``.

    ``safe_mode`` alone has been bypassed by crafted configs that call Keras's own functions
    (CVE-2025-8747, CVE-2025-9906), so :func:`.model_safety.check_archive` reads the archive first and
    refuses any class, function reference or member MarsIce does not build, before Keras sees the file.
    """
    path = Path(path)
    if not path.exists():
        raise ModelError(f"model file {path} does not exist")
    model = load_checked_archive(path)
    shape = model.input_shape
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 1:
        raise ModelError(f"{path}: expected a square one-channel input, model takes {shape}")
    return model


#: Compute precisions for inference: Keras dtype policies. ``mixed_float16`` is the GPU choice (tensor
#: cores); ``mixed_bfloat16`` suits CPUs with AVX-512 BF16. Variables stay float32 in both.
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def with_precision(model: Any, precision: str) -> Any:
    """The same network and weights computing in ``precision`` (the model itself for float32).

    A saved model records float32 policies per layer, so a global Keras policy would not change it:
    the layers are rebuilt from their configs with the mixed policy, except the output layers (the
    last one, and each ensemble member's ``ice_probability``), which stay float32 so the sigmoid and
    the probabilities are computed at full precision (Keras's advice for mixed precision). Members
    of an ensemble (:mod:`.ensemble`) are rebuilt the same way. Agreement with float32 is reported
    by ``bench/inference.py`` on the thresholded decisions, since that is what a user acts on.
    """
    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "float32":
        return model
    keras = keras_module()
    last = model.layers[-1]

    def rebuild(layer: Any) -> Any:
        config = layer.get_config()
        keep = layer is last or layer.name == "ice_probability" or isinstance(layer, keras.layers.InputLayer)
        if not keep:
            config["dtype"] = precision
        return layer.__class__.from_config(config)

    mixed = keras.models.clone_model(model, clone_function=rebuild, recursive=True)
    mixed.set_weights(model.get_weights())
    return mixed


def at_input_size(model: Any, input_size: int) -> Any:
    """The same network and weights for ``input_size`` × ``input_size`` chunks.

    The net is fully convolutional up to global average pooling, so no weight depends on the input
    size: a model trained at 256 px can be fine-tuned at 512 px (chunks read at JPEG2000 level 1, twice
    the detail) starting from exactly its weights. Objects then span twice the pixels, so the result
    needs that fine-tuning before use; ``marsice train --init M --input-size N`` does both.
    """
    if model_input_size(model) == input_size:
        return model
    keras = keras_module()
    config = model.get_config()
    for layer in config["layers"]:
        if layer["class_name"] == "InputLayer":
            layer["config"]["batch_shape"] = [None, input_size, input_size, 1]
    resized = keras.Model.from_config(config)
    resized.set_weights(model.get_weights())
    return resized


def model_input_size(model: Any) -> int:
    """The chunk size (pixels) the model was built for, read from its input shape."""
    return int(model.input_shape[1])
