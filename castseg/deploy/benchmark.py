"""Student vs teacher: parameters and latency on the same input, as a table with ratios.

Every model sees the same batch of one random image of the same size. The student runs in
PyTorch eager and, when asked, in ONNX Runtime (exported with `castseg.deploy.onnx_export`);
the teacher runs in PyTorch eager. Ratios divide the reference row's figure (the teacher's, or
the first row's without a teacher) by each row's: "12.3×" means 12.3 times fewer parameters or
12.3 times faster than the reference.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort
import torch
from torch import nn

from castseg.data.coco import CategoryMap
from castseg.deploy.latency import Latency, count_parameters, onnxruntime_latency, torch_latency
from castseg.deploy.onnx_export import export_onnx
from castseg.deploy.onnx_metadata import OnnxMetadata
from castseg.deploy.onnx_runtime import onnx_session
from castseg.models.checkpoints import imagenet_normalization


@dataclass(frozen=True)
class BenchRow:
    """One measured model: its name, the runtime, its parameter count and latency."""

    model: str
    runtime: str
    parameters: int
    latency: Latency


def benchmark(
    models: Sequence[tuple[str, nn.Module]],
    image_size: tuple[int, int],
    *,
    device: torch.device,
    warmup: int,
    repeats: int,
    onnx_model: str | None = None,
    class_names: Sequence[str] = (),
) -> list[BenchRow]:
    """Parameters and latency of each (name, model) on one random image [1, 3, H, W].

    onnx_model: the name of the model (one of `models`, a model with `config_dict()` such as
    the student) to also time in ONNX Runtime on the same device; class_names: its classes,
    recorded in the export's metadata.
    """
    images = torch.rand(1, 3, *image_size, generator=torch.Generator().manual_seed(0))
    rows = []
    for name, model in models:
        model.to(device)
        latency = torch_latency(model, images.to(device), warmup=warmup, repeats=repeats)
        rows.append(BenchRow(name, "PyTorch eager", count_parameters(model), latency))
        model.cpu()
        if name == onnx_model:
            session = _export_to_session(model, image_size, class_names, device)
            latency = onnxruntime_latency(session, images, warmup=warmup, repeats=repeats)
            rows.append(BenchRow(name, "ONNX Runtime", count_parameters(model), latency))
    return rows


def format_table(rows: Sequence[BenchRow], reference: int = 0) -> str:
    """A markdown table of `rows`, ratios against `rows[reference]`."""
    ref = rows[reference]
    ref_name = f"{ref.model}, {ref.runtime}"
    lines = [
        "| model | runtime | params (M) | latency (ms, median) | params ratio | speed-up |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.model} | {row.runtime} | {row.parameters / 1e6:.2f} | "
            f"{row.latency.median_s * 1e3:.1f} | {_ratio(ref.parameters, row.parameters)} | "
            f"{_ratio(ref.latency.median_s, row.latency.median_s)} |"
        )
    lines.append(f'\nRatios: {ref_name} ÷ each row ("12.3×" = 12.3 times fewer / faster).')
    return "\n".join(lines)


def _ratio(reference: float, value: float) -> str:
    return f"{reference / value:.2f}×" if value > 0 else "n/a"


def _export_to_session(
    model: nn.Module, image_size: tuple[int, int], class_names: Sequence[str], device: torch.device
) -> ort.InferenceSession:
    """An ONNX Runtime session of `model` exported for `image_size` (export on CPU)."""
    categories = CategoryMap(ids=tuple(range(1, len(class_names) + 1)), names=tuple(class_names))
    metadata = OnnxMetadata(
        category_map=categories,
        image_size=image_size,
        normalization=imagenet_normalization(),
        model_args=model.config_dict(),
    )
    with tempfile.TemporaryDirectory(prefix="castseg-bench-") as folder:
        path = Path(folder) / "model.onnx"
        export_onnx(model, path, metadata)
        # The session holds the model in memory; the file can go.
        return onnx_session(path, device.type)
