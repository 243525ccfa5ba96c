"""Full-resolution crops around candidates, turned so the sun always comes from the top.

Why a crop and why turned: remnant ice is a bright, diffuse, flat patch on the *anti-sun* side of something
that casts a shadow; a sunlit boulder face or dust on a sun-facing slope is bright on the *sun* side. With the sun
always at the top of the crop, that physics looks the same in every product, so a small network need not learn
every sun direction.

A crop is :data:`CROP_PX` pixels square at :data:`CROP_SCALE_M` metres per pixel (32 m of ground), cut from
JPEG2000 level 0 (every pixel), resampled once (block mean for finer products, then one bilinear rotation and
scaling). Its centre is moved :data:`SUNWARD_SHIFT` of the side toward the sun from the candidate's centroid, so the
crop holds more context on the sunward side, where the shadowing landform of a real patch lies.

Two channels:

0. brightness relative to the crop's median valid pixel, minus one, clipped to [-1, 3]: scale- and gain-free, so
   every container of a product (:mod:`marsice_plugin.normalisation`) gives the same crop;
1. the candidate's own outline (1 inside), so the network knows which bright thing it is asked about.

Image geometry: a step toward the sun is (d_row, d_col) = (-cos az, sin az) for the azimuth az clockwise from the
image's "up" (:mod:`marsice_plugin.synthetic.illumination`). On a north-up grid (equirectangular products) that is
the azimuth from north; on a polar stereographic one north is turned, and callers pass the sun's direction in the
image (:attr:`marsice_plugin.product.Product.image_sun_azimuth`). A product without a sun azimuth is cut unturned
(azimuth 0).
"""

from __future__ import annotations

import math

import numpy as np

#: Side of a crop (model input) in pixels, and its ground scale: 64 px x 0.5 m = 32 m of ground.
CROP_PX = 64
CROP_SCALE_M = 0.5
#: The crop centre is moved this fraction of the side toward the sun from the candidate's centroid.
SUNWARD_SHIFT = 0.2
#: Channel 0's clip range (relative brightness - 1).
CLIP = (-1.0, 3.0)


def toward_sun(sun_azimuth: float) -> tuple[float, float]:
    """(d_row, d_col) of one step toward the sun on a north-up grid."""
    az = math.radians(sun_azimuth)
    return -math.cos(az), math.sin(az)


def source_side(scale_m: float) -> int:
    """Side (level-0 pixels) of the window to read so that the turned crop lies inside it at any azimuth."""
    return math.ceil(CROP_PX * CROP_SCALE_M / scale_m * math.sqrt(2.0)) + 4


def crop_centre(row: float, col: float, scale_m: float, sun_azimuth: float) -> tuple[float, float]:
    """The crop's centre (level-0 pixel coordinates) for a candidate centred at (row, col)."""
    shift = SUNWARD_SHIFT * CROP_PX * CROP_SCALE_M / scale_m
    d_row, d_col = toward_sun(sun_azimuth)
    return row + shift * d_row, col + shift * d_col


def _block_mean(a: np.ndarray, f: int) -> np.ndarray:
    h, w = a.shape
    ph, pw = -h % f, -w % f
    padded = np.pad(a, ((0, ph), (0, pw)), mode="edge")
    return padded.reshape(padded.shape[0] // f, f, padded.shape[1] // f, f).mean(axis=(1, 3))


def turn(image: np.ndarray, centre: tuple[float, float], step: float, sun_azimuth: float, cval: float) -> np.ndarray:
    """The CROP_PX square around ``centre`` of ``image``, ``step`` source pixels per crop pixel, sun at the top.

    One bilinear resampling: crop pixel offset u (rows, cols from the crop centre) reads the source at
    ``centre + step * R u`` with R the rotation taking "up" (-1, 0) to the sunward direction.
    """
    from scipy import ndimage

    az = math.radians(sun_azimuth)
    c, s = math.cos(az), math.sin(az)
    matrix = step * np.array([[c, s], [-s, c]])
    half = (CROP_PX - 1) / 2.0
    offset = np.asarray(centre) - matrix @ np.array([half, half])
    return ndimage.affine_transform(
        image.astype(np.float32), matrix, offset=offset, output_shape=(CROP_PX, CROP_PX), order=1, cval=cval
    )


def crop_input(
    grey: np.ndarray,
    valid: np.ndarray,
    mask: np.ndarray,
    centre: tuple[float, float],
    scale_m: float,
    sun_azimuth: float,
) -> np.ndarray:
    """One model input (CROP_PX, CROP_PX, 2) from a level-0 window (grey values, valid pixels, candidate mask).

    ``centre`` is the crop centre in the window's pixel coordinates (:func:`crop_centre`); ``grey`` is on a linear
    scale without offset (10-bit DN equivalents), so dividing by the median valid pixel removes the gain.
    """
    values = grey[valid]
    median = float(np.median(values)) if values.size else 1.0
    rel = np.where(valid, grey / max(median, 1e-6) - 1.0, 0.0).astype(np.float32)
    candidate = mask.astype(np.float32)
    step = CROP_SCALE_M / scale_m
    f = int(step) if step >= 1.5 else 1
    if f > 1:  # finer products: average blocks first, so the bilinear sampling does not alias
        rel, candidate = _block_mean(rel, f), _block_mean(candidate, f)
        centre, step = ((centre[0] + 0.5) / f - 0.5, (centre[1] + 0.5) / f - 0.5), step / f
    out = np.empty((CROP_PX, CROP_PX, 2), np.float32)
    out[..., 0] = np.clip(turn(rel, centre, step, sun_azimuth, 0.0), *CLIP)
    out[..., 1] = turn(candidate, centre, step, sun_azimuth, 0.0)
    return out
