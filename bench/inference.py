"""CNN inference throughput: the bare model beside the detection pipeline, same model, same run.

Not a test: it times things and takes a few minutes. It prints

* the bare model's rate on random batches already in memory (``predict_on_batch``, the compiled
  ``tf.function``): the ceiling of any pipeline;
* the pipeline's rate on a generated product (decode → repair → reduce → model) in its serial form
  and overlapped (:mod:`marsice_plugin.cnn.inference`: feeder thread + bounded queue), with the ratio
  to the bare model (target ≥ 0.8);
* one end-to-end ``detect`` of the product at the level the model's card names (stitching,
  candidates, GeoPackage included) in megapixels/s and chunks/s, and the peak RSS of the process;
* the second stage's own cost inside it (level-0 crops and the patch CNN on every outline,
  :mod:`marsice_plugin.patches`) and its share of detect's time (target < 20 %);
* with ``--read-levels 1 2``: the overlapped rate when the reader decodes that JPEG2000 resolution
  level instead of every pixel (:func:`marsice_plugin.model_registry.read_scale`), its ratio to the bare
  model and its agreement with level 0 on the product's chunks;
* with ``--precision mixed_float16`` (a GPU) or ``mixed_bfloat16`` (CPUs with AVX-512 BF16): the
  bare and overlapped rates in that precision and its agreement with float32 on the product's chunks
  (largest probability difference, thresholded decisions that agree);
* the thread settings (TensorFlow's intra/inter-op threads, CPUs visible), since on 2 cores every
  stage competes for the same cores.

Usage::

    .venv/bin/python bench/inference.py [--model models/X.keras] [--size 4096] [--batch 8] [--repeat 2]
        [--read-levels 2] [--precision mixed_bfloat16] [--overlap auto|0]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    from marsice_plugin.cnn.model import keras_module, load_model, model_input_size, with_precision
    from marsice_plugin.commands.arguments import overlap_arg
    from marsice_plugin.detect_defaults import batch_size_for
    from marsice_plugin.detection import DetectOptions, score_chunks
    from marsice_plugin.model_registry import card_read_level, default_model_path
    from marsice_plugin.pipeline import detect
    from marsice_plugin.product import open_product
    from marsice_plugin.progress import Reporter
    from marsice_plugin.synthetic.product_writer import ProductGeometry, write_sample_product
    from marsice_plugin.synthetic.scene import SceneConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--size", type=int, default=4096, help="side of the generated product (px)")
    ap.add_argument("--batch", type=int, default=None, help="chunks per batch (default: detect's, by input size)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--precision", nargs="*", default=[], choices=("mixed_float16", "mixed_bfloat16"))
    ap.add_argument("--read-levels", nargs="*", type=int, default=[], help="JPEG2000 levels to time beside level 0")
    ap.add_argument("--threshold", type=float, default=0.6, help="decision threshold for the agreement figures")
    ap.add_argument("--overlap", default="auto", help="chunk overlap as 'marsice detect --overlap' takes it")
    ap.add_argument(
        "--patch-model",
        type=Path,
        nargs="*",
        default=[],
        help="other second stages to time on the same crops beside the shipped one (e.g. a baseline)",
    )
    args = ap.parse_args()

    keras_module()
    import tensorflow as tf

    model_path = args.model or default_model_path()
    model = load_model(model_path)
    size = model_input_size(model)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="marsice-bench-inference-"))
    print(
        f"model {model_path.name}: input {size}x{size}, {model.count_params():,} parameters, trained on chunks read at "
        f"JPEG2000 level {card_read_level(model_path)} (the pipeline rows read level 0; '--read-levels' adds others; "
        "agreement with level 0 only means something for a model trained at level 0)"
    )
    print(
        f"cpus visible {os.cpu_count()}, TF intra-op {tf.config.threading.get_intra_op_parallelism_threads()} "
        f"inter-op {tf.config.threading.get_inter_op_parallelism_threads()} (0 = TF's default: all cores)"
    )
    t0 = time.perf_counter()
    sample = write_sample_product(
        work,
        SceneConfig(width=args.size, height=args.size, seed=11, nodata_margin=0.0, n_ice_boulder=12),
        ProductGeometry(center_latitude=-50.0, center_longitude=31.0, solar_longitude=170.0),
    )
    print(f"generated {args.size}x{args.size} product in {time.perf_counter() - t0:.1f} s: {sample.label_path}")

    args.batch = batch_size_for(size, args.batch)
    print(f"batch size {args.batch}")
    x = np.random.default_rng(0).random((args.batch, size, size, 1)).astype(np.float32)
    model.predict_on_batch(x)  # trace once
    n_batches = max(4, 64 // args.batch)
    rows = []
    overlap = overlap_arg(args.overlap)
    options = DetectOptions(batch_size=args.batch, overlap=overlap)
    for rep in range(args.repeat):
        t = time.perf_counter()
        for _ in range(n_batches):
            model.predict_on_batch(x)
        bare = n_batches * args.batch / (time.perf_counter() - t)
        rates = {}
        for overlapped in (False, True):
            with open_product(sample.label_path) as product:
                t = time.perf_counter()
                scores = score_chunks(product, model, options, Reporter("quiet"), overlapped=overlapped)
                dt = time.perf_counter() - t
            scored = sum(1 for s in scores if not s.skipped)
            rates[overlapped] = (scored / dt, args.size**2 / dt / 1e6)
            reference = scores
        rows.append((bare, rates[False], rates[True]))
        print(
            f"run {rep + 1}: bare model {bare:6.1f} chunks/s | pipeline serial {rates[False][0]:6.1f} chunks/s "
            f"({rates[False][0] / bare:.2f}x, {rates[False][1]:.1f} Mpx/s) | overlapped {rates[True][0]:6.1f} "
            f"chunks/s ({rates[True][0] / bare:.2f}x, {rates[True][1]:.1f} Mpx/s)"
        )
    best = max(rows, key=lambda r: r[2][0])
    print(f"best overlapped/bare ratio {best[2][0] / best[0]:.2f} (target >= 0.80)")

    p32 = np.array([s.probability for s in reference if not s.skipped])
    for level in args.read_levels:
        level_options = DetectOptions(batch_size=args.batch, read_level=level, overlap=overlap)
        best_rate, scores = 0.0, []
        for _ in range(args.repeat):
            with open_product(sample.label_path) as product:
                t = time.perf_counter()
                scores = score_chunks(product, model, level_options, Reporter("quiet"))
                best_rate = max(best_rate, sum(1 for s in scores if not s.skipped) / (time.perf_counter() - t))
        t = time.perf_counter()
        for _ in range(n_batches):
            model.predict_on_batch(x)
        bare = n_batches * args.batch / (time.perf_counter() - t)
        pl = np.array([s.probability for s in scores if not s.skipped])
        agree = int(((pl >= args.threshold) == (p32 >= args.threshold)).sum()) if len(pl) == len(p32) else -1
        print(
            f"read level {level}: overlapped {best_rate:6.1f} chunks/s ({best_rate / bare:.2f}x the bare model's "
            f"{bare:.1f}, {best_rate * options.chunk_size**2 / 1e6:.1f} Mpx/s of product) | vs level 0: max |dp| "
            f"{np.abs(pl - p32).max():.2e}, decisions at {args.threshold} agree on {agree}/{len(pl)} chunks"
        )
    for precision in args.precision:
        mixed = with_precision(model, precision)
        mixed.predict_on_batch(x)  # trace once
        t = time.perf_counter()
        for _ in range(n_batches):
            mixed.predict_on_batch(x)
        bare = n_batches * args.batch / (time.perf_counter() - t)
        with open_product(sample.label_path) as product:
            t = time.perf_counter()
            scores = score_chunks(product, mixed, options, Reporter("quiet"))
            dt = time.perf_counter() - t
        p16 = np.array([s.probability for s in scores if not s.skipped])
        agree = int(((p16 >= args.threshold) == (p32 >= args.threshold)).sum())
        print(
            f"{precision}: bare model {bare:6.1f} chunks/s | overlapped {len(p16) / dt:6.1f} chunks/s | "
            f"vs float32: max |dp| {np.abs(p16 - p32).max():.2e}, decisions at {args.threshold} agree on "
            f"{agree}/{len(p16)} chunks"
        )

    t = time.perf_counter()
    end_to_end = DetectOptions(batch_size=args.batch, model_path=model_path, overlap=overlap)
    result = detect(sample.label_path, work / "bench.gpkg", end_to_end)
    dt = time.perf_counter() - t
    print(
        f"end-to-end detect (model load, chunks, stitching, candidates, GeoPackage): {dt:.1f} s, "
        f"{args.size**2 / dt / 1e6:.2f} Mpx/s, {len(result.scored) / dt:.1f} chunks/s, "
        f"{len(result.scored)} chunks, {len(result.candidates)} candidates"
    )
    second_stage(sample.label_path, work, end_to_end, dt, [None, *args.patch_model])
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


def second_stage(
    label: Path, work: Path, options: object, detect_s: float, patch_models: list[Path | None] = (None,)
) -> None:
    """The second stage's own cost (level-0 crops + patch CNN on every outline) beside detect's end-to-end time.

    Each of ``patch_models`` (None: the shipped one) scores the very same crops, after one warm-up call, so a
    baseline's cost is measured in the same run on the same outlines.
    """
    from dataclasses import replace

    from marsice_plugin.detection import load_stage
    from marsice_plugin.patches.model import predict_crops
    from marsice_plugin.patches.stage import product_crops
    from marsice_plugin.pipeline import detect
    from marsice_plugin.product import open_product

    every = detect(label, work / "bench_all.gpkg", replace(options, all_candidates=True))
    with open_product(label) as product:
        t = time.perf_counter()
        crops = product_crops(product, every.candidates)
        crop_s = time.perf_counter() - t
    for path in patch_models:
        stage = load_stage(path)
        predict_crops(stage.model, crops[:1])  # warm-up: graph tracing is not the stage's per-product cost
        t = time.perf_counter()
        p = predict_crops(stage.model, crops)
        cnn_s = time.perf_counter() - t
        total = crop_s + cnn_s
        print(
            f"second stage ({path or stage.name}): {total:.2f} s for {len(every.candidates)} outlines (level-0 "
            f"crops {crop_s:.2f} s, patch CNN {cnn_s:.2f} s) = {100 * total / detect_s:.1f} % of detect's "
            f"{detect_s:.1f} s; {every.outlined} outlined, {int((p >= stage.threshold).sum())} kept at "
            f"{stage.threshold:.2f}"
        )


if __name__ == "__main__":
    sys.exit(main())
