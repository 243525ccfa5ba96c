"""The model registry: which models ship, where they are, and what their cards say about using them.

A trained model is more than its weights: its card (``NAME.card.json``, written by ``marsice train``)
records the JPEG2000 level its chunks were decoded at and the threshold chosen for it on tuning data,
and a model is only right when read and flagged that way. Detect, scan, evaluate, the QGIS algorithms
and the bench scripts all ask this one module, so "None" becomes a read level or a threshold in one place.
Pure Python and JSON: importing it loads neither Keras nor the raster stack.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

from .detect_defaults import DEFAULT_THRESHOLD
from .errors import ModelError

#: The model ``marsice detect`` and ``scan`` use when none is given (trained on generated scenes only; its card
#: is models/marsice_ensemble_512_level1.md): the mean of the 512-px level-1 and the 256-px level-2 models, read
#: at JPEG2000 level 1. It ranks held-out chunks better than either member; ``FAST_MODEL_NAME`` (the level-2
#: member alone) is about 4.5x faster per chunk, for surveys of many products. The full-read model and the demo
#: weights they descend from stay in models/ (the tests use the latter).
DEFAULT_MODEL_NAME = "marsice_ensemble_512_level1.keras"
FAST_MODEL_NAME = "marsice_xception_256_level2.keras"
#: The shipped models: this checkout's ``models/``, else the package's own ``models/`` folder (where the plugin's
#: ZIP carries the default and fast models, ``make zip``).
MODELS_DIR = next(
    (
        p
        for p in (Path(__file__).resolve().parents[1] / "models", Path(__file__).resolve().parent / "models")
        if p.is_dir()
    ),
    Path(__file__).resolve().parents[1] / "models",
)


def default_model_path() -> Path:
    """The shipped model: ``$MARSICE_MODEL`` or ``models/marsice_ensemble_512_level1.keras`` of this checkout."""
    env = os.environ.get("MARSICE_MODEL")
    if env:
        return Path(env)
    return MODELS_DIR / DEFAULT_MODEL_NAME


def fast_model_path() -> Path:
    """The shipped fast model (``--fast``): ``models/marsice_xception_256_level2.keras`` of this checkout."""
    return MODELS_DIR / FAST_MODEL_NAME


class ReadOptions(Protocol):
    """What :func:`model_read_level` needs of a run's options (``DetectOptions`` has it)."""

    model_path: Path | None
    read_level: int | None
    chunk_size: int


def card_path(model_path: str | Path) -> Path:
    """The model card JSON that ``marsice train`` writes beside ``NAME.keras``: ``NAME.card.json``."""
    return Path(model_path).with_suffix("").with_suffix(".card.json")


def _card_field(model_path: str | Path, key: str, default: Any, option: str) -> tuple[Path, Any]:
    """The card's path and its ``key`` (``default`` without a card or the key); an unreadable card is a
    :class:`ModelError` that names the card and the ``option`` that overrides it."""
    import json

    path = card_path(model_path)
    if not path.exists():
        return path, default
    try:
        return path, json.loads(path.read_text()).get(key, default)
    except (OSError, ValueError, AttributeError) as exc:
        raise ModelError(f"{path}: unreadable model card ({exc}); fix or remove it, or pass {option}") from exc


def card_read_level(model_path: str | Path) -> int:
    """The JPEG2000 resolution level the model's training chunks were decoded at (its card; 0 without one).

    A model trained on level-2 reads sees wavelet low-pass pixels, not area averages, and is only
    right when products are read the same way, so ``detect`` and ``evaluate`` take the level from here
    unless told otherwise.
    """
    path, level = _card_field(model_path, "read_level", 0, "--read-level")
    if not isinstance(level, int) or level < 0:
        raise ModelError(f"{path}: read_level must be 0, 1, 2, ..., not {level!r}; fix the card or pass --read-level")
    return level


def card_threshold(model_path: str | Path | None) -> float:
    """The probability threshold to flag chunks at: the model card's ``threshold``, else the paper's 0.6.

    A model's probabilities are only as calibrated as its training made them (the shipped ensemble is a
    mean of two networks), so the threshold that serves a geologist belongs to the model: the card
    records one chosen on tuning products (bench/choose_threshold.py), and detect, scan and evaluate
    use it unless given ``--threshold``. A model without one keeps the paper's figure.
    """
    if not model_path:
        return DEFAULT_THRESHOLD
    path, value = _card_field(model_path, "threshold", DEFAULT_THRESHOLD, "--threshold")
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ModelError(
            f"{path}: threshold must be a number from 0 to 1, not {value!r}; fix the card or pass --threshold"
        )
    return float(value)


def read_scale(read_level: int, chunk_size: int, input_size: int) -> float:
    """The chunk reader's ``scale`` for a JPEG2000 resolution level to decode (0: every pixel).

    Level 0 decodes every pixel, repairs special values and outliers at full resolution, then
    block-averages to the model's input (what ``marsice_xception_256.keras`` was trained on;
    ``marsice_xception_256_level2.keras`` was trained at level 2, as its card says). Level ``L`` asks
    the decoder for the image at 1/2**L of the resolution (a quarter of the pixels per level, so the
    reader keeps pace with the model on two cores), repairs there and block-averages the rest of the
    way. Its pixels are the wavelet low-pass rather than an area average, and a hot pixel is already
    blended with its neighbours when it reaches the repair; ``marsice evaluate --read-level`` and
    bench/inference.py measure what each level costs in accuracy and gains in speed.
    """
    if read_level < 0 or read_level != int(read_level):
        raise ValueError(f"read level must be 0, 1, 2, ..., got {read_level}")
    f = 2**read_level
    if chunk_size % f or chunk_size // f < input_size:
        raise ValueError(
            f"read level {read_level} gives {chunk_size / f:g}-px chunks, fewer than the model's {input_size}-px "
            f"input; use a level of at most {max(0, (chunk_size // input_size).bit_length() - 1)}"
        )
    return 1.0 / f


def model_threshold(threshold: float | None, model_path: str | Path | None) -> float:
    """The threshold of a run: the one given, else the model card's, else the paper's 0.6; checked to be 0..1."""
    value = card_threshold(model_path) if threshold is None else threshold
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"threshold must be within 0..1, got {value}")
    return float(value)


def model_read_level(options: ReadOptions, input_size: int) -> int:
    """The JPEG2000 level to decode: ``options.read_level``, else the level in the model's card.

    The one place where "None" becomes a level: the card of ``options.model_path`` (0 without a
    model path or a card), so a model is read the way it was trained. The chunk size and the level
    are checked against the model's input size here (for detect, scan and evaluate alike), and what
    the model cannot take is a :class:`ModelError` naming it.
    """
    name = Path(options.model_path).name if options.model_path else "the model"
    if input_size > options.chunk_size:
        raise ModelError(
            f"{name} takes {input_size}-px inputs, larger than the {options.chunk_size}-px chunks; "
            "use larger chunks (detect --chunk-size) or a model trained for smaller inputs"
        )
    level = options.read_level
    if level is None:
        level = card_read_level(options.model_path) if options.model_path else 0
    try:
        read_scale(level, options.chunk_size, input_size)
    except ValueError as exc:
        raise ModelError(f"{name}: {exc}") from exc
    return level
