"""`castseg check CONFIG`: everything `castseg run CONFIG` checks, and its plan, without training.

Checks the config (keys, types, ranges, the image size against the patch grid, each teacher
kind's keys), the run folder, the data (every annotation and image header, as `run` does), and
that the teacher (and a `student.encoder`) loads and takes the image size: hub ids are downloaded
as `run` would; --no-models skips this where the weights cannot be fetched. Then prints the
stages the run would go through, with their steps and images, and whether the run folder holds a
run to resume.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from castseg.commands import COMMANDS, add_override_argument, check_output_folder

if TYPE_CHECKING:
    from torch import nn

    from castseg.config import ExperimentConfig
    from castseg.training.experiment_data import ExperimentData


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("check", help=COMMANDS["check"], description=__doc__)
    parser.add_argument("config", type=Path, help="experiment YAML, as given to `castseg run`")
    add_override_argument(parser)
    parser.add_argument(
        "--baseline", action="store_true", help="plan the supervised-only student too"
    )
    parser.add_argument(
        "--no-models",
        action="store_true",
        help="do not load the teacher or student.encoder (e.g. where their hub weights cannot be "
        "fetched); their keys are still checked",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from castseg.config import load_config
    from castseg.training.experiment_data import load_experiment_data

    cfg = load_config(args.config, args.overrides)
    out_dir = Path(cfg.run.out_dir)
    check_output_folder(out_dir, "run.out_dir")
    data = load_experiment_data(cfg.data, progress=not args.no_progress)
    print(f"config {args.config}: valid")
    print(f"data: {describe_data(data)}")
    if args.no_models:
        print(f"teacher: {cfg.teacher.kind}, not loaded (--no-models)")
    else:
        teacher = load_teacher(cfg, data)
        parameters = sum(p.numel() for p in teacher.parameters())
        print(f"teacher: {cfg.teacher.kind}, loads ({parameters / 1e6:.1f}M parameters)")
        _check_input_size(teacher, cfg, "the teacher")
    if cfg.student.encoder is not None and not args.no_models:
        from castseg.models.student import build_student

        student = build_student(cfg.student.size, len(data.categories), encoder=cfg.student.encoder)
        _check_input_size(student, cfg, f"student.encoder {cfg.student.encoder}")
    height, width = cfg.data.image_size
    print(f"image size: {height} × {width}")
    print(f"\nplan (into {out_dir}; {_earlier_run(out_dir)}):")
    for name, what in plan(cfg, data, baseline=args.baseline):
        print(f"  {name:<21}{what}")
    return 0


def describe_data(data: ExperimentData) -> str:
    """'24 labeled, 216 unlabeled, 60 val images; 5 classes (disc, box, ...)'."""
    sizes = [f"{len(data.labeled)} labeled"]
    sizes.append(f"{len(data.unlabeled) if data.unlabeled is not None else 0} unlabeled")
    sizes.append(f"{len(data.val)} val images" if data.val is not None else "no val images")
    names = list(data.categories.names)
    shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
    return f"{', '.join(sizes)}; {len(names)} classes ({shown})"


def plan(cfg: ExperimentConfig, data: ExperimentData, *, baseline: bool) -> list[tuple[str, str]]:
    """(stage, what it does) for every step of `castseg run`, as `CastPipeline.run` orders them."""
    teacher, student, semi = cfg.teacher, cfg.student, cfg.loss.lambda_semi > 0
    unlabeled = len(data.unlabeled) if data.unlabeled is not None else 0
    val = f"on {len(data.val)} val images" if data.val is not None else "(no val set: AP is n/a)"

    def steps(count: int, batch: int, *, pseudo: bool) -> str:
        per_step = f"{batch} labeled + {batch} pseudo-labeled" if pseudo else f"{batch} labeled"
        return f"{count} steps × {per_step} images"

    stages = [
        ("teacher_zero_shot", f"evaluate the pretrained teacher {val}"),
        ("teacher_finetune", steps(teacher.finetune_iters, teacher.batch_size, pseudo=False)),
        ("pseudo-labels", f"label {unlabeled} unlabeled images with the fine-tuned teacher"),
        (
            "teacher_selftrain",
            steps(teacher.selftrain_iters, teacher.batch_size, pseudo=True)
            + ", from the pretrained weights",
        ),
        ("pseudo-labels", f"label {unlabeled} unlabeled images with the adapted teacher"),
        ("distill", steps(student.distill_iters, student.batch_size, pseudo=semi)),
        ("refine", steps(student.refine_iters, student.batch_size, pseudo=False)),
    ]
    if baseline:
        total = student.distill_iters + student.refine_iters
        stages.append(("supervised_baseline", steps(total, student.batch_size, pseudo=False)))
    evaluated = ("teacher_selftrain", "distill", "refine", "supervised_baseline")
    stages = [(n, f"{w}; evaluate {val}" if n in evaluated else w) for n, w in stages]
    return stages


def load_teacher(cfg: ExperimentConfig, data: ExperimentData) -> nn.Module:
    """`build_teacher` with a one-line error for weights that cannot be fetched or read."""
    from castseg.models.teachers import build_teacher

    try:
        return build_teacher(cfg.teacher, data.categories)
    except OSError as err:  # transformers: a hub id that cannot be fetched, a folder without files
        first = str(err).strip().splitlines()[0]
        raise ValueError(
            f"teacher ({cfg.teacher.kind}) cannot be loaded: {first} (`castseg check --no-models` "
            "checks the rest)"
        ) from err


def _check_input_size(model: nn.Module, cfg: ExperimentConfig, what: str) -> None:
    from castseg.config import nearest_sizes
    from castseg.deploy.input_size import input_multiple

    multiple = input_multiple(model)
    if any(side % multiple for side in cfg.data.image_size):
        valid = " or ".join(str(size) for size in nearest_sizes(cfg.data.image_size, multiple))
        raise ValueError(
            f"data.image_size: {list(cfg.data.image_size)} is not a multiple of the patch size "
            f"{multiple} of {what}; nearest valid sizes: {valid}"
        )


def _earlier_run(out_dir: Path) -> str:
    """What a rerun would find in out_dir: nothing, or the stages an earlier run finished."""
    from castseg.training.run_state import RUN_STATE_FILE

    path = out_dir / RUN_STATE_FILE
    try:
        stages = list(json.loads(path.read_text())["stages"])
    except (OSError, ValueError, KeyError, TypeError):
        return "no earlier run there"
    if not stages:
        return "no earlier run there"
    return (
        f"it holds an earlier run that finished {', '.join(stages)}: the same config resumes "
        "it, another one needs --restart"
    )
