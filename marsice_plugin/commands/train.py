"""``marsice train``: train the CNN on labelled chunks and save it with its history, curves and card."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..progress import Reporter


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train the CNN on labelled chunks (folders 0/ and 1/, a labelled tile index, or generated chunks)",
        description="Train the paper's small Xception. DATA is a folder with sub-folders 0/ (no ice) and 1/ (ice) "
        "of chunk images (the paper's layout), or a tile index from 'marsice tile' whose label column was filled "
        "in QGIS; --synthetic N renders N labelled chunks instead. Writes MODEL.keras, MODEL.history.json, "
        "MODEL.curves.png and MODEL.card.json. Augmentation keeps the sun where it was (mirror across the sun's "
        "azimuth axis, rotations inside the 290-303 degree band): no east-west or north-south flips.",
    )
    p.add_argument("data", type=Path, nargs="?", help="folder with 0/ and 1/ chunk images, or a labelled tile index")
    p.add_argument("-o", "--output", type=Path, required=True, help="output model (.keras)")
    p.add_argument("--synthetic", type=int, metavar="N", help="train on N generated chunks instead of DATA")
    p.add_argument("--label-field", default="label", help="label column of a tile index (1 ice, 0 none)")
    p.add_argument("--valid-max", type=float, default=None, help="pixel value that maps to 1.0 (default: from file)")
    p.add_argument(
        "--input-size",
        type=int,
        default=None,
        help="model input size (1024 = full; default 256 or --init's; another size than --init's carries its "
        "weights over, e.g. 512 with --read-level 1)",
    )
    p.add_argument(
        "--init", type=Path, metavar="MODEL", help="start from this model's weights (fine-tune) instead of a fresh net"
    )
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--batch-size", type=int, default=25)
    p.add_argument("--validation-split", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0, help="model seed")
    p.add_argument("--bn-momentum", type=float, default=0.99, help="BatchNormalization momentum (0.9 for small sets)")
    p.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--augment", choices=("sun", "none"), default="sun", help="sun-aware augmentation or none")
    p.add_argument(
        "--keep-best", action="store_true", help="save the epoch with the lowest validation loss, not the last"
    )
    p.add_argument("--data-seed", type=int, default=1000, help="first scene seed of --synthetic chunks")
    p.add_argument(
        "--edge-nodata",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="fraction of --synthetic chunks given a strip-edge no-data band, as chunks along a product's "
        "black margins have (0.5 for the shipped level-2 model)",
    )
    p.add_argument(
        "--hard-ice",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="fraction of --synthetic ice chunks given only small, faint patches (radius 1-2.5 m, contrast "
        "0.25-0.6), the ones models miss most",
    )
    p.add_argument(
        "--terrain-kinds",
        action="store_true",
        help="draw --synthetic chunks with dunes, layered deposits, gullies, small polygons, outcrops, slope dust, "
        "CO2-like frost and low contrast at the rates of cnn.training_data.TERRAIN_KIND_RATES (README, Terrain kinds)",
    )
    p.add_argument(
        "--real",
        type=Path,
        metavar="FOLDER",
        help="also train on real ice-free tiles and the same tiles with planted patches: a landmark tile folder "
        "(tiles.csv with split, frost_prior, observation); only its open split's training observations are read "
        "(see marsice_plugin.cnn.real_tiles)",
    )
    p.add_argument(
        "--real-index",
        type=Path,
        metavar="INDEX",
        help="HiRISE RDR index (CSV or CSV.gz with SUB_SOLAR_AZIMUTH, NORTH_AZIMUTH) giving each --real tile's sun",
    )
    p.add_argument("--real-seed", type=int, default=0, help="seed of the patches planted into --real tiles")
    p.add_argument(
        "--head-only",
        action="store_true",
        help="with --init: keep every convolution and refit only the last (sigmoid) layer on the data, in seconds "
        "after one forward pass per chunk (marsice_plugin.cnn.head_refit); --epochs and --learning-rate are unused",
    )
    p.add_argument(
        "--read-level",
        type=int,
        default=0,
        help="JPEG2000 resolution level the chunks are decoded at: --synthetic chunks are rendered that way; for "
        "DATA say how its images were made (2 for 1024 px chunks exported with 'marsice tile --scale 0.25'). "
        "Recorded in the card; 'marsice detect' then reads products at that level",
    )


def run(args: argparse.Namespace, reporter: Reporter) -> None:
    from ..cnn.chunk_data import TrainingDataError, load_labelled
    from ..cnn.train import TrainingConfig, train

    if (args.data is None) == (args.synthetic is None and args.real is None):
        raise TrainingDataError(
            "give either DATA (folders 0/ and 1/, or a labelled tile index) or --synthetic N and/or --real FOLDER"
        )
    if (args.real is None) != (args.real_index is None):
        raise TrainingDataError("--real FOLDER needs --real-index INDEX (each tile's sun azimuth), and vice versa")
    check_training_outputs(args)
    args.input_size = resolve_input_size(args.input_size, args.init)
    if args.init is not None:
        from ..model_registry import card_read_level

        init_level = card_read_level(args.init)
        if init_level != args.read_level:
            reporter.log(
                f"{args.init.name} was trained on chunks read at JPEG2000 level {init_level}, these are read at level "
                f"{args.read_level} (--read-level); the new model will be read at level {args.read_level}",
                level="warning",
            )
    from ..cnn.memory import check_training_memory

    # Before any chunk is rendered or read: the chunks are held twice (all, and the training split).
    chunk_bytes = 4 * args.input_size**2
    check_training_memory(args.input_size, args.batch_size, 2 * chunk_bytes * (args.synthetic or 0))
    if args.data is None:
        x, y, sun, data = generated_and_real(args, reporter)
    else:
        reporter.progress(0, f"reading labelled chunks from {args.data}")
        chunks = load_labelled(args.data, args.input_size, args.label_field, args.valid_max)
        x, y, sun = chunks.x, chunks.y, chunks.sun_azimuth
        data = chunks.describe()
    if len(set(y.tolist())) < 2:
        raise TrainingDataError("the training data hold only one class; label chunks with and without ice")
    reporter.log(f"{len(y)} chunks, {int(y.sum())} with ice; input {args.input_size} px, augmentation {args.augment}")
    config = TrainingConfig(
        input_size=args.input_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        validation_split=args.validation_split,
        learning_rate=args.learning_rate,
        bn_momentum=args.bn_momentum,
        seed=args.seed,
        augment=args.augment,
        init=str(args.init) if args.init else None,
        keep_best=args.keep_best,
        read_level=args.read_level,
        data=data,
    )

    if args.head_only:
        refit_only(args, config, x, y, sun, reporter)
        return

    def on_epoch(epoch: int, logs: dict) -> None:
        shown = ", ".join(f"{k} {v:.3f}" for k, v in logs.items())
        reporter.progress(20 + 80 * (epoch + 1) / args.epochs, f"epoch {epoch + 1}/{args.epochs}: {shown}")

    history = train(x, y, config, args.output, on_epoch=on_epoch, sun_azimuth=sun)
    reporter.result(
        {"MODEL": str(args.output)},
        f"trained {args.output.name}: final " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in history.items()),
    )


def generated_and_real(args: argparse.Namespace, reporter: Reporter) -> tuple[Any, Any, Any, dict[str, Any]]:
    """Rendered chunks (``--synthetic``) and real tiles with planted patches (``--real``), shuffled together."""
    import numpy as np

    parts = []
    data: dict[str, Any] = {}
    if args.synthetic is not None:
        from ..cnn.training_data import synthetic_chunks

        reporter.progress(0, f"rendering {args.synthetic} training chunks")
        x, y, sun = synthetic_chunks(
            args.synthetic,
            seed=args.data_seed,
            input_size=args.input_size,
            read_level=args.read_level,
            edge_nodata=args.edge_nodata,
            hard_ice=args.hard_ice,
            terrain_kinds=args.terrain_kinds,
        )
        parts.append((x, y, sun))
        data = {"source": "marsice synthetic chunks", "chunks": args.synthetic, "first_seed": args.data_seed}
        if args.edge_nodata:
            data["edge_nodata"] = args.edge_nodata
        if args.hard_ice:
            data["hard_ice"] = args.hard_ice
        if args.terrain_kinds:  # the card says what went in
            from ..cnn.training_data import TERRAIN_KIND_RATES

            data["terrain_kinds"] = dict(TERRAIN_KIND_RATES)
    if args.real is not None:
        from ..cnn.real_tiles import open_tiles, real_examples

        tiles = open_tiles(args.real, args.real_index, "train")
        reporter.progress(10, f"planting patches into {len(tiles)} real ice-free tiles")
        x, y, sun = real_examples(tiles, args.input_size, args.real_seed)
        parts.append((x, y, sun))
        data["real"] = {
            "source": str(args.real),
            "split": "open, training observations (marsice_plugin.cnn.real_tiles)",
            "tiles": len(tiles),
            "observations": len({t.observation for t in tiles}),
            "negatives": int(len(y) - y.sum()),
            "planted_positives": int(y.sum()),
            "seed": args.real_seed,
        }
    # one shuffle, so the random 20 % validation split holds both sources in proportion
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    sun = np.concatenate([p[2] for p in parts])
    order = np.random.default_rng(args.seed).permutation(len(y))
    return x[order], y[order], sun[order], data


def refit_only(args: argparse.Namespace, config: Any, x: Any, y: Any, sun: Any, reporter: Reporter) -> None:
    """``--head-only``: refit the starting model's last layer, save it and a card that says so."""
    import json
    from dataclasses import asdict

    from ..cnn.head_refit import refit_head
    from ..cnn.train import initial_model, save_for_inference
    from ..errors import TrainingDataError
    from ..model_registry import card_path

    if args.init is None:
        raise TrainingDataError("--head-only refits the last layer of a trained model: give it with --init MODEL")
    model = initial_model(config)
    reporter.progress(40, f"reading the features of {len(y)} chunks")
    report = refit_head(model, x, y, sun, seed=args.seed)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    save_for_inference(model, args.output)
    training = asdict(config)
    for unused in ("epochs", "learning_rate", "batch_size", "keep_best", "augment"):
        training.pop(unused, None)
    card = {
        "model": args.output.name,
        "parameters": int(model.count_params()),
        "read_level": config.read_level,
        "training": training,
        "samples": {"total": len(y), "positive_fraction": float(y.mean())},
        "refit": report,
    }
    card_path(args.output).write_text(json.dumps(card, indent=1))
    before, after = report["before"], report["after"]
    reporter.result(
        {"MODEL": str(args.output)},
        f"refitted the last layer of {args.init.name}: validation accuracy {before['val_accuracy']:.3f} -> "
        f"{after['val_accuracy']:.3f}, loss {before['val_loss']:.3f} -> {after['val_loss']:.3f}",
    )


def check_training_outputs(args: argparse.Namespace) -> None:
    """Before anything is loaded: the model and its history, curves and card must not replace an input
    (``--init m.keras -o m.keras`` would overwrite the starting model and its card), and must be writable."""
    from ..outputs import KERAS, Output, check_outputs

    stem = args.output.with_suffix("")
    check_outputs(
        [args.data, args.init],
        [
            Output(args.output, KERAS),
            Output(Path(f"{stem}.history.json"), option="-o (history)"),
            Output(Path(f"{stem}.curves.png"), option="-o (curves)"),
            Output(args.output.with_suffix("").with_suffix(".card.json"), option="-o (card)"),
        ],
    )


def resolve_input_size(requested: int | None, init: Path | None) -> int:
    """The chunk size to train at: what was asked, else the starting model's, else 256.

    A starting model of another size is fine (its weights do not depend on the input size); it is
    loaded here, before any data is read, so a file that is not a model costs nothing. An ensemble is
    refused: its members read at different levels, which one training set cannot serve.
    """
    if init is None:
        return requested or 256
    from ..cnn.ensemble import member_models
    from ..cnn.model import load_model, model_input_size
    from ..errors import ModelError

    model = load_model(init)
    members = member_models(model)
    if members:
        raise ModelError(
            f"{init.name} is an ensemble of {len(members)} models (see its card); fine-tune a member instead, e.g. "
            "models/marsice_xception_256_level2.keras, and combine the result with 'marsice ensemble'"
        )
    return requested or model_input_size(model)
