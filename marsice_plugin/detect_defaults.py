"""Detection defaults shared by the library and the command line.

A module of its own, importing nothing heavy, so the ``marsice`` sub-commands can show the same defaults in
``--help`` as :class:`marsice_plugin.detection.DetectOptions` uses without importing the pipeline
(numpy and the raster stack) just to build their parsers.
"""

from typing import Any

#: Threshold on chunk probability for a model whose card names none: the paper counted chunks "higher than 60%".
#: A card's own ``threshold`` (chosen on tuning products; model_registry.card_threshold) comes first.
DEFAULT_THRESHOLD = 0.6

#: Model-input pixels per CNN batch: 1 chunk of 512 px, 4 of 256 px. Activations, not weights, set detect's peak
#: memory, and they grow with batch x input side², while a CPU convolution gains nothing from bigger batches, so the
#: budget is held in pixels, not chunks. Measured on 2 cores (2026-12-06, load 3-6): the default ensemble (512 px)
#: loaded and predicting holds 883 MB at batch 1, 1,197 MB at 2, 1,714 MB at 4, at 0.53-0.56 s CPU per chunk for
#: all three; the 256 px --fast model 707 / 909 / 1,138 MB at batch 2 / 4 / 8, 0.10-0.11 s per chunk. A whole
#: detect of a 4096 px product: batch 8 3.0 GB, batch 2 1.4 GB, the same CPU time; of the 1 Gpx product of
#: bench/fullsize.py at batch 2: 2.4 GB (reader, model and GDAL's cache together).
BATCH_PIXELS = 512 * 512


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
