"""Training batches drawn per step: weak views of labeled and pseudo-labeled samples.

A stage is a fixed number of steps (iteration-based training, as in the paper). The b-th sample
of step s on rank r is drawn with replacement, and its weak view augmented, from a generator
seeded by `step_seed(seed, stream, r, s · batch_size + b)` alone. So the batch of a step does not
depend on what ran before it: a stage resumed at step s draws the batches an uninterrupted stage
draws from step s on, with any number of loader workers, and every rank of a multi-process run
draws its own samples.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import lightning as L
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from castseg.data.samples import Sample
from castseg.data.views import WeakView
from castseg.structures import Instances


def step_seed(seed: int, stream: str, rank: int, index: int) -> int:
    """A 63-bit seed for draw `index` of `stream` ("labeled", "module", ...) on `rank`.

    Derived by SHA-256, so seeds of neighbouring indices, ranks and streams are unrelated.
    """
    digest = hashlib.sha256(f"{seed}/{stream}/{rank}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@dataclass
class ViewBatch:
    """Weak views of a batch. images: [B, 3, H, W]; targets: one Instances per image."""

    images: Tensor
    targets: list[Instances]

    def to(self, device: torch.device) -> ViewBatch:
        return ViewBatch(self.images.to(device), [t.to(device) for t in self.targets])


class StepSamples(Dataset[tuple[Tensor, Instances]]):
    """Item n is the weak view of a sample drawn for the n-th draw of a stream (see module doc).

    dataset: samples carrying instances (ground truth or pseudo-labels). Indexing is unbounded:
    n = step · batch_size + position.
    """

    def __init__(
        self, dataset: Dataset[Sample], view: WeakView, *, seed: int, stream: str, rank: int
    ) -> None:
        self.size = len(dataset)  # type: ignore[arg-type]
        if self.size == 0:
            raise ValueError(f"cannot train on an empty dataset ({stream} images)")
        self.dataset = dataset
        self.view = view
        self.seed = seed
        self.stream = stream
        self.rank = rank

    def __getitem__(self, n: int) -> tuple[Tensor, Instances]:
        generator = torch.Generator().manual_seed(step_seed(self.seed, self.stream, self.rank, n))
        sample = self.dataset[int(torch.randint(self.size, (), generator=generator))]
        if sample.instances is None:
            raise ValueError(
                f"image {sample.image_id} ({sample.file_name}) has no instances: a training set "
                "needs ground truth or pseudo-labels"
            )
        image, instances = self.view(sample.image, sample.instances, generator=generator)
        assert instances is not None
        return image, instances


class StepSampler(Sampler[int]):
    """Draw numbers start · batch_size … steps · batch_size − 1, in order.

    Its length is the whole stage's (steps · batch_size) even when it starts later: Lightning
    counts the batches of a resumed stage from the stage's start.
    """

    def __init__(self, *, start: int, steps: int, batch_size: int) -> None:
        if not 0 <= start <= steps:
            raise ValueError(f"start step {start} is outside the stage's 0..{steps} steps")
        self.start, self.steps, self.batch_size = start, steps, batch_size

    def __len__(self) -> int:
        return self.steps * self.batch_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start * self.batch_size, self.steps * self.batch_size))


def collate_views(items: Sequence[tuple[Tensor, Instances]]) -> ViewBatch:
    return ViewBatch(torch.stack([image for image, _ in items]), [inst for _, inst in items])


def step_loader(
    samples: StepSamples, *, start: int, steps: int, batch_size: int, num_workers: int = 0
) -> DataLoader:
    """The batches of steps start … steps − 1 (a loader of `steps` batches in length)."""
    return DataLoader(
        samples,
        batch_size=batch_size,
        sampler=StepSampler(start=start, steps=steps, batch_size=batch_size),
        collate_fn=collate_views,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        drop_last=True,
    )


class StageBatches(L.LightningDataModule):
    """The training batches of one stage: {"labeled": ViewBatch[, "unlabeled": ViewBatch]}.

    sources: stream name → dataset of samples with instances. The loaders are built when the
    trainer asks for them, after it has restored a checkpoint, so they start at the restored
    step and know this process's rank.
    """

    def __init__(
        self,
        sources: Mapping[str, Dataset[Sample]],
        view: WeakView,
        *,
        batch_size: int,
        steps: int,
        seed: int,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.sources = dict(sources)
        self.view = view
        self.batch_size = batch_size
        self.steps = steps
        self.seed = seed
        self.num_workers = num_workers

    def train_dataloader(self) -> CombinedLoader:
        start, rank = self.trainer.global_step, self.trainer.global_rank
        loaders = {
            stream: step_loader(
                StepSamples(dataset, self.view, seed=self.seed, stream=stream, rank=rank),
                start=start,
                steps=self.steps,
                batch_size=self.batch_size,
                num_workers=self.num_workers,
            )
            for stream, dataset in self.sources.items()
        }
        return CombinedLoader(loaders, mode="max_size_cycle")
