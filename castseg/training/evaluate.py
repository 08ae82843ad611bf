"""COCO mask AP of a model or a saved checkpoint on a labeled COCO-format dataset."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from castseg.data.coco import CategoryMap, CocoInstanceDataset
from castseg.data.samples import collate_samples
from castseg.data.views import ResizeView
from castseg.deploy.predictor import load_deployed_model
from castseg.evaluation.coco import CocoMetrics, encode_results, evaluate_coco
from castseg.progress_bar import progress_bar
from castseg.training.distributed import all_gather_results, is_rank_zero, shard_indices
from castseg.training.inference import predict_images


@dataclass(frozen=True)
class EvalResult:
    """Metrics and the COCO results records (RLE segmentations, JSON-ready) they came from."""

    metrics: CocoMetrics
    results: list[dict[str, Any]]


def evaluate_model(
    model: nn.Module,
    dataset: CocoInstanceDataset,
    *,
    image_size: tuple[int, int],
    top_k: int = 100,
    batch_size: int = 8,
    num_workers: int = 0,
    progress: bool = True,
    desc: str = "eval",
    precision: str = "32-true",
) -> EvalResult:
    """Predict every image of `dataset` at `image_size` (a `ResizeView`) and score mask AP.

    The model returns `Predictions` for C = len(dataset.categories) classes. Only the dataset's
    images (`dataset.image_ids`) count as ground truth, so a subset is scored on its own.
    Under a process group every rank calls this: each predicts every world_size-th image, the
    results are gathered in dataset order, and every rank returns the same metrics and results.
    """
    mine = shard_indices(len(dataset))
    loader = DataLoader(
        Subset(dataset, mine),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_samples,
    )
    view = ResizeView(image_size)

    def predict_share() -> list[list[dict[str, Any]]]:
        """COCO results of each of this rank's images, in its order."""
        per_image = []
        show = progress and is_rank_zero()
        with progress_bar(total=len(mine), desc=desc, unit="img", enabled=show) as bar:
            for samples in loader:
                outputs = predict_images(
                    model, [s.image for s in samples], view, top_k=top_k, precision=precision
                )
                for sample, out in zip(samples, outputs, strict=True):
                    per_image.append(
                        encode_results(
                            sample.image_id,
                            out["masks"],
                            out["labels"],
                            out["scores"],
                            dataset.categories.to_coco,
                        )
                    )
                bar.update(len(samples))
        return per_image

    shares = all_gather_results(predict_share)
    ranks = len(shares)
    # Image i was rank (i mod ranks)'s (i div ranks)-th: back to dataset order.
    results = [r for i in range(len(dataset)) for r in shares[i % ranks][i // ranks]]
    # The records the dataset kept: records `data.on_bad_record: skip` dropped are not scored.
    return EvalResult(evaluate_coco(results, dataset.ground_truth()), results)


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
