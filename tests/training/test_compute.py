"""run.matmul_precision and run.threads reach torch; "auto" is torch's default off CUDA."""

import pytest
import torch

from castseg.config import RunConfig
from castseg.training.compute import apply_compute_settings, matmul_precision


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
