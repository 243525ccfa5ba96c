"""Detection defaults shared by the library and the command line.

A module of its own, importing nothing heavy, so the ``marsice`` sub-commands can show the same defaults in
``--help`` as :class:`marsice_plugin.detection.DetectOptions` uses without importing the pipeline
(numpy and the raster stack) just to build their parsers.
"""

from typing import Any

#: Threshold on chunk probability for a model whose card names none: the paper counted chunks "higher than 60%".
#: A card's own ``threshold`` (chosen on tuning products; model_registry.card_threshold) comes first.
DEFAULT_THRESHOLD = 0.6

#: Model-input pixels per CNN batch: 8 chunks of 256 px, 2 of 512 px. Activations, not weights, set detect's peak
#: memory, and they grow with batch x input side². Measured on 2 cores (4096 px product, default ensemble of 512 px
#: inputs, 2026-12-06, load 3-5): batch 8 took 18.4-20.3 s CPU and 3.0 GB peak RSS, batch 4 18.7 s and 1.9 GB,
#: batch 2 18.5-19.1 s and 1.4-1.5 GB; earlier, --fast (256 px) ran as fast at 8 as at 16 (bench/inference.py).
#: A CPU convolution gains nothing from bigger batches, so the budget is held in pixels, not chunks.
BATCH_PIXELS = 2 * 512 * 512


def batch_size_for(input_size: int, requested: int | None = None) -> int:
    """Chunks per CNN batch for a model of ``input_size`` px: ``requested`` if given, else :data:`BATCH_PIXELS`'s."""
    if requested is not None:
        return max(1, int(requested))
    return max(1, BATCH_PIXELS // (int(input_size) ** 2))


def is_flagged(probability: Any, threshold: float) -> Any:
    """The one rule that flags a chunk: its probability is at or above the threshold ("higher than 60%").

    Takes a probability (None, for a skipped chunk, is never flagged) or a numpy array of them, so chunk
    layers, image summaries, quick-looks and the metrics all flag exactly alike.
    """
    if probability is None:
        return False
    return probability >= threshold
