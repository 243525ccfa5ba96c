"""Measure each terrain term of ``rank`` on tuning products with DTMs, and apply the rule that keeps or drops it.

Why: ``marsice terrain`` multiplies each candidate's probability by a plausibility made of terrain terms
(:data:`marsice_plugin.terrain.ranking.TERMS`). On the demo sample the old combined value (first-stage probability ×
plausibility) put 2 of 11 true-ice candidates in the top 20, and ordering by area 8. A term belongs in ``rank`` only
if it helps a geologist meet the ice sooner, and that is measured here, on tuning data only.

Tuning products: ``--count`` generated products of the frozen sets' kind (bench/make_evaluation_set_v3.py's
``draw_spec``) from seeds :data:`RANK_SEED` and up (reserved here; no evaluation set, no training range, not
bench/choose_threshold.py's 1,100,000), each written with a HiRISE-style DTM at 4× the image's scale (what
``marsice sample --dtm`` writes). Each is run through detect's flow with every outline kept (``--all-candidates``,
default model, detect's default search and overlap), then through terrain (:func:`candidate_terrain`, the rows
``marsice terrain`` scores). Every outline is labelled by the renderer's truth (on ice: at least one ice pixel inside,
:func:`marsice_plugin.patches.metrics.touched`). The frozen evaluation sets and real held-out tiles are never read.

Figures: average precision (:func:`marsice_plugin.patches.metrics.average_precision`, every outline pooled over the
products, as ``marsice evaluate`` pools them) of ``rank`` with every term, with each term removed and with each term
alone, against ordering by ``probability`` alone, by area, by ``chunk_probability``, and the old combined value.

**The rule, fixed before the first measurement** (README, *Ranking*): backward elimination on that pooled average
precision. Start from every term. Find the term whose removal gives the highest average precision (the first in
``TERMS`` order on a tie); if that is at least the current average precision minus :data:`MIN_GAIN` (0.01), remove
the term and repeat; otherwise stop. Terms left are kept, with equal weights and the 0.2 floor as they are (nothing
is fitted). With no term left, ``rank`` stays ``probability``.

Usage::

    nice -n 10 .venv/bin/python bench/rank_terms.py --count 10 --cache /tmp/rank_terms -o rank_terms.json
    .venv/bin/python bench/rank_terms.py --records rank_terms.json   # the figures again, from saved records
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from marsice_plugin.patches.metrics import average_precision
from marsice_plugin.terrain.ranking import PLAUSIBILITY_FLOOR, TERMS, combined_rank_value, terrain_rank, terrain_score
from marsice_plugin.terrain.zonal import ZonalAttributes

RANK_SEED = 1_200_000  # reserved for this measurement (>= EVALUATION_SEED_BASE), clear of every evaluation set
MIN_GAIN = 0.01
#: the zonal attributes, in the order of :class:`ZonalAttributes`, as their ``terrain_*`` fields
ATTRIBUTES = (
    "mean_slope",
    "max_slope",
    "mean_aspect",
    "poleward_fraction",
    "shadow_fraction",
    "sunward_shade_fraction",
    "image_shadow_fraction",
    "elevation",
)


def measure(count: int, cache: Path) -> list[dict[str, Any]]:
    """One record per outlined candidate of the tuning products: truth, orderings and terrain attributes."""
    from bench.make_evaluation_set_v3 import draw_spec
    from marsice_plugin.cnn.model import load_model, model_input_size
    from marsice_plugin.detection import DetectOptions, detect_product
    from marsice_plugin.evaluation import entry_scene
    from marsice_plugin.model_registry import default_model_path, model_read_level, model_threshold
    from marsice_plugin.patches.metrics import touched, truth_patches
    from marsice_plugin.product import open_product
    from marsice_plugin.synthetic.product_writer import write_sample_product
    from marsice_plugin.terrain.candidates import candidate_terrain

    spec = draw_spec(RANK_SEED, count, "rank_terms_tuning", "choosing rank's terrain terms; never reported as a result")
    model_path = default_model_path()
    model = load_model(model_path)
    options = DetectOptions(
        model_path=model_path, threshold=model_threshold(None, model_path), overlap=None, all_candidates=True
    )
    options = replace(options, read_level=model_read_level(options, model_input_size(model)))
    records: list[dict[str, Any]] = []
    for i, entry in enumerate(spec["products"], start=1):
        t0 = time.perf_counter()
        config, geometry = entry_scene(spec, entry)
        sample = write_sample_product(cache / f"seed_{entry['seed']}", config, geometry, dtm_factor=4)
        with open_product(sample.label_path) as product:
            found = detect_product(product, model, options)
            labels, _ = truth_patches(sample.scene.ice, product.scale_m)
            hits = [bool(touched(product, labels, c.geometry)) for c in found.candidates]
        rows = found.rows["ice_candidates"]
        fields = candidate_terrain(sample.dtm_path, sample.label_path, rows)
        for (_, attrs), cand, hit, values in zip(rows, found.candidates, hits, fields, strict=True):
            scored = values is not None and values["terrain_note"] is None
            records.append(
                {
                    "product_id": sample.product_id,
                    "on_ice": hit,
                    "area_m2": cand.area_m2,
                    "probability": attrs["probability"],
                    "max_probability": attrs["max_probability"],
                    "chunk_probability": attrs["chunk_probability"],
                    "terrain": {a: values[f"terrain_{a}"] for a in ATTRIBUTES} if scored else None,
                }
            )
        on = sum(r["on_ice"] for r in records if r["product_id"] == sample.product_id)
        print(
            f"{i}/{count} {sample.product_id}: {len(rows)} outlines, {on} on ice, {time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
        )
    return records


def _attributes(terrain: dict[str, Any]) -> ZonalAttributes:
    return ZonalAttributes(**{a: math.nan if terrain[a] is None else float(terrain[a]) for a in ATTRIBUTES})


def rank_values(records: list[dict[str, Any]], terms: tuple[str, ...]) -> np.ndarray:
    """``rank`` as terrain writes it with ``terms`` kept: rows without terrain keep their probability."""
    out = []
    for r in records:
        p = r["probability"]
        out.append(p if r["terrain"] is None else terrain_rank(p, _attributes(r["terrain"]), terms))
    return np.asarray(out, float)


def old_values(records: list[dict[str, Any]]) -> np.ndarray:
    """The combined value before this change: the first stage's probability × plausibility of every term."""
    out = []
    for r in records:
        p = r["max_probability"]
        score = None if r["terrain"] is None else terrain_score(_attributes(r["terrain"]), tuple(TERMS))
        out.append(p if score is None else combined_rank_value(p, score))
    return np.asarray(out, float)


def apply_rule(records: list[dict[str, Any]], on_ice: np.ndarray) -> tuple[tuple[str, ...], list[str]]:
    """The rule of the module docstring: the terms kept, and a line per step."""
    kept = tuple(TERMS)
    steps = []
    while kept:
        current = average_precision(rank_values(records, kept), on_ice)
        without = {t: average_precision(rank_values(records, tuple(k for k in kept if k != t)), on_ice) for t in kept}
        best = max(kept, key=lambda t: (without[t], -kept.index(t)))
        drop = without[best] >= current - MIN_GAIN
        steps.append(
            f"terms {list(kept)}: AP {current:.4f}; without each: "
            + ", ".join(f"{t} {v:.4f}" for t, v in without.items())
            + (f" -> remove {best}" if drop else " -> stop: every removal costs >= 0.01")
        )
        if not drop:
            break
        kept = tuple(k for k in kept if k != best)
    return kept, steps


def report(records: list[dict[str, Any]], products: int) -> dict[str, Any]:
    on_ice = np.asarray([r["on_ice"] for r in records], bool)
    ap = {
        "probability": average_precision(np.asarray([r["probability"] for r in records]), on_ice),
        "area": average_precision(np.asarray([r["area_m2"] for r in records]), on_ice),
        "chunk_probability": average_precision(np.asarray([r["chunk_probability"] for r in records]), on_ice),
        "old_terrain_rank_value": average_precision(old_values(records), on_ice),
        "rank_all_terms": average_precision(rank_values(records, tuple(TERMS)), on_ice),
    }
    for t in TERMS:
        ap[f"rank_without_{t}"] = average_precision(rank_values(records, tuple(k for k in TERMS if k != t)), on_ice)
        ap[f"rank_only_{t}"] = average_precision(rank_values(records, (t,)), on_ice)
    kept, steps = apply_rule(records, on_ice)
    ap["rank_kept_terms"] = average_precision(rank_values(records, kept), on_ice)
    top20 = {}
    for name, values in (
        ("rank_kept_terms", rank_values(records, kept)),
        ("probability", np.asarray([r["probability"] for r in records])),
        ("area", np.asarray([r["area_m2"] for r in records])),
        ("old_terrain_rank_value", old_values(records)),
    ):
        top20[name] = int(on_ice[np.argsort(-values, kind="stable")[:20]].sum())
    return {
        "products": products,
        "products_with_outlines": len({r["product_id"] for r in records}),
        "outlines": len(records),
        "outlines_on_ice": int(on_ice.sum()),
        "outlines_with_terrain": sum(r["terrain"] is not None for r in records),
        "floor": PLAUSIBILITY_FLOOR,
        "min_gain": MIN_GAIN,
        "average_precision": ap,
        "on_ice_in_top_20": top20,
        "rule_steps": steps,
        "kept_terms": list(kept),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=10, help="tuning products (half with planted ice)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/marsice_rank_terms"), help="products go here")
    parser.add_argument("-o", "--output", type=Path, default=None, help="write the records and the report (JSON)")
    parser.add_argument("--records", type=Path, default=None, help="report from records saved by an earlier run")
    args = parser.parse_args()
    if args.records:
        saved = json.loads(args.records.read_text())
        records, products = saved["records"], saved["report"]["products"]
    else:
        records, products = measure(args.count, args.cache), args.count
    result = report(records, products)
    print(json.dumps(result, indent=1))
    if args.output:
        args.output.write_text(json.dumps({"report": result, "records": records}, indent=1))


if __name__ == "__main__":
    main()
