"""`castseg check CONFIG`: every check `castseg run CONFIG` makes before training, and its plan.

Runs the pre-flight checks `castseg run` runs (`castseg.preflight`, one list for both): the
config (keys, types, ranges, the image size against the patch grid, each teacher kind's keys,
with the --set overrides applied first), the run folder and stage store, the launch and the
devices, the data (every annotation and image header), the teacher (it loads, predicts the
dataset's classes and takes the image size), the student's encoder (it loads and takes the image
size; a random one nobody asked for is a warning), and the earlier run in the run folder (this
config resumes it, or it needs --restart). Hub ids are downloaded as `run` would; --no-models
skips only those, where the weights cannot be fetched: checkpoints and model folders on disk are
still loaded. Then prints the stages the run would go through, with their steps and images.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from castseg.commands import COMMANDS, add_override_argument, add_seeds_argument

if TYPE_CHECKING:
    from castseg.config import ExperimentConfig
    from castseg.pipeline.experiment_data import ExperimentData


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("check", help=COMMANDS["check"], description=__doc__)
    parser.add_argument("config", type=Path, help="experiment YAML, as given to `castseg run`")
    add_override_argument(parser)
    parser.add_argument(
        "--baseline", action="store_true", help="plan the supervised-only student too"
    )
    parser.add_argument(
        "--restart",
        action="store_true",
        help="as `castseg run --restart`: an earlier run is discarded",
    )
    add_seeds_argument(parser, "as `castseg run --seeds`: check every seed's run folder")
    parser.add_argument(
        "--no-models",
        action="store_true",
        help="do not fetch hub weights of the teacher or student.encoder (e.g. where they cannot "
        "be downloaded); checkpoints and model folders on disk are still loaded",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from castseg.config import load_config
    from castseg.preflight import CHECKS, Preflight
    from castseg.runtime.compute import apply_compute_settings

    cfg = load_config(args.config, args.overrides)
    print(f"config {args.config}: valid")
    apply_compute_settings(cfg.run)  # as `run` does: the thread count an earlier run is told of
    flight = Preflight(
        cfg,
        args.config,
        models=not args.no_models,
        restart=args.restart,
        seeds=args.seeds,
        progress=not args.no_progress,
    ).check(CHECKS)
    for what, finding in flight.lines:
        print(f"{what}: {finding}")
    height, width = flight.cfg.data.image_size
    print(f"image size: {height} × {width}")
    assert flight.data is not None
    print(f"\nplan (into {flight.cfg.run.out_dir}):")
    for name, what in plan(flight.cfg, flight.data, baseline=args.baseline):
        print(f"  {name:<21}{what}")
    return 0


def plan(cfg: ExperimentConfig, data: ExperimentData, *, baseline: bool) -> list[tuple[str, str]]:
    """(stage, what it does) for every step of `castseg run`, as `CastPipeline.run` orders them."""
    from castseg.pipeline.stage_table import (
        DISTILL,
        REFINE,
        STAGES,
        SUPERVISED_BASELINE,
        TEACHER_FINETUNE,
        TEACHER_SELFTRAIN,
        TEACHER_ZERO_SHOT,
    )

    teacher, student, semi = cfg.teacher, cfg.student, cfg.loss.lambda_semi > 0
    unlabeled = len(data.unlabeled) if data.unlabeled is not None else 0
    val = f"on {len(data.val)} val images" if data.val is not None else "(no val set: AP is n/a)"

    def steps(count: int, batch: int, *, pseudo: bool) -> str:
        per_step = f"{batch} labeled + {batch} pseudo-labeled" if pseudo else f"{batch} labeled"
        return f"{count} steps × {per_step} images"

    does = {
        TEACHER_ZERO_SHOT: f"evaluate the pretrained teacher {val}",
        TEACHER_FINETUNE: steps(teacher.finetune_iters, teacher.batch_size, pseudo=False),
        TEACHER_SELFTRAIN: steps(teacher.selftrain_iters, teacher.batch_size, pseudo=True)
        + ", from the pretrained weights",
        DISTILL: steps(student.distill_iters, student.batch_size, pseudo=semi),
        REFINE: steps(student.refine_iters, student.batch_size, pseudo=False),
        SUPERVISED_BASELINE: steps(
            student.distill_iters + student.refine_iters, student.batch_size, pseudo=False
        ),
    }
    labeler = {TEACHER_FINETUNE: "fine-tuned teacher", TEACHER_SELFTRAIN: "adapted teacher"}
    stages = []
    for stage in STAGES:
        if stage.baseline and not baseline:
            continue
        what = does[stage]
        stages.append(
            (stage.name, f"{what}; evaluate {val}" if stage.trains and stage.evaluated else what)
        )
        if stage.pseudo_labels is not None:
            stages.append(
                ("pseudo-labels", f"label {unlabeled} unlabeled images with the {labeler[stage]}")
            )
    return stages
