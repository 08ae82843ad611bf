"""COCO mask AP of a model on a labeled COCO-format dataset, its images sharded across ranks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn
from torch.utils.data import DataLoader, Subset

from castseg.data.coco import CocoInstanceDataset
from castseg.data.samples import collate_samples
from castseg.data.views import ResizeView
from castseg.evaluation.coco import CocoMetrics, encode_results, evaluate_coco
from castseg.progress_bar import progress_bar
from castseg.runtime.distributed import all_gather_results, is_rank_zero, shard_indices
from castseg.runtime.inference import predict_images


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
