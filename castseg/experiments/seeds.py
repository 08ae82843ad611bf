"""One config over several seeds: a run per seed in `<run.out_dir>/seed_<k>/`, then a summary.

Each seed's run is an ordinary `castseg run` (run state, resume, report) with `run.seed = k`;
the data split (`data.split_seed`) stays the config's. A rerun skips a seed whose
`results.json` holds this run's fingerprint, resumes an interrupted one, and rewrites
`summary.md` / `summary.json` from every seed's `results.json`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from torch import nn

from castseg.config import ExperimentConfig
from castseg.experiments.summary import write_summary
from castseg.pipeline.experiment_data import ExperimentData
from castseg.pipeline.fingerprints import as_json, run_fingerprint
from castseg.pipeline.pipeline import CastPipeline
from castseg.pipeline.results import RESULTS_FILE, RunResults, read_results
from castseg.pipeline.stage_store import store_root
from castseg.pipeline.stage_table import TEACHER_SELFTRAIN
from castseg.pipeline.stages import state_fingerprint
from castseg.runtime.distributed import is_rank_zero


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
    fingerprint = as_json(run_fingerprint(cfg, state_fingerprint(teacher)))
    if done.fingerprint != fingerprint or done.baseline != baseline:
        return None
    return done


# Where a run's adapted teacher came from: trained by this invocation, taken from the shared
# stage store, or left by an earlier invocation into the same folder.
TeacherSource = Literal["computed", "stored", "earlier"]


@dataclass
class SeedRun:
    """One finished seed run: its results (None on ranks other than 0) and its teacher's
    source."""

    results: RunResults | None
    teacher: TeacherSource


def run_once(
    cfg: ExperimentConfig,
    data: ExperimentData,
    teacher: nn.Module,
    *,
    progress: bool,
    restart: bool,
    baseline: bool,
) -> SeedRun:
    """One CAST run into cfg.run.out_dir, or its earlier results when it finished before."""
    if not restart:
        done = finished_run(cfg, teacher, baseline)
        if done is not None:
            print(f"Run in {cfg.run.out_dir} finished earlier; its results: {done.path}")
            return SeedRun(done, "earlier")
    pipeline = CastPipeline(cfg, data, Path(cfg.run.out_dir), progress=progress, restart=restart)
    outcome = pipeline.run(teacher, baseline=baseline)
    source: TeacherSource = "earlier"
    if TEACHER_SELFTRAIN.name in outcome.ran:
        source = "computed"
    elif TEACHER_SELFTRAIN.name in pipeline.reused:
        source = "stored"
    results = None if outcome.results is None else read_results(outcome.results)
    return SeedRun(results, source)


@dataclass
class SeedsOutcome:
    """Every seed's run and the summary's path (rank 0)."""

    runs: list[SeedRun]
    summary: Path | None

    @property
    def results(self) -> list[RunResults]:
        return [run.results for run in self.runs if run.results is not None]


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
    runs = []
    for i, seed in enumerate(seeds, 1):
        seed_cfg = seed_config(cfg, seed, out_dir)
        print(f"== seed {seed} ({i} of {len(seeds)}): {seed_cfg.run.out_dir}")
        runs.append(
            run_once(
                seed_cfg,
                data,
                make_teacher(),
                progress=progress,
                restart=restart,
                baseline=baseline,
            )
        )
    outcome = SeedsOutcome(runs, None)
    if is_rank_zero():
        outcome.summary = write_summary(out_dir, outcome.results, title=title)
    return outcome
