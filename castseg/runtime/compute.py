"""How torch computes in this process, from `run`: CPU threads, float32 matmul precision, and
Lightning's precision with the autocast that inference uses under it.

`apply_compute_settings(cfg.run)` is called by every command that trains or evaluates from a
config, before its first model, and by `CastPipeline.run` before each run (the runs of
`--seeds` and `castseg ablate` may differ in them). Both settings are process-wide in torch.

`run.precision: auto` is bf16-mixed on a CUDA GPU that supports bf16 and 32-true elsewhere (the
CPU keeps bit-identical float32 runs). Inference (pseudo-labelling, evaluation) autocasts as
training does under a mixed precision, so the teacher labels D_u at the speed it trains at.
"""

from __future__ import annotations

import contextlib

import torch

from castseg.config import RunConfig

_AUTOCAST = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def uses_cuda(accelerator: str) -> bool:
    """Whether `run.accelerator` puts this process on a CUDA GPU."""
    return accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def matmul_precision(run: RunConfig) -> str:
    """The float32 matmul precision `run.matmul_precision` asks for: "auto" is "high" (TF32 on
    tensor cores) where the run computes on CUDA, torch's default "highest" elsewhere."""
    if run.matmul_precision != "auto":
        return run.matmul_precision
    return "high" if uses_cuda(run.accelerator) else "highest"


def apply_compute_settings(run: RunConfig) -> None:
    """torch.set_num_threads(run.threads) (None keeps torch's count) and
    torch.set_float32_matmul_precision(`matmul_precision(run)`)."""
    if run.threads is not None:
        torch.set_num_threads(run.threads)
    torch.set_float32_matmul_precision(matmul_precision(run))


def resolve_precision(run: RunConfig) -> str:
    """Lightning's precision for `run.precision` on `run.accelerator`."""
    if run.precision != "auto":
        return run.precision
    if uses_cuda(run.accelerator) and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def inference_autocast(
    precision: str, device: torch.device
) -> contextlib.AbstractContextManager[None]:
    """Autocast for a no-grad forward under a resolved mixed precision; else nothing."""
    dtype = _AUTOCAST.get(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
