"""`castseg convert`: Cityscapes or ADE20K to COCO instance jsons, plus the paper's splits."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from castseg.commands import COMMANDS

if TYPE_CHECKING:
    from castseg.data.paper_splits import Split


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "convert",
        help=COMMANDS["convert"],
        description="Convert an official dataset tree to COCO instance jsons (RLE masks) in DIR, "
        "then write labeled / unlabeled id lists of the train images to DIR/splits/<name>/.",
    )
    datasets = parser.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    cityscapes = datasets.add_parser(
        "cityscapes",
        help="gtFine instanceIds PNGs → DIR/cityscapes_{train,val}.json (8 thing classes)",
        description="ROOT holds gtFine/{train,val}/<city>/*_gtFine_instanceIds.png and "
        "leftImg8bit/{train,val}/<city>/*_leftImg8bit.png. Image file names in the jsons are "
        "relative to ROOT (use it as image_root). Splits: PERCENT % of train labeled, the "
        "rest unlabeled.",
    )
    _add_common(cityscapes)
    cityscapes.add_argument(
        "--percents",
        type=float,
        nargs="+",
        metavar="PERCENT",
        help="labeled shares of train, one split each (default: the paper's 5 10 30; 10 %% is "
        "298 images)",
    )
    ade20k = datasets.add_parser(
        "ade20k",
        help="instance-benchmark PNGs → DIR/ade20k_instance_{train,val}.json (100 classes)",
        description="ROOT holds ADEChallengeData2016/images/{training,validation}/*.jpg and "
        "ADEChallengeData2016/annotations_instance/{training,validation}/*.png. Image file "
        "names in the jsons are relative to ROOT (use it as image_root). Split: LABELED "
        "images drawn stratified by class, UNLABELED drawn from the rest.",
    )
    _add_common(ade20k)
    ade20k.add_argument("--labeled", type=int, help="labeled images (default: the paper's 1000)")
    ade20k.add_argument(
        "--unlabeled", type=int, help="unlabeled images (default: the paper's 2537)"
    )
    parser.set_defaults(run=run)
    return parser


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", type=Path, help="the dataset root (see above)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--split-seed",
        type=int,
        nargs="+",
        default=[0],
        metavar="SEED",
        help="one split per seed (default: 0; the paper averages three seeds)",
    )
    parser.add_argument(
        "--split-file",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="also turn a published split (one image file name per line) into id lists; repeatable",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from castseg.data.ade20k import convert_ade20k
    from castseg.data.cityscapes import convert_cityscapes
    from castseg.data.paper_splits import (
        ADE20K_LABELED,
        ADE20K_UNLABELED,
        CITYSCAPES_PERCENTS,
        ade20k_split,
        cityscapes_split,
        external_split,
        write_split,
    )
    from castseg.io import check_output_folder

    check_output_folder(args.out, "--out")
    absent = [str(path) for path in args.split_file if not path.is_file()]
    if absent:
        raise FileNotFoundError(f"split files not found: {absent}")
    progress = not args.no_progress
    if args.dataset == "cityscapes":
        written = convert_cityscapes(args.root, args.out, progress=progress)
        splits = [
            cityscapes_split(written["train"], percent, seed=seed)
            for seed in args.split_seed
            for percent in args.percents or CITYSCAPES_PERCENTS
        ]
    else:
        written = convert_ade20k(args.root, args.out, progress=progress)
        counts = {
            "labeled": ADE20K_LABELED if args.labeled is None else args.labeled,
            "unlabeled": ADE20K_UNLABELED if args.unlabeled is None else args.unlabeled,
        }
        splits = [ade20k_split(written["train"], seed=seed, **counts) for seed in args.split_seed]
    splits += [external_split(path, written["train"]) for path in args.split_file]
    for split, path in written.items():
        print(f"{split}: {path}")
    for split in splits:
        _report(split, write_split(split, args.out / "splits"))
    return 0


def _report(split: Split, folder: Path) -> None:
    print(
        f"split {split.name}: {len(split.labeled)} labeled / {len(split.unlabeled)} unlabeled "
        f"-> {folder}"
    )
