"""What training the net needs in memory, checked before any chunk is rendered or read.

Training keeps every layer's output of a batch for the backward pass, and this network's outputs grow
with the square of the input size: about 196 MiB per chunk at 256 px, 782 MiB at 512 px and 3.1 GiB at
1024 px (float32, summed over the layers). With the measured overhead (:data:`TRAINING_FACTOR`) the
paper's batch of 25 needs about 7.5 GiB at 256 px but about 25 GiB at 512 px, and a CPU machine short
of that is killed by the kernel's out-of-memory killer after the chunks were rendered, with no message
(measured: 512 px, batch 25, killed at 23.2 GiB RSS after 7 minutes of rendering). ``marsice train``
asks first and says which batch size fits.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ..errors import TrainingMemoryError

#: Peak resident memory of training per byte of one batch's layer outputs (outputs kept for the backward
#: pass, gradients, TensorFlow's scratch buffers). Measured (:data:`MEASURED`): 512 px in batches of 10
#: peaked at 12.95 GiB RSS with 3.1 GiB of chunks in memory, i.e. about 1.09 per byte of the batch's
#: 7.6 GiB of outputs once the fixed cost is taken off; 1.25 leaves room for allocator slack. The same
#: arithmetic puts batch 25 at 512 px at about 25 GiB, where a 24 GB machine was out-of-memory killed.
TRAINING_FACTOR = 1.25

#: Fixed cost beside the batch: the interpreter, TensorFlow, the model and its optimizer state.
BASE_BYTES = 1.5 * 2**30

#: The measurements :data:`TRAINING_FACTOR` comes from: (input px, batch, chunks in memory GiB, peak RSS
#: GiB, outcome), ``marsice train --synthetic 1600`` on 2 CPU cores, TensorFlow 2.20, 23 GiB machine.
MEASURED = ((512, 10, 3.1, 12.95, "trained"), (512, 25, 3.1, 23.2, "killed by the out-of-memory killer"))


@lru_cache(maxsize=8)
def layer_output_bytes(input_size: int) -> int:
    """Bytes of all layer outputs of one chunk through the paper's net at ``input_size`` (float32).

    Cached: it builds a throw-away Keras net, and the check asks twice when it refuses (the estimate,
    then the batch size that fits)."""
    from math import prod

    from .model import build_model

    model = build_model(input_size)
    return 4 * sum(prod(d for d in layer.output.shape[1:]) for layer in model.layers)


def training_bytes(input_size: int, batch_size: int, data_bytes: int = 0) -> int:
    """Estimated peak memory of training: the batch's share, the fixed cost and the chunks in memory."""
    return int(TRAINING_FACTOR * layer_output_bytes(input_size) * batch_size + BASE_BYTES + data_bytes)


def available_bytes(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """Memory the kernel says can be given to a new process (``MemAvailable``), None where unknown."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_training_memory(
    input_size: int, batch_size: int, data_bytes: int = 0, available: int | None = None
) -> int | None:
    """Refuse a training that cannot fit, naming the largest batch size that does; return the estimate.

    ``available`` defaults to what the kernel reports; where that is unknown nothing is refused.
    """
    if available is None:
        available = available_bytes()
    if available is None:
        return None
    need = training_bytes(input_size, batch_size, data_bytes)
    if need <= available:
        return need
    fits = int((available - BASE_BYTES - data_bytes) // (TRAINING_FACTOR * layer_output_bytes(input_size)))
    gib = 2**30
    advice = (
        f"use --batch-size {fits} or less" if fits >= 1 else "use a smaller --input-size or a machine with more memory"
    )
    raise TrainingMemoryError(
        f"training {input_size}-px chunks in batches of {batch_size} needs about {need / gib:.1f} GiB of memory, "
        f"this machine has {available / gib:.1f} GiB available: {advice}"
    )
