"""Optimiser groups and schedules of Table 8."""

import dataclasses

import pytest
import torch
from torch import nn

from castseg.config import StudentConfig, TeacherConfig
from castseg.training.optim import OptimSettings, build_optimizer


def groups():
    return {
        "encoder": list(nn.Linear(2, 2).parameters()),
        "decoder": list(nn.Linear(2, 2).parameters()),
    }


def test_student_poly_schedule_and_two_learning_rates():
    settings = OptimSettings.for_student(StudentConfig())
    optimizer, scheduler = build_optimizer(groups(), settings, steps=100)
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs == {"encoder": 5e-6, "decoder": 5e-5}
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["weight_decay"] == 0.05
    for _ in range(50):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[1]["lr"] == pytest.approx(5e-5 * 0.5**0.9)
    assert settings.grad_clip == 0.1


def test_teacher_multistep_schedule():
    settings = OptimSettings.for_teacher(TeacherConfig())
    factor = settings.schedule_factor(1000)
    assert factor(0) == 1.0 and factor(899) == 1.0
    assert factor(900) == pytest.approx(0.1) and factor(950) == pytest.approx(0.01)
    assert settings.grad_clip == 0.0


def test_missing_group_learning_rate_is_an_error():
    settings = OptimSettings(
        lr={"encoder": 1e-4}, weight_decay=0.0, betas=(0.9, 0.999), schedule="poly"
    )
    with pytest.raises(ValueError, match="decoder"):
        build_optimizer(groups(), settings, steps=10)


def test_scaled_settings_multiply_every_learning_rate_and_keep_the_rest():
    settings = OptimSettings.for_student(StudentConfig(lr_encoder=2e-4, lr_decoder=1e-3))
    scaled = settings.scaled(0.1)
    assert scaled.lr == pytest.approx({"encoder": 2e-5, "decoder": 1e-4})
    assert dataclasses.replace(scaled, lr=settings.lr) == settings
