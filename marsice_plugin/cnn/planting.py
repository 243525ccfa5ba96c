"""Ice patches planted into real HiRISE pixels, where the physics puts them, and bright decoys where it does not.

Real, labelled examples of the mid-latitude remnant patches MarsIce looks for do not exist here. What exists is
real ice-free terrain (:mod:`marsice_plugin.cnn.real_tiles`). A model trained on rendered ice and real ice-free
pixels would learn "real texture means no ice"; so positives are made from the same real pixels by planting a
patch with the renderer's optics (:mod:`marsice_plugin.synthetic.scene`), and negatives from the same pixels carry
the renderer's decoy. The only difference between the classes is then the one the paper's criterion names.

Placement, from the observation's own sun azimuth (looked up in the bundled catalogue by observation id):

* **Shadows** are the tile's dark blobs: pixels under both the 10th percentile and 0.75 x the median after a 3 px
  mean, connected, 4 px to 3 % of the tile. A shadow lies on the anti-sun side of what casts it.
* **Ice** (positive) sits at the shadow's anti-sun end, partly in it: the shade on the far side of the landform,
  where the paper's patches survive. It is flat, so it casts no shadow of its own.
* **Decoy** (negative) sits beyond the shadow's sunward end, on the sunlit face of the caster: the paper's "bright
  dust in sunlit places", the same blob on the wrong side.

Optics: the patch multiplies the pixel's brightness by ``1 + contrast x opacity`` (the renderer's
``albedo x (1 + ice_opacity)`` under the pixel's own illumination), with a diffuse elliptical edge
(the renderer's soft disc). Sizes are in tile pixels: a tile (227 px) becomes one model input of 256 or 512 px, so
a radius of 0.8-4.5 tile px is 0.9-5 px of a 256 px input, the size the renderer's 1-6 m patches have there
(0.25-0.5 m/px chunks of 1024 px reduced 4x). A reader that cuts tiles at another scale passes its own
``radius_px`` (the second stage's crops take one tile pixel as 0.5 m: the renderer's 1-6 m patches are 2-12 px
there). Brightness is clipped at the tile's 8-bit ceiling, as a real detector saturates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..synthetic.scene import _soft_disc
from .augment import direction

#: Planted patch radius (tile pixels) and contrast (brightness gain at full opacity).
PATCH_RADIUS_PX = (0.8, 4.5)
PATCH_CONTRAST = (0.4, 1.5)
#: A planted patch must cover at least this many tile pixels at opacity > 0.5 (about 16 pixels of a 1024 px chunk,
#: the label rule of the rendered chunks, when a 227 px tile stands for a chunk).
MIN_PATCH_PIXELS = 2
#: Shadow blobs: area limits as a fraction of the tile (larger dark areas are dark dunes or albedo, not shade).
MIN_SHADOW_PX = 4
MAX_SHADOW_FRACTION = 0.03


@dataclass(frozen=True)
class ShadowSite:
    """One shadow blob: its pixel furthest from the sun, its pixel nearest the sun, and its length (pixels)."""

    far_end: tuple[float, float]
    sun_end: tuple[float, float]
    length_px: float


def shadow_sites(grey: np.ndarray, sun_azimuth: float) -> list[ShadowSite]:
    """The shadow blobs of a north-up grey tile lit from ``sun_azimuth`` (degrees from north)."""
    from scipy import ndimage

    smooth = ndimage.uniform_filter(grey.astype(np.float32), 3)
    threshold = min(float(np.percentile(smooth, 10)), 0.75 * float(np.median(smooth)))
    labels, count = ndimage.label(smooth < threshold)
    if count == 0:
        return []
    anti_sun = -direction(sun_azimuth)
    max_px = MAX_SHADOW_FRACTION * grey.size
    sites = []
    for blob in ndimage.find_objects(labels):
        sub = labels[blob]
        ids = np.unique(sub[sub > 0])
        for i in ids:
            rows, cols = np.nonzero(sub == i)
            if not MIN_SHADOW_PX <= rows.size <= max_px:
                continue
            rows = rows + blob[0].start
            cols = cols + blob[1].start
            proj = rows * anti_sun[0] + cols * anti_sun[1]
            far, near = int(np.argmax(proj)), int(np.argmin(proj))
            sites.append(
                ShadowSite(
                    (float(rows[far]), float(cols[far])),
                    (float(rows[near]), float(cols[near])),
                    float(proj[far] - proj[near]),
                )
            )
    # a blob that touches several bounding boxes is found once per box: keep one of each
    return list({(s.far_end, s.sun_end): s for s in sites}.values())


def _patch(
    shape: tuple[int, int],
    centre: tuple[float, float],
    rng: np.random.Generator,
    radius_px: tuple[float, float] = PATCH_RADIUS_PX,
) -> tuple[tuple[slice, slice], np.ndarray]:
    radius = float(rng.uniform(*radius_px))
    return _soft_disc(
        shape,
        centre[0],
        centre[1],
        radius,
        edge_px=max(0.6, 0.3 * radius),
        aspect=float(rng.uniform(1.0, 2.0)),
        angle=float(rng.uniform(0, math.pi)),
    )


def plant(
    grey: np.ndarray,
    sun_azimuth: float,
    rng: np.random.Generator,
    kind: str,
    count: int = 1,
    ceiling: float = 255.0,
    radius_px: tuple[float, float] = PATCH_RADIUS_PX,
) -> tuple[np.ndarray, np.ndarray]:
    """``grey`` with ``count`` patches of ``kind`` ("ice" or "decoy") and the mask of their pixels (opacity > 0.5).

    ``radius_px`` is the range patch radii are drawn from, in tile pixels (module docstring).

    Returns the tile unchanged and an empty mask when it has no usable shadow: a patch with no shadowing landform
    would teach the net that any bright blob is ice.
    """
    if kind not in ("ice", "decoy"):
        raise ValueError(f"kind must be 'ice' or 'decoy', not {kind!r}")
    sites = shadow_sites(grey, sun_azimuth)
    out = grey.astype(np.float32, copy=True)
    mask = np.zeros(grey.shape, dtype=bool)
    if not sites:
        return out, mask
    anti_sun = -direction(sun_azimuth)
    gain = np.zeros(grey.shape, dtype=np.float32)
    for k in rng.permutation(len(sites))[:count]:
        site = sites[int(k)]
        for _ in range(4):  # a patch clipped by the tile edge to under MIN_PATCH_PIXELS is drawn again
            if kind == "ice":
                step = float(rng.uniform(0.0, 2.5))
                centre = (site.far_end[0] + anti_sun[0] * step, site.far_end[1] + anti_sun[1] * step)
            else:
                step = float(rng.uniform(3.0, 8.0))
                centre = (site.sun_end[0] - anti_sun[0] * step, site.sun_end[1] - anti_sun[1] * step)
            window, op = _patch(grey.shape, centre, rng, radius_px)
            if int((op > 0.5).sum()) >= MIN_PATCH_PIXELS:
                break
        else:
            continue
        contrast = float(rng.uniform(*PATCH_CONTRAST))
        gain[window] = np.maximum(gain[window], op * contrast)
        mask[window] |= op > 0.5
    out = np.minimum(out * (1.0 + gain), np.float32(ceiling))
    return out, mask
