"""`castseg demo`: all three CAST stages, end to end, on the embedded synthetic world (CPU).

The demo's teacher stands in for a vision foundation model: a larger model of the student's
family, pretrained on the world's *source* domain only, then adapted to the *target* domain by
CAST stage 1. It is not MM-Grounding-DINO + SAM2.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from castseg.commands import add_override_argument
from castseg.config import ExperimentConfig, apply_overrides, builtin_config, load_config
from castseg.data.synthetic import WorldSpec, generate_world
from castseg.demo_teacher import TeacherRecipe, source_teacher
from castseg.report import format_console_table
from castseg.training.experiment_data import load_experiment_data
from castseg.training.pipeline import CastPipeline

STAND_IN = (
    "The demo's teacher is a stand-in for MM-Grounding-DINO + SAM2: a larger castseg model "
    "pretrained on the synthetic *source* domain only, never on the target domain."
)


@dataclass(frozen=True)
class DemoPlan:
    """One demo run: images per world split, labeled target images, the teacher's recipe."""

    counts: dict[str, int]
    labeled: int
    teacher: TeacherRecipe
    overrides: tuple[str, ...] = ()

    @property
    def world(self) -> WorldSpec:
        return WorldSpec(counts=dict(self.counts))


FULL = DemoPlan(
    counts={"source_train": 240, "target_train": 240, "target_val": 60},
    labeled=24,
    teacher=TeacherRecipe(),
)
SMOKE = DemoPlan(
    counts={"source_train": 12, "target_train": 12, "target_val": 4},
    labeled=4,
    teacher=TeacherRecipe(steps=2, batch_size=2),
    overrides=(
        "teacher.finetune_iters=2",
        "teacher.selftrain_iters=2",
        "student.distill_iters=2",
        "student.refine_iters=2",
        "teacher.batch_size=2",
        "student.batch_size=2",
        "loss.num_points=256",
        "contrastive.num_negatives=16",
        "contrastive.max_anchors=64",
        "run.eval_top_k=10",
    ),
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run CAST end to end on the embedded synthetic world (CPU, a few minutes)",
        description=__doc__,
    )
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="run folder")
    parser.add_argument(
        "--smoke", action="store_true", help="the same code path on a tiny world in about a minute"
    )
    add_override_argument(parser)
    parser.add_argument(
        "--restart",
        action="store_true",
        help="discard an earlier run in the run folder instead of resuming it",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(run=run)


def demo_config(
    out: Path, world: dict[str, Path], plan: DemoPlan, overrides: list[str]
) -> ExperimentConfig:
    """The built-in demo config pointed at the generated world, then the user's overrides."""
    paths = [
        f"data.labeled_annotations={world['target_train']}",
        f"data.split={plan.labeled}",
        "data.unlabeled=null",
        f"data.val_annotations={world['target_val']}",
        f"run.out_dir={out}",
    ]
    cfg = load_config(builtin_config("demo"), [*paths, *plan.overrides])
    return apply_overrides(cfg, overrides)


def run(args: argparse.Namespace) -> int:
    plan = SMOKE if args.smoke else FULL
    progress = not args.no_progress
    out = args.out
    print(f"Generating the synthetic world in {out / 'world'}")
    world = generate_world(out / "world", plan.world)
    cfg = demo_config(out, world, plan, args.overrides)
    print(STAND_IN)
    teacher = source_teacher(plan.teacher, plan.world, world, cfg, out, progress=progress)
    data = load_experiment_data(cfg.data, progress=progress)
    pipeline = CastPipeline(cfg, data, out, progress=progress, restart=args.restart)
    outcome = pipeline.run(teacher, baseline=True)
    print()
    print(format_console_table(outcome.rows))
    print(f"\nReport: {outcome.report}")
    return 0
