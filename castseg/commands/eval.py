"""`castseg eval`: COCO mask AP of a results file, or of a trained checkpoint on a dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from castseg.evaluation.coco import CocoMetrics, evaluate_coco, format_metrics


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="mask AP / AP50 of a results file or a checkpoint",
        description=(
            "Print COCO mask AP, AP50, AP75 and AP per class. Either score a COCO results file "
            "(--results) or run a trained CHECKPOINT on the images of --data."
        ),
    )
    parser.add_argument(
        "checkpoint", nargs="?", type=Path, metavar="CHECKPOINT", help="trained checkpoint"
    )
    parser.add_argument(
        "--annotations", type=Path, required=True, help="COCO ground-truth annotations (JSON)"
    )
    parser.add_argument("--results", type=Path, help="COCO results file (JSON) to score")
    parser.add_argument(
        "--data",
        type=Path,
        help="folder the image file names in --annotations are relative to (with CHECKPOINT)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if (args.checkpoint is None) == (args.results is None):
        raise ValueError("give either a CHECKPOINT or --results, not both or neither")
    if args.results is not None:
        if args.data is not None:
            raise ValueError("--data is only used with a CHECKPOINT")
        metrics = evaluate_coco(args.results, args.annotations)
    else:
        metrics = _evaluate_checkpoint(args.checkpoint, args.annotations, args.data)
    print(format_metrics(metrics))
    return 0


def _evaluate_checkpoint(
    checkpoint: Path, annotations: Path, image_root: Path | None
) -> CocoMetrics:
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    # Training code pulls in Lightning and transformers; scoring a results file must not.
    from castseg.training.evaluate import evaluate_checkpoint

    return evaluate_checkpoint(checkpoint, annotations, image_root=image_root)
