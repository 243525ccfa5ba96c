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
2048 px products no longer use a sample in detect. Larger rasters do, and there a megapixel in small windows covers a
smaller share of the image, so ``--mosaic K`` judges K × K mosaics of the products (4 arrangements) as a stand-in.
Spread sampling was added to the grids (``every n-th pixel``: each window read at every n-th pixel of every n-th
row, as GDAL's nearest read of ``out_shape`` gives). Measured 2026-12-08, ``--count 16 --mosaic 8`` (16384 px):
32 × 32 of 32 px 0.67 % / 4.23 % (DN 5.2 / 25.6); 64 × 64 of 32 px 0.65 % / 1.15 %; 32 × 32 of 128 px every 2nd
0.65 % / 1.13 %; **32 × 32 of 256 px every 4th: 0.14 % / 0.43 % (DN 1.3 / 3.5)**, chosen
(``STRETCH_SAMPLE_WINDOW``, ``STRETCH_SAMPLE_STEP``); 32 × 32 of 512 px every 8th 0.00 % (at 16384 px its windows
span the whole image, and the DNs are whole numbers). On the 12 single products it gives 0.30 % / 0.82 %. It took
the container bench's float32 I/F, stretched from the sample, from 0.060 to 0.044 (``--fast``) and from 0.036 to
0.004 (default).

Usage::

    nice -n 10 .venv/bin/python bench/stretch_sample.py [--count 12] [--mosaic K]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FIRST_SEED = 1_800_000
#: (windows per side, window side, read every n-th pixel): each about a megapixel, or four for the spread ones.
GRIDS = ((8, 128, 1), (16, 64, 1), (32, 32, 1), (64, 16, 1), (64, 32, 1), (32, 128, 2), (32, 256, 4), (32, 512, 8))
#: Mosaic arrangements per ``--mosaic`` run (the products in random orders, seed 0).
ARRANGEMENTS = 4


def sampled(values: np.ndarray, grid: int, side: int, step: int = 1) -> np.ndarray:
    """The finite values of ``values`` in the windows :func:`marsice_plugin.normalisation.sample_windows` gives, at
    every ``step``-th pixel of every ``step``-th row from the centre of the first block (as GDAL's nearest read)."""
    from marsice_plugin.normalisation import sample_windows

    o = step // 2
    windows = sample_windows(values.shape[1], values.shape[0], grid, side)
    out = np.concatenate(
        [
            values[w.row_off + o : w.row_off + w.height : step, w.col_off + o : w.col_off + w.width : step].ravel()
            for w in windows
        ]
    )
    return out[np.isfinite(out)]


def stretch_errors(dn: np.ndarray, grid: int, side: int, step: int = 1) -> tuple[float, float]:
    """(relative gain error, largest DN error over the 1-99 % range) of the sample's stretch against the image's."""
    from marsice_plugin.normalisation import STRETCH_DN, STRETCH_PERCENTILES

    lo, hi = np.nanpercentile(dn, STRETCH_PERCENTILES)
    s_lo, s_hi = np.percentile(sampled(dn, grid, side, step).astype(np.float64), STRETCH_PERCENTILES)
    span = STRETCH_DN[1] - STRETCH_DN[0]
    q = np.nanpercentile(dn, [1, 99])
    mapped = (q - s_lo) * span / (s_hi - s_lo) - (q - lo) * span / (hi - lo)
    return float((hi - lo) / (s_hi - s_lo) - 1), float(np.abs(mapped).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=12)
    parser.add_argument(
        "--mosaic",
        type=int,
        default=0,
        metavar="K",
        help="judge K x K mosaics of the products (each used as often as needed), as a stand-in for large rasters",
    )
    args = parser.parse_args()

    from marsice_plugin.product import open_product
    from marsice_plugin.synthetic.product_writer import write_sample_product
    from marsice_plugin.synthetic.scene import SceneConfig

    errors: dict[tuple[int, int, int], list[tuple[float, float]]] = {g: [] for g in GRIDS}
    products = []
    with tempfile.TemporaryDirectory(prefix="marsice-stretch-") as tmp:
        for seed in range(FIRST_SEED, FIRST_SEED + args.count):
            sample = write_sample_product(Path(tmp) / str(seed), SceneConfig(width=2048, height=2048, seed=seed))
            with open_product(sample.label_path) as product:
                dn = product.read(0, 0, product.height, product.width)
            dn[(dn <= 2) | (dn >= 1022)] = np.nan  # no-data and saturation are not valid pixels
            products.append(dn)
    if args.mosaic:
        k, rng = args.mosaic, np.random.default_rng(0)
        images = []
        for _ in range(ARRANGEMENTS):
            order = rng.permutation(np.resize(np.arange(len(products)), k * k))
            images.append(np.block([[products[order[k * r + c]] for c in range(k)] for r in range(k)]))
        what = f"{ARRANGEMENTS} mosaics of {k} x {k} of {args.count} generated 2048 px products ({2048 * k} px)"
    else:
        images, what = products, f"{args.count} generated 2048 px products"
    for image in images:
        for g in GRIDS:
            errors[g].append(stretch_errors(image, *g))
    print(f"{what}, seeds from {FIRST_SEED}; the sample's stretch against the image's")
    for (grid, side, step), e in errors.items():
        a = np.abs(np.array(e))
        every = "" if step == 1 else f", every {step}{'nd' if step == 2 else 'th'} pixel"
        print(
            f"  {grid} x {grid} windows of {side} px{every}: gain error median {100 * np.median(a[:, 0]):.2f} %, "
            f"worst {100 * a[:, 0].max():.2f} %; DN error median {np.median(a[:, 1]):.1f}, worst {a[:, 1].max():.1f}"
        )


if __name__ == "__main__":
    main()
