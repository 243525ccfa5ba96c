"""How closely a float product's pixel sample gives the stretch of its whole image: which sampling grid to use.

A float raster (I/F) has no bit depth, so its DNs come from a stretch of its valid pixels: the 0.1th percentile
onto DN 120 and the 99.9th onto DN 820 (:mod:`marsice_plugin.normalisation`). The percentiles come from a sample of
about a megapixel of full-resolution windows, not the whole image. This bench renders generated 2048 px products
(tuning seeds from :data:`FIRST_SEED`; no evaluation set or other bench draws them), takes their valid DNs as the
float image (the stretch is affine, so DNs stand for any I/F scaling), and prints, per sampling grid (windows per
side × window side, each about a megapixel), how far the sample's stretch lies from the whole image's: the relative
error of its gain and the largest DN error over the image's 1-99 % range (median and worst over the products).

Measured 2026-12-07 (12 products): 8 × 128 (the grid every product used) gain 0.90 % / 4.6 %, DN 5.9 / 15.4;
16 × 64: 0.71 % / 2.5 %, 3.8 / 17.6; **32 × 32: 0.43 % / 1.5 %, 3.0 / 10.9**; 64 × 16: 0.77 % / 1.8 %, 3.5 / 10.6.
Float products now use 32 × 32 (``STRETCH_SAMPLE_GRID``), chosen as the smallest median errors of both kinds. It
costs little: 0.18-0.35 s against 0.04-0.07 s to sample a 64 Mpx tiled float32 GeoTIFF. It did not move
``bench/real_pixels.py``'s float32 I/F container (``--fast`` still 0.060 from its JPEG2000): that scene's DNs are
whole numbers, and both samples put the 99.9th percentile on the same one, above the whole image's.

Since 2026-12-08 a float raster of up to 16 Mpx (``STRETCH_WHOLE_PIXELS``) is stretched from every pixel, so these
2048 px products no longer use the sample in detect; the sample (and this bench's figures for it) is what larger
rasters get. There the windows cover a smaller share of the image (a megapixel of a 1 Gpx cube is 0.1 %, of these
products a quarter), which this bench does not measure. That change took the container bench's float32 I/F from
0.060 to 0.029 for ``--fast`` and from 0.036 to 0.004 for the default model.

Usage::

    nice -n 10 .venv/bin/python bench/stretch_sample.py [--count 12]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FIRST_SEED = 1_800_000
GRIDS = ((8, 128), (16, 64), (32, 32), (64, 16))


def sampled(values: np.ndarray, grid: int, side: int) -> np.ndarray:
    """The finite values of ``values`` in the windows :func:`marsice_plugin.normalisation.sample_windows` gives."""
    from marsice_plugin.normalisation import sample_windows

    windows = sample_windows(values.shape[1], values.shape[0], grid, side)
    out = np.concatenate(
        [values[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width].ravel() for w in windows]
    )
    return out[np.isfinite(out)]


def stretch_errors(dn: np.ndarray, grid: int, side: int) -> tuple[float, float]:
    """(relative gain error, largest DN error over the 1-99 % range) of the sample's stretch against the image's."""
    from marsice_plugin.normalisation import STRETCH_DN, STRETCH_PERCENTILES

    lo, hi = np.nanpercentile(dn, STRETCH_PERCENTILES)
    s_lo, s_hi = np.percentile(sampled(dn, grid, side), STRETCH_PERCENTILES)
    span = STRETCH_DN[1] - STRETCH_DN[0]
    q = np.nanpercentile(dn, [1, 99])
    mapped = (q - s_lo) * span / (s_hi - s_lo) - (q - lo) * span / (hi - lo)
    return float((hi - lo) / (s_hi - s_lo) - 1), float(np.abs(mapped).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=12)
    args = parser.parse_args()

    from marsice_plugin.product import open_product
    from marsice_plugin.synthetic.product_writer import write_sample_product
    from marsice_plugin.synthetic.scene import SceneConfig

    errors: dict[tuple[int, int], list[tuple[float, float]]] = {g: [] for g in GRIDS}
    with tempfile.TemporaryDirectory(prefix="marsice-stretch-") as tmp:
        for seed in range(FIRST_SEED, FIRST_SEED + args.count):
            sample = write_sample_product(Path(tmp) / str(seed), SceneConfig(width=2048, height=2048, seed=seed))
            with open_product(sample.label_path) as product:
                dn = product.read(0, 0, product.height, product.width).astype(np.float64)
            dn[(dn <= 2) | (dn >= 1022)] = np.nan  # no-data and saturation are not valid pixels
            for g in GRIDS:
                errors[g].append(stretch_errors(dn, *g))
    print(f"{args.count} generated 2048 px products from seed {FIRST_SEED}; the sample's stretch against the image's")
    for (grid, side), e in errors.items():
        a = np.abs(np.array(e))
        print(
            f"  {grid} x {grid} windows of {side} px: gain error median {100 * np.median(a[:, 0]):.2f} %, "
            f"worst {100 * a[:, 0].max():.2f} %; DN error median {np.median(a[:, 1]):.1f}, worst {a[:, 1].max():.1f}"
        )


if __name__ == "__main__":
    main()
