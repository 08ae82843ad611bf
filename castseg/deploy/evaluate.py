"""COCO mask AP of a saved model (a castseg checkpoint or an ONNX export) on a labeled
COCO-format dataset."""

from __future__ import annotations

from pathlib import Path

import torch

from castseg.data.coco import CategoryMap, CocoInstanceDataset
from castseg.deploy.predictor import load_deployed_model
from castseg.runtime.evaluate import EvalResult, evaluate_model


def evaluate_checkpoint(
    checkpoint: Path,
    annotations: Path,
    *,
    image_root: Path | None,
    progress: bool = True,
    onnx: bool = False,
) -> EvalResult:
    """Mask AP of a saved model on the images of a COCO json, at the model's image size.

    checkpoint: a castseg checkpoint, or with `onnx` a `castseg export` file run in ONNX Runtime
    (on the CPU). The model's categories (ids and names) must be those of `annotations`.
    """
    if onnx:
        deployed = load_deployed_model(onnx=checkpoint)
    else:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        deployed = load_deployed_model(checkpoint=checkpoint, device=device)
    dataset = CocoInstanceDataset(annotations, image_root=image_root)
    _check_same_categories(deployed.category_map, dataset.categories, checkpoint, annotations)
    return evaluate_model(
        deployed.model, dataset, image_size=deployed.image_size, progress=progress
    )


def _check_same_categories(
    trained: CategoryMap, annotated: CategoryMap, checkpoint: Path, annotations: Path
) -> None:
    if trained == annotated:
        return
    trained_pairs = dict(zip(trained.ids, trained.names, strict=True))
    annotated_pairs = dict(zip(annotated.ids, annotated.names, strict=True))
    differences = [
        f"id {i}: {trained_pairs.get(i, '<absent>')!r} in the checkpoint, "
        f"{annotated_pairs.get(i, '<absent>')!r} in the annotations"
        for i in sorted(trained_pairs.keys() | annotated_pairs.keys())
        if trained_pairs.get(i) != annotated_pairs.get(i)
    ]
    raise ValueError(
        f"checkpoint {checkpoint} was trained on other categories than {annotations}: "
        + "; ".join(differences)
    )
