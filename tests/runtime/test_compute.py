"""How torch computes from `run`: threads and matmul precision reach torch ("auto" is torch's
default off CUDA); `run.precision: auto` resolves per device; inference autocasts under a
mixed precision."""

import dataclasses

import pytest
import torch

from castseg.config import RunConfig
from castseg.data.views import ResizeView
from castseg.models.student import build_student
from castseg.runtime.compute import (
    apply_compute_settings,
    inference_autocast,
    matmul_precision,
    resolve_precision,
)
from castseg.runtime.inference import predict_images


@pytest.fixture
def torch_settings():
    """Restore torch's process-wide settings after the test."""
    threads, precision = torch.get_num_threads(), torch.get_float32_matmul_precision()
    yield
    torch.set_num_threads(threads)
    torch.set_float32_matmul_precision(precision)


def test_matmul_precision_auto_is_high_on_cuda_only(torch_settings, monkeypatch):
    torch.set_float32_matmul_precision("medium")  # an earlier run's setting in this process
    apply_compute_settings(RunConfig(accelerator="cpu"))
    assert torch.get_float32_matmul_precision() == "highest"
    apply_compute_settings(RunConfig(accelerator="cpu", matmul_precision="high", threads=1))
    assert torch.get_float32_matmul_precision() == "high" and torch.get_num_threads() == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert matmul_precision(RunConfig()) == "high"  # TF32 tensor cores
    assert matmul_precision(RunConfig(accelerator="cpu")) == "highest"
    assert matmul_precision(RunConfig(matmul_precision="highest")) == "highest"


def test_auto_is_fp32_on_cpu_and_bf16_mixed_on_a_bf16_gpu(monkeypatch):
    run = RunConfig()
    assert run.precision == "auto"
    assert resolve_precision(run) == ("bf16-mixed" if torch.cuda.is_available() else "32-true")
    assert resolve_precision(dataclasses.replace(run, accelerator="cpu")) == "32-true"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert resolve_precision(run) == "bf16-mixed"
    assert resolve_precision(dataclasses.replace(run, accelerator="cpu")) == "32-true"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert resolve_precision(run) == "32-true"  # e.g. a V100: no bf16


def test_an_explicit_precision_is_kept():
    for precision in ("32-true", "16-mixed", "bf16-mixed", "64-true"):
        assert resolve_precision(RunConfig(precision=precision)) == precision


def test_inference_autocasts_only_under_mixed_precision():
    layer = torch.nn.Linear(4, 4)
    x = torch.rand(2, 4)
    with inference_autocast("bf16-mixed", x.device):
        assert layer(x).dtype == torch.bfloat16
    with inference_autocast("32-true", x.device):
        assert layer(x).dtype == torch.float32


def test_predict_images_in_bf16_mixed_returns_the_fp32_instances():
    torch.manual_seed(0)
    model = build_student("tiny", num_classes=3)
    images = [torch.rand(3, 56, 56), torch.rand(3, 40, 70)]
    view = ResizeView((56, 56))
    full = predict_images(model, images, view, top_k=5)
    mixed = predict_images(model, images, view, top_k=5, precision="bf16-mixed")
    for a, b in zip(full, mixed, strict=True):
        assert b["scores"].dtype == torch.float32 and b["masks"].shape == a["masks"].shape
        torch.testing.assert_close(b["scores"], a["scores"], rtol=0.05, atol=0.02)
