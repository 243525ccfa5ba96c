"""Batched CNN inference overlapped with reading: the model never waits for the reader if it can help it.

Three stages run at once:

1. the chunk reader's own thread decodes the next full-width strip of the JPEG2000
   (:class:`marsice_plugin.chunk_reader.ChunkReader`, ``prefetch=True``);
2. a *feeder* thread (this module, on :class:`marsice_plugin.prefetch.Prefetch`) cuts chunks from
   decoded strips, repairs special values and outliers, normalises and reduces them to the model's
   input size, and stacks them into batches;
3. the calling thread runs the compiled model on one batch (``predict_on_batch``: Keras's
   ``tf.function``), while the feeder prepares the next ones.

The batches travel through a bounded queue (``depth`` batches), so memory stays at a few batches
whatever the product's size. All three stages spend most of their time in C code that releases the
GIL (OpenJPEG, NumPy, TensorFlow), which is what makes threads enough. The last batch of a product
is usually short; Keras traces the compiled function once more for its shape, which costs less than
scoring padding would on small products. The bench ``bench/inference.py`` measures the pipeline
against the bare model on random batches in the same run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..prefetch import Prefetch
from .domain import input_statistics
from .preprocess import model_input


@dataclass
class Batch:
    """Chunks read in order, and the model inputs of those that are scored (``x`` may be None)."""

    chunks: list[Any]  # chunk_reader.Chunk, skipped ones included, in grid order
    scored: list[int]  # indices into ``chunks`` of the rows of ``x``
    x: np.ndarray | None  # (len(scored), S, S, 1) float32
    #: the domain statistics of each row of ``x`` (:func:`marsice_plugin.cnn.domain.input_statistics`), made here in
    #: the feeder thread so the model never waits for them
    stats: list[np.ndarray] = field(default_factory=list)


def batches(reader: Any, input_size: int, valid_max: float, batch_size: int) -> Iterator[Batch]:
    """Group a reader's chunks into batches of ``batch_size`` scored chunks (the serial form)."""
    chunks: list[Any] = []
    scored: list[int] = []
    inputs: list[np.ndarray] = []
    for chunk in reader:
        chunks.append(chunk)
        if not chunk.skipped:
            scored.append(len(chunks) - 1)
            inputs.append(model_input(chunk.data, chunk.valid, chunk.nominal_size, input_size, valid_max))
        if len(inputs) == batch_size:
            yield Batch(chunks, scored, np.stack(inputs)[..., None], [input_statistics(x) for x in inputs])
            chunks, scored, inputs = [], [], []
    if chunks:
        stacked = np.stack(inputs)[..., None] if inputs else None
        yield Batch(chunks, scored, stacked, [input_statistics(x) for x in inputs])


class Feeder(Prefetch[Batch]):
    """Runs :func:`batches` in a background thread (``marsice-feeder``); iterate to receive them in order.

    The thread, the bounded queue, error re-raising and :meth:`close` (also on leaving a ``with`` block, e.g.
    on cancel) are :class:`marsice_plugin.prefetch.Prefetch`'s; ``depth`` batches are prepared ahead.
    """

    def __init__(self, make: Callable[[], Iterator[Batch]], depth: int = 2):
        super().__init__(make, depth, name="marsice-feeder")


def predict(model: Any, x: np.ndarray) -> np.ndarray:
    """Probabilities of a batch, one per row."""
    return np.asarray(model.predict_on_batch(x)).reshape(-1)
