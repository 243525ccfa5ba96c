"""``marsice evaluate``: a model on the frozen evaluation set, beside the brightness baseline."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..progress import Reporter
from .arguments import overlap_arg


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score a model on the frozen evaluation set beside the brightness baseline",
        description="Without DATA: render the frozen, versioned evaluation set (generated products with known "
        "truth; never used for training) and report chunk-level accuracy, precision, recall, NPV and ROC-AUC, the "
        "baseline's ROC-AUC, the paper's image-level summary with image-level precision and NPV, chunks flagged "
        "without ice that hold hot pixels, and recall on patches cut by the paper's chunk grid. With DATA (folders "
        "0/ and 1/ of chunk images, or a labelled tile index from 'marsice tile'): the same chunk-level report on "
        "those chunks, and the image-level summary when the chunks come from a tile index.",
    )
    p.add_argument("model", type=Path, help="Keras model (.keras)")
    p.add_argument("data", type=Path, nargs="?", help="labelled chunks: folders 0/ and 1/, or a labelled tile index")
    p.add_argument("--label-field", default="label", help="label column of a tile index")
    p.add_argument(
        "--overlap",
        default="0",
        help="chunk overlap in pixels when scoring the evaluation set: 0 (default: the paper's tiling, so figures "
        "compare with the paper's) or 'auto' (what detect and scan use by default)",
    )
    p.add_argument(
        "--read-level",
        type=int,
        default=None,
        help="JPEG2000 resolution level to decode the evaluation set at (default: the model card's, as detect)",
    )
    p.add_argument(
        "--search",
        choices=("flagged", "all"),
        default="flagged",
        help="where candidates are outlined, as detect's --search (default: flagged chunks)",
    )
    p.add_argument(
        "--search-threshold",
        type=float,
        default=None,
        help="with flagged search, outline chunks from this CNN probability, as detect's (default: the threshold)",
    )
    p.add_argument(
        "--patch-model", type=Path, default=None, help="second-stage model (default: the shipped one, as detect)"
    )
    p.add_argument("--set", default="evaluation_set_v1", help="evaluation set name (default: evaluation_set_v1)")
    p.add_argument("--cache", type=Path, default=Path(".marsice-eval"), help="folder for the rendered products")
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="probability threshold to flag a chunk (default: the model card's, as detect; 0.6 for the paper's "
        "image-level summary)",
    )
    p.add_argument("--limit", type=int, default=None, help="use only the first N products (quick checks)")
    p.add_argument("-o", "--output", type=Path, default=None, help="write the report as JSON here")
    p.add_argument("--pr-curve", type=Path, default=None, help="write the precision-recall curves as PNG here")


def run(args: argparse.Namespace, reporter: Reporter) -> None:
    from ..evaluation import evaluate, evaluate_labelled, precision_recall_png

    if args.data is not None:
        report = evaluate_labelled(args.model, args.data, args.threshold, args.label_field, reporter)
    else:
        overlap = overlap_arg(args.overlap)
        report = evaluate(
            args.model,
            args.cache,
            args.set,
            args.threshold,
            args.limit,
            reporter,
            overlap=overlap,
            read_level=args.read_level,
            search=args.search,
            patch_model=args.patch_model,
            search_threshold=args.search_threshold,
        )
    outputs: dict[str, Any] = {}
    if args.pr_curve:
        outputs["PR_CURVE"] = str(precision_recall_png(report, args.pr_curve))
    public = {k: v for k, v in report.items() if not k.startswith("_")}
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(public, indent=1) + "\n")
        outputs["OUTPUT"] = str(args.output)
    c = report["chunks"]
    lines = [
        f"{report['model']} on {report['evaluation_set']} (threshold {report['threshold']:.2f})",
        f"chunks: n={c['n']} with ice={c['positives']} accuracy={c['accuracy']:.3f} precision={c['precision']:.3f} "
        f"recall={c['recall']:.3f} npv={c['npv']:.3f} roc_auc={c['roc_auc']:.3f} "
        f"(95% {_interval(c['roc_auc_ci95'])}, resampling {c['roc_auc_ci95_resamples']})",
        f"brightness baseline: roc_auc={report['baseline_roc_auc']:.3f}",
    ]
    if "images" in report:
        im = report["images"]
        lines.append(
            f"images: n={im['count']} with ice={im['with_ice']} none/one/several="
            f"{im['categories']['none']}/{im['categories']['one']}/{im['categories']['several']} "
            f"precision={im['precision']:.3f} ({im['flagged_with_ice']}/{im['flagged']}; 95% "
            f"{_interval(im['precision_ci95'])}) npv={im['npv']:.3f} ({im['called_ice_free_right']}/"
            f"{im['called_ice_free']}; 95% {_interval(im['npv_ci95'])})"
        )
    if "failure_modes" in report:
        f = report["failure_modes"]
        cut, whole = f["patches_cut_by_grid"], f["patches_inside_a_chunk"]
        lines.append(
            f"failure modes (overlap {report['overlap']}, read level {report['read_level']}): "
            f"{f['false_flags_with_hot_pixels']} ice-free chunks flagged holding hot pixels, "
            f"{f['false_flags_caused_by_hot_pixels']} of them unflagged without the hot pixels; "
            f"patch recall cut by the grid {cut['found']}/{cut['patches']}, "
            f"inside a chunk {whole['found']}/{whole['patches']}"
        )
    if "candidates" in report:
        c = report["candidates"]
        lines.append(
            f"candidate outlines: {c['candidates']}, {c['on_ice']} on planted ice; "
            f"{c['patches_outlined']} of {c['patches']} planted patches outlined"
        )
    if "second_stage" in report:
        s = report["second_stage"]
        ap = s["average_precision"]
        lines.append(
            f"second stage (threshold {s['threshold']:.2f}, search {s['search']}): {s['kept']} of {s['outlined']} "
            f"outlines kept, polygon precision {s['polygon_precision']:.3f} ({s['kept_on_ice']}/{s['kept']}; 95% "
            f"{_interval(s['polygon_precision_ci95'])}); planted patches >= {s['min_patch_m']:g} m found "
            f"{s['patches_found']}/{s['patches']} (recall {s['patch_recall']:.3f}, 95% "
            f"{_interval(s['patch_recall_ci95'])}; {s['patch_recall_before_second_stage']:.3f} before it); "
            f"average precision rank {ap['rank']:.3f}, area {ap['area']:.3f}, "
            f"chunk probability {ap['chunk_probability']:.3f}"
        )
    lines.append(report["paper_context"])
    outputs["report"] = public
    reporter.result(
        outputs if reporter.mode == "json" else {k: v for k, v in outputs.items() if k != "report"}, "\n".join(lines)
    )


def _interval(bounds: list[float]) -> str:
    """A 95 % interval as ``0.487-0.974`` (``n/a`` where the set cannot give one)."""
    lo, hi = bounds
    return "n/a" if lo != lo or hi != hi else f"{lo:.3f}-{hi:.3f}"
