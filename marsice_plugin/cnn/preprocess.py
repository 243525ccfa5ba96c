"""Turn a chunk of DNs into the model's input: repaired, normalised, reduced to the model size.

Steps, and why:

1. Special values (null, saturation) and isolated bright outliers are replaced
   (:mod:`marsice_plugin.anomalies`), so the paper's "absolute bright pixels" never reach the net.
   The chunk reader already does this (``ChunkReader(repair=True)``); :func:`model_input` then starts
   from its repaired data.
2. Normalisation, at the data's full precision (10-bit DNs are exact in float32):

   * ``contrast="fixed"`` (default, what the shipped models were trained with): DNs are divided by
     1023, so inputs lie in [0, 1] and brightness stays comparable between chunks and images. Chunks
     arrive as 10-bit DN equivalents whatever the product's container (label, NBITS, bit depth or
     float stretch: :mod:`marsice_plugin.normalisation`), so ``valid_max`` is 1023 for every product.
   * ``contrast="chunk"`` (option): per-chunk contrast normalisation, ``(DN - p1) / (p99.9 - p1)`` over
     the chunk's valid pixels, clipped to [0, 1]. It removes differences of exposure, albedo and
     illumination between images (the paper's span incidence angles of 40–80°), at the price of
     stretching a chunk without any bright patch as much as one with a patch, and of losing absolute
     brightness. A model must be trained with the same setting it is run with.

3. The chunk is reduced to the model's input size by block averaging (an exact area average for
   integer factors, e.g. 1024 → 256), which also averages noise down; other factors use PIL's
   area-weighted BOX filter. Chunks smaller than the chunk size (images smaller than one chunk)
   are padded with their median first.
"""

from __future__ import annotations

import numpy as np

from ..anomalies import RepairReport, repair

#: Percentiles of the per-chunk contrast normalisation.
CHUNK_CONTRAST_PERCENTILES = (1.0, 99.9)
CONTRAST_MODES = ("fixed", "chunk")


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


def normalise(data: np.ndarray, valid: np.ndarray, valid_max: float, contrast: str = "fixed") -> np.ndarray:
    """Map DNs to [0, 1] (see the module docstring for the two ``contrast`` modes)."""
    if contrast == "fixed":
        x = data / np.float32(valid_max)
    elif contrast == "chunk":
        values = data[valid] if valid.any() else data.ravel()
        lo, hi = np.percentile(values, CHUNK_CONTRAST_PERCENTILES)
        x = (data - np.float32(lo)) / np.float32(max(hi - lo, 1e-6))
    else:
        raise ValueError(f"contrast must be one of {CONTRAST_MODES}, got {contrast!r}")
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def model_input(
    fixed: np.ndarray,
    valid: np.ndarray,
    chunk_size: int,
    input_size: int,
    valid_max: float,
    contrast: str = "fixed",
) -> np.ndarray:
    """Model input from an already repaired chunk: normalised, padded to ``chunk_size``, reduced."""
    x = normalise(fixed, valid, valid_max, contrast)
    h, w = x.shape
    if (h, w) != (chunk_size, chunk_size):
        pad_value = float(np.median(x))
        padded = np.full((chunk_size, chunk_size), pad_value, dtype=np.float32)
        padded[:h, :w] = x
        x = padded
    return reduce(x, input_size)


def prepare(
    data: np.ndarray,
    valid: np.ndarray,
    nodata: np.ndarray,
    chunk_size: int,
    input_size: int,
    valid_max: float,
    contrast: str = "fixed",
) -> tuple[np.ndarray, RepairReport]:
    """Model input (``input_size`` × ``input_size`` float32 in [0, 1]) and the repair counts."""
    fixed, report = repair(data, valid, nodata=nodata)
    return model_input(fixed, valid, chunk_size, input_size, valid_max, contrast), report
