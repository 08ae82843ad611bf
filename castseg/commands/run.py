"""`castseg run CONFIG`: the whole CAST pipeline on any COCO-format dataset.

A rerun into the same run.out_dir resumes: finished stages are skipped and an interrupted one
continues from its last checkpoint (Ctrl-C says where it stopped and exits with 130). A different
config stops with an error once a stage has finished; --restart discards the earlier run.
`castseg check CONFIG` makes the same checks and prints the plan without training.
With --seeds 0,1,2 the pipeline runs once per seed into run.out_dir/seed_<k>/
and run.out_dir/summary.md gives every row as mean ± std over the seeds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from castseg.commands import (
    COMMANDS,
    add_override_argument,
    add_seeds_argument,
    apply_threads,
    check_output_folder,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help=COMMANDS["run"],
        description=__doc__,
    )
    parser.add_argument(
        "config", type=Path, help="experiment YAML (see configs in castseg/configs)"
    )
    add_override_argument(parser)
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="also train the supervised-only student with the same budget, for comparison",
    )
    parser.add_argument(
        "--restart",
        action="store_true",
        help="discard an earlier run in the run folder instead of resuming it",
    )
    add_seeds_argument(parser, "one run per seed into run.out_dir/seed_<k>/, then a summary")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: `castseg run --help` must not wait for torch, Lightning and transformers.
    from castseg.commands.check import load_teacher
    from castseg.config import load_config
    from castseg.report import format_console_table, format_pseudo_label_console
    from castseg.training.distributed import distributed_session, is_rank_zero
    from castseg.training.experiment_data import load_experiment_data
    from castseg.training.pipeline import CastPipeline

    cfg = load_config(args.config, args.overrides)
    check_output_folder(Path(cfg.run.out_dir), "run.out_dir")
    apply_threads(cfg.run.threads)
    progress = not args.no_progress
    # Launched by torchrun or SLURM with run.strategy=ddp, every rank runs this function.
    with distributed_session(cfg.run):
        data = load_experiment_data(cfg.data, progress=progress)
        if args.seeds is not None:
            return run_seeds_command(cfg, data, args)
        teacher = load_teacher(cfg, data)
        pipeline = CastPipeline(
            cfg, data, Path(cfg.run.out_dir), progress=progress, restart=args.restart
        )
        outcome = pipeline.run(teacher, baseline=args.baseline)
        if is_rank_zero():
            print(format_console_table(outcome.rows))
            if outcome.pseudo_labels:
                print(f"\n{format_pseudo_label_console(outcome.pseudo_labels)}")
            skipped = data.skipped_records
            if skipped:
                print(f"\n{len(skipped)} data records skipped (listed in the report)")
            print(f"\nReport: {outcome.report}")
    return 0


def run_seeds_command(cfg, data, args: argparse.Namespace) -> int:
    """`--seeds`: the pipeline once per seed, then the summary over seeds."""
    from castseg.commands.check import load_teacher
    from castseg.experiments.seeds import run_seeds

    outcome = run_seeds(
        cfg,
        args.seeds,
        data,
        lambda: load_teacher(cfg, data),
        progress=not args.no_progress,
        restart=args.restart,
        baseline=args.baseline,
    )
    if outcome.summary is not None:
        print(f"\nSummary over seeds {', '.join(map(str, args.seeds))}: {outcome.summary}")
    return 0
