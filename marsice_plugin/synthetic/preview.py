"""A picture of a generated product for people: the whole strip and a full-resolution inset with truth.

Left: the product reduced to fit, planted ice outlined in cyan, hot pixels marked in red. Right: a
full-resolution 512 px inset around the largest planted patch, so the shading, cast shadows, boulders
and the diffuse-edged ice can be judged at the scale the CNN sees them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .scene import Scene


def _stretch(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(values[valid], [0.5, 99.5]) if valid.any() else (0.0, 1.0)
    out = np.clip((values - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    out[~valid] = 0
    return out


def write_preview(scene: Scene, path: Path, overview_px: int = 700, inset_px: int = 512) -> Path:
    """Write the overview + inset PNG of a scene; returns ``path``."""
    from PIL import Image, ImageDraw
    from scipy import ndimage

    dn = scene.dn.astype(np.float32)
    valid = ~scene.nodata
    h, w = dn.shape
    f = max(1, int(np.ceil(max(h, w) / overview_px)))
    small = dn[: h // f * f, : w // f * f].reshape(h // f, f, w // f, f).mean(axis=(1, 3))
    small_valid = valid[: h // f * f, : w // f * f].reshape(h // f, f, w // f, f).all(axis=(1, 3))
    overview = Image.fromarray(_stretch(small, small_valid)).convert("RGB")
    edge = scene.ice ^ ndimage.binary_erosion(scene.ice)
    er, ec = np.nonzero(edge)
    draw = ImageDraw.Draw(overview)
    for r, c in zip(er // f, ec // f, strict=True):
        draw.point((int(c), int(r)), fill=(0, 255, 255))
    for r, c in zip(*np.nonzero(scene.hot), strict=True):
        draw.ellipse((c // f - 2, r // f - 2, c // f + 2, r // f + 2), outline=(255, 0, 0))

    labels, count = ndimage.label(scene.ice)
    if count:
        sizes = np.bincount(labels.ravel())[1:]
        r, c = ndimage.center_of_mass(scene.ice, labels, int(np.argmax(sizes)) + 1)
    else:
        r, c = h / 2, w / 2
    r0 = int(np.clip(r - inset_px / 2, 0, max(0, h - inset_px)))
    c0 = int(np.clip(c - inset_px / 2, 0, max(0, w - inset_px)))
    crop = dn[r0 : r0 + inset_px, c0 : c0 + inset_px]
    inset = Image.fromarray(_stretch(crop, valid[r0 : r0 + inset_px, c0 : c0 + inset_px])).convert("RGB")
    d2 = ImageDraw.Draw(inset)
    for rr, cc in zip(*np.nonzero(edge[r0 : r0 + inset_px, c0 : c0 + inset_px]), strict=True):
        d2.point((int(cc), int(rr)), fill=(0, 255, 255))
    draw.rectangle((c0 // f, r0 // f, (c0 + inset_px) // f, (r0 + inset_px) // f), outline=(255, 255, 0))

    canvas = Image.new("RGB", (overview.width + inset.width + 10, max(overview.height, inset.height) + 24), "white")
    canvas.paste(overview, (0, 24))
    canvas.paste(inset, (overview.width + 10, 24))
    cfg = scene.config
    ImageDraw.Draw(canvas).text(
        (4, 4),
        f"generated product, seed {cfg.seed}: {cfg.scale_m} m/px, sun azimuth {cfg.sun_azimuth:.0f}° from north, "
        f"incidence {cfg.incidence:.0f}°; cyan: planted ice (truth), red: hot pixels; right: full-resolution inset",
        fill=(0, 0, 0),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
