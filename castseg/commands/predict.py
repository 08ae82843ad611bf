"""`castseg predict`: instances of image files as COCO results and overlay PNGs.

    castseg predict CKPT INPUT... --out DIR                 # PyTorch, a castseg checkpoint
    castseg predict INPUT... --onnx FILE --out DIR          # ONNX Runtime, a `castseg export` file

INPUT is an image file, a folder (its images, not recursing) or a quoted glob pattern
('photos/**/*.jpg'). DIR receives results.json (COCO results: image_id, category_id, RLE
segmentation, score), images.json (image id ↔ file name and size, categories, skipped files) and
overlays/. An unreadable image is skipped with a warning and listed in images.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from castseg.commands import COMMANDS, model_file_kind
from castseg.deploy.devices import DEVICES
from castseg.io import check_output_folder

# Suffixes of castseg checkpoints: such a file among the inputs of an --onnx run is a mistake.
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "predict",
        help=COMMANDS["predict"],
        usage="castseg predict (CKPT INPUT... | INPUT... --onnx FILE) --out DIR [options]",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="CKPT INPUT",
        help="the checkpoint (not with --onnx), then image files, folders or glob patterns",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--onnx",
        type=Path,
        metavar="FILE",
        help="run this `castseg export` model in ONNX Runtime instead of a checkpoint",
    )
    parser.add_argument(
        "--score-threshold",
        type=float,
        default=0.5,
        metavar="S",
        help="keep instances scoring at least this, in results and overlays (default 0.5; "
        "0 keeps all top-k, as mask AP needs)",
    )
    parser.add_argument(
        "--top-k",
        type=int,
        default=100,
        metavar="K",
        help="instances considered per image (default 100)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=4, metavar="N", help="images per forward pass (default 4)"
    )
    parser.add_argument("--device", choices=DEVICES, default="cpu", help="default cpu")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    checkpoint, inputs = _split_inputs(args.inputs, args.onnx)
    check_output_folder(args.out, "--out")
    onnx = args.onnx
    if checkpoint is not None and model_file_kind(checkpoint) == "onnx":
        checkpoint, onnx = None, checkpoint  # an exported model given in the checkpoint's place
    from tqdm.contrib.logging import logging_redirect_tqdm

    from castseg.deploy.image_inputs import collect_images
    from castseg.deploy.predictor import (
        IMAGES_FILE,
        OVERLAY_DIR,
        RESULTS_FILE,
        load_deployed_model,
        predict_files,
    )

    paths = collect_images(inputs)
    deployed = load_deployed_model(checkpoint=checkpoint, onnx=onnx, device=args.device)
    with logging_redirect_tqdm():
        summary = predict_files(
            deployed,
            paths,
            args.out,
            score_threshold=args.score_threshold,
            top_k=args.top_k,
            batch_size=args.batch_size,
            progress=not args.no_progress,
        )
    print(
        f"{len(summary.images)} images, {summary.num_instances} instances "
        f"(score ≥ {args.score_threshold:g}) with {deployed.backend} on {args.device}"
    )
    if summary.skipped:
        print(f"skipped {len(summary.skipped)} unreadable images (listed in {IMAGES_FILE})")
    print(f"wrote {args.out / RESULTS_FILE}, {args.out / IMAGES_FILE}, {args.out / OVERLAY_DIR}/")
    return 0


def _split_inputs(items: list[str], onnx: Path | None) -> tuple[Path | None, list[str]]:
    """(checkpoint, inputs): the first item is the checkpoint unless --onnx is given."""
    if onnx is not None:
        if Path(items[0]).suffix.lower() in _CHECKPOINT_SUFFIXES:
            raise ValueError(f"with --onnx {onnx} give only images, not a checkpoint ({items[0]})")
        return None, items
    if len(items) < 2:
        raise ValueError("give a checkpoint and at least one image, folder or pattern")
    return Path(items[0]), items[1:]
