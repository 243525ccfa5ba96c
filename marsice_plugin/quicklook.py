"""Quick-look PNG: the product at reduced resolution with each chunk's probability drawn on it.

The image is read through the JPEG2000 resolution levels (rasterio ``out_shape``), so a quick-look
of a full RDR decodes a fraction of its pixels; it is stretched between the 1st and 99th percentile
of valid pixels. Chunks at or above the threshold are outlined in red, others in a blue-to-yellow
ramp by probability, skipped chunks in grey; ice candidates are outlined in magenta.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .detect_defaults import is_flagged
from .outputs import write_atomically

if TYPE_CHECKING:  # pragma: no cover
    from .product import Product
    from .result_layers import Detections


def _colour(p: float | None, above: bool) -> tuple[int, int, int]:
    if p is None:
        return (150, 150, 150)
    if above:
        return (255, 40, 40)
    return (int(40 + 215 * p), int(90 + 150 * p), int(230 - 200 * p))


def render_quicklook(
    product: Product,
    result: Detections,
    path: Path,
    max_size: int = 1400,
    finish: Callable[[Path, Path], Any] | None = None,
) -> Path:
    """Draw the quick-look and write it atomically to ``path``.

    The PNG is written under a temporary name beside ``path``; ``finish(tmp, path)`` puts it in place
    (default: :func:`~marsice_plugin.outputs.publish`, at once; detect defers it until its GeoPackage is committed).
    """
    from PIL import Image, ImageDraw

    factor = max(1.0, max(product.width, product.height) / max_size)
    out_w, out_h = max(1, int(product.width / factor)), max(1, int(product.height / factor))
    data = product.read_reduced(out_h, out_w)
    grey = data.astype(np.float32).mean(axis=0)
    valid = grey > 0
    lo, hi = np.percentile(grey[valid], [1, 99]) if valid.any() else (0.0, 1.0)
    img8 = np.clip((grey - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    img8[~valid] = 0
    image = Image.fromarray(img8).convert("RGB")
    draw = ImageDraw.Draw(image)
    sx, sy = out_w / product.width, out_h / product.height
    for c in result.chunks:
        w = c.window
        box = (w.col_off * sx, w.row_off * sy, (w.col_off + w.width) * sx - 1, (w.row_off + w.height) * sy - 1)
        above = is_flagged(c.probability, result.threshold)
        draw.rectangle(box, outline=_colour(c.probability, above), width=3 if above else 1)
        text = "skip" if c.skipped else f"{c.probability:.2f}"
        draw.text((box[0] + 4, box[1] + 3), text, fill=_colour(c.probability, above))
    inv = ~product.transform
    for cand in result.candidates:
        xs, ys = cand.geometry.exterior.xy
        cols, rows = inv @ (np.asarray(xs), np.asarray(ys))
        draw.line(list(zip(cols * sx, rows * sy, strict=True)), fill=(255, 0, 255), width=2)
    draw.text((6, out_h - 14), f"{result.product_id}  {result.summary().split(': ', 1)[1]}", fill=(255, 255, 255))
    return write_atomically(path, lambda tmp: image.save(tmp, format="PNG"), finish)
