"""Where flagged search should outline: the flagged area of the stitched raster, or each flagged chunk's whole window.

Detect's flagged search outlines where the blended raster (``marsice_plugin.stitching.stitch``) is at or over the
threshold. Where chunks overlap the raster is a weighted mean, so part of a flagged chunk can fall under it: on
``evaluation_set_v3`` three outlines the second stage keeps at 0.99 lie in a chunk the CNN flags at 0.577, where the
raster holds 0.46-0.48, and detect never outlines them (README *Claims*). This bench counts, on the **tuning
products** of ``bench/small_patches.py`` only (seeds 1,200,000 and up), the outlines the second stage keeps and the
planted patches of 2 m and more they find, under both rules: a kept outline counts under "raster" when its
first-stage ``max_probability`` reaches the threshold (what detect keeps) and under "window" when its centroid lies
in the window of a chunk the CNN flags. Information for a rule to write; nothing in detect is changed by it.

Usage::

    nice -n 10 .venv/bin/python bench/search_area.py
"""

from __future__ import annotations

import pickle
import sqlite3  # noqa: F401  before TensorFlow, whose bundled SQLite lacks the R-tree module GeoPackages need
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.make_evaluation_set_v3 import draw_spec
from bench.small_patches import CACHE, SMALL_PATCH_SEED


def main() -> None:
    from marsice_plugin.candidates import CandidateOptions, delineate, search_windows
    from marsice_plugin.detection import load_stage
    from marsice_plugin.evaluation import render_set
    from marsice_plugin.model_registry import default_model_path, model_threshold
    from marsice_plugin.patches.metrics import touched, truth_patches
    from marsice_plugin.patches.stage import score_candidates
    from marsice_plugin.product import open_product
    from marsice_plugin.stitching import stitch

    stage = replace(load_stage(None), keep_all=True)
    threshold = model_threshold(None, default_model_path())
    spec = draw_spec(SMALL_PATCH_SEED, 32, "small_patch_tuning", "choosing the rule; tuning only")
    products = render_set(spec, CACHE.parent / "small_patch_products")
    kept = {"raster": [0, 0], "window": [0, 0]}
    found = {"raster": 0, "window": 0}
    patches = 0
    for sample in products:
        cached = CACHE / f"{sample.product_id}_chunks.pkl"
        if not cached.exists():
            raise SystemExit(f"{cached} is missing: run bench/small_patches.py first (it scores the chunks once)")
        chunks = [c for c in pickle.loads(cached.read_bytes()) if c.probability is not None]
        flagged = [c.window for c in chunks if c.probability >= threshold]
        with open_product(sample.label_path) as product:
            raster = stitch(chunks, product.width, product.height, product.transform)
            windows = search_windows(product, [c.window for c in chunks])
            outlines = delineate(product, windows, raster, CandidateOptions(threshold=0.0))
            labels, counted = truth_patches(sample.scene.ice, product.scale_m)
            inverse = ~product.transform
            hits: dict[str, set[int]] = {"raster": set(), "window": set()}
            for cand in score_candidates(product, outlines, stage):
                if cand.probability < stage.threshold:
                    continue
                hit = touched(product, labels, cand.geometry)
                col, row = inverse * (cand.geometry.centroid.x, cand.geometry.centroid.y)
                in_window = any(
                    w.row_off <= row < w.row_off + w.height and w.col_off <= col < w.col_off + w.width for w in flagged
                )
                for rule, counts in (("raster", cand.max_probability >= threshold), ("window", in_window)):
                    if counts:
                        kept[rule][0] += 1
                        kept[rule][1] += bool(hit)
                        hits[rule] |= hit
            wide = {k for k in range(1, len(counted) + 1) if counted[k - 1]}
            patches += len(wide)
            for rule in found:
                found[rule] += len(wide & hits[rule])
    print(f"{len(products)} tuning products, second stage {stage.name} at {stage.threshold}, CNN at {threshold}")
    for rule, (n, on_ice) in kept.items():
        print(
            f"  {rule}: {n} outlines kept, {on_ice} on planted ice ({on_ice / n:.3f}); "
            f"{found[rule]} of {patches} planted patches of 2 m and more found ({found[rule] / patches:.3f})"
        )


if __name__ == "__main__":
    main()
