"""Sub-commands of the `castseg` command line; each module has `add_parser` and `run`.

A command module imports only argparse-level code at module level and its heavy dependencies
(torch, Lightning, transformers, castseg.training, castseg.pipeline) inside `run`, so that its
`--help` is instant.
"""

import argparse
from pathlib import Path

# name -> the one line `castseg --help` shows for it
COMMANDS = {
    "demo": "run CAST end to end on the embedded synthetic world (CPU, a few minutes)",
    "check": "validate a config, its data and teacher, and print the plan of its run",
    "run": "teacher adaptation, knowledge transfer and student refinement from a YAML config",
    "ablate": "run a grid of config variants over several seeds and tabulate them",
    "eval": "mask AP / AP50 of a results file, a checkpoint, an ONNX model or a config's teacher",
    "predict": "segment images with a checkpoint or an exported ONNX model",
    "export": "export a checkpoint to ONNX (dynamic batch, metadata for predict --onnx)",
    "bench": "parameters and latency of student and teacher, with ratios",
    "split": "split a COCO dataset into labeled and unlabeled image ids",
    "convert": "convert Cityscapes or ADE20K to COCO jsons and draw the paper's splits",
}


def add_override_argument(parser: argparse.ArgumentParser) -> None:
    """The repeatable `--set KEY=VALUE` option that overrides a config value."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set student.lr_decoder=1e-4 (repeatable)",
    )


def model_file_kind(path: Path) -> str:
    """ "checkpoint" for a castseg checkpoint (a torch.save zip file), "onnx" for an ONNX model;
    a one-line ValueError naming the file for anything else."""
    import zipfile

    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    if zipfile.is_zipfile(path):
        return "checkpoint"
    import onnx
    from google.protobuf.message import DecodeError

    try:
        graph = onnx.load_model(path, load_external_data=False).graph
    except (DecodeError, OSError, ValueError, RuntimeError):
        graph = None
    if graph is None or not graph.node:
        raise ValueError(
            f"{path} is neither a castseg checkpoint (`castseg run` .pt) nor an ONNX model "
            "(`castseg export` .onnx)"
        )
    return "onnx"


def parse_seeds(text: str) -> tuple[int, ...]:
    """ "0,1,2" → (0, 1, 2); argparse's error for an empty list, a non-integer or a repeat."""
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or not all(items):
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    try:
        seeds = tuple(int(item) for item in items)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"a seed repeats in {text!r}")
    return seeds


def add_seeds_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """The `--seeds 0,1,2` option: one run per seed."""
    parser.add_argument("--seeds", type=parse_seeds, default=None, metavar="K,K,...", help=help)
