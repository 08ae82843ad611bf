"""`castseg run CONFIG`: the whole CAST pipeline on any COCO-format dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from castseg.commands import add_override_argument
from castseg.config import load_config
from castseg.report import format_console_table
from castseg.training.checkpoints import load_checkpoint
from castseg.training.experiment_data import load_experiment_data
from castseg.training.pipeline import CastPipeline


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="teacher adaptation, knowledge transfer and student refinement from a YAML config",
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
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    if cfg.teacher.checkpoint is None:
        raise ValueError(
            "teacher.checkpoint is required: the path of a castseg checkpoint of the pretrained "
            f"teacher (kind {cfg.teacher.kind!r})"
        )
    data = load_experiment_data(cfg.data)
    loaded = load_checkpoint(cfg.teacher.checkpoint)
    if loaded.category_map.names != data.categories.names:
        raise ValueError(
            f"teacher {cfg.teacher.checkpoint} predicts {list(loaded.category_map.names)} but "
            f"{cfg.data.labeled_annotations} has {list(data.categories.names)}"
        )
    out_dir = Path(cfg.run.out_dir)
    pipeline = CastPipeline(cfg, data, out_dir, progress=not args.no_progress)
    outcome = pipeline.run(loaded.model.train(), baseline=args.baseline)
    print(format_console_table(outcome.rows))
    print(f"\nReport: {outcome.report}")
    return 0
