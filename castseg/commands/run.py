"""`castseg run CONFIG`: the whole CAST pipeline on any COCO-format dataset.

A rerun into the same run.out_dir resumes: finished stages are skipped and an interrupted one
continues from its last checkpoint (Ctrl-C says where it stopped and exits with 130). A different
config stops with an error once a stage has finished (run.threads may change: the run says that
its CPU results then differ); --restart discards the earlier run. `castseg check CONFIG` makes the
same checks before training (castseg.preflight) and prints the plan without training.
castseg never starts processes itself: without torchrun or srun, run.devices auto is one device
and a count above 1 stops with the torchrun command (docs/distributed.md).
With --seeds 0,1,2 the pipeline runs once per seed into run.out_dir/seed_<k>/
and run.out_dir/summary.md gives every row as mean ± std over the seeds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from castseg.commands import COMMANDS, add_override_argument, add_seeds_argument


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
    from castseg.config import load_config
    from castseg.pipeline.pipeline import CastPipeline
    from castseg.preflight import MODEL_CHECKS, SETUP_CHECKS, Preflight
    from castseg.result_tables import format_console_table, format_pseudo_label_console
    from castseg.runtime.compute import apply_compute_settings
    from castseg.runtime.distributed import distributed_session, is_rank_zero

    progress = not args.no_progress
    cfg = load_config(args.config, args.overrides)
    # The checks `castseg check` makes too: the folders and the launch first, the models and
    # data on every rank.
    flight = Preflight(
        cfg, args.config, restart=args.restart, seeds=args.seeds, progress=progress
    ).check(SETUP_CHECKS)
    apply_compute_settings(flight.cfg.run)
    # Launched by torchrun or SLURM with run.strategy=ddp, every rank runs this function.
    with distributed_session(flight.cfg.run):
        flight.check(MODEL_CHECKS)
        cfg, data, teacher = flight.cfg, flight.data, flight.teacher
        assert data is not None and teacher is not None
        if args.seeds is not None:
            return run_seeds_command(cfg, data, teacher, args)
        pipeline = CastPipeline(
            cfg, data, Path(cfg.run.out_dir), progress=progress, restart=args.restart
        )
        outcome = pipeline.run(teacher, baseline=args.baseline)
        if is_rank_zero():
            print(format_console_table(outcome.rows))
            if outcome.pseudo_labels:
                print(f"\n{format_pseudo_label_console(outcome.pseudo_labels)}")
            print_skipped_records(data)
            print(f"\nReport: {outcome.report}")
    return 0


def run_seeds_command(cfg, data, teacher, args: argparse.Namespace) -> int:
    """`--seeds`: the pipeline once per seed (the first from the checked `teacher`, the others
    from a fresh copy of its pretrained weights), then the summary over seeds."""
    from castseg.experiments.seeds import run_seeds
    from castseg.preflight import load_teacher

    unused = [teacher]
    outcome = run_seeds(
        cfg,
        args.seeds,
        data,
        lambda: unused.pop() if unused else load_teacher(cfg, data),
        progress=not args.no_progress,
        restart=args.restart,
        baseline=args.baseline,
    )
    if outcome.summary is not None:
        print(f"\nSummary over seeds {', '.join(map(str, args.seeds))}: {outcome.summary}")
        print_skipped_records(data)
    return 0


def print_skipped_records(data) -> None:
    """The records `data.on_bad_record: skip` dropped, one line each, after the results."""
    lines = data.skipped_report()
    if lines:
        print("\n" + "\n".join(lines))
