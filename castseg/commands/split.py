"""`castseg split`: draw the labeled subset of a COCO dataset and write the two id lists."""

from __future__ import annotations

import argparse
from pathlib import Path

from castseg.commands import COMMANDS


def parse_labeled(text: str) -> float | int:
    """'0.1' is a fraction of the images, '50' a count."""
    try:
        return int(text) if text.strip().isdigit() else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a fraction in (0, 1) or an image count, got {text!r}"
        ) from None


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "split",
        help=COMMANDS["split"],
        description="Draw the labeled images of a COCO dataset; write DIR/labeled.txt and "
        "DIR/unlabeled.txt with one image id per line.",
    )
    parser.add_argument("annotations", type=Path, help="COCO instances json")
    parser.add_argument(
        "--labeled", type=parse_labeled, required=True, help="fraction (0.1) or count (50)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--stratify",
        action="store_true",
        help="draw per most frequent category so that rare classes are labeled too",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from castseg.data.splits import split_labeled, write_id_list
    from castseg.io import check_output_folder

    check_output_folder(args.out, "--out")
    labeled, unlabeled = split_labeled(
        args.annotations, args.labeled, seed=args.seed, stratify=args.stratify
    )
    write_id_list(args.out / "labeled.txt", labeled)
    write_id_list(args.out / "unlabeled.txt", unlabeled)
    print(f"labeled:   {len(labeled)} images -> {args.out / 'labeled.txt'}")
    print(f"unlabeled: {len(unlabeled)} images -> {args.out / 'unlabeled.txt'}")
    return 0
