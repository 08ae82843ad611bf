"""`castseg export CKPT --onnx FILE`: the model of a checkpoint as an ONNX file for deployment.

The graph takes images [B, 3, H, W] float32 RGB in [0, 1] (B dynamic, H × W fixed: the
checkpoint's input size unless --height/--width) and returns mask_logits and class_logits; its
metadata holds the classes, input size and normalisation, so `castseg predict --onnx FILE`
needs nothing else. The export is checked in ONNX Runtime against PyTorch before it is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from castseg.commands import COMMANDS
from castseg.io import check_output_folder


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export",
        help=COMMANDS["export"],
        description=__doc__,
    )
    parser.add_argument("checkpoint", type=Path, metavar="CKPT", help="castseg checkpoint")
    parser.add_argument("--onnx", type=Path, required=True, metavar="FILE", help="output .onnx")
    parser.add_argument(
        "--opset",
        type=int,
        help="ONNX opset, at least 18 (default 18)",
    )
    parser.add_argument(
        "--height", type=int, help="input height (rounded up to the patch size's multiple)"
    )
    parser.add_argument(
        "--width", type=int, help="input width (rounded up to the patch size's multiple)"
    )
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    if (args.height is None) != (args.width is None):
        raise ValueError("give both --height and --width, or neither")
    if args.onnx.is_dir():
        raise ValueError(f"--onnx {args.onnx} is a folder; expected the path of the .onnx file")
    check_output_folder(args.onnx.parent, "--onnx")
    from castseg.deploy.input_size import input_multiple, round_up_size
    from castseg.deploy.onnx_export import DEFAULT_ATOL, export_onnx
    from castseg.deploy.onnx_metadata import OnnxMetadata
    from castseg.models.checkpoints import load_checkpoint

    loaded = load_checkpoint(args.checkpoint)
    image_size = loaded.image_size
    if args.height is not None:
        image_size = round_up_size((args.height, args.width), input_multiple(loaded.model))
    metadata = OnnxMetadata(
        category_map=loaded.category_map,
        image_size=image_size,
        normalization=loaded.normalization,
        model_args=loaded.model.config_dict(),
    )
    # export_onnx writes the file only once ONNX Runtime has matched PyTorch.
    opset = {} if args.opset is None else {"opset": args.opset}
    report = export_onnx(loaded.model, args.onnx, metadata, **opset)
    height, width = report.image_size
    differences = ", ".join(f"{name} {diff:.2g}" for name, diff in report.max_abs_diff.items())
    print(f"ONNX Runtime vs PyTorch, max |difference| (limit {DEFAULT_ATOL:g}): {differences}")
    print(f"wrote {report.path}: opset {report.opset}, input [B, 3, {height}, {width}]")
    return 0
