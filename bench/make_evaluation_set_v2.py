"""Draw the specification of ``evaluation_set_v2`` (patches cut by the paper's chunk grid), once.

Not a test and not run by anything: it documents how ``marsice_plugin/data/evaluation_set_v2.json``
was drawn, so the frozen file can be checked. evaluation_set_v1 holds no truth patch that the paper's
1024 px grid cuts, so its "cut-patch recall" is undefined; v2 exists to measure it like for like:
every ice product carries the same number of *placed* patches across a grid line and inside one
chunk (same radius and contrast ranges, each poleward of its own boulder as the paper's ice lies),
and no randomly planted patches, so the two recalls differ only by the cut. Two ice-free products keep image-level NPV
defined. Geometry comes from real observations of the paper's band; per-CCD steps are on.

Usage::

    .venv/bin/python bench/make_evaluation_set_v2.py > marsice_plugin/data/evaluation_set_v2.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FIRST_SEED = 1_001_000  # above EVALUATION_SEED_BASE: no training set can draw it
SIZE, GRID = 2048, 1024


def placed(rng: np.random.Generator, cut: bool, axis: int) -> list[float]:
    """(row, col, radius m, contrast, boulder radius m): across the grid line on ``axis`` when ``cut``, else
    inside a chunk; the boulder lies on the patch's equatorward side (see ``SceneConfig.ice_at``)."""
    radius = float(rng.uniform(2.0, 6.0))
    along = float(rng.uniform(350, SIZE - 350))  # clear of the skewed no-data margins
    if cut:
        across = GRID + float(rng.uniform(-0.3, 0.3)) * 8  # centre within a few px of the line
    else:
        across = float(rng.choice([GRID / 2, GRID * 1.5])) + float(rng.uniform(-150, 150))
    row, col = (across, along) if axis == 0 else (along, across)
    contrast, boulder = float(rng.uniform(0.5, 1.5)), float(rng.uniform(1.0, 2.5))
    return [round(row, 1), round(col, 1), round(radius, 2), round(contrast, 2), round(boulder, 2)]


def main() -> None:
    from marsice_plugin.synthetic.geometry import sample_geometry

    rng = np.random.default_rng(FIRST_SEED)
    products = []
    for i in range(8):
        seed = FIRST_SEED + i
        with_ice = i < 6
        g = sample_geometry(rng)
        ice_at = [placed(rng, cut, axis) for cut in (True, False) for axis in (0, 1)] if with_ice else []
        products.append(
            {
                "seed": seed,
                "with_planted_ice": with_ice,
                "scene": {
                    "scale_m": float(rng.choice([0.25, 0.5])),
                    "sun_azimuth": round(g.sun_azimuth, 2),
                    "incidence": round(g.incidence, 2),
                    "n_craters": int(rng.integers(0, 4)),
                    "n_boulders": int(rng.integers(400, 2000)),
                    "polygons": bool(rng.random() < 0.6),
                    "n_ice_boulder": 0,
                    "n_ice_crater": 0,
                    "ice_at": ice_at,
                    "n_dust": int(rng.integers(1, 5)),
                    "n_dark_spots": int(rng.integers(0, 3)),
                    "n_hot_special": int(rng.integers(2, 12)),
                    "n_hot_ordinary": int(rng.integers(2, 12)),
                    "ccd_offsets": True,
                },
                "geometry": {
                    "center_latitude": round(g.latitude, 3),
                    "center_longitude": round(float(rng.uniform(0, 360)), 3),
                    "solar_longitude": round(g.solar_longitude, 2),
                    "local_time": round(g.local_time, 2),
                },
            }
        )
    spec = {
        "name": "evaluation_set_v2",
        "frozen": "2026-11-29",
        "purpose": "patches cut by the paper's 1024 px chunk grid against patches inside one chunk, like for like; "
        "never used for training or tuning",
        "renderer": "marsice_plugin.synthetic.scene.render as of MarsIce 0.1.0",
        "scene_defaults": {"width": SIZE, "height": SIZE, "nodata_margin": 0.08, "ice_contrast": [0.25, 1.5]},
        "chunk_truth": "a chunk holds ice when it contains at least 16 truth ice pixels "
        "(marsice_plugin.truth.chunk_truth)",
        "products": products,
    }
    json.dump(spec, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
