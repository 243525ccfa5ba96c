"""``marsice ensemble``: several trained models as one, the mean of their ice probabilities."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..progress import Reporter


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "ensemble",
        help="combine trained models into one that averages their ice probabilities",
        description="Write one .keras model whose output is the mean probability of MODELS (no training, no "
        "fitted weights). Its input is the largest member's size, read at that member's JPEG2000 level (recorded "
        "in MODEL.card.json, so 'marsice detect' reads products that way); smaller members get the input "
        "block-averaged to their size. The shipped default is the 512-px level-1 and 256-px level-2 models "
        "combined this way (make model-ensemble).",
    )
    p.add_argument("models", type=Path, nargs="+", help="two or more Keras models (.keras)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output model (.keras)")


def run(args: argparse.Namespace, reporter: Reporter) -> None:
    from ..cnn.ensemble import combine
    from ..outputs import KERAS, Output, check_outputs

    # the ensemble and its card (NAME.card.json) must not replace a member or a member's card
    card = args.output.with_suffix("").with_suffix(".card.json")
    check_outputs(args.models, [Output(args.output, KERAS), Output(card, option="-o (card)")])
    reporter.progress(0, f"loading {len(args.models)} models")
    card = combine(args.models, args.output)
    reporter.progress(100, "done")
    members = ", ".join(
        f"{m['model']} ({m['input_size']} px, level {m['read_level']})" for m in card["ensemble"]["members"]
    )
    reporter.result(
        {"MODEL": str(args.output)},
        f"wrote {args.output.name}: mean of {members}; reads products at JPEG2000 level {card['read_level']}",
    )
