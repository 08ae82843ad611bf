"""One config over several seeds: a run per seed in `<run.out_dir>/seed_<k>/`, then a summary.

Each seed's run is an ordinary `castseg run` (run state, resume, report) with `run.seed = k`;
the data split (`data.split_seed`) stays the config's. A rerun skips a seed whose
`results.json` holds this run's fingerprint, resumes an interrupted one, and rewrites
`summary.md` / `summary.json` from every seed's `results.json`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from torch import nn

from castseg.config import ExperimentConfig
from castseg.experiments.results import RESULTS_FILE, RunResults, read_results
from castseg.experiments.summary import write_summary
from castseg.training.distributed import is_rank_zero
from castseg.training.experiment_data import ExperimentData
from castseg.training.pipeline import CastPipeline
from castseg.training.run_state import run_fingerprint
from castseg.training.stage_store import store_root
from castseg.training.stages import state_fingerprint


def seed_config(cfg: ExperimentConfig, seed: int, out_dir: str | Path) -> ExperimentConfig:
    """`cfg` with run.seed = seed, writing to out_dir/seed_<seed>; the stage store stays the
    one `cfg` names, so the seed runs of every experiment in one folder share it."""
    root = store_root(cfg.run)
    run = replace(
        cfg.run,
        seed=seed,
        out_dir=str(Path(out_dir) / f"seed_{seed}"),
        stage_store=None if root is None else str(root),
    )
    return replace(cfg, run=run)


def finished_run(cfg: ExperimentConfig, teacher: nn.Module, baseline: bool) -> RunResults | None:
    """The results of the run `cfg` would make from `teacher`, if its folder holds them."""
    path = Path(cfg.run.out_dir) / RESULTS_FILE
    if not path.is_file():
        return None
    try:
        done = read_results(path)
    except ValueError:
        return None  # an unreadable results file is rewritten by the run
    fingerprint = json.loads(json.dumps(run_fingerprint(cfg, state_fingerprint(teacher))))
    if done.fingerprint != fingerprint or done.baseline != baseline:
        return None
    return done


def run_once(
    cfg: ExperimentConfig,
    data: ExperimentData,
    teacher: nn.Module,
    *,
    progress: bool,
    restart: bool,
    baseline: bool,
) -> RunResults | None:
    """One CAST run into cfg.run.out_dir, or its earlier results when it finished before.
    Returns the results on rank 0 (None on the other ranks)."""
    if not restart:
        done = finished_run(cfg, teacher, baseline)
        if done is not None:
            print(f"Run in {cfg.run.out_dir} finished earlier; its results: {done.path}")
            return done
    pipeline = CastPipeline(cfg, data, Path(cfg.run.out_dir), progress=progress, restart=restart)
    outcome = pipeline.run(teacher, baseline=baseline)
    if outcome.results is None:
        return None
    return read_results(outcome.results)


@dataclass
class SeedsOutcome:
    """Every seed's results (rank 0) and the summary's path."""

    results: list[RunResults]
    summary: Path | None


def run_seeds(
    cfg: ExperimentConfig,
    seeds: Sequence[int],
    data: ExperimentData,
    make_teacher: Callable[[], nn.Module],
    *,
    progress: bool = True,
    restart: bool = False,
    baseline: bool = False,
    title: str = "CAST over seeds",
) -> SeedsOutcome:
    """A run per seed (a fresh teacher from `make_teacher` each), then summary.md/.json in
    cfg.run.out_dir."""
    if not seeds:
        raise ValueError("no seeds given: pass e.g. --seeds 0,1,2")
    out_dir = Path(cfg.run.out_dir)
    results = []
    for i, seed in enumerate(seeds, 1):
        seed_cfg = seed_config(cfg, seed, out_dir)
        print(f"== seed {seed} ({i} of {len(seeds)}): {seed_cfg.run.out_dir}")
        done = run_once(
            seed_cfg,
            data,
            make_teacher(),
            progress=progress,
            restart=restart,
            baseline=baseline,
        )
        if done is not None:
            results.append(done)
    summary = None
    if is_rank_zero():
        summary = write_summary(out_dir, results, title=title)
    return SeedsOutcome(results, summary)
