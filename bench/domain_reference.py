"""The domain reference of each shipped model: its training input's statistics and the threshold of "in domain".

    .venv/bin/python bench/domain_reference.py                       # measure, print, write nothing
    .venv/bin/python bench/domain_reference.py --write-card          # ... and store it in each models/*.card.json
    .venv/bin/python bench/domain_reference.py models/mine.keras --chunks 200 --products 20

For each model card the five input statistics of :mod:`marsice_plugin.cnn.domain` are measured on generated
training chunks **of the card's kind**: 1024 px chunks rendered exactly as ``marsice train --synthetic`` renders them
(half with ice, the card's strip-edge band fraction), decoded at the card's JPEG2000 level and reduced to its input
size. Seeds start at :data:`REFERENCE_SEED`, away from every shipped model's training seeds (30,000-43,200) and below
the evaluation seeds. One scene is rendered per seed and read for every kind, so models of one kind share a reference.

* the first half of the chunks gives the reference percentiles (0.5th, 50th, 99.5th);
* the second half gives held-aside chunk distances;
* ``--products`` generated training-like products (2048 px, the evaluation sets' 8 % skewed no-data margin, scene
  settings drawn like the training chunks', seeds from :data:`PRODUCT_SEED`) are read as ``detect`` reads them (the
  card's level, chunk 1024, the default overlap) and give product distances.

The threshold is fixed by a rule written before the first run: the smallest multiple of 0.1 at or above both the
99.5th percentile of the held-aside chunk distances (a product of one chunk) and the 99th percentile of the product
distances, so at least 99 % of generated training-like products are inside. The card records the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from marsice_plugin.cnn.domain import STATISTICS, input_statistics, reference_from  # noqa: E402
from marsice_plugin.model_registry import MODELS_DIR, card_path  # noqa: E402

REFERENCE_SEED = 700_000
PRODUCT_SEED = 800_000
SHIPPED = (
    "demo_xception_256.keras",
    "marsice_xception_256.keras",
    "marsice_xception_512_level1.keras",
    "marsice_xception_256_level2.keras",
    "marsice_ensemble_512_level1.keras",
)


def model_kind(model: Path) -> tuple[int, int, float]:
    """(input size, read level, strip-edge band fraction) of the chunks a model was trained on, from its card."""
    card = json.loads(card_path(model).read_text())
    training = card.get("training", {})
    size = int(card.get("input_size") or training.get("input_size") or 256)
    edge = float(training.get("data", {}).get("edge_nodata", 0.0))
    for member in card.get("ensemble", {}).get("members", []):  # an ensemble sees what its members were trained on
        edge = max(edge, model_kind(model.parent / member["model"])[2])
    return size, int(card.get("read_level", 0)), edge


def _chunk_stats(args: tuple[int, list[tuple[int, int, float]]]) -> dict[tuple[int, int, float], np.ndarray]:
    """One training chunk rendered once, read as every kind: {kind: statistics}."""
    from marsice_plugin.cnn.preprocess import prepare
    from marsice_plugin.cnn.training_data import SPECIAL_DNS, chunk_config, decode_level, edge_band
    from marsice_plugin.synthetic.scene import render

    seed, kinds = args
    scene = render(chunk_config(seed, 1024, seed % 2 == 0))
    out = {}
    for size, level, edge in kinds:
        dn = scene.dn
        edge_rng = np.random.default_rng((seed, 1))  # as training_data.render_chunk draws the band
        if edge > 0 and edge_rng.random() < edge:
            dn = np.where(edge_band(edge_rng, 1024), 0, dn).astype(dn.dtype)
        if level:
            dn = decode_level(dn, level)
        special = np.isin(dn, SPECIAL_DNS)
        x, _ = prepare(dn.astype(np.float32), ~special, dn == 0, dn.shape[0], size, 1023.0)
        out[(size, level, edge)] = input_statistics(x)
    return out


def _product_stats(args: tuple[int, list[tuple[int, int, float]]]) -> dict[tuple[int, int, float], np.ndarray]:
    """One generated training-like product read as ``detect`` reads it for every kind: {kind: chunk statistics}."""
    from dataclasses import replace

    from marsice_plugin.chunk_reader import ChunkReader
    from marsice_plugin.cnn.preprocess import model_input
    from marsice_plugin.cnn.training_data import random_chunk_config
    from marsice_plugin.product import open_product
    from marsice_plugin.synthetic.product_writer import write_sample_product

    seed, kinds = args
    rng = np.random.default_rng(seed)
    config = replace(random_chunk_config(rng, seed, 2048, bool(seed % 2 == 0)), nodata_margin=0.08)
    out = {}
    with tempfile.TemporaryDirectory(prefix="marsice-domain-") as tmp:
        sample = write_sample_product(tmp, config)
        with open_product(sample.label_path) as product:
            for size, level, edge in kinds:
                reader = ChunkReader(product, 1024, None, scale=1.0 / 2**level)
                stats = [
                    input_statistics(model_input(c.data, c.valid, c.nominal_size, size, product.valid_max))
                    for c in reader
                    if not c.skipped
                ]
                out[(size, level, edge)] = np.array(stats)
    return out


def measure(kinds: list[tuple[int, int, float]], chunks: int, products: int, workers: int) -> dict:
    """Statistics of ``chunks`` training chunks and ``products`` products for every kind."""
    with ProcessPoolExecutor(workers) as pool:
        chunk_rows = list(pool.map(_chunk_stats, [(REFERENCE_SEED + i, kinds) for i in range(chunks)], chunksize=4))
        product_rows = list(pool.map(_product_stats, [(PRODUCT_SEED + i, kinds) for i in range(products)]))
    return {
        kind: (np.array([r[kind] for r in chunk_rows]), [r[kind] for r in product_rows if len(r[kind])])
        for kind in kinds
    }


def reference_entry(chunk_stats: np.ndarray, product_stats: list[np.ndarray], kind: tuple[int, int, float]) -> dict:
    """The card's ``domain_reference``: the reference, the threshold by the rule, and the figures behind it."""
    half = len(chunk_stats) // 2
    reference = reference_from(chunk_stats[:half])
    aside = reference.chunk_distances(chunk_stats[half:]).max(axis=1)
    per_product = np.array([float(np.median(reference.chunk_distances(s).max(axis=1))) for s in product_stats])
    needed = max(float(np.percentile(aside, 99.5)), float(np.percentile(per_product, 99.0)))
    threshold = math.ceil(needed * 10 - 1e-9) / 10
    reference = reference_from(chunk_stats[:half], threshold)
    size, level, edge = kind
    return reference.to_card(
        how=(
            "bench/domain_reference.py: percentiles of the model-input statistics of generated training chunks of the "
            "card's kind; threshold = smallest multiple of 0.1 at or above the 99.5th percentile of held-aside chunk "
            "distances and the 99th percentile of generated product distances (rule fixed before the first run)"
        ),
        kind={"chunk_px": 1024, "input_size": size, "read_level": level, "edge_nodata": edge},
        reference_chunks={"count": half, "first_seed": REFERENCE_SEED},
        held_aside_chunks={
            "count": len(aside),
            "inside": int((aside <= threshold).sum()),
            "distance_p50": round(float(np.median(aside)), 3),
            "distance_p99_5": round(float(np.percentile(aside, 99.5)), 3),
        },
        generated_products={
            "count": len(per_product),
            "first_seed": PRODUCT_SEED,
            "inside": int((per_product <= threshold).sum()),
            "distance_p50": round(float(np.median(per_product)), 3),
            "distance_max": round(float(per_product.max()), 3),
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="*", type=Path, help="models with cards (default: the shipped ones)")
    parser.add_argument("--chunks", type=int, default=400, help="training chunks rendered (half reference, half aside)")
    parser.add_argument("--products", type=int, default=40, help="generated training-like products read")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--write-card", action="store_true", help="store domain_reference in each model's card")
    args = parser.parse_args()
    models = args.models or [MODELS_DIR / name for name in SHIPPED]
    kinds = {model: model_kind(model) for model in models}
    measured = measure(sorted(set(kinds.values())), args.chunks, args.products, args.workers)
    entries = {kind: reference_entry(*measured[kind], kind) for kind in measured}
    for model, kind in kinds.items():
        entry = entries[kind]
        chunks, products = entry["held_aside_chunks"], entry["generated_products"]
        print(
            f"{model.name}: kind {kind}, threshold {entry['threshold']:.1f}; held-aside chunks inside "
            f"{chunks['inside']}/{chunks['count']} (p99.5 {chunks['distance_p99_5']}); generated products inside "
            f"{products['inside']}/{products['count']} (median {products['distance_p50']}, "
            f"max {products['distance_max']})"
        )
        print("  " + ", ".join(f"{n} {entry['statistics'][n]['median']:.4f}" for n in STATISTICS))
        if args.write_card:
            path = card_path(model)
            card = json.loads(path.read_text())
            card["domain_reference"] = entry
            path.write_text(json.dumps(card, indent=1))


if __name__ == "__main__":
    main()
