"""Argument types shared by several sub-commands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def overlap_arg(value: str | int, chunk_size: int | None = None) -> int | None:
    """``--overlap``: pixels, or ``auto`` (None) for the tiling default that keeps patches up to 32 m whole.

    A bad value is a ``ValueError`` with the accepted forms, shown as the CLI's one-line error. With
    ``chunk_size`` (the command's chunk side in full-resolution pixels) an overlap over half of it is refused
    too, before any product is opened: the same bound :func:`marsice_plugin.grid.check_overlap` applies when
    the chunk size is only known from the product (``--chunk-m``).
    """
    if str(value).strip().lower() == "auto":
        return None
    try:
        pixels = int(value)
    except ValueError:
        raise ValueError(f"--overlap must be a number of pixels or 'auto', not {value!r}") from None
    if pixels < 0:
        raise ValueError(f"--overlap must be at least 0 pixels, not {pixels}")
    if chunk_size is not None and pixels > chunk_size // 2:
        raise ValueError(
            f"--overlap must be within 0..{chunk_size // 2} pixels (at most half the {chunk_size}-px chunk), "
            f"not {pixels}"
        )
    return pixels


def add_model_args(parser: Any) -> None:
    """``--model PATH`` or ``--fast``: the CNN to score chunks with (default: the shipped ensemble), and
    ``--threshold``, which belongs to the model: None leaves it to the model card (model_registry.model_threshold)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--model",
        type=Path,
        default=None,
        help="Keras model (default: $MARSICE_MODEL or models/marsice_ensemble_512_level1.keras, the mean of the "
        "512-px level-1 and 256-px level-2 models)",
    )
    group.add_argument(
        "--fast",
        action="store_true",
        help="use the shipped 256-px level-2 model alone: about 4.5x faster per chunk, ranks chunks a little "
        "less well (models/marsice_xception_256_level2.md); for surveys of many products",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="probability threshold to flag a chunk (default: the model card's, chosen on tuning products: 0.35 "
        "for the default model; a model whose card names none: the paper's 0.6)",
    )


def add_size_cap_args(parser: Any, what: str) -> None:
    """``--max-gb`` and ``--allow-unknown-size``: a cap on what ``what`` (a run, a scan) may download.

    The cap is checked before the first byte is pulled, against the sizes the catalogue lists or the servers
    announce; a file whose size stays unknown could break it, so it stops the start unless allowed.
    """
    parser.add_argument("--max-gb", type=float, default=None, help=f"refuse to start when {what} would pull more")
    parser.add_argument(
        "--allow-unknown-size",
        action="store_true",
        help=f"with --max-gb: start even when some files' sizes stay unknown ({what} could pull more)",
    )


def chosen_model(args: argparse.Namespace) -> Path | None:
    """The model path of ``--model``/``--fast``; None leaves the choice to the default."""
    if getattr(args, "fast", False):
        from ..model_registry import fast_model_path

        return fast_model_path()
    return args.model
