"""A picture of a model's predictions beside the ground truth of a few validation images."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from castseg.data.coco import CocoInstanceDataset
from castseg.data.views import ResizeView
from castseg.runtime.inference import predict_images
from castseg.viz import save_prediction_grid


def save_validation_samples(
    model: nn.Module,
    dataset: CocoInstanceDataset,
    path: Path,
    *,
    image_size: tuple[int, int],
    top_k: int,
    title: str,
    count: int = 4,
    score_threshold: float = 0.5,
) -> Path | None:
    """Write a PNG of the first `count` images: ground truth | prediction, under `title` (which
    model it shows). None if there are no images."""
    samples = [dataset[i] for i in range(min(count, len(dataset)))]
    if not samples:
        return None
    predictions = predict_images(
        model, [s.image for s in samples], ResizeView(image_size), top_k=top_k
    )
    rows = []
    for sample, pred in zip(samples, predictions, strict=True):
        assert sample.instances is not None
        gt = {"masks": sample.instances.masks, "labels": sample.instances.labels}
        rows.append((sample.image, gt, pred))
    return save_prediction_grid(
        path, rows, list(dataset.categories.names), score_threshold=score_threshold, title=title
    )
