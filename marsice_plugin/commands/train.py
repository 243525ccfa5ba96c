"""``marsice train``: train the CNN and save it with its history, curves and card."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..progress import Reporter


def add_parser(sub: Any) -> None:
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
    p.add_argument("--bn-momentum", type=float, default=0.99, help="BatchNormalization momentum (0.9 for small sets)")
    p.add_argument("--data-seed", type=int, default=1000, help="first scene seed of the training chunks")


def run(args: argparse.Namespace, reporter: Reporter) -> None:
    from ..cnn.train import TrainingConfig, train
    from ..cnn.training_data import synthetic_chunks

    reporter.progress(0, f"rendering {args.synthetic} training chunks")
    x, y = synthetic_chunks(args.synthetic, seed=args.data_seed, input_size=args.input_size)
    config = TrainingConfig(
        input_size=args.input_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        validation_split=args.validation_split,
        bn_momentum=args.bn_momentum,
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
