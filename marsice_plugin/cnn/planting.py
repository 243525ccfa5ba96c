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

**Poleward placement** (``geometry="poleward"``; a second-stage partner trained with it on 2026-12-07 was judged on
tuning data and not adopted: ``models/marsice_patch_64.md``, last section). The paper's criterion and the renderer
(:mod:`marsice_plugin.synthetic.scene`) put ice on the *poleward* side of the shadowing landform, within 40° of due
poleward, beside the caster. In the paper's band the sun comes from the west-north-west, so poleward (south) lies
about 65° from the anti-sun direction; the placement above puts ice where a crater's sunlit far wall also begins.
With ``geometry="poleward"`` ice sits beside the caster (the middle of the shadow's sunward end, set back by half
the shadow's width), at the caster's half width plus half the patch's radius, at a bearing within 40° of due
poleward, as the renderer places ice beside boulders. Decoys go on the sunlit face (as above) or, half of them,
just beyond the shadow's anti-sun end, in sunlight: bright ground where no ice survives.

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


#: Where planted ice goes (module docstring): the shadow's anti-sun end, or poleward of the caster.
GEOMETRIES = ("anti_sun", "poleward")
#: Poleward placement: the bearing's spread around due poleward (degrees), as the renderer's boulder ice.
POLEWARD_SPREAD_DEG = 40.0


@dataclass(frozen=True)
class ShadowSite:
    """One shadow blob: its pixel furthest from the sun, its pixel nearest the sun, its length and its area
    (pixels)."""

    far_end: tuple[float, float]
    sun_end: tuple[float, float]
    length_px: float
    area_px: int = 0
    #: the mean position of the blob's pixels within 1.5 px of its sunward end (the caster's foot); None: sun_end
    sun_side: tuple[float, float] | None = None

    @property
    def width_px(self) -> float:
        """The blob's mean width across the sun's direction: its area over its length (at least 1)."""
        return max(1.0, self.area_px / max(self.length_px, 1.0))


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
                    int(rows.size),
                    (float(rows[proj < proj[near] + 1.5].mean()), float(cols[proj < proj[near] + 1.5].mean())),
                )
            )
    # a blob that touches several bounding boxes is found once per box: keep one of each
    return list({(s.far_end, s.sun_end): s for s in sites}.values())


def _patch(
    shape: tuple[int, int],
    centre: tuple[float, float],
    rng: np.random.Generator,
    radius_px: tuple[float, float] = PATCH_RADIUS_PX,
    radius: float | None = None,
) -> tuple[tuple[slice, slice], np.ndarray]:
    radius = float(rng.uniform(*radius_px)) if radius is None else radius
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
    geometry: str = "anti_sun",
    latitude: float = -50.0,
) -> tuple[np.ndarray, np.ndarray]:
    """``grey`` with ``count`` patches of ``kind`` ("ice" or "decoy") and the mask of their pixels (opacity > 0.5).

    ``radius_px`` is the range patch radii are drawn from, in tile pixels (module docstring). ``geometry``
    (:data:`GEOMETRIES`) says where ice and decoys go; with "poleward" the pole is south of a north-up tile when
    ``latitude`` (degrees, the tile's) is negative, north otherwise (a tile of a polar stereographic RDR, poleward of
    ±65°, is not north-up, and "poleward" there is not handled: its pole lies toward the grid's north).

    Returns the tile unchanged and an empty mask when it has no usable shadow: a patch with no shadowing landform
    would teach the net that any bright blob is ice.
    """
    if kind not in ("ice", "decoy"):
        raise ValueError(f"kind must be 'ice' or 'decoy', not {kind!r}")
    if geometry not in GEOMETRIES:
        raise ValueError(f"geometry must be one of {GEOMETRIES}, not {geometry!r}")
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
            radius = None
            if geometry == "poleward":
                centre, radius = _poleward_site(site, kind, anti_sun, 1.0 if latitude < 0 else -1.0, rng, radius_px)
            elif kind == "ice":
                step = float(rng.uniform(0.0, 2.5))
                centre = (site.far_end[0] + anti_sun[0] * step, site.far_end[1] + anti_sun[1] * step)
            else:
                step = float(rng.uniform(3.0, 8.0))
                centre = (site.sun_end[0] - anti_sun[0] * step, site.sun_end[1] - anti_sun[1] * step)
            window, op = _patch(grey.shape, centre, rng, radius_px, radius)
            if int((op > 0.5).sum()) >= MIN_PATCH_PIXELS:
                break
        else:
            continue
        contrast = float(rng.uniform(*PATCH_CONTRAST))
        gain[window] = np.maximum(gain[window], op * contrast)
        mask[window] |= op > 0.5
    out = np.minimum(out * (1.0 + gain), np.float32(ceiling))
    return out, mask


def _poleward_site(
    site: ShadowSite,
    kind: str,
    anti_sun: np.ndarray,
    pole: float,
    rng: np.random.Generator,
    radius_px: tuple[float, float],
) -> tuple[tuple[float, float], float]:
    """A patch's centre and radius by the "poleward" geometry (module docstring); ``pole`` is +1 when the pole lies
    toward increasing rows (south on a north-up tile), -1 otherwise."""
    radius = float(rng.uniform(*radius_px))
    half = 0.5 * site.width_px
    foot = site.sun_side or site.sun_end
    caster = (foot[0] - anti_sun[0] * half, foot[1] - anti_sun[1] * half)
    if kind == "ice":  # beside the caster, within POLEWARD_SPREAD_DEG of due poleward, as the renderer's
        bearing = math.radians(float(rng.uniform(-POLEWARD_SPREAD_DEG, POLEWARD_SPREAD_DEG)))
        dist = half + 0.5 * radius
        return (caster[0] + pole * dist * math.cos(bearing), caster[1] + dist * math.sin(bearing)), radius
    if rng.random() < 0.5:  # on the caster's sunlit face
        step = float(rng.uniform(3.0, 8.0))
        return (site.sun_end[0] - anti_sun[0] * step, site.sun_end[1] - anti_sun[1] * step), radius
    step = float(rng.uniform(1.0, 3.0)) + radius  # beyond the shadow's anti-sun end, in sunlight
    return (site.far_end[0] + anti_sun[0] * step, site.far_end[1] + anti_sun[1] * step), radius
