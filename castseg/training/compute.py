"""How torch computes in this process: CPU threads and float32 matmul precision, from `run`.

`apply_compute_settings(cfg.run)` is called by every command that trains or evaluates from a
config, before its first model, and by `CastPipeline.run` before each run (the runs of
`--seeds` and `castseg ablate` may differ in them). Both settings are process-wide in torch.
"""

from __future__ import annotations

import torch

from castseg.config import RunConfig
from castseg.training.inference import inference_device


def matmul_precision(run: RunConfig) -> str:
    """The float32 matmul precision `run.matmul_precision` asks for: "auto" is "high" (TF32 on
    tensor cores) where the run computes on CUDA, torch's default "highest" elsewhere."""
    if run.matmul_precision != "auto":
        return run.matmul_precision
    return "high" if inference_device(run.accelerator).type == "cuda" else "highest"


def apply_compute_settings(run: RunConfig) -> None:
    """torch.set_num_threads(run.threads) (None keeps torch's count) and
    torch.set_float32_matmul_precision(`matmul_precision(run)`)."""
    if run.threads is not None:
        torch.set_num_threads(run.threads)
    torch.set_float32_matmul_precision(matmul_precision(run))
