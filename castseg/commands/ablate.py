"""`castseg ablate CONFIG --vary KEY=V1,V2 [--vary ...] --seeds 0,1,2`: an ablation grid.

Each --vary is one axis; several give their product. Every variant runs once per seed into
run.out_dir/<variant>/seed_<k>/ (resumable, like `castseg run`), and run.out_dir/ablation.md
gives a row per variant: the refined student's maskAP and AP50 (and its maskAP after knowledge
transfer) as mean ± std over the seeds, plus the adapted teacher's where the variants change it.
Variants that change only student settings share one teacher adaptation per seed through the
shared stage store (run.stage_store). The contrastive settings are stage-1 inputs too, so their
variants re-adapt the teacher; with --student-only the teacher adapts with the base config's
contrastive settings and only knowledge transfer varies. Every variant's config is checked
before anything runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from castseg.commands import add_override_argument, add_seeds_argument


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ablate",
        help="run a grid of config variants over several seeds and tabulate them",
        description=__doc__,
    )
    parser.add_argument("config", type=Path, help="experiment YAML (the grid's base)")
    parser.add_argument(
        "--vary",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="one axis of the grid, e.g. --vary contrastive.mode=uniform,fusion (repeatable)",
    )
    add_seeds_argument(parser, "the seeds every variant runs with (default 0,1,2)")
    add_override_argument(parser)
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="also train the supervised-only student of every run, for comparison",
    )
    parser.add_argument(
        "--student-only",
        action="store_true",
        help="the varied contrastive.* settings apply to knowledge transfer only; the teacher "
        "adapts with the base config's (teacher.contrastive pinned), once per seed",
    )
    parser.add_argument(
        "--restart",
        action="store_true",
        help="discard earlier runs in the variants' folders instead of resuming them",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from castseg.config import load_config
    from castseg.experiments.grid import format_ablation_table, plan_grid, run_ablation
    from castseg.experiments.variants import parse_axis
    from castseg.preflight import SETUP_CHECKS, Preflight
    from castseg.runtime.compute import apply_compute_settings
    from castseg.runtime.distributed import distributed_session

    # run.out_dir, the stage store and the launch, before any data or model is loaded
    cfg = Preflight(load_config(args.config, args.overrides), args.config).check(SETUP_CHECKS).cfg
    apply_compute_settings(cfg.run)
    axes = [parse_axis(text) for text in args.vary]
    seeds = (0, 1, 2) if args.seeds is None else args.seeds
    # every variant's config checked before anything runs
    plan_grid(cfg, axes, seeds, student_only=args.student_only)
    with distributed_session(cfg.run):
        ablation = run_ablation(
            cfg,
            axes,
            seeds,
            progress=not args.no_progress,
            restart=args.restart,
            baseline=args.baseline,
            student_only=args.student_only,
        )
    if ablation is not None:
        print()
        print(format_ablation_table(ablation))
        print(f"\nAblation table: {Path(cfg.run.out_dir) / 'ablation.md'}")
    return 0
