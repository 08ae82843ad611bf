"""Run one training stage with Lightning: batches, module, trainer, logs, resumable checkpoints.

A stage saves a Lightning checkpoint to `<out_dir>/<stage>/last.ckpt` every
`run.checkpoint_every` steps and after its last step. Lightning logs a step's row only after the
step's `on_train_batch_end`, where the checkpoint is taken, so the checkpoint is first written
whole to `last.ckpt.pending` and renamed onto `last.ckpt` at the next hook, once that row is on
disk; a kill in between leaves the previous checkpoint, and a rerun drops the pending file. A
checkpoint thus never runs ahead of its stage's log. A stage that finds its checkpoint resumes
from it; the checkpoint names its stage, its length and its run, and one written by anything else
is an error, never silently trusted. Batches and the module's random draws depend on the step alone
(`castseg.training.batches`), so on CPU a resumed stage trains exactly as an uninterrupted one
(with the same number of threads). A resumed stage says so ("resuming <stage> from step N/M");
Ctrl-C (`castseg.interruption`) names the stage, the step and the step of the checkpoint.
Progress shows as a bar named for the stage on a terminal, as plain lines otherwise
(`castseg.training.progress`).

Lightning's CSVLogger deletes an existing metrics.csv when it starts. A resumed stage first moves
the rows logged before its checkpoint to `metrics.before_resume.csv` and, when it ends, writes
them back in front of the new rows, so the stage's log is whole. (TensorBoard keeps the event
files of every attempt.)
"""

from __future__ import annotations

import csv
import pickle
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torch import nn
from torch.utils.data import Dataset

from castseg.config import ContrastiveConfig, ExperimentConfig
from castseg.data.samples import Sample
from castseg.data.views import WeakView
from castseg.interruption import Interrupted
from castseg.io import atomic_write
from castseg.runtime.compute import resolve_precision
from castseg.training.batches import StageBatches
from castseg.training.metrics_log import METRICS_FILE, read_log
from castseg.training.module import CastModule
from castseg.training.objective import StageWeights
from castseg.training.optim import OptimSettings
from castseg.training.progress import StageBar, stage_progress

RESUME_CHECKPOINT = "last.ckpt"
_PENDING = ".pending"
_LOG = METRICS_FILE
_LOG_HISTORY = "metrics.before_resume.csv"


class NonFiniteLossError(ValueError):
    """A stage's loss or gradients stayed non-finite for `run.max_nonfinite_steps` steps."""


@dataclass
class StageRun:
    """What a finished stage leaves: its name, log folder, step count and wall time."""

    name: str
    log_dir: Path
    steps: int
    wall_s: float
    skipped_steps: int = 0

    @property
    def metrics_csv(self) -> Path:
        return self.log_dir / _LOG


def resume_checkpoint(out_dir: Path, name: str) -> Path:
    """Where stage `name` of a run in `out_dir` keeps its resumable checkpoint."""
    return out_dir / name / RESUME_CHECKPOINT


def discard_resume_files(out_dir: Path, name: str) -> None:
    """Remove the resumable checkpoint and log history of stage `name` (finished or abandoned)."""
    checkpoint = resume_checkpoint(out_dir, name)
    checkpoint.unlink(missing_ok=True)
    _pending(checkpoint).unlink(missing_ok=True)
    (out_dir / name / _LOG_HISTORY).unlink(missing_ok=True)


def _pending(checkpoint: Path) -> Path:
    """Where a checkpoint waits until the log row of its step is written."""
    return checkpoint.with_name(checkpoint.name + _PENDING)


class StageCheckpoint(Callback):
    """Saves the stage's resumable checkpoint every `every` steps and after the last step, and
    stops the stage, saving first, once `max_nonfinite` consecutive steps were skipped.

    identity: plain data naming the stage and run, stored in the checkpoint and checked when a
    stage resumes from it.
    """

    def __init__(
        self, path: Path, *, identity: dict[str, Any], every: int, max_nonfinite: int
    ) -> None:
        self.path = path
        self.identity = identity
        self.every = every
        self.max_nonfinite = max_nonfinite

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint["castseg"] = dict(self.identity)

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        assert isinstance(pl_module, CastModule)
        step, steps = trainer.global_step, self.identity["steps"]
        if pl_module.nonfinite_streak >= self.max_nonfinite:
            self.save(trainer)
            self.commit(trainer)
            raise NonFiniteLossError(self._stop_message(pl_module, step, steps))
        if step % self.every == 0 or step == steps:
            self.save(trainer)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.commit(trainer)  # the previous step's row is logged by now

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.commit(trainer)

    def save(self, trainer: L.Trainer) -> None:
        # Every rank takes part in save_checkpoint; only rank 0 writes the file. The optimizer
        # and loop states (weights_only=False) are what makes the checkpoint resumable.
        if trainer.is_global_zero:
            with atomic_write(_pending(self.path)) as tmp:
                trainer.save_checkpoint(tmp, weights_only=False)
        else:
            trainer.save_checkpoint(self.path, weights_only=False)

    def commit(self, trainer: L.Trainer) -> None:
        """Put a pending checkpoint in place (atomically: a rename)."""
        pending = _pending(self.path)
        if trainer.is_global_zero and pending.is_file():
            pending.replace(self.path)

    def _stop_message(self, module: CastModule, step: int, steps: int) -> str:
        streak = module.nonfinite_streak
        if module.last_finite_step:
            kept = f"the weights after step {module.last_finite_step}, the last finite one,"
        else:
            kept = "no step was finite; the initial weights"
        return (
            f"stage {self.identity['stage']!r}: the loss or its gradients were not finite for "
            f"{streak} consecutive steps (steps {step - streak + 1}-{step} of {steps}, "
            f"run.max_nonfinite_steps={self.max_nonfinite}), so the stage stopped; {kept} are "
            f"saved in {self.path}, which a rerun resumes from. Lower the learning rate or check "
            "the data (a changed config needs --restart or another run.out_dir)."
        )


def train_stage(
    name: str,
    model: nn.Module,
    cfg: ExperimentConfig,
    *,
    num_classes: int,
    labeled: Dataset[Sample],
    pseudo_labeled: Dataset[Sample] | None,
    weights: StageWeights,
    steps: int,
    optim: OptimSettings,
    contrastive: ContrastiveConfig,
    batch_size: int,
    out_dir: Path,
    progress: bool = True,
    run_key: str | None = None,
) -> StageRun:
    """Train `model` in place on J with `weights` for `steps` steps; logs go to out_dir/name.

    Each step draws `batch_size` labeled images and, when λ_semi > 0, `batch_size`
    pseudo-labeled ones (with replacement, so a stage is a fixed number of iterations as in
    the paper). `optim`, `contrastive` and `batch_size` are the teacher's or the student's
    settings (`CastStages.train`). The stage resumes from out_dir/name/last.ckpt when there is
    one; run_key names the run it must belong to (None outside a `castseg run`). A
    `NonFiniteLossError` stops the stage after `cfg.run.max_nonfinite_steps` consecutive
    non-finite steps.
    """
    log_dir = out_dir / name
    if steps == 0:
        return StageRun(name, log_dir, 0, 0.0)
    if weights.lambda_semi > 0 and pseudo_labeled is None:
        raise ValueError(f"stage {name!r} has λ_semi > 0 but no pseudo-labeled data")
    L.seed_everything(cfg.run.seed, verbose=False)
    sources = {"labeled": labeled}
    if pseudo_labeled is not None and weights.lambda_semi > 0:
        sources["unlabeled"] = pseudo_labeled
    batches = StageBatches(
        sources,
        WeakView(tuple(cfg.data.image_size)),
        batch_size=batch_size,
        steps=steps,
        seed=cfg.run.seed,
        num_workers=cfg.data.num_workers,
    )
    log_every = min(cfg.run.log_every, steps)
    module = CastModule(
        model,
        num_classes=num_classes,
        loss=cfg.loss,
        contrastive=contrastive,
        weights=weights,
        optim=optim,
        steps=steps,
        monitor_every=log_every,
        seed=cfg.run.seed,
    )
    checkpoint = resume_checkpoint(out_dir, name)
    identity = {"stage": name, "steps": steps, "run": run_key}
    shown = stage_progress(name, steps, progress)
    trainer = L.Trainer(
        max_steps=steps,
        max_epochs=1,
        accelerator=cfg.run.accelerator,
        devices=cfg.run.devices,
        num_nodes=cfg.run.num_nodes,
        # Some parameters take no part in some stages (the projection head when λ_pxl = 0, an
        # encoder's mask token); DDP has to look for them.
        strategy="ddp_find_unused_parameters_true" if cfg.run.strategy == "ddp" else "auto",
        precision=resolve_precision(cfg.run),
        gradient_clip_val=optim.grad_clip or None,
        logger=[
            # Every logged row reaches the file at once, so a resumed stage finds them all.
            CSVLogger(log_dir, name="", version="", flush_logs_every_n_steps=1),
            TensorBoardLogger(log_dir / "tensorboard", name="", version=""),
        ],
        callbacks=[
            StageCheckpoint(
                checkpoint,
                identity=identity,
                every=cfg.run.checkpoint_every,
                max_nonfinite=cfg.run.max_nonfinite_steps,
            ),
            *shown,
        ],
        log_every_n_steps=log_every,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=any(isinstance(c, StageBar) for c in shown),
        num_sanity_val_steps=0,
        limit_val_batches=0,
        use_distributed_sampler=False,  # the batches shard themselves by rank
    )
    if trainer.is_global_zero:
        _pending(checkpoint).unlink(missing_ok=True)  # its step's log row may be missing
    resume = checkpoint.is_file()
    start = _resume_step(checkpoint, identity) if resume else 0
    if trainer.is_global_zero:
        _keep_log_before(log_dir, start)
        if resume:
            print(f"resuming {name} from step {start}/{steps} ({checkpoint})")
    model.train()  # Lightning keeps the modes it finds; an earlier stage may have left eval mode
    began = time.perf_counter()
    with warnings.catch_warnings():
        # Iteration-based, step-indexed loaders are built on purpose: Lightning's advice about
        # workers and about resuming mid-epoch does not apply.
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        # Teachers keep their frozen encoders in eval mode on purpose.
        warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated.*")
        warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended.*")
        # A skipped step returns None on purpose and is logged by CastModule.
        warnings.filterwarnings("ignore", message=".*`training_step` returned `None`.*")
        # A resumed stage keeps the rows of its earlier attempts itself (see module doc).
        warnings.filterwarnings("ignore", message=".*Previous log files in this directory.*")
        try:
            trainer.fit(
                module,
                datamodule=batches,
                ckpt_path=checkpoint if resume else None,
                weights_only=True,
            )
        except Interrupted as err:
            saved = _resume_step(checkpoint, identity) if checkpoint.is_file() else 0
            where = f"{name} at step {trainer.global_step}/{steps} (checkpoint at step {saved})"
            raise err.during(where) from None
    if trainer.is_global_zero:
        _restore_log_history(log_dir)
    model.eval()
    return StageRun(name, log_dir, steps, time.perf_counter() - began, module.skipped_steps)


def _resume_step(path: Path, identity: dict[str, Any]) -> int:
    """The step a stage resumes at from its checkpoint; ValueError when it is not this stage's."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise ValueError(
            f"resumable checkpoint {path} cannot be read ({err}); delete it to restart the "
            "stage, or rerun with --restart"
        ) from err
    found = checkpoint.get("castseg") if isinstance(checkpoint, dict) else None
    if found != identity:
        raise ValueError(
            f"resumable checkpoint {path} was written by another run ({found}, expected "
            f"{identity}): delete it (the stage starts over), rerun with --restart, or choose "
            "another run.out_dir"
        )
    return int(checkpoint["global_step"])


def _keep_log_before(log_dir: Path, start: int) -> None:
    """Before a fit from step `start`, keep the rows logged before it in the history file."""
    history = log_dir / _LOG_HISTORY
    if start == 0:
        history.unlink(missing_ok=True)
        return
    rows = _history_and_new_rows(log_dir)
    _write_rows(history, [row for row in rows if int(row["step"]) < start])


def _restore_log_history(log_dir: Path) -> None:
    """After a resumed fit, put the history in front of the rows of metrics.csv."""
    history = log_dir / _LOG_HISTORY
    if not history.is_file():
        return
    _write_rows(log_dir / _LOG, _history_and_new_rows(log_dir))
    history.unlink()


def _history_and_new_rows(log_dir: Path) -> list[dict[str, str]]:
    """The history rows, then the rows of metrics.csv after the last step of the history.

    metrics.csv may already be a merged file (a kill right after the merge), hence the cut.
    """
    old = _read_rows(log_dir / _LOG_HISTORY)
    last = max((int(row["step"]) for row in old), default=-1)
    return old + [row for row in _read_rows(log_dir / _LOG) if int(row["step"]) > last]


def _read_rows(path: Path) -> list[dict[str, str]]:
    """Complete rows of a CSV log (a row cut short by a kill is dropped); [] without a file."""
    if not path.is_file():
        return []
    header, rows = read_log(path, strict=False)
    cells = [dict(zip(header, row, strict=True)) for _, row in rows]
    return [row for row in cells if row.get("step", "").isdigit()]


def _write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    """Write rows as CSV with sorted columns (as CSVLogger does), atomically."""
    fields = sorted({key for row in rows for key in row})
    with atomic_write(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
