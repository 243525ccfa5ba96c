"""Training augmentation that keeps the sun where the physics puts it.

In the paper's band (latitude −40° to −60°/−70°, Ls 140°–200°, mid-afternoon) the sun stands at an
azimuth of 290°–303° from north: west-north-west. Shadows point away from it (110°–123°) and the
remnant ice survives in the shade on the poleward side of boulders and walls. The usual image
augmentations break that: an east–west mirror turns afternoon light into morning light, a vertical
flip or a 90° rotation moves the shadows to a side the sun cannot produce. A model trained on them
learns that a bright patch is ice whichever side of its shadow it lies on, which is exactly the
"bright dust in sunlit places" failure of the paper.

MarsIce uses two geometric augmentations, both exact for the illumination:

* **Mirror across the sun's azimuth axis** (probability ``p_mirror``). The reflection maps the sun
  direction onto itself, so every shadow stays on the anti-sun side of what casts it and keeps its
  length. A square chunk is not symmetric about an oblique axis, so the reflection is applied to the
  region ``S`` of the chunk that the reflection maps into the chunk, and every other pixel keeps its
  place. Because a reflection is its own inverse, the pixels that leave the chunk are exactly the
  pixels whose places are left empty, so the result holds every pixel of the original once: the
  amount of ice in the chunk, hence its label, is unchanged. What the mirror does change is the side
  of the pole relative to the sun (south maps to azimuth ``2·α − 180°``); the ice criterion the model
  has to learn ("bright, in the shade of a landform, casting no shadow") is symmetric under it.
* **Small rotations** that keep the sun inside the band (``band`` = 290°–303°): rotating the chunk by
  δ is what the same ground would look like under a sun δ further round, which the band contains.
  The few corner pixels a rotation of a few degrees uncovers are taken from the unrotated chunk.

Radiometric jitter (gain, offset, noise) is physics-neutral and applied after both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Sun azimuths from north (degrees) in the paper's latitude band and season.
SUN_AZIMUTH_BAND = (290.0, 303.0)
#: Sun azimuth assumed for chunks whose geometry is unknown: the middle of the band.
DEFAULT_SUN_AZIMUTH = 296.5


def direction(azimuth_deg: float) -> np.ndarray:
    """Unit vector, in (row, col) array coordinates of a north-up chunk, pointing to ``azimuth_deg``."""
    a = math.radians(azimuth_deg)
    return np.array([-math.cos(a), math.sin(a)])


def mirror_matrix(azimuth_deg: float) -> np.ndarray:
    """Reflection across the axis through the origin along ``azimuth_deg`` (an involution)."""
    u = direction(azimuth_deg)
    return 2.0 * np.outer(u, u) - np.eye(2)


def rotation_matrix(delta_deg: float) -> np.ndarray:
    """Rotation that moves a feature at azimuth θ (about the centre) to θ + ``delta_deg``."""
    d = math.radians(delta_deg)
    return np.array([[math.cos(d), math.sin(d)], [-math.sin(d), math.cos(d)]])


def _warp(image: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Apply the linear map ``forward`` about the chunk centre; pixels with no source keep their value."""
    from scipy import ndimage

    h, w = image.shape
    centre = np.array([(h - 1) / 2.0, (w - 1) / 2.0])
    inverse = np.linalg.inv(forward)
    offset = centre - inverse @ centre
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    src_r = inverse[0, 0] * rows + inverse[0, 1] * cols + offset[0]
    src_c = inverse[1, 0] * rows + inverse[1, 1] * cols + offset[1]
    inside = (src_r >= -0.5) & (src_r <= h - 0.5) & (src_c >= -0.5) & (src_c <= w - 0.5)
    warped = ndimage.map_coordinates(image, [src_r, src_c], order=1, mode="nearest")
    return np.where(inside, warped, image).astype(image.dtype, copy=False)


def mirror_across_sun(image: np.ndarray, sun_azimuth_deg: float) -> np.ndarray:
    """Reflect a north-up chunk across its sun's azimuth axis (see the module docstring)."""
    return _warp(image, mirror_matrix(sun_azimuth_deg))


def rotate(image: np.ndarray, delta_deg: float) -> np.ndarray:
    """Rotate a north-up chunk by ``delta_deg`` clockwise (the sun's azimuth grows by ``delta_deg``)."""
    return _warp(image, rotation_matrix(delta_deg))


@dataclass(frozen=True)
class SunAwareAugmenter:
    """Random, physics-preserving augmentation of (S, S) or (S, S, 1) chunks in [0, 1]."""

    p_mirror: float = 0.5
    band: tuple[float, float] = SUN_AZIMUTH_BAND
    gain: float = 0.1
    offset: float = 0.03
    noise: float = 0.01

    def rotation_range(self, sun_azimuth_deg: float) -> tuple[float, float]:
        """Rotations (degrees) that keep a chunk lit from ``sun_azimuth_deg`` inside the band."""
        lo, hi = self.band
        sun = sun_azimuth_deg % 360.0
        if not lo <= sun <= hi:  # a chunk from outside the band: no rotation can be justified
            return 0.0, 0.0
        return lo - sun, hi - sun

    def __call__(self, image: np.ndarray, sun_azimuth_deg: float, rng: np.random.Generator) -> np.ndarray:
        squeeze = image.ndim == 3
        x = image[..., 0] if squeeze else image
        x = x.astype(np.float32, copy=False)
        if rng.random() < self.p_mirror:
            x = mirror_across_sun(x, sun_azimuth_deg)
        lo, hi = self.rotation_range(sun_azimuth_deg)
        if hi > lo:
            x = rotate(x, float(rng.uniform(lo, hi)))
        gain = np.float32(1.0 + rng.uniform(-self.gain, self.gain))
        x = x * gain + np.float32(rng.uniform(-self.offset, self.offset))
        if self.noise > 0:
            x = x + rng.normal(0.0, self.noise, x.shape).astype(np.float32)
        x = np.clip(x, 0.0, 1.0).astype(np.float32)
        return x[..., None] if squeeze else x
