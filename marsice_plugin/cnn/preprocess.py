"""Turn a chunk of DNs into the model's input: repaired, normalised, reduced to the model size.

Steps, and why:

1. Special values (null, saturation) and isolated bright outliers are replaced
   (:mod:`marsice_plugin.anomalies`), so the paper's "absolute bright pixels" never reach the net.
2. DNs are divided by the largest valid DN (1023 for 10-bit HiRISE) so inputs lie in [0, 1] at the
   data's full precision; 8- and 16-bit products map to the same range.
3. The chunk is reduced to the model's input size by block averaging (an exact area average for
   integer factors, e.g. 1024 → 256), which also averages noise down; other factors use PIL's
   area-weighted BOX filter. Chunks smaller than the chunk size (images smaller than one chunk)
   are padded with their median first.
"""

from __future__ import annotations

import numpy as np

from ..anomalies import RepairReport, repair


def reduce(data: np.ndarray, size: int) -> np.ndarray:
    """Area-average a square array to ``size`` × ``size``."""
    n = data.shape[0]
    if n == size:
        return data.astype(np.float32, copy=False)
    if n % size == 0:
        f = n // size
        return data.reshape(size, f, size, f).mean(axis=(1, 3), dtype=np.float32)
    from PIL import Image

    return np.asarray(Image.fromarray(data.astype(np.float32), mode="F").resize((size, size), Image.BOX))


def prepare(
    data: np.ndarray, valid: np.ndarray, nodata: np.ndarray, chunk_size: int, input_size: int, valid_max: float
) -> tuple[np.ndarray, RepairReport]:
    """Model input (``input_size`` × ``input_size`` float32 in [0, 1]) and the repair counts."""
    fixed, report = repair(data, valid, nodata=nodata)
    h, w = fixed.shape
    if (h, w) != (chunk_size, chunk_size):
        pad_value = float(np.median(fixed))
        padded = np.full((chunk_size, chunk_size), pad_value, dtype=np.float32)
        padded[:h, :w] = fixed
        fixed = padded
    x = reduce(fixed, input_size) / float(valid_max)
    return np.clip(x, 0.0, 1.0).astype(np.float32), report
