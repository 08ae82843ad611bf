"""`castseg demo`: all three CAST stages, end to end, on the embedded synthetic world (CPU).

The demo's teacher stands in for a vision foundation model: a larger model of the student's
family, pretrained on the world's *broad* domain (varied appearances, never a target image), then
adapted to the *target* domain by CAST stage 1. It is not MM-Grounding-DINO + SAM2. The
student's encoder starts from a stand-in for DINOv2 pretraining: a tiny encoder pretrained on the
source domain only, which the CAST student and the supervised-only baseline share. The plans and
config live in `castseg.demo_plan`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from castseg.commands import add_override_argument
from castseg.io import check_output_folder


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


def run(args: argparse.Namespace) -> int:
    from castseg.config import apply_overrides
    from castseg.data.synthetic import generate_world, holds_world
    from castseg.demo_encoder import stand_in_encoder
    from castseg.demo_plan import FULL, SMOKE, STAND_IN, demo_config
    from castseg.demo_teacher import stand_in_teacher
    from castseg.pipeline.experiment_data import load_experiment_data
    from castseg.pipeline.pipeline import CastPipeline
    from castseg.result_tables import format_console_table, format_pseudo_label_console
    from castseg.runtime.compute import apply_compute_settings

    plan = SMOKE if args.smoke else FULL
    progress = not args.no_progress
    out = args.out
    check_output_folder(out, "--out")
    verb = "Reusing" if holds_world(out / "world", plan.world) else "Generating"
    print(f"{verb} the synthetic world in {out / 'world'}")
    world = generate_world(out / "world", plan.world)
    cfg = demo_config(out, world, plan, args.overrides)
    apply_compute_settings(cfg.run)
    print(STAND_IN)
    if cfg.student.encoder == "auto":  # unless the user chose an encoder with --set
        encoder = stand_in_encoder(plan.encoder, plan.world, world, cfg, out, progress=progress)
        cfg = apply_overrides(cfg, [f"student.encoder={encoder}"])
    teacher = stand_in_teacher(plan.teacher, plan.world, world, cfg, out, progress=progress)
    data = load_experiment_data(cfg.data, progress=progress)
    pipeline = CastPipeline(
        cfg, data, out, progress=progress, restart=args.restart, about=[STAND_IN]
    )
    outcome = pipeline.run(teacher, baseline=True)
    print()
    print(format_console_table(outcome.rows))
    if outcome.pseudo_labels:
        print()
        print(format_pseudo_label_console(outcome.pseudo_labels))
    print(f"\nReport: {outcome.report}")
    return 0
