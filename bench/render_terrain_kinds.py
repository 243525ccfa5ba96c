"""Render one small scene per optional terrain kind and decoy of the scene renderer: docs/terrain_kinds.png.

Why: the kinds (``marsice_plugin.synthetic.landforms``) are judged by eye against real HiRISE images before any
model is trained on them, and the README's paragraph on them needs a picture. Each panel is the same seed and
sun (the band's median azimuth, 297°, incidence 70°) with one kind turned on: 512 px at 0.5 m (256 m, a
chunk's ground size) shown reduced 2x, as 10-bit DNs on a fixed 0..1023 grey scale, so a panel's contrast is
the contrast a model reads. Planted ice is outlined in cyan; decoys are not ice and carry no outline.

Usage::

    .venv/bin/python bench/render_terrain_kinds.py -o docs/terrain_kinds.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from marsice_plugin.synthetic.scene import SceneConfig, render

PANELS = (
    ("base scene (all kinds off)", {}),
    ("transverse dunes, wind 117°", {"dunes": True, "dune_wind_azimuth": 117.0, "n_boulders": 0}),
    ("barchans (seed 5), wind drawn", {"dunes": True, "seed": 5, "n_boulders": 0}),
    ("layered deposit", {"layered": True, "n_boulders": 80}),
    ("gullies on a pole-facing slope", {"n_gullies": 3, "n_boulders": 80}),
    ("small polygons, varied troughs", {"small_polygons": True, "trough_variation": 0.5, "polygons": False}),
    ("bright outcrops", {"n_outcrops": 3}),
    ("dust on dune crests + CO2-like frost", {"dunes": True, "n_slope_dust": 3, "n_frost": 2, "n_boulders": 0}),
    ("low contrast (haze 0.7)", {"low_contrast": 0.7}),
)


def panel(title: str, settings: dict, size: int) -> tuple[str, np.ndarray, np.ndarray]:
    """The DNs of one panel's scene and its ice outline."""
    from scipy import ndimage

    base = {"width": size, "height": size, "scale_m": 0.5, "seed": 21, "incidence": 70.0, "nodata_margin": 0.0}
    scene = render(SceneConfig(**{**base, "n_boulders": 250, "n_craters": 2, **settings}))
    outline = scene.ice ^ ndimage.binary_erosion(scene.ice)
    return title, scene.dn, outline


def main(argv: list[str] | None = None) -> int:
    from PIL import Image, ImageDraw

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/terrain_kinds.png"))
    parser.add_argument("--size", type=int, default=512, help="scene size in pixels (0.5 m/px), shown reduced 2x")
    args = parser.parse_args(argv)
    cols, pad, head = 3, 6, 16
    rows = (len(PANELS) + cols - 1) // cols
    side = args.size // 2
    levels = 24  # grey levels of the palette (keeps the PNG under 300 KB); index ``levels`` is the cyan outline
    canvas = Image.new("P", (cols * (side + pad), rows * (side + head + pad)), levels - 1)
    grey_steps = [round(255 * k / (levels - 1)) for k in range(levels)]
    canvas.putpalette([v for g in grey_steps for v in (g, g, g)] + [0, 255, 255])
    draw = ImageDraw.Draw(canvas)
    for i, (title, settings) in enumerate(PANELS):
        title, dn, outline = panel(title, settings, args.size)
        small = dn[: 2 * side, : 2 * side].astype(np.float32).reshape(side, 2, side, 2).mean(axis=(1, 3))
        index = np.clip(np.rint(small / 1023.0 * (levels - 1)), 0, levels - 1).astype(np.uint8)
        index[outline[: 2 * side : 2, : 2 * side : 2]] = levels
        x, y = (i % cols) * (side + pad), (i // cols) * (side + head + pad)
        canvas.paste(Image.fromarray(index, mode="P"), (x, y + head))
        draw.text((x + 2, y + 2), title, fill=0)
        print(f"{title}: DN 1-99 % {np.percentile(dn, 1):.0f}-{np.percentile(dn, 99):.0f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.output, optimize=True)
    print(f"wrote {args.output} ({args.output.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
