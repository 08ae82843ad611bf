"""Export a segmentation model to ONNX: dynamic batch, fixed image size, metadata, verified.

The export uses the torch.export-based exporter (`torch.onnx.export(..., dynamo=True)`, torch's
default since 2.9, which needs `onnxscript`; the TorchScript exporter is deprecated). It emits
opset 18 or newer: onnx's version converter cannot take this model down to 17 (it fails on
Reduce* axes given as inputs), and the exporter would then silently keep 18.

Before anything is written the model is checked (`onnx.checker`, full check) and run in ONNX
Runtime on a batch of another size than the traced one, against PyTorch; the file then appears
at its path atomically, so a failed export never leaves a half-written .onnx behind.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import Tensor, nn

from castseg.deploy.onnx_metadata import INPUT_NAME, OUTPUT_NAMES, OnnxMetadata
from castseg.io import atomic_write

MIN_OPSET = 18
DEFAULT_OPSET = 18
# Largest |ONNX Runtime - PyTorch| accepted on any output logit (float32 on CPU).
DEFAULT_ATOL = 1e-3
_TRACE_BATCH = 2  # torch.export specialises a dimension traced at size 1
_VERIFY_BATCH = 3
# Loggers that report on the exporter's internals (skipped torchvision ops, constant folding).
_NOISY_LOGGERS = ("torch.onnx", "onnxscript")


class SegmentationOutputs(nn.Module):
    """The deployable part of a model: images [B, 3, H, W] in [0, 1] →
    (mask_logits [B, K, h, w], class_logits [B, K, C+1])."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        predictions = self.model(images)
        return predictions.mask_logits, predictions.class_logits


@dataclass(frozen=True)
class ExportReport:
    """What was written: the file, its opset and input size, and the largest absolute
    difference between ONNX Runtime and PyTorch per output on the verification batch."""

    path: Path
    opset: int
    image_size: tuple[int, int]
    max_abs_diff: dict[str, float]


def export_onnx(
    model: nn.Module,
    path: str | Path,
    metadata: OnnxMetadata,
    *,
    opset: int = DEFAULT_OPSET,
    atol: float = DEFAULT_ATOL,
) -> ExportReport:
    """Export `model` (returns `Predictions`) for inputs of `metadata.image_size` to `path`.

    The batch dimension is dynamic; the model is moved to the CPU and put in eval mode, and must
    be smaller than protobuf's 2 GiB (the paper student is 0.2 GiB). Raises ValueError for an
    opset below `MIN_OPSET` and when ONNX Runtime disagrees with PyTorch by more than `atol`
    (then nothing is written).
    """
    if opset < MIN_OPSET:
        raise ValueError(
            f"opset {opset} is not supported: the torch.export-based ONNX exporter emits opset "
            f"{MIN_OPSET} or newer for this model"
        )
    path = Path(path)
    wrapper = SegmentationOutputs(model).cpu().eval()
    height, width = metadata.image_size
    generator = torch.Generator().manual_seed(0)
    example = torch.rand(_TRACE_BATCH, 3, height, width, generator=generator)
    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(
            wrapper,
            (example,),
            dynamo=True,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            verbose=False,
        )
    proto = program.model_proto
    for key, value in metadata.to_props().items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto, full_check=True)

    images = torch.rand(_VERIFY_BATCH, 3, height, width, generator=generator)
    max_abs_diff = _compare_with_torch(proto.SerializeToString(), wrapper, images)
    worst = max(max_abs_diff, key=max_abs_diff.get)
    if max_abs_diff[worst] > atol:
        raise ValueError(
            f"the ONNX export of {path} disagrees with PyTorch: max |difference| of {worst} is "
            f"{max_abs_diff[worst]:.3g} > {atol:g}; nothing was written"
        )
    with atomic_write(path) as tmp:
        onnx.save_model(proto, tmp)
    return ExportReport(path, opset, (height, width), max_abs_diff)


def _compare_with_torch(model_bytes: bytes, wrapper: nn.Module, images: Tensor) -> dict[str, float]:
    """Largest |ONNX Runtime - PyTorch| per output on `images` [B, 3, H, W]."""
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    outputs = session.run(list(OUTPUT_NAMES), {INPUT_NAME: images.numpy()})
    with torch.no_grad():
        expected = wrapper(images)
    return {
        name: float(np.abs(actual - reference.detach().numpy()).max())
        for name, actual, reference in zip(OUTPUT_NAMES, outputs, expected, strict=True)
    }


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Hide the exporter's INFO and WARNING chatter; errors still surface as exceptions."""
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # torch.export's own use of a deprecated pytree API, nothing the caller can change
            warnings.filterwarnings("ignore", message=r".*LeafSpec", category=FutureWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
