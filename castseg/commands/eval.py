"""`castseg eval`: mask AP of a results file, of a trained checkpoint, or of a config's teacher.

Four sources of predictions, one report (COCO mask AP, AP50, AP75 and AP per class):
  castseg eval --results results.json --annotations val.json
  castseg eval student.pt --annotations val.json --data IMAGE_ROOT
  castseg eval --onnx student.onnx --annotations val.json --data IMAGE_ROOT  (ONNX Runtime)
  castseg eval --config experiment.yaml        (the config's teacher, zero-shot, on data.val_*)
A model file is recognised by its content: a castseg checkpoint or a `castseg export` ONNX file.
With --cityscapes ROOT (annotations from `castseg convert cityscapes`), the official Cityscapes
instance AP and AP50 of the same predictions are printed as well.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from castseg.commands import COMMANDS, add_override_argument, model_file_kind

if TYPE_CHECKING:
    from castseg.evaluation.coco import CocoMetrics


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help=COMMANDS["eval"],
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "checkpoint",
        nargs="?",
        type=Path,
        metavar="CHECKPOINT",
        help="trained checkpoint (or an exported .onnx file)",
    )
    parser.add_argument(
        "--onnx", type=Path, metavar="FILE", help="a `castseg export` model, run in ONNX Runtime"
    )
    parser.add_argument("--annotations", type=Path, help="COCO ground-truth annotations (JSON)")
    parser.add_argument("--results", type=Path, help="COCO results file (JSON) to score")
    parser.add_argument(
        "--data",
        type=Path,
        help="folder the image file names in --annotations are relative to (with a model)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="experiment YAML: evaluate its teacher, zero-shot, on data.val_annotations",
    )
    add_override_argument(parser)
    parser.add_argument(
        "--cityscapes",
        type=Path,
        metavar="ROOT",
        help="also score with the official Cityscapes metric (ROOT holds gtFine/)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.onnx is not None and args.checkpoint is not None:
        raise ValueError("give a CHECKPOINT or --onnx FILE, not both")
    model = args.onnx if args.onnx is not None else args.checkpoint
    sources = [model is not None, args.results is not None, args.config is not None]
    if sum(sources) != 1:
        raise ValueError("give exactly one of a CHECKPOINT, --onnx, --results or --config")
    if args.config is None and args.annotations is None:
        raise ValueError("--annotations is required with a CHECKPOINT, --onnx or --results")
    if args.data is not None and model is None:
        raise ValueError("--data is only used with a CHECKPOINT or --onnx")
    if args.overrides and args.config is None:
        raise ValueError("--set is only used with --config")
    # Imported here: `castseg eval --help` must not wait for the evaluation code.
    from castseg.evaluation.coco import evaluate_coco, format_metrics, load_json

    progress = not args.no_progress
    if args.results is not None:
        annotations = args.annotations
        metrics = evaluate_coco(args.results, annotations)
        results = load_json(args.results, "results") if args.cityscapes is not None else []
    elif model is not None:
        annotations = args.annotations
        metrics, results = _evaluate_model_file(
            model, annotations, args.data, progress, given_as_onnx=args.onnx is not None
        )
    else:
        annotations, metrics, results = _evaluate_teacher(args.config, args.overrides, progress)
    print(format_metrics(metrics))
    if args.cityscapes is not None:
        from castseg.evaluation.cityscapes import evaluate_cityscapes_results

        official = evaluate_cityscapes_results(results, annotations, args.cityscapes)
        print(f"\nCityscapes (official)\nAP    {official.ap:6.2f}\nAP50  {official.ap50:6.2f}")
    return 0


def _evaluate_model_file(
    path: Path, annotations: Path, image_root: Path | None, progress: bool, given_as_onnx: bool
) -> tuple[CocoMetrics, list[dict[str, Any]]]:
    """A castseg checkpoint (PyTorch) or an exported ONNX model (ONNX Runtime), as its content
    says, on the images of `annotations`."""
    onnx = model_file_kind(path) == "onnx"
    if given_as_onnx and not onnx:
        raise ValueError(f"--onnx {path} is a castseg checkpoint: give it as CHECKPOINT")
    # Model code pulls in torch and transformers; scoring a results file must not.
    from castseg.deploy.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(
        path, annotations, image_root=image_root, progress=progress, onnx=onnx
    )
    return result.metrics, result.results


def _evaluate_teacher(
    config: Path, overrides: list[str], progress: bool
) -> tuple[Path, CocoMetrics, list[dict[str, Any]]]:
    """The config's teacher, as `castseg run` builds it, on the config's validation set."""
    from castseg.config import load_config
    from castseg.data.coco import CocoInstanceDataset
    from castseg.models.teachers import build_teacher
    from castseg.runtime.compute import apply_compute_settings
    from castseg.runtime.evaluate import evaluate_model
    from castseg.runtime.inference import inference_device

    cfg = load_config(config, overrides)
    apply_compute_settings(cfg.run)
    if cfg.data.val_annotations is None:
        raise ValueError(f"{config}: data.val_annotations is required to evaluate the teacher")
    dataset = CocoInstanceDataset(cfg.data.val_annotations, cfg.data.val_image_root)
    teacher = build_teacher(cfg.teacher, dataset.categories).eval()
    teacher.to(inference_device(cfg.run.accelerator))
    result = evaluate_model(
        teacher,
        dataset,
        image_size=tuple(cfg.data.image_size),
        top_k=cfg.run.eval_top_k,
        progress=progress,
        desc="eval teacher (zero-shot)",
    )
    return Path(cfg.data.val_annotations), result.metrics, result.results
