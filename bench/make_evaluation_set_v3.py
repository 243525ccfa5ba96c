"""Draw the specification of ``evaluation_set_v3`` (v1's kind of products, five times as many), once.

Not a test and not run by anything: it documents how ``marsice_plugin/data/evaluation_set_v3.json``
was drawn, so the frozen file can be checked. evaluation_set_v1 has 12 products: its chunk ROC-AUC has
a 95 % interval about 0.17 wide when products are resampled, and 7 images called ice-free, all right,
could only show an NPV of 0.65 or more. v3 draws 60 products (30 with planted ice, alternating as in
v1) from the ranges v1's products span: same size, no-data margin, ice contrast and patch sizes
(the renderer's defaults), 2-4 ice patches beside boulders, 0-3 craters, 300-2000 boulders, 1-4 dust
patches, 0-3 dark spots, 4-12 saturated and 4-14 ordinary hot pixels, 0.25 or 0.5 m/px, geometry
from real observations of the paper's band, per-CCD steps off (as v1). It was frozen before any model
scored it and, like v1 and v2, is never used for training or for choosing a model.

Usage::

    .venv/bin/python bench/make_evaluation_set_v3.py > marsice_plugin/data/evaluation_set_v3.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FIRST_SEED = 1_002_000  # above EVALUATION_SEED_BASE and clear of v1 (1_000_000...) and v2 (1_001_000...)
PRODUCTS = 60


PURPOSE = (
    "evaluation_set_v1's kind of products, 60 instead of 12, so its figures carry narrower intervals; "
    "frozen before any model scored it; never used for training or tuning"
)


def draw_spec(
    first_seed: int = FIRST_SEED, count: int = PRODUCTS, name: str = "evaluation_set_v3", purpose: str = PURPOSE
) -> dict:
    """A set specification of ``count`` products of v1's kind from seeds ``first_seed`` and up.

    bench/choose_threshold.py draws its tuning products with it from other seeds, so the products a
    threshold is chosen on and those it is judged on are of one kind and never the same.
    """
    from marsice_plugin.synthetic.geometry import sample_geometry

    rng = np.random.default_rng(first_seed)
    products = []
    for i in range(count):
        with_ice = i % 2 == 0
        g = sample_geometry(rng)
        products.append(
            {
                "seed": first_seed + i,
                "with_planted_ice": with_ice,
                "scene": {
                    "scale_m": float(rng.choice([0.25, 0.5])),
                    "sun_azimuth": round(g.sun_azimuth, 2),
                    "incidence": round(g.incidence, 2),
                    "n_craters": int(rng.integers(0, 4)),
                    "n_boulders": int(rng.integers(300, 2001)),
                    "polygons": bool(rng.random() < 0.5),
                    "n_ice_boulder": int(rng.integers(2, 5)) if with_ice else 0,
                    "n_ice_crater": 0,
                    "n_dust": int(rng.integers(1, 5)),
                    "n_dark_spots": int(rng.integers(0, 4)),
                    "n_hot_special": int(rng.integers(4, 13)),
                    "n_hot_ordinary": int(rng.integers(4, 15)),
                },
                "geometry": {
                    "center_latitude": round(g.latitude, 3),
                    "center_longitude": round(float(rng.uniform(0, 360)), 3),
                    "solar_longitude": round(g.solar_longitude, 2),
                    "local_time": round(g.local_time, 2),
                },
            }
        )
    return {
        "name": name,
        "frozen": "2026-11-29",
        "purpose": purpose,
        "renderer": "marsice_plugin.synthetic.scene.render as of MarsIce 0.1.0",
        "scene_defaults": {"width": 2048, "height": 2048, "nodata_margin": 0.08, "ice_contrast": [0.25, 1.5]},
        "chunk_truth": "a chunk holds ice when it contains at least 16 truth ice pixels "
        "(marsice_plugin.truth.chunk_truth)",
        "products": products,
    }


def main() -> None:
    json.dump(draw_spec(), sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
