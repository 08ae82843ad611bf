"""Progress of a training stage: a bar named for the stage on a terminal, plain lines in a log.

Lightning's bar writes to stdout and needs a terminal; under nohup, SLURM or `> log` the log stays
empty until the stage ends. `stage_progress` gives a `StageBar` when stdout is a terminal and
`ProgressLines` otherwise: `PROGRESS_LINES` lines over the stage and one at least every
`PROGRESS_SECONDS` s, with stage, step/total, loss, it/s and ETA.
"""

from __future__ import annotations

import datetime
import sys
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, TQDMProgressBar

from castseg.progress_bar import PROGRESS_SECONDS

PROGRESS_LINES = 10  # lines per stage besides the timed ones


class StageBar(TQDMProgressBar):
    """Lightning's training bar, described by the stage name instead of "Epoch 0"."""

    def __init__(self, stage: str) -> None:
        super().__init__()
        self.stage = stage

    @property
    def train_description(self) -> str:
        return self.stage

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any) -> None:
        # TQDMProgressBar's own would describe the bar as "Epoch 0" (a stage is one epoch).
        total = self.total_train_batches
        self.train_progress_bar.reset(None if total == float("inf") else total)
        self.train_progress_bar.initial = 0


class ProgressLines(Callback):
    """Prints `<stage>: step N/M, loss L, R it/s, ETA H:MM:SS` to stdout on rank 0, flushed.

    A line after the first step, every `total / lines` steps, whenever `seconds` passed since the
    last one, and after the last step.
    """

    def __init__(
        self,
        stage: str,
        total: int,
        *,
        seconds: float = PROGRESS_SECONDS,
        lines: int = PROGRESS_LINES,
    ) -> None:
        self.stage = stage
        self.total = total
        self.seconds = seconds
        self.every = max(1, total // lines)
        self._began = self._last = time.monotonic()
        self._first_step = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._began = self._last = time.monotonic()
        self._first_step = trainer.global_step  # a resumed stage starts past 0

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        step, now = trainer.global_step, time.monotonic()
        due = step == self._first_step + 1 or step % self.every == 0 or step == self.total
        if not trainer.is_global_zero or not (due or now - self._last >= self.seconds):
            return
        self._last = now
        rate = (step - self._first_step) / max(now - self._began, 1e-9)
        eta = datetime.timedelta(seconds=round((self.total - step) / rate)) if rate else "?"
        loss = trainer.callback_metrics.get("train/loss")
        shown = "n/a" if loss is None else f"{float(loss):.4f}"
        print(
            f"{self.stage}: step {step}/{self.total}, loss {shown}, {rate:.2f} it/s, ETA {eta}",
            file=sys.stdout,
            flush=True,
        )


def stage_progress(stage: str, total: int, progress: bool) -> list[Callback]:
    """The progress callback of a stage: a bar when stdout is a terminal, lines when it is not;
    none with `progress` off."""
    if not progress:
        return []
    return [StageBar(stage) if sys.stdout.isatty() else ProgressLines(stage, total)]
