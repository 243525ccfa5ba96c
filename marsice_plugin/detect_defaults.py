"""Detection defaults shared by the library and the command line.

A module of its own, importing nothing, so the ``marsice`` sub-commands can show the same defaults in
``--help`` as :class:`marsice_plugin.pipeline.DetectOptions` uses without importing the pipeline
(numpy and the raster stack) just to build their parsers.
"""

#: Threshold on chunk probability for a model whose card names none: the paper counted chunks "higher than 60%".
#: A card's own ``threshold`` (chosen on tuning products; cnn.model.card_threshold) comes first.
DEFAULT_THRESHOLD = 0.6

#: Chunks per CNN batch. 8, not 16: measured with bench/inference.py on 2 cores, the default ensemble (512 px
#: inputs) ran at 6.2 chunks/s either way with peak RSS 3.4 GB instead of 5.5 GB, and --fast at 28.0 against
#: 26.8 chunks/s (batch 4: 5.8 chunks/s, 2.5 GB).
DEFAULT_BATCH_SIZE = 8
