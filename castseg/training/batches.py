"""Training batches: weak views of labeled and pseudo-labeled samples, for a fixed step count."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, RandomSampler

from castseg.data.samples import Sample
from castseg.data.views import WeakView
from castseg.structures import Instances


@dataclass
class ViewBatch:
    """Weak views of a batch. images: [B, 3, H, W]; targets: one Instances per image."""

    images: Tensor
    targets: list[Instances]

    def to(self, device: torch.device) -> ViewBatch:
        return ViewBatch(self.images.to(device), [t.to(device) for t in self.targets])


class WeakViewDataset(Dataset[tuple[Tensor, Instances]]):
    """Applies the weak view to samples that carry instances (ground truth or pseudo-labels)."""

    def __init__(self, dataset: Dataset[Sample], view: WeakView) -> None:
        self.dataset = dataset
        self.view = view

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Tensor, Instances]:
        sample = self.dataset[index]
        if sample.instances is None:
            raise ValueError(
                f"image {sample.image_id} ({sample.file_name}) has no instances: a training set "
                "needs ground truth or pseudo-labels"
            )
        image, instances = self.view(sample.image, sample.instances)
        assert instances is not None
        return image, instances


def collate_views(items: Sequence[tuple[Tensor, Instances]]) -> ViewBatch:
    return ViewBatch(torch.stack([image for image, _ in items]), [inst for _, inst in items])


def training_loader(
    dataset: Dataset[Sample],
    view: WeakView,
    *,
    batch_size: int,
    steps: int,
    seed: int,
    num_workers: int = 0,
) -> DataLoader:
    """A loader of exactly `steps` batches drawn with replacement (iteration-based training)."""
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise ValueError("cannot train on an empty dataset")
    sampler = RandomSampler(
        dataset,  # type: ignore[arg-type]
        replacement=True,
        num_samples=steps * batch_size,
        generator=torch.Generator().manual_seed(seed),
    )
    return DataLoader(
        WeakViewDataset(dataset, view),
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=collate_views,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        drop_last=True,
    )
