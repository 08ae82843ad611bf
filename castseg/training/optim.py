"""Optimiser and learning-rate schedule of a stage (paper Table 8)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import nn

from castseg.config import StudentConfig, TeacherConfig


@dataclass(frozen=True)
class OptimSettings:
    """AdamW with per-group learning rates and a per-step schedule.

    lr: learning rate per parameter group of the model ("encoder", "decoder").
    schedule: "poly" (lr · (1 − step/steps)^power) or "multistep" (× gamma at each milestone,
    given as fractions of the run). grad_clip: ℓ2 norm for clipping, 0 for none.
    """

    lr: dict[str, float]
    weight_decay: float
    betas: tuple[float, float]
    schedule: Literal["poly", "multistep"]
    poly_power: float = 0.9
    milestones: tuple[float, ...] = ()
    gamma: float = 0.1
    grad_clip: float = 0.0

    @classmethod
    def for_student(cls, cfg: StudentConfig) -> OptimSettings:
        return cls(
            lr={"encoder": cfg.lr_encoder, "decoder": cfg.lr_decoder},
            weight_decay=cfg.weight_decay,
            betas=tuple(cfg.betas),
            schedule="poly",
            poly_power=cfg.poly_power,
            grad_clip=cfg.grad_clip,
        )

    @classmethod
    def for_teacher(cls, cfg: TeacherConfig) -> OptimSettings:
        return cls(
            lr={"encoder": cfg.lr, "decoder": cfg.lr},
            weight_decay=cfg.weight_decay,
            betas=tuple(cfg.betas),
            schedule="multistep",
            milestones=tuple(cfg.milestones),
            gamma=cfg.gamma,
        )

    def scaled(self, factor: float) -> OptimSettings:
        """The same settings with every learning rate times `factor`."""
        return replace(self, lr={name: lr * factor for name, lr in self.lr.items()})

    def schedule_factor(self, steps: int) -> Callable[[int], float]:
        """Multiplier of the base learning rate at each step of a `steps`-long run."""
        if self.schedule == "poly":
            return lambda step: max(0.0, 1.0 - step / max(1, steps)) ** self.poly_power
        marks = [round(m * steps) for m in self.milestones]
        return lambda step: self.gamma ** sum(step >= m for m in marks)


def build_optimizer(
    groups: dict[str, list[nn.Parameter]], settings: OptimSettings, steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the model's parameter groups and its step-wise LambdaLR schedule."""
    missing = set(groups) - set(settings.lr)
    if missing:
        raise ValueError(f"no learning rate for parameter groups {sorted(missing)}")
    param_groups = [
        {"params": [p for p in params if p.requires_grad], "lr": settings.lr[name], "name": name}
        for name, params in groups.items()
    ]
    param_groups = [g for g in param_groups if g["params"]]
    optimizer = torch.optim.AdamW(
        param_groups, betas=settings.betas, weight_decay=settings.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, settings.schedule_factor(steps))
    return optimizer, scheduler
