"""Run one training stage with Lightning: loaders, module, trainer, logs."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities import CombinedLoader
from torch import nn
from torch.utils.data import Dataset

from castseg.config import ExperimentConfig
from castseg.data.samples import Sample
from castseg.data.views import WeakView
from castseg.training.batches import training_loader
from castseg.training.module import CastModule
from castseg.training.objective import StageWeights
from castseg.training.optim import OptimSettings


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
        return self.log_dir / "metrics.csv"


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
    batch_size: int,
    out_dir: Path,
    progress: bool = True,
) -> StageRun:
    """Train `model` in place on J with `weights` for `steps` steps; logs go to out_dir/name.

    Each step draws `batch_size` labeled images and, when λ_semi > 0, `batch_size`
    pseudo-labeled ones (with replacement, so a stage is a fixed number of iterations as in
    the paper).
    """
    log_dir = out_dir / name
    if steps == 0:
        return StageRun(name, log_dir, 0, 0.0)
    if weights.lambda_semi > 0 and pseudo_labeled is None:
        raise ValueError(f"stage {name!r} has λ_semi > 0 but no pseudo-labeled data")
    L.seed_everything(cfg.run.seed, verbose=False)
    view = WeakView(tuple(cfg.data.image_size))
    common = dict(batch_size=batch_size, steps=steps, num_workers=cfg.data.num_workers)
    loaders = {"labeled": training_loader(labeled, view, seed=cfg.run.seed, **common)}
    if pseudo_labeled is not None and weights.lambda_semi > 0:
        loaders["unlabeled"] = training_loader(
            pseudo_labeled, view, seed=cfg.run.seed + 1, **common
        )
    log_every = min(cfg.run.log_every, steps)
    module = CastModule(
        model,
        num_classes=num_classes,
        loss=cfg.loss,
        contrastive=cfg.contrastive,
        weights=weights,
        optim=optim,
        steps=steps,
        monitor_every=log_every,
    )
    trainer = L.Trainer(
        max_steps=steps,
        max_epochs=1,
        accelerator=cfg.run.accelerator,
        devices=cfg.run.devices,
        precision=cfg.run.precision,
        gradient_clip_val=optim.grad_clip or None,
        logger=[
            CSVLogger(log_dir, name="", version=""),
            TensorBoardLogger(log_dir / "tensorboard", name="", version=""),
        ],
        log_every_n_steps=log_every,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    model.train()  # Lightning keeps the modes it finds; an earlier stage may have left eval mode
    start = time.perf_counter()
    with warnings.catch_warnings():
        # Iteration-based loaders are built on purpose; Lightning's advice does not apply.
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated.*")
        trainer.fit(module, train_dataloaders=CombinedLoader(loaders, mode="max_size_cycle"))
    model.eval()
    return StageRun(name, log_dir, steps, time.perf_counter() - start, module.skipped_steps)
