"""``marsice demo``: the whole pipeline on a generated sample product."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..progress import Reporter
from .sample import add_parser as add_sample_parser
from .sample import write_sample


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="generate a sample product, detect ice on it, write GeoPackage + probability raster + quick-look",
        description="The whole pipeline on a bundled generated sample product.",
    )
    p.add_argument("-o", "--output", type=Path, default=Path("demo_output"), help="output folder")
    p.add_argument("--seed", type=int, default=7, help="scene seed of the sample product")


def run(args: argparse.Namespace, reporter: Reporter) -> None:
    from ..detection import DetectOptions
    from ..patches.metrics import touched, truth_patches
    from ..pipeline import detect
    from ..product import open_product
    from ..styles import write_raster_style
    from ..truth import chunk_truth

    out: Path = args.output
    reporter.log(f"writing a generated HiRISE-like RED product to {out}/")
    sample_args = argparse.ArgumentParser()
    add_sample_parser(sample_args.add_subparsers())
    sample = write_sample(sample_args.parse_args(["sample", "-o", str(out), "--seed", str(args.seed)]))
    gpkg = out / f"{sample.product_id}_chunks.gpkg"
    png = out / f"{sample.product_id}_quicklook.png"
    raster = out / f"{sample.product_id}_probability.tif"  # one product per folder: its id alone names it
    result = detect(sample.label_path, gpkg, DetectOptions(), reporter, quicklook=png, probability_raster=raster)
    write_raster_style(raster, result.threshold)
    truth = chunk_truth(sample.scene.ice, result.chunks)
    hits = sum(1 for c in result.above if truth.get((c.chunk_row, c.chunk_col)))
    with open_product(sample.label_path) as product:
        labels, _ = truth_patches(sample.scene.ice, product.scale_m)
        on_ice = sum(1 for c in result.candidates if touched(product, labels, c.geometry))
    reporter.result(
        {"LABEL": str(sample.label_path), "OUTPUT": str(gpkg), "QUICKLOOK": str(png), "PROBABILITY": str(raster)},
        result.summary() + f"; truth: {sum(truth.values())} chunks hold planted ice, {hits} of the flagged chunks do; "
        f"{on_ice} of the {len(result.candidates)} ice candidates lie on planted ice",
    )
