"""``marsice detect``: score a product's chunks, outline candidates, write the results GeoPackage."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..progress import Reporter
from .arguments import add_model_args, chosen_model, overlap_arg


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "detect",
        help="score a product's chunks with the CNN and write a GeoPackage",
        description="Cut a product into georeferenced chunks, score each with the CNN, outline bright patches "
        "in the chunks at or above the threshold, and write the layers 'chunks', 'ice_candidates' and "
        "'products' (common Mars CRS IAU_2015:49900), and the stitched probability GeoTIFF beside the GeoPackage. "
        "Writing into an existing file adds this product or replaces its earlier rows (and its raster).",
    )
    p.add_argument("product", type=Path, help="HiRISE PDS3 label (.LBL beside its .JP2) or a GDAL raster in a Mars CRS")
    p.add_argument("-o", "--output", type=Path, required=True, help="output GeoPackage (.gpkg)")
    add_model_args(p)
    p.add_argument("--chunk-size", type=int, default=1024, help="chunk size in pixels (paper: 1024)")
    p.add_argument(
        "--overlap",
        default="auto",
        help="overlap between neighbouring chunks in pixels, or 'auto' (default: keeps patches up to 32 m whole in "
        "a chunk, so none is cut in half at a chunk edge); 0 is the paper's tiling",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="chunks per CNN batch (default: 1 for 512-px models, 4 for 256-px ones; memory grows with it, speed on "
        "CPUs does not)",
    )
    p.add_argument(
        "--precision",
        choices=("float32", "mixed_float16", "mixed_bfloat16"),
        default="float32",
        help="CNN compute precision: mixed_float16 speeds up GPUs; bench/inference.py reports agreement",
    )
    p.add_argument(
        "--read-level",
        type=int,
        default=None,
        help="JPEG2000 resolution level to decode: 0 every pixel, 1 half resolution (a quarter of the pixels), "
        "2 a quarter; default: the level the model was trained at (its card's read_level, else 0)",
    )
    p.add_argument(
        "--all-candidates",
        action="store_true",
        help="keep every outlined bright patch in 'ice_candidates', also those under the second stage's threshold "
        "(their 'probability' says how likely each is ice)",
    )
    p.add_argument(
        "--search",
        choices=("flagged", "all"),
        default="flagged",
        help="where bright patches are outlined at full resolution: in the chunks the CNN flags (default) or in "
        "every chunk (finds small patches the chunk CNN misses; costs a full-resolution decode)",
    )
    p.add_argument(
        "--search-threshold",
        type=float,
        default=None,
        help="with flagged search, outline the chunks whose CNN probability reaches this (default: the threshold); "
        "lower finds more small patches and more false ones; a chunk under the threshold is never flagged",
    )
    p.add_argument(
        "--sun-azimuth",
        type=float,
        default=None,
        metavar="DEG",
        help="the sun's azimuth clockwise from north, for a raster that does not give it (no PDS3 label, no "
        "SUN_AZIMUTH_FROM_NORTH metadata, e.g. a GeoTIFF export of an RDR): the second stage turns each crop so the "
        "sun is at the top; given, it overrides the product's (logged). Without it such a raster takes its "
        "observation's from the bundled catalogue when named by its product id, else HiRISE's typical sun at its "
        "latitude (a warning says so)",
    )
    p.add_argument(
        "--patch-model",
        type=Path,
        default=None,
        help="second-stage model (.keras with its .card.json; default: the shipped models/marsice_patch_64.keras)",
    )
    p.add_argument("--quicklook", type=Path, default=None, help="also write a quick-look PNG here")
    raster = p.add_mutually_exclusive_group()
    raster.add_argument(
        "--probability-raster",
        type=Path,
        default=None,
        help="where to write the stitched probability GeoTIFF (styled by a .qml beside it); default: beside the "
        "GeoPackage as <output stem>_<PRODUCT_ID>_probability.tif, one per product",
    )
    raster.add_argument(
        "--no-probability-raster", action="store_true", help="write no probability GeoTIFF (only the GeoPackage)"
    )


def run(args: argparse.Namespace, reporter: Reporter) -> None:
    from ..detection import DetectOptions
    from ..pipeline import BESIDE_OUTPUT, detect
    from ..styles import write_raster_style

    options = DetectOptions(
        model_path=chosen_model(args),
        threshold=args.threshold,
        chunk_size=args.chunk_size,
        overlap=overlap_arg(args.overlap, args.chunk_size),
        batch_size=args.batch_size,
        precision=args.precision,
        read_level=args.read_level,
        patch_model_path=args.patch_model,
        all_candidates=args.all_candidates,
        search=args.search,
        search_threshold=args.search_threshold,
        sun_azimuth=args.sun_azimuth,
    )
    result = detect(
        args.product,
        args.output,
        options,
        reporter,
        quicklook=args.quicklook,
        probability_raster=None if args.no_probability_raster else args.probability_raster or BESIDE_OUTPUT,
    )
    outputs = {
        "OUTPUT": str(result.output),
        "chunks": len(result.chunks),
        "above": len(result.above),
        "category": result.category,
        "candidates": len(result.candidates),
    }
    if result.quicklook:
        outputs["QUICKLOOK"] = str(result.quicklook)
    if result.probability_raster:
        outputs["PROBABILITY"] = str(result.probability_raster)
        write_raster_style(result.probability_raster, result.threshold)  # QGIS's default style: the run's ramp
    reporter.result(outputs, result.summary())
