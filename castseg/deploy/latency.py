"""Parameter counts and inference latency of a model in PyTorch eager or ONNX Runtime.

Latency is the median over `repeats` timed runs after `warmup` untimed ones, one forward pass of
a fixed batch each, under `torch.inference_mode()`. On CUDA the device is synchronised before
the clock starts and before it stops, so the time covers the kernels, not just their launch.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import onnxruntime as ort
import torch
from torch import Tensor, nn

from castseg.deploy.onnx_metadata import INPUT_NAME, OUTPUT_NAMES


@dataclass(frozen=True)
class Latency:
    """Seconds per forward pass: median, fastest and slowest of `repeats` timed runs."""

    median_s: float
    min_s: float
    max_s: float
    repeats: int


def count_parameters(model: nn.Module) -> int:
    """Number of parameters of `model` (trainable or not, shared ones once)."""
    return sum(p.numel() for p in model.parameters())


def time_calls(
    call: Callable[[], object],
    *,
    warmup: int,
    repeats: int,
    synchronize: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Latency:
    """Time `call()`: `warmup` untimed calls, then `repeats` timed ones.

    synchronize (e.g. `torch.cuda.synchronize`) runs right before each start and each stop of
    `clock` (seconds).
    """
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1, got {warmup} and {repeats}")
    sync = synchronize or (lambda: None)
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        sync()
        start = clock()
        call()
        sync()
        times.append(clock() - start)
    return Latency(statistics.median(times), min(times), max(times), repeats)


def torch_latency(model: nn.Module, images: Tensor, *, warmup: int, repeats: int) -> Latency:
    """Latency of `model(images)` in eval mode on the device of `images` [B, 3, H, W]."""
    was_training = model.training
    model.eval()
    synchronize = torch.cuda.synchronize if images.device.type == "cuda" else None
    try:
        with torch.inference_mode():
            return time_calls(
                lambda: model(images), warmup=warmup, repeats=repeats, synchronize=synchronize
            )
    finally:
        model.train(was_training)


def onnxruntime_latency(
    session: ort.InferenceSession, images: Tensor, *, warmup: int, repeats: int
) -> Latency:
    """Latency of a `castseg export` model in ONNX Runtime on `images` [B, 3, H, W] (CPU copy
    fed each run, as a caller holding a NumPy image would)."""
    feed = {INPUT_NAME: images.detach().float().cpu().contiguous().numpy()}
    return time_calls(lambda: session.run(list(OUTPUT_NAMES), feed), warmup=warmup, repeats=repeats)
