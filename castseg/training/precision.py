"""`run.precision` resolved for the device a run trains and predicts on.

"auto" is bf16-mixed on a CUDA GPU that supports bf16 and 32-true elsewhere (the CPU keeps
bit-identical float32 runs). Inference (pseudo-labelling, evaluation) autocasts as training
does under a mixed precision, so the teacher labels D_u at the speed it trains at.
"""

from __future__ import annotations

import contextlib

import torch

from castseg.config import RunConfig

_AUTOCAST = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def uses_cuda(accelerator: str) -> bool:
    """Whether `run.accelerator` puts this process on a CUDA GPU."""
    return accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


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
