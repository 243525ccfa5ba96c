"""Detection defaults shared by the library and the command line.

A module of its own, importing nothing heavy, so the ``marsice`` sub-commands can show the same defaults in
``--help`` as :class:`marsice_plugin.detection.DetectOptions` uses without importing the pipeline
(numpy and the raster stack) just to build their parsers.
"""

from typing import Any

#: Threshold on chunk probability for a model whose card names none: the paper counted chunks "higher than 60%".
#: A card's own ``threshold`` (chosen on tuning products; model_registry.card_threshold) comes first.
DEFAULT_THRESHOLD = 0.6

#: Chunks per CNN batch. 8, not 16: measured with bench/inference.py on 2 cores, the default ensemble (512 px
#: inputs) ran at 6.2 chunks/s either way with peak RSS 3.4 GB instead of 5.5 GB, and --fast at 28.0 against
#: 26.8 chunks/s (batch 4: 5.8 chunks/s, 2.5 GB).
DEFAULT_BATCH_SIZE = 8


def is_flagged(probability: Any, threshold: float) -> Any:
    """The one rule that flags a chunk: its probability is at or above the threshold ("higher than 60%").

    Takes a probability (None, for a skipped chunk, is never flagged) or a numpy array of them, so chunk
    layers, image summaries, quick-looks and the metrics all flag exactly alike.
    """
    if probability is None:
        return False
    return probability >= threshold
