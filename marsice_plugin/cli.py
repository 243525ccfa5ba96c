"""The ``marsice`` command line: a thin layer over the library (like rasterio's ``rio``).

Every sub-command maps its options to one library call. Errors derived from
:class:`~marsice_plugin.errors.MarsIceError` end the command with one clear line on stderr and a
non-zero exit code (``--debug`` shows the traceback); with ``--progress json`` progress, logs,
results and errors are JSON lines on stdout (see :mod:`marsice_plugin.progress`), which is how the
QGIS algorithms drive this CLI in a child process. SIGTERM cancels cleanly: outputs are written
atomically, so a cancelled command leaves nothing half-written.
"""

from __future__ import annotations

import argparse
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from . import __version__
from .errors import CancelledError, MarsIceError
from .progress import Reporter

PLANNED = """\
planned sub-commands (not in this release yet):
  search     find HiRISE RDR products by latitude band and solar longitude (ODE / bundled catalogue)
  download   fetch products with a size-limited cache and resume
  tile       export georeferenced chunks and a tile index for labelling in QGIS
  evaluate   score a model on the frozen evaluation set beside the brightness baseline
  terrain    DTM slope/aspect/shadow aligned to an image, terrain-aware candidate ranking
  sites      group candidates into sites over time (repeat coverage)
  export     site lists as CSV/KML/GeoJSON for follow-up
  scan       scan the archive on Dask, from a laptop to a cluster
"""


def _add_detect(sub: Any) -> None:
    p = sub.add_parser(
        "detect",
        help="score a product's chunks with the CNN and write a GeoPackage",
        description="Cut a product into georeferenced chunks, score each with the CNN, and write the "
        "'chunks' layer (footprints in the common Mars CRS IAU_2015:49900 with probabilities).",
    )
    p.add_argument("product", type=Path, help="HiRISE PDS3 label (.LBL beside its .JP2) or a GDAL raster in a Mars CRS")
    p.add_argument("-o", "--output", type=Path, required=True, help="output GeoPackage (.gpkg)")
    p.add_argument("--model", type=Path, default=None, help="Keras model (.keras); default: the shipped demo model")
    p.add_argument("--threshold", type=float, default=0.6, help="probability threshold (paper: 0.6)")
    p.add_argument("--chunk-size", type=int, default=1024, help="chunk size in pixels (paper: 1024)")
    p.add_argument("--overlap", type=int, default=0, help="overlap between neighbouring chunks in pixels")
    p.add_argument("--batch-size", type=int, default=16, help="chunks per CNN batch")
    p.add_argument("--quicklook", type=Path, default=None, help="also write a quick-look PNG here")


def _add_sample(sub: Any) -> None:
    p = sub.add_parser(
        "sample",
        help="write a generated HiRISE-like RED RDR (JP2 + PDS3 label + truth GeoPackage)",
        description="Render a scene with known truth and write it as a HiRISE RED RDR product.",
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--width", type=int, default=3072)
    p.add_argument("--height", type=int, default=2048)
    p.add_argument("--scale", type=float, default=0.5, help="map scale (m/pixel)")
    p.add_argument("--lat", type=float, default=-50.2, help="image centre latitude (planetocentric)")
    p.add_argument("--lon", type=float, default=31.4, help="image centre longitude (east, 0-360)")
    p.add_argument("--ls", type=float, default=172.0, help="solar longitude (degrees)")
    p.add_argument("--sun-azimuth", type=float, default=297.0, help="sun azimuth from north (degrees)")
    p.add_argument("--incidence", type=float, default=68.0, help="solar incidence angle (degrees)")
    p.add_argument("--ice", type=int, default=8, help="ice patches beside boulders")


def _add_train(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train the CNN on generated chunks and save a .keras model with its records",
        description="Train the paper's small Xception. Writes MODEL.keras, MODEL.history.json, "
        "MODEL.curves.png and MODEL.card.json.",
    )
    p.add_argument("--synthetic", type=int, required=True, metavar="N", help="number of generated training chunks")
    p.add_argument("-o", "--output", type=Path, required=True, help="output model (.keras)")
    p.add_argument("--input-size", type=int, default=256, help="model input size (1024 = full resolution)")
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--batch-size", type=int, default=25)
    p.add_argument("--validation-split", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0, help="model seed")
    p.add_argument("--data-seed", type=int, default=1000, help="first scene seed of the training chunks")


def _add_demo(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="generate a sample product, detect ice on it, write GeoPackage + quick-look",
        description="The whole pipeline on a bundled generated sample product.",
    )
    p.add_argument("-o", "--output", type=Path, default=Path("demo_output"), help="output folder")
    p.add_argument("--seed", type=int, default=7, help="scene seed of the sample product")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="marsice",
        description="Find remnant seasonal water-ice patches in HiRISE images of Mars.",
        epilog=PLANNED,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"marsice {__version__}")
    parser.add_argument(
        "--progress",
        choices=("text", "json", "quiet"),
        default="text",
        help="progress on stderr (text), as JSON lines on stdout (json, used by QGIS), or none",
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_demo(sub)
    _add_detect(sub)
    _add_sample(sub)
    _add_train(sub)
    return parser


def cmd_detect(args: argparse.Namespace, reporter: Reporter) -> None:
    from .pipeline import DetectOptions, detect

    options = DetectOptions(
        model_path=args.model,
        threshold=args.threshold,
        chunk_size=args.chunk_size,
        overlap=args.overlap,
        batch_size=args.batch_size,
    )
    result = detect(args.product, args.output, options, reporter, quicklook=args.quicklook)
    outputs = {
        "OUTPUT": str(result.output),
        "chunks": len(result.chunks),
        "above": len(result.above),
        "category": result.category,
    }
    if result.quicklook:
        outputs["QUICKLOOK"] = str(result.quicklook)
    reporter.result(outputs, result.summary())


def _sample(args: argparse.Namespace) -> Any:
    from .synthetic.product_writer import ProductGeometry, write_sample_product
    from .synthetic.scene import SceneConfig

    config = SceneConfig(
        width=args.width,
        height=args.height,
        scale_m=args.scale,
        sun_azimuth=args.sun_azimuth,
        incidence=args.incidence,
        seed=args.seed,
        n_ice_boulder=args.ice,
    )
    geometry = ProductGeometry(center_latitude=args.lat, center_longitude=args.lon, solar_longitude=args.ls)
    return write_sample_product(args.output, config, geometry)


def cmd_sample(args: argparse.Namespace, reporter: Reporter) -> None:
    reporter.progress(0, "rendering scene")
    sample = _sample(args)
    reporter.progress(100, "written")
    reporter.result(
        {"LABEL": str(sample.label_path), "IMAGE": str(sample.image_path), "TRUTH": str(sample.truth_path)},
        f"sample product {sample.product_id}: {int(sample.scene.ice.sum())} ice pixels planted",
    )


def cmd_train(args: argparse.Namespace, reporter: Reporter) -> None:
    from .cnn.train import TrainingConfig, train
    from .cnn.training_data import synthetic_chunks

    reporter.progress(0, f"rendering {args.synthetic} training chunks")
    x, y = synthetic_chunks(args.synthetic, seed=args.data_seed, input_size=args.input_size)
    config = TrainingConfig(
        input_size=args.input_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        validation_split=args.validation_split,
        seed=args.seed,
        data={"source": "marsice synthetic chunks", "chunks": args.synthetic, "first_seed": args.data_seed},
    )

    def on_epoch(epoch: int, logs: dict) -> None:
        shown = ", ".join(f"{k} {v:.3f}" for k, v in logs.items())
        reporter.progress(20 + 80 * (epoch + 1) / args.epochs, f"epoch {epoch + 1}/{args.epochs}: {shown}")

    history = train(x, y, config, args.output, on_epoch=on_epoch)
    reporter.result(
        {"MODEL": str(args.output)},
        f"trained {args.output.name}: final " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in history.items()),
    )


def cmd_demo(args: argparse.Namespace, reporter: Reporter) -> None:
    from .pipeline import DetectOptions, detect
    from .truth import chunk_truth

    out: Path = args.output
    reporter.log(f"writing a generated HiRISE-like RED product to {out}/")
    sample_args = build_parser().parse_args(["sample", "-o", str(out), "--seed", str(args.seed)])
    sample = _sample(sample_args)
    gpkg = out / f"{sample.product_id}_chunks.gpkg"
    png = out / f"{sample.product_id}_quicklook.png"
    result = detect(sample.label_path, gpkg, DetectOptions(), reporter, quicklook=png)
    truth = chunk_truth(sample.scene.ice, result.chunks)
    hits = sum(1 for c in result.above if truth.get((c.chunk_row, c.chunk_col)))
    reporter.result(
        {"LABEL": str(sample.label_path), "OUTPUT": str(gpkg), "QUICKLOOK": str(png)},
        result.summary() + f"; truth: {sum(truth.values())} chunks hold planted ice, {hits} of the flagged chunks do",
    )


COMMANDS = {"detect": cmd_detect, "sample": cmd_sample, "train": cmd_train, "demo": cmd_demo}


def _terminate(signum: int, frame: Any) -> None:
    raise CancelledError("cancelled (signal received); no output was written")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    reporter = Reporter(args.progress)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        COMMANDS[args.command](args, reporter)
    except MarsIceError as exc:
        if args.debug:
            traceback.print_exc()
        reporter.error(exc, exc.exit_code)
        return exc.exit_code
    except KeyboardInterrupt:
        exc = CancelledError("cancelled by the user; no output was written")
        reporter.error(exc, exc.exit_code)
        return exc.exit_code
    except ValueError as exc:
        if args.debug:
            traceback.print_exc()
        reporter.error(exc, 2)
        return 2
    except Exception as exc:  # noqa: BLE001 - last resort: one clear line instead of a traceback
        if args.debug:
            traceback.print_exc()
        wrapped = MarsIceError(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug and report it)")
        reporter.error(wrapped, 1)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
